//go:build linux

// Package rawio writes and flushes files, and writes stream sockets, with
// raw system calls. The os and net packages tell the Go scheduler about
// every system call, and a goroutine parked in one wakes the runtime's
// monitor thread, which then polls every 20 µs and hands the goroutine's
// P to another thread; for the short writes of the store's log, the call
// log and HEP over TCP, and the half-millisecond fsync of a group commit,
// that bookkeeping cost more CPU than the calls themselves at ordinary
// rates (docs/PERFORMANCE.md). Holding the P keeps
// the other cores' goroutines running; only the caller waits.
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Fsync flushes f to its device (fsync(2)).
func Fsync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			_, _, e := unix.RawSyscall(unix.SYS_FSYNC, fd, 0, 0)
			if e == unix.EINTR {
				continue
			}
			if e != 0 {
				serr = &os.PathError{Op: "sync", Path: f.Name(), Err: e}
			}
			return
		}
	}); err != nil {
		return err
	}
	return serr
}

// WriteAll writes all of b to f (write(2), repeated after a short write).
func WriteAll(f *os.File, b []byte) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		for len(b) > 0 {
			n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch {
			case e == unix.EINTR || e == unix.EAGAIN:
				continue
			case e != 0:
				werr = &os.PathError{Op: "write", Path: f.Name(), Err: e}
				return
			case n == 0:
				werr = &os.PathError{Op: "write", Path: f.Name(), Err: io.ErrShortWrite}
				return
			}
			b = b[n:]
		}
	}); err != nil {
		return err
	}
	return werr
}

// WriteStreamBuffers writes all of bufs, in order, to a non-blocking
// stream socket (a TCP connection) with raw writev(2) calls (no copy into
// one buffer first); when the socket's buffer is full it waits for room
// in the netpoller, as net.Conn.Write does, so the connection's write
// deadline applies. A connection without a file descriptor is written
// with its Write.
func WriteStreamBuffers(c net.Conn, bufs [][]byte) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		nb := net.Buffers(bufs)
		_, err := nb.WriteTo(c)
		return err
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	iov := make([]unix.Iovec, 0, min(len(bufs), maxIovecs))
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for {
			iov = iov[:0]
			for _, b := range bufs {
				if len(iov) == cap(iov) {
					break
				}
				if len(b) > 0 {
					v := unix.Iovec{Base: &b[0]}
					v.SetLen(len(b))
					iov = append(iov, v)
				}
			}
			if len(iov) == 0 {
				return true
			}
			n, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false // wait until writable
			case e != 0:
				werr = &os.SyscallError{Syscall: "writev", Err: e}
				return true
			case n == 0:
				werr = io.ErrShortWrite
				return true
			}
			// Drop what was written: whole buffers, then the start of
			// the next.
			for n > 0 {
				if int(n) >= len(bufs[0]) {
					n -= uintptr(len(bufs[0]))
					bufs = bufs[1:]
				} else {
					bufs[0] = bufs[0][n:]
					n = 0
				}
			}
		}
	}); err != nil {
		return err
	}
	return werr
}

// maxIovecs is the most buffers one writev takes (IOV_MAX).
const maxIovecs = 1024
