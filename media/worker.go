//go:build linux

package media

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"sipedge/internal/mmsg"
)

const (
	// maxEvents is how many ready sockets one epoll_wait returns. A poll
	// that fills it is repeated at once; one that does not ends the round.
	maxEvents = 256
	// vlen is the recvmmsg batch per socket. A per-stream socket at 50
	// packets/s rarely holds more than one packet per 1 ms tick
	// (relay-limits.md §3); 8 covers video bursts in one call.
	vlen = 8
	// bufSize holds any UDP payload, so nothing is ever truncated.
	bufSize = 65536
	// modeWindow is how many ticks the thread looks back to choose
	// between polling and blocking (see run).
	modeWindow = 100
	// epollET is EPOLLET as the uint32 that EpollEvent.Events holds.
	epollET = 1 << 31
	// evWake is the epoll data of the eventfd that wakes a blocked thread.
	evWake = -1
)

// sock is one bound socket of a stream: the RTP or the RTCP port of one
// side. It remembers where its own peer is: the SDP address, and the
// latched source. Everything but fd is guarded by the worker's mutex.
type sock struct {
	fd   int
	st   *Stream
	side Side
	rtcp bool // the odd port of the pair
	idx  int32

	sdp      mmsg.Addr // peer address from SDP; N == 0: unknown
	src      mmsg.Addr // latched source (LatchOff: last source, for stats)
	latched  bool
	conn     bool   // connected to src (LatchFirst): the kernel filters and routes
	ssrc     uint32 // SSRC seen from src, for LatchSSRC
	haveSSRC bool
}

// dest is where packets leaving through s go: the latched source (RFC
// 4961 symmetric RTP: send to where the peer sends from), else the SDP
// address; nil when neither is known yet.
func (s *sock) dest() *mmsg.Addr {
	if s.latched {
		return &s.src
	}
	if s.sdp.N != 0 {
		return &s.sdp
	}
	return nil
}

// setSDP records a new SDP address. A different address means the peer
// moved (re-INVITE), so the latch is released and the next packet latches
// again; the same address (a session refresh) keeps it.
func (s *sock) setSDP(r mmsg.Addr) (changed bool) {
	if r != s.sdp {
		s.sdp = r
		s.latched, s.haveSSRC = false, false
		if s.conn {
			disconnect(s.fd)
			s.conn = false
		}
		return true
	}
	return false
}

// counters are a worker's relay-wide counts, guarded by its mutex.
type counters struct {
	received, relayed, relatched                 uint64
	noPeer, foreign, sendErr, truncated, recvErr uint64
}

func (c *counters) add(o *counters) {
	c.received += o.received
	c.relayed += o.relayed
	c.relatched += o.relatched
	c.noPeer += o.noPeer
	c.foreign += o.foreign
	c.sendErr += o.sendErr
	c.truncated += o.truncated
	c.recvErr += o.recvErr
}

// worker is one relay thread: a locked OS thread with its own epoll set
// over the sockets of the streams assigned to it. It polls without
// blocking while there is traffic and sleeps one tick between rounds, so
// one wake-up serves every packet that arrived meanwhile; the Go
// netpoller, which would wake a goroutine per packet, is not involved
// (relay-limits.md §3).
//
// mu is held while a round runs and released while the thread sleeps:
// that is when control operations (add, remove, SetPeer, Stats) get in.
// Holding it across the round keeps a socket from being closed, and its
// fd number reused, while the thread is using it.
type worker struct {
	kern  *kernel // nil: no in-kernel path
	latch LatchMode
	tick  time.Duration
	epfd  int
	evfd  int
	stop  atomic.Bool
	tid   atomic.Int32 // the thread's ID, for tests

	nstreams int // streams assigned; guarded by Relay.mu

	// inbox holds work for the thread from the kernel path's goroutine,
	// run under mu at the start of a round (byWorker); each item may
	// return a function to run once mu is released. kmu guards it.
	kmu   sync.Mutex
	inbox []func() func()

	mu    sync.Mutex
	socks []*sock // by epoll data; nil: free
	free  []int32
	ctr   counters

	ev    [maxEvents]unix.EpollEvent
	rm    [vlen]mmsg.Hdr
	riov  [vlen]unix.Iovec
	names [vlen][unix.SizeofSockaddrInet6]byte
	bufs  [vlen][]byte
	sm    [vlen]mmsg.Hdr
	siov  [vlen]unix.Iovec
}

