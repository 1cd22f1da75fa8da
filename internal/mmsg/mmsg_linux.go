//go:build linux

// Package mmsg holds the batched datagram system calls (recvmmsg(2),
// sendmmsg(2)) and the kernel-layout socket address that the media relay
// and the RTP load generator share: both move hundreds of thousands of
// packets a second and must not convert an address or enter the Go
// scheduler per packet.
package mmsg

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Addr is a socket address in the kernel's own layout (sockaddr_in or
// sockaddr_in6), so the data path compares and passes addresses without
// converting them.
type Addr struct {
	B [unix.SizeofSockaddrInet6]byte
	N uint32 // unix.SizeofSockaddrInet4 or unix.SizeofSockaddrInet6; 0: none
}

// MakeAddr converts ap (IPv4-mapped IPv6 addresses taken as IPv4).
func MakeAddr(ap netip.AddrPort) Addr {
	var r Addr
	a := ap.Addr().Unmap()
	if a.Is4() {
		binary.NativeEndian.PutUint16(r.B[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(r.B[2:4], ap.Port())
		v := a.As4()
		copy(r.B[4:8], v[:])
		r.N = unix.SizeofSockaddrInet4
		return r
	}
	binary.NativeEndian.PutUint16(r.B[0:2], unix.AF_INET6)
	binary.BigEndian.PutUint16(r.B[2:4], ap.Port())
	v := a.As16()
	copy(r.B[8:24], v[:])
	// Scope IDs of link-local peers are not carried: SDP has no zone.
	r.N = unix.SizeofSockaddrInet6
	return r
}

// AddrPort converts r back; the zero AddrPort when r is empty.
func (r *Addr) AddrPort() netip.AddrPort {
	switch r.N {
	case unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(r.B[4:8])), binary.BigEndian.Uint16(r.B[2:4]))
	case unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(r.B[8:24])), binary.BigEndian.Uint16(r.B[2:4]))
	}
	return netip.AddrPort{}
}

// Equal reports whether r holds the address the kernel wrote into b with
// length n. Only the bytes of the family's own layout count: the buffers
// are shared by sockets of both families, so bytes past a sockaddr_in
// are stale.
func (r *Addr) Equal(b *[unix.SizeofSockaddrInet6]byte, n uint32) bool {
	if r.N != n {
		return false
	}
	if n == unix.SizeofSockaddrInet4 {
		return [8]byte(r.B[:8]) == [8]byte(b[:8])
	}
	return r.B == *b
}

// Set copies a kernel-written address into r.
func (r *Addr) Set(b *[unix.SizeofSockaddrInet6]byte, n uint32) {
	r.B, r.N = *b, n
	if n == unix.SizeofSockaddrInet4 {
		clear(r.B[8:])
	}
}

// Hdr is struct mmsghdr of recvmmsg(2)/sendmmsg(2), which x/sys/unix
// does not define.
type Hdr struct {
	Hdr unix.Msghdr
	Len uint32
	_   [4]byte
}

// Recv reads up to len(msgs) datagrams without blocking. It uses a raw
// syscall: the call never sleeps, so telling the Go scheduler about it
// (entersyscall/exitsyscall) would only cost time on every batch.
func Recv(fd int, msgs []Hdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Send sends msgs without blocking and returns how many went out. It
// fails only if the first one failed (sendmmsg(2)).
func Send(fd int, msgs []Hdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Op is one send on a socket of the Go runtime's (a net.UDPConn), through
// its syscall.RawConn: a raw, non-blocking sendto(2) for one message or
// sendmmsg(2) for several, waiting in the netpoller only while the socket
// has no room (EAGAIN). The scheduler is not told of the call: it never
// sleeps, and telling it (entersyscall) wakes the runtime's monitor
// thread at ordinary rates (docs/PERFORMANCE.md). The callback is bound
// once, so a send allocates nothing; an Op serves one sender at a time.
type Op struct {
	hdrs []Hdr
	sent int
	err  error
	fn   func(fd uintptr) bool
}

// Send sends hdrs in one system call and returns how many went out from
// the first, and the error that stopped it: the first message's when
// none went out, or the RawConn's (the socket closed).
func (o *Op) Send(rc syscall.RawConn, hdrs []Hdr) (int, error) {
	if o.fn == nil {
		o.fn = o.do
	}
	o.hdrs, o.sent, o.err = hdrs, 0, nil
	err := rc.Write(o.fn)
	o.hdrs = nil
	if err != nil {
		return 0, err
	}
	return o.sent, o.err
}

func (o *Op) do(fd uintptr) bool {
	var n int
	var err error
	if len(o.hdrs) == 1 {
		// One message: plain sendto(2), the cheaper call.
		h := &o.hdrs[0].Hdr
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(h.Iov.Base)), uintptr(h.Iov.Len),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(h.Name)), uintptr(h.Namelen))
		if e != 0 {
			err = e
		} else {
			n = 1
		}
	} else {
		n, err = Send(int(fd), o.hdrs)
	}
	if err == unix.EAGAIN || err == unix.EINTR {
		return false // wait until writable (EINTR: try again)
	}
	o.sent, o.err = n, err
	return true
}
