//go:build linux

package transport

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"sipedge/internal/mmsg"
)

// rawUDP does a UDP socket's reads and writes with raw, non-blocking
// system calls, and parks in the netpoller (syscall.RawConn) only when
// the socket has nothing to read or no room to write.
//
// Why: the net package wraps every sendto and recvfrom in the scheduler's
// entersyscall/exitsyscall. A P left in a system call is what the
// runtime's monitor thread (sysmon) looks for, and while it finds some it
// polls every 20 µs instead of backing off to 10 ms. At ordinary rates (a
// few thousand messages a second on two cores) that thread's wake-ups were
// a fifth of sipedge's CPU (perf, docs/PERFORMANCE.md). A send or receive
// on a non-blocking UDP socket never sleeps, so the scheduler need not
// hear of it; the raw call also skips the net package's address
// conversions. recvmmsg(2) takes every datagram already queued in one
// call, and a batch of responses leaves in one sendmmsg(2).
type rawUDP struct {
	rc syscall.RawConn
}

func newRawUDP(uc *net.UDPConn) *rawUDP {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawUDP{rc: rc}
}

// udpBatch is the reusable state of one send: the messages, their
// buffers and the addresses they point to, so that a send allocates
// nothing.
type udpBatch struct {
	op    mmsg.Op
	hdrs  []mmsg.Hdr
	iovs  []unix.Iovec
	addrs []mmsg.Addr
	dsts  []netip.AddrPort // hdrs[i]'s destination, for the tap
	bufs  [][]byte         // hdrs[i]'s bytes, for the tap
}

func newUDPBatch(n int) *udpBatch {
	b := &udpBatch{
		iovs:  make([]unix.Iovec, n),
		addrs: make([]mmsg.Addr, n),
		dsts:  make([]netip.AddrPort, n),
		bufs:  make([][]byte, n),
	}
	b.hdrs = make([]mmsg.Hdr, n)
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		h.Iov = &b.iovs[i]
		h.Iovlen = 1
		h.Name = &b.addrs[i].B[0]
	}
	return b
}

var udpBatches = sync.Pool{New: func() any { return newUDPBatch(maxBatch) }}
var udpSingles = sync.Pool{New: func() any { return newUDPBatch(1) }}

// set makes message i of b: data to dst.
func (b *udpBatch) set(i int, dst netip.AddrPort, data []byte) {
	b.addrs[i] = mmsg.MakeAddr(dst)
	b.hdrs[i].Hdr.Namelen = b.addrs[i].N
	if len(data) > 0 {
		b.iovs[i].Base = &data[0]
	} else {
		b.iovs[i].Base = nil
	}
	b.iovs[i].SetLen(len(data))
	b.dsts[i], b.bufs[i] = dst, data
}

// clear drops the references to the caller's bytes.
func (b *udpBatch) clear(n int) {
	for i := range n {
		b.iovs[i].Base = nil
		b.bufs[i] = nil
	}
}

// sendFrom sends messages [from, n) of b on the socket in one system
// call; it returns how many went out from the first and the error that
// stopped it (the first message's, when none went out).
func (r *rawUDP) sendFrom(b *udpBatch, from, n int) (int, error) {
	return b.op.Send(r.rc, b.hdrs[from:n])
}

// writeTo sends one datagram.
func (u *udpListener) writeTo(data []byte, dst netip.AddrPort) error {
	if u.raw == nil {
		_, err := u.conn.WriteToUDPAddrPort(data, dst)
		return err
	}
	b := udpSingles.Get().(*udpBatch)
	b.set(0, dst, data)
	_, err := u.raw.sendFrom(b, 0, 1)
	b.clear(1)
	udpSingles.Put(b)
	if err != nil {
		return &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(dst), Err: err}
	}
	return nil
}

// recvBatch is how many datagrams one recvmmsg(2) may return. At ordinary
// rates a call finds one; under load several arrive between two calls.
const recvBatch = 8

// reader is the receive side of one reader goroutine.
type reader struct {
	raw   *rawUDP
	hdrs  [recvBatch]mmsg.Hdr
	iovs  [recvBatch]unix.Iovec
	names [recvBatch][unix.SizeofSockaddrInet6]byte
	bufs  [recvBatch][]byte
	n     int
	err   error
	fn    func(fd uintptr) bool
}

func (u *udpListener) newReader(size int) *reader {
	if u.raw == nil {
		return nil
	}
	r := &reader{raw: u.raw}
	for i := range r.hdrs {
		r.bufs[i] = make([]byte, size)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(size)
		h := &r.hdrs[i].Hdr
		h.Iov = &r.iovs[i]
		h.Iovlen = 1
		h.Name = &r.names[i][0]
	}
	r.fn = r.do
	return r
}

func (r *reader) do(fd uintptr) bool {
	for i := range r.hdrs {
		r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		r.hdrs[i].Hdr.Flags = 0
	}
	n, err := mmsg.Recv(int(fd), r.hdrs[:])
	if err == unix.EAGAIN || err == unix.EINTR {
		return false // park in the netpoller until readable
	}
	r.n, r.err = n, err
	return true
}

// read waits for datagrams and returns how many are in r (datagram i:
// r.data(i), r.src(i)).
func (r *reader) read() (int, error) {
	r.n, r.err = 0, nil
	if err := r.raw.rc.Read(r.fn); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	return r.n, r.err
}

func (r *reader) data(i int) []byte { return r.bufs[i][:r.hdrs[i].Len] }

func (r *reader) src(i int) netip.AddrPort {
	var a mmsg.Addr
	a.Set(&r.names[i], r.hdrs[i].Hdr.Namelen)
	return a.AddrPort()
}