func newWorker(cfg Config) (*worker, error) {
	w := &worker{latch: cfg.Latch, tick: cfg.Tick, epfd: -1, evfd: -1}
	var err error
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	if w.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		w.closeFDs()
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: evWake}
	if err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.evfd, &ev); err != nil {
		w.closeFDs()
		return nil, err
	}
	for i := range w.bufs {
		w.bufs[i] = make([]byte, bufSize)
		w.riov[i].Base = &w.bufs[i][0]
		w.riov[i].SetLen(bufSize)
		w.rm[i].Hdr.Iov = &w.riov[i]
		w.rm[i].Hdr.SetIovlen(1)
		w.rm[i].Hdr.Name = &w.names[i][0]
		w.sm[i].Hdr.Iov = &w.siov[i]
		w.sm[i].Hdr.SetIovlen(1)
	}
	return w, nil
}

func (w *worker) closeFDs() {
	if w.epfd >= 0 {
		closeFD(w.epfd)
	}
	if w.evfd >= 0 {
		closeFD(w.evfd)
	}
}

// post queues fn for the thread's next round and wakes it if it blocks.
func (w *worker) post(fn func() func()) {
	w.kmu.Lock()
	w.inbox = append(w.inbox, fn)
	w.kmu.Unlock()
	w.wake()
}

// runInbox runs what was posted; w.mu is held. It returns what must run
// after w.mu is released.
func (w *worker) runInbox(afters []func()) []func() {
	w.kmu.Lock()
	fns := w.inbox
	w.inbox = nil
	w.kmu.Unlock()
	for _, fn := range fns {
		if a := fn(); a != nil {
			afters = append(afters, a)
		}
	}
	return afters
}

// wake makes a thread blocked in epoll_wait return (to see stop).
func (w *worker) wake() {
	one := uint64(1)
	_, _ = unix.Write(w.evfd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// add registers s; w.mu must be held. Edge-triggered: a socket is
// reported once per arrival, and drain reads it until a short batch, so
// epoll never re-polls sockets that have nothing (level-triggered epoll
// re-checks every socket it returned on the next wait).
func (w *worker) add(s *sock) error {
	var idx int32
	if n := len(w.free); n > 0 {
		idx, w.free = w.free[n-1], w.free[:n-1]
	} else {
		idx = int32(len(w.socks))
		w.socks = append(w.socks, nil)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | epollET, Fd: idx}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		w.free = append(w.free, idx)
		return err
	}
	s.idx = idx
	w.socks[idx] = s
	return nil
}

// remove unregisters s; w.mu must be held. The caller closes the fd
// afterwards: the thread cannot be using it, since it holds w.mu while it
// does, and a stale event for idx finds nil or a new socket, which it then
// reads correctly as its own.
func (w *worker) remove(s *sock) {
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
	w.socks[s.idx] = nil
	w.free = append(w.free, s.idx)
}

// run is the thread's loop. It has two modes and picks the cheaper for
// the current load, since every wake-up costs about 60 µs of CPU on the
// project's host (relay-limits.md §3):
//
//   - ticking: poll every socket that is ready, then sleep one tick. One
//     wake-up per tick serves every packet that came meanwhile; chosen
//     while there is more than about one packet per tick.
//   - blocking: epoll_wait until a packet comes. One wake-up per packet,
//     none when idle; chosen when there is less than one packet per two
//     ticks (a handful of calls, or none).
//
// The goroutine stays locked to its thread and exits locked, so the
// runtime ends the thread with it: Close leaves no thread behind.
func (w *worker) run(wg *sync.WaitGroup) {
	runtime.LockOSThread()
	w.tid.Store(int32(unix.Gettid()))
	defer wg.Done()
	blocking, pending := true, 0
	count, rounds, since := 0, 0, nanotime()
	var afters []func()
	for !w.stop.Load() {
		w.mu.Lock()
		afters = w.runInbox(afters[:0])
		got := w.handle(w.ev[:pending])
		if !blocking {
			got += w.poll()
		}
		w.mu.Unlock()
		for _, a := range afters {
			a()
		}
		pending = 0
		if blocking {
			// count is wake-ups over a window of modeWindow ticks.
			count++
			if now := nanotime(); now-since >= modeWindow*int64(w.tick) {
				if count > modeWindow {
					blocking, count, rounds = false, 0, 0
				}
				count, since = 0, now
			}
		} else {
			// count is packets over modeWindow rounds.
			count += got
			if rounds++; rounds == modeWindow {
				if count < modeWindow/2 {
					blocking, since = true, nanotime()
				}
				count, rounds = 0, 0
			}
		}
		if !blocking {
			// Even with sockets still ready: the sleep is what lets the
			// rest of the process run. The threads are locked and there
			// are as many as processors (GOMAXPROCS), so a thread that
			// never blocked would keep its processor from the SIP stack
			// and the kernel path's goroutine.
			sleep(w.tick)
			continue
		}
		// The events are handled at the top of the loop, under mu: with
		// edge triggering they are not reported again.
		if n, err := unix.EpollWait(w.epfd, w.ev[:], -1); err == nil {
			pending = n
		}
	}
}

// poll handles ready sockets until a poll returns less than a full batch,
// or maxPolls full batches, and reports how many packets it read. The
// bound ends a round under overload:
// the thread holds its lock for a round, and control operations (new
// streams, SDP changes, the kernel path's hand-overs) wait for a round to
// end. Edge-triggered sockets not reported yet stay in epoll's ready list.
func (w *worker) poll() (got int) {
	for i := 0; i < maxPolls; i++ {
		n, err := epollPoll(w.epfd, w.ev[:])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return got
		}
		got += w.handle(w.ev[:n])
		if n < len(w.ev) {
			return got
		}
	}
	return got
}

