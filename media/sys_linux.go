//go:build linux

package media

import (
	"errors"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"sipedge/internal/mmsg"
)

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
func connect(fd int, r *mmsg.Addr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&r.B[0])), uintptr(r.N))
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
