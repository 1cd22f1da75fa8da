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
// non-blocking sendmmsg(2) per batch (mmsg.Op): no system call per
// packet, and none through the scheduler's entersyscall.
type batchWriter struct {
	rc   syscall.RawConn
	conn net.Conn
	op   mmsg.Op
	hdrs [sendBatch]mmsg.Hdr
	iovs [sendBatch]unix.Iovec
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
	return w
}

func (w *batchWriter) close() { w.conn.Close() }

// write sends batch and reports how many went out and the first error.
// A packet the kernel refuses (an ICMP error queued on the socket) is
// skipped; the rest still go.
func (w *batchWriter) write(b *batch) (int, error) {
	if w.rc == nil {
		return writeEach(w.conn, b)
	}
	ok := 0
	var first error
	// sendBatch packets per sendmmsg.
	for base := 0; base < len(b.ends); base += sendBatch {
		n := min(len(b.ends)-base, sendBatch)
		for i := range n {
			pk := b.packet(base + i)
			w.iovs[i].Base = (*byte)(unsafe.Pointer(unsafe.SliceData(pk)))
			w.iovs[i].SetLen(len(pk))
		}
		for from := 0; from < n; {
			sent, err := w.op.Send(w.rc, w.hdrs[from:n])
			ok += sent
			from += sent
			if err != nil {
				if first == nil {
					first = err
				}
				from++ // skip the refused packet
			}
		}
		for i := range n {
			w.iovs[i].Base = nil
		}
	}
	return ok, first
}

// sendBatch is the most packets one sendmmsg sends.
const sendBatch = 256