// maxPolls bounds a round: 8 × maxEvents ready sockets.
const maxPolls = 8

func (w *worker) handle(evs []unix.EpollEvent) int {
	got := 0
	for i := range evs {
		idx := evs[i].Fd
		if idx == evWake {
			// Posted work (runInbox) or Close: clear the eventfd, which
			// is level-triggered.
			var b [8]byte
			_, _ = unix.Read(w.evfd, b[:])
			continue
		}
		if idx < 0 || int(idx) >= len(w.socks) {
			continue
		}
		if s := w.socks[idx]; s != nil {
			got += w.drain(s)
		}
	}
	return got
}

// drain reads s until a short batch and forwards what it may: packets from
// side X's RTP (RTCP) port go out of side Y's RTP (RTCP) port to Y's peer.
// RTCP multiplexed on the RTP port (RFC 5761) thus follows RTP, unless
// only one side muxes (see muxes). Payloads are never looked at past the
// header.
func (w *worker) drain(s *sock) int {
	st := s.st
	d := &st.dir[s.side]
	kind := 0
	if s.rtcp {
		kind = 1
	}
	out := st.socks[s.side.other()][kind]
	// RFC 5761 §5.1.3 between a side that muxes and one that does not:
	// RTCP that came on X's RTP port leaves through Y's RTCP port when Y
	// does not mux (alt), and whatever came on X's RTCP port leaves
	// through Y's RTP port when Y does (Y has no other).
	var alt *sock
	if y := &st.socks[s.side.other()]; s.rtcp && muxes(y) {
		out = y[0]
	} else if !s.rtcp && splits(y) {
		alt = y[1]
	}
	total := 0
	for {
		for i := range w.rm {
			w.rm[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		}
		n, err := mmsg.Recv(s.fd, w.rm[:])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if err != unix.EAGAIN {
				// ICMP errors queued on the socket (ECONNREFUSED, ...)
				// are reported once each and do not stop the stream.
				w.ctr.recvErr++
				if !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.EHOSTUNREACH) && !errors.Is(err, unix.ENETUNREACH) {
					return total
				}
				continue
			}
			return total
		}
		now := nanotime()
		total += n
		w.ctr.received += uint64(n)
		dst := out.dest()
		var adst *mmsg.Addr
		if alt != nil {
			adst = alt.dest()
		}
		// Packets for out fill w.sm from the front, RTCP for alt from
		// the back: one sendmmsg per destination socket, no allocation.
		ns, na, accepted := 0, 0, 0
		moved := false // the SSRC left what the kernel forwards
		for i := 0; i < n; i++ {
			m := &w.rm[i]
			if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
				w.ctr.truncated++
				d.dropped++
				continue
			}
			pkt := w.bufs[i][:m.Len]
			h := readHeader(pkt)
			if !w.accept(s, &w.names[i], m.Hdr.Namelen, h) {
				w.ctr.foreign++
				d.dropped++
				d.foreign++
				d.foreignSrc.Set(&w.names[i], m.Hdr.Namelen)
				continue
			}
			accepted++
			d.account(h, len(pkt), now, st, s.rtcp)
			if w.kern != nil && !s.rtcp && h.kind == kindRTP {
				if h.ssrc == d.kssrc {
					d.kseen++
				} else {
					d.kssrc, d.kseen = h.ssrc, 1
				}
				// Samples and packets queued before the hand-over carry
				// the SSRC the kernel forwards; another one means the
				// sender restarted (RFC 3550 §8.2).
				moved = moved || (d.k == kPending || d.k == kActive) && h.ssrc != d.kon
				if d.k == kActive && h.ssrc == d.kon {
					d.ksamples++
					d.klastExt = d.rtp.extSeq()
				}
			}
			if alt != nil && h.kind == kindRTCP {
				if adst == nil {
					w.ctr.noPeer++
					d.dropped++
					d.noPeer++
					continue
				}
				na++
				w.siov[vlen-na].Base = &w.bufs[i][0]
				w.siov[vlen-na].SetLen(len(pkt))
				continue
			}
			if dst == nil {
				w.ctr.noPeer++ // before SDP or latching told us the peer
				d.dropped++
				d.noPeer++
				continue
			}
			w.siov[ns].Base = &w.bufs[i][0]
			w.siov[ns].SetLen(len(pkt))
			ns++
		}
		if accepted > 0 {
			if d.first == 0 {
				d.first = now
			}
			d.last = now
			st.last.Store(now)
		}
		if ns > 0 {
			w.send(out.fd, dst, out.conn && dst == &out.src, w.sm[:ns], d)
		}
		if na > 0 {
			// Filled backwards: put them back in arrival order.
			slices.Reverse(w.siov[vlen-na:])
			w.send(alt.fd, adst, alt.conn && adst == &alt.src, w.sm[vlen-na:], d)
		}
		if w.kern != nil && !s.rtcp {
			if moved {
				st.kwithdraw(s.side)
			} else if d.k == kUser && d.kseen >= kernelAfter && dst != nil {
				w.offload(st, s, out, dst)
			}
		}
		if n < len(w.rm) {
			return total
		}
	}
}

