//go:build linux

package hep

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"sipedge/internal/mmsg"
)

// batchWriter sends packets on a connected UDP socket with one raw,
// non-blocking sendmmsg(2) per batch: no system call per packet, and none
// through the scheduler's entersyscall, which wakes the runtime's monitor
// thread (the reason the transport does the same, docs/DESIGN.md).
type batchWriter struct {
	rc   syscall.RawConn
	conn net.Conn
	hdrs [sendBatch]mmsg.Hdr
	iovs [sendBatch]unix.Iovec
	n    int
	sent int
	err  error
	fn   func(fd uintptr) bool
}

func newBatchWriter(c net.Conn) *batchWriter {
	w := &batchWriter{conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.rc = rc
		}
	}
	for i := range w.hdrs {
		w.hdrs[i].Hdr.Iov = &w.iovs[i]
		w.hdrs[i].Hdr.Iovlen = 1
	}
	w.fn = w.do
	return w
}

func (w *batchWriter) do(fd uintptr) bool {
	n, err := mmsg.Send(int(fd), w.hdrs[w.sent:w.n])
	if err == unix.EAGAIN || err == unix.EINTR {
		return false
	}
	if err != nil {
		w.err = err
		return true
	}
	w.sent += n
	return w.sent >= w.n
}

// write sends batch and reports how many went out and the first error.
// A packet the kernel refuses (an ICMP error queued on the socket) is
// skipped; the rest still go.
func (w *batchWriter) write(batch []*packet) (int, error) {
	if w.rc == nil {
		return writeEach(w.conn, batch)
	}
	for i, pk := range batch {
		w.iovs[i].Base = (*byte)(unsafe.Pointer(unsafe.SliceData(pk.b)))
		w.iovs[i].SetLen(len(pk.b))
	}
	w.n, w.sent = len(batch), 0
	var first error
	ok := 0
	for w.sent < w.n {
		w.err = nil
		before := w.sent
		if err := w.rc.Write(w.fn); err != nil {
			if first == nil {
				first = err
			}
			break
		}
		ok += w.sent - before
		if w.err != nil {
			if first == nil {
				first = w.err
			}
			w.sent++ // skip the refused packet
		}
	}
	for i := range batch {
		w.iovs[i].Base = nil
	}
	return ok, first
}
