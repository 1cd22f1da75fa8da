//go:build linux

package store

import (
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fsync flushes f with a raw system call. The os package tells the Go
// scheduler about every system call, and a goroutine parked in one keeps
// the runtime's monitor thread polling every 20 µs and handing its P to
// another thread; for the half-millisecond fsync of each group commit that
// bookkeeping cost more CPU than the fsync itself at a few thousand
// REGISTERs a second (docs/PERFORMANCE.md). Holding the P instead keeps
// the other cores' goroutines running; only this one waits.
func fsync(f *os.File) error {
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

// writeAll appends b to f with raw system calls, for the reason fsync
// gives: a write to the page cache does not sleep long enough for the
// scheduler to need to know.
func writeAll(f *os.File, b []byte) error {
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