// muxes reports whether a side's SDP asked for rtcp-mux (RFC 5761): one
// address for RTP and RTCP (callmedia passes rtcp = rtp for a=rtcp-mux).
func muxes(y *[2]*sock) bool { return y[0].sdp.N != 0 && y[0].sdp == y[1].sdp }

// splits reports whether a side's SDP named an RTCP address apart from
// its RTP address: it does not mux and expects RTCP on its RTCP port.
func splits(y *[2]*sock) bool { return y[1].sdp.N != 0 && y[0].sdp != y[1].sdp }

// accept applies the latch mode to a packet from name on s and reports
// whether it may pass. It latches s on the first packet.
func (w *worker) accept(s *sock, name *[unix.SizeofSockaddrInet6]byte, n uint32, h header) bool {
	switch {
	case !s.latched:
		s.src.Set(name, n)
		s.latched = w.latch != LatchOff
		if w.latch == LatchFirst {
			// Connecting makes the kernel enforce the latch (packets
			// from elsewhere find no socket) and lets sends skip the
			// route lookup and address copy: about 10 % less relay CPU
			// and a third of the p99 latency at 2000 calls on the
			// project's host (see bench/relay.sh).
			s.conn = connect(s.fd, &s.src) == nil
		}
		if h.kind != kindOther {
			s.ssrc, s.haveSSRC = h.ssrc, true
		}
		return true
	case s.src.Equal(name, n):
		if h.kind == kindRTP {
			// The latched source may start a new SSRC (RFC 3550 §8.2);
			// from then on that is the one a moved source must show.
			s.ssrc, s.haveSSRC = h.ssrc, true
		}
		return true
	case w.latch == LatchSSRC && h.kind != kindOther && s.haveSSRC && h.ssrc == s.ssrc:
		// Same SSRC from a new address: the endpoint's NAT binding
		// changed. Follow it, in userspace: the kernel's rules name the
		// old address as this side's source and the other side's
		// destination.
		s.src.Set(name, n)
		w.ctr.relatched++
		if w.kern != nil && !s.rtcp {
			s.st.kwithdraw(s.side)
			s.st.kwithdraw(s.side.other())
		}
		return true
	}
	return false
}

