//go:build linux

package media

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawAddr is a socket address in the kernel's own layout (sockaddr_in or
// sockaddr_in6), so the data path compares and passes addresses without
// converting them.
type rawAddr struct {
	b [unix.SizeofSockaddrInet6]byte
	n uint32 // unix.SizeofSockaddrInet4 or unix.SizeofSockaddrInet6; 0: none
}

// makeRaw converts ap (IPv4-mapped IPv6 addresses taken as IPv4).
func makeRaw(ap netip.AddrPort) rawAddr {
	var r rawAddr
	a := ap.Addr().Unmap()
	if a.Is4() {
		binary.NativeEndian.PutUint16(r.b[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(r.b[2:4], ap.Port())
		v := a.As4()
		copy(r.b[4:8], v[:])
		r.n = unix.SizeofSockaddrInet4
		return r
	}
	binary.NativeEndian.PutUint16(r.b[0:2], unix.AF_INET6)
	binary.BigEndian.PutUint16(r.b[2:4], ap.Port())
	v := a.As16()
	copy(r.b[8:24], v[:])
	// Scope IDs of link-local peers are not carried: SDP has no zone.
	r.n = unix.SizeofSockaddrInet6
	return r
}

// addrPort converts r back; the zero AddrPort when r is empty.
func (r *rawAddr) addrPort() netip.AddrPort {
	switch r.n {
	case unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(r.b[4:8])), binary.BigEndian.Uint16(r.b[2:4]))
	case unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(r.b[8:24])), binary.BigEndian.Uint16(r.b[2:4]))
	}
	return netip.AddrPort{}
}

// equal reports whether r holds the address the kernel wrote into b with
// length n. Only the bytes of the family's own layout count: the buffers
// are shared by sockets of both families, so bytes past a sockaddr_in
// are stale.
func (r *rawAddr) equal(b *[unix.SizeofSockaddrInet6]byte, n uint32) bool {
	if r.n != n {
		return false
	}
	if n == unix.SizeofSockaddrInet4 {
		return [8]byte(r.b[:8]) == [8]byte(b[:8])
	}
	return r.b == *b
}

// set copies a kernel-written address into r.
func (r *rawAddr) set(b *[unix.SizeofSockaddrInet6]byte, n uint32) {
	r.b, r.n = *b, n
	if n == unix.SizeofSockaddrInet4 {
		clear(r.b[8:])
	}
}

// mmsghdr is struct mmsghdr of recvmmsg(2)/sendmmsg(2), which x/sys/unix
// does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// recvmmsg reads up to len(msgs) datagrams without blocking. It uses a raw
// syscall: the call never sleeps, so telling the Go scheduler about it
// (entersyscall/exitsyscall) would only cost time on every batch.
func recvmmsg(fd int, msgs []mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sendmmsg sends msgs without blocking and returns how many went out. It
// fails only if the first one failed (sendmmsg(2)).
func sendmmsg(fd int, msgs []mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// epollPoll returns the ready events without blocking (raw syscall, as
// for recvmmsg).
func epollPoll(epfd int, ev []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&ev[0])),
		uintptr(len(ev)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sleep is nanosleep(2) through the scheduler-aware syscall path, so the
// Go runtime may run other goroutines on this thread's P meanwhile. It is
// cheaper than time.Sleep on this kind of host (relay-limits.md §3:
// 63 µs against 88 µs of CPU per 1 ms wake-up).
func sleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_ = unix.Nanosleep(&ts, nil) // EINTR only shortens one tick
}

// bindUDP opens a non-blocking UDP socket bound to ap. IPv6 sockets are
// IPv6-only, so an IPv4 peer can never reach a socket advertised as IPv6
// through a mapped address.
func bindUDP(ap netip.AddrPort) (int, error) {
	a := ap.Addr()
	family := unix.AF_INET
	if a.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, err
		}
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// portTaken reports whether a bind error means that another socket holds
// the port, so the next pair may do.
func portTaken(err error) bool {
	return errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EACCES)
}

// outOfFDs reports whether err is the process or system fd limit.
func outOfFDs(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// closeFD closes fd; the error is of no use (close of a UDP socket fails
// only for a bad fd, which would be a bug caught by the fd-count tests).
func closeFD(fd int) { _ = unix.Close(fd) }

// connect connects fd to r.
func connect(fd int, r *rawAddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&r.b[0])), uintptr(r.n))
	if e != 0 {
		return e
	}
	return nil
}

// disconnect dissolves fd's association (connect to AF_UNSPEC, connect(2)).
func disconnect(fd int) {
	var sa [16]byte // sa_family = AF_UNSPEC (0)
	_, _, _ = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), uintptr(len(sa)))
}
