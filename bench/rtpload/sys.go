//go:build linux

package main

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"sipedge/internal/mmsg"
)

// The generator uses the relay's batched system calls (internal/mmsg): it
// must not cost more per packet than it has to, or it, not the relay, is
// what gets measured.

// batch is a set of message headers over their own buffers, for one
// socket.
type batch struct {
	fd   int
	n    int
	msgs []mmsg.Hdr
	iovs []unix.Iovec
	bufs [][]byte
}

func newBatch(n, size, fd int) *batch {
	b := &batch{fd: fd, msgs: make([]mmsg.Hdr, n), iovs: make([]unix.Iovec, n), bufs: make([][]byte, n)}
	for i := range b.msgs {
		b.bufs[i] = make([]byte, size)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		b.msgs[i].Hdr.Iov = &b.iovs[i]
		b.msgs[i].Hdr.SetIovlen(1)
	}
	return b
}

// next returns the buffer of the next message, addressed to dst.
func (b *batch) next(dst *mmsg.Addr) []byte {
	m := &b.msgs[b.n]
	m.Hdr.Name = &dst.B[0]
	m.Hdr.Namelen = dst.N
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
