//go:build linux

package main

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The raw socket helpers mirror the relay's (package media keeps its
// own unexported): the generator must not cost more per packet than it has
// to, or it, not the relay, is what gets measured.

type rawAddr struct {
	b [unix.SizeofSockaddrInet6]byte
	n uint32
}

func makeRaw(ap netip.AddrPort) rawAddr {
	var r rawAddr
	a := ap.Addr().Unmap()
	binary.BigEndian.PutUint16(r.b[2:4], ap.Port())
	if a.Is4() {
		binary.NativeEndian.PutUint16(r.b[0:2], unix.AF_INET)
		v := a.As4()
		copy(r.b[4:8], v[:])
		r.n = unix.SizeofSockaddrInet4
		return r
	}
	binary.NativeEndian.PutUint16(r.b[0:2], unix.AF_INET6)
	v := a.As16()
	copy(r.b[8:24], v[:])
	r.n = unix.SizeofSockaddrInet6
	return r
}

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func recvmmsg(fd int, msgs []mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func sendmmsg(fd int, msgs []mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// batch is a set of message headers over their own buffers, for one
// socket.
type batch struct {
	fd   int
	n    int
	msgs []mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
}

func newBatch(n, size, fd int) *batch {
	b := &batch{fd: fd, msgs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), bufs: make([][]byte, n)}
	for i := range b.msgs {
		b.bufs[i] = make([]byte, size)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

// next returns the buffer of the next message, addressed to dst.
func (b *batch) next(dst *rawAddr) []byte {
	m := &b.msgs[b.n]
	m.hdr.Name = &dst.b[0]
	m.hdr.Namelen = dst.n
	p := b.bufs[b.n]
	b.n++
	return p
}

func (b *batch) full() bool { return b.n == len(b.msgs) }

// bindReusePort binds one socket of a SO_REUSEPORT group on ap, with an
// 8 MB receive buffer (SO_RCVBUFFORCE as root, so the generator's own
// queue does not drop what the relay delivered).
func bindReusePort(ap netip.AddrPort) (int, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