// offload hands the direction of s to the kernel once both ends are
// settled: this side latched (its source is the key) and the other side
// latched too (its latched source is where packets go), or latching off.
// w.mu is held; the request is only queued.
func (w *worker) offload(st *Stream, s, out *sock, dst *mmsg.Addr) {
	d := &st.dir[s.side]
	if w.latch != LatchOff && (!s.latched || !out.latched) {
		return
	}
	if s.src.N == 0 {
		return
	}
	e, ok := kernelEntry(st, s, out, dst.AddrPort(), d.kssrc)
	if !ok {
		d.k = kOff // IPv6 stays in userspace
		return
	}
	d.k, d.kon, d.ksamples = kPending, d.kssrc, 0
	w.kern.enqueue(kreq{add: true, st: st, side: s.side, e: e})
}

// send forwards the queued packets of sm (a part of w.sm) out of fd to
// dst. sendmmsg stops at the first packet that fails; that one is counted
// as dropped and the rest are sent.
func (w *worker) send(fd int, dst *mmsg.Addr, conn bool, sm []mmsg.Hdr, d *dirState) {
	name, namelen := &dst.B[0], dst.N
	if conn {
		name, namelen = nil, 0
	}
	ns := len(sm)
	for k := 0; k < ns; k++ {
		sm[k].Hdr.Name = name
		sm[k].Hdr.Namelen = namelen
	}
	for i := 0; i < ns; {
		k, err := mmsg.Send(fd, sm[i:ns])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			w.ctr.sendErr++
			d.dropped++
			d.sendErr++
			i++
			continue
		}
		i += k
		w.ctr.relayed += uint64(k)
		d.forwarded += uint64(k)
	}
}

// dirState is what a stream knows about the packets from one side,
// guarded by the worker's mutex. Every field is a plain counter or value
// written in place: the data path updates it without allocating.
type dirState struct {
	packets, bytes, rtcp, other, forwarded, dropped uint64
	rtpPackets                                      uint64 // RTP on the RTP port
	foreign, noPeer, sendErr                        uint64 // dropped, by reason
	foreignSrc                                      mmsg.Addr
	rtp                                             rtpRecv
	first, last                                     int64 // nanotime; 0: never
	pt                                              uint8 // last RTP payload type

	// The in-kernel path (kernel_linux.go). k says where the direction is
	// forwarded; kssrc and kseen count RTP packets in a row with one SSRC
	// (the key the kernel matches). kPackets and kBytes are what the
	// kernel forwarded in earlier hand-overs (exact, folded in when each
	// ended); kLive and kLiveBytes the current one's, as last polled.
	// kLost0 is the loss when the current hand-over began: while the
	// kernel forwards, loss is known again only when it ends.
	k                                   kstate
	kclose                              bool   // Call.Close waits for this withdrawal
	kssrc, kseen, kon                   uint32 // kon: the SSRC handed over
	kPackets, kBytes, kLive, kLiveBytes uint64
	kLost0, kOwn0                       int64
	ksamples                            uint64 // samples seen in the current hand-over
	kfirstExt                           uint64 // highest extended sequence number when the hand-over began
	klastExt                            uint64 // highest extended sequence number at the last sample
}

// account counts an accepted packet. RTP statistics come only from the RTP
// port: anything RTP-shaped on the RTCP port is counted but not analysed.
func (d *dirState) account(h header, size int, now int64, st *Stream, onRTCP bool) {
	d.packets++
	d.bytes += uint64(size)
	switch h.kind {
	case kindRTCP:
		d.rtcp++
	case kindRTP:
		if !onRTCP {
			d.rtpPackets++
			d.pt = h.pt
			d.rtp.update(h.ssrc, h.seq, h.ts, now, st.clockRate(h.pt))
		}
	default:
		d.other++
	}
}

// epoch anchors nanotime, a cheap monotonic clock.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }
