//go:build linux

package media

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/internal/mmsg"
)

// Relay forwards the RTP and RTCP of calls between their two sides. See
// the package documentation for the design.
type Relay struct {
	cfg     Config
	workers []*worker
	kern    *kernel // nil: no in-kernel path (kernelWhy says why)
	kernWhy string
	wg      sync.WaitGroup // worker threads and the janitor
	done    chan struct{}  // closed by Close: stops the janitor

	mu      sync.Mutex // guards everything below; taken before any worker's mu
	closed  bool
	calls   map[string]*Call
	pools   map[netip.Addr]*pool
	streams int
}

// New starts a relay: cfg.Workers threads, and the inactivity check if
// cfg.OnInactive is set. No port is bound until a stream asks for it.
func New(cfg Config) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:   cfg,
		done:  make(chan struct{}),
		calls: make(map[string]*Call),
		pools: make(map[netip.Addr]*pool),
	}
	for i := 0; i < cfg.Workers; i++ {
		w, err := newWorker(cfg)
		if err != nil {
			for _, w := range r.workers {
				w.closeFDs()
			}
			return nil, fmt.Errorf("media: worker: %w", err)
		}
		r.workers = append(r.workers, w)
	}
	if cfg.Kernel {
		if k, err := openKernel(cfg.PortMin, cfg.PortMax, cfg.KernelForward, cfg.KernelForce); err != nil {
			r.kernWhy = err.Error()
		} else {
			r.kern = k
			for _, w := range r.workers {
				w.kern = k
			}
		}
	} else {
		r.kernWhy = "off in the configuration"
	}
	r.wg.Add(len(r.workers))
	for _, w := range r.workers {
		go w.run(&r.wg)
	}
	if cfg.OnInactive != nil {
		r.wg.Add(1)
		go r.janitor()
	}
	return r, nil
}

// SetLimits changes the relay's limits while it runs (reload): the calls
// and streams already set up keep their ports; inactivity 0 stops the
// reports. maxStreams 0 keeps the default.
func (r *Relay) SetLimits(maxCalls, maxStreams int, inactivity time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.MaxCalls = maxCalls
	if maxStreams > 0 {
		r.cfg.MaxStreamsPerCall = maxStreams
	}
	r.cfg.Inactivity = inactivity
}

// Close ends every call, frees every port and stops every thread and
// goroutine of the relay. It must not be called from OnInactive.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for _, c := range r.calls {
		c.closeLocked()
	}
	r.mu.Unlock()
	close(r.done)
	if r.kern != nil {
		// After the calls: their withdrawals run first, then the table
		// goes.
		r.kern.close()
	}
	for _, w := range r.workers {
		w.stop.Store(true)
		w.wake()
	}
	r.wg.Wait()
	for _, w := range r.workers {
		w.closeFDs()
	}
	return nil
}

// Call returns the call with this ID, creating it if it does not exist.
func (r *Relay) Call(id string) (*Call, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if c := r.calls[id]; c != nil {
		return c, nil
	}
	if r.cfg.MaxCalls > 0 && len(r.calls) >= r.cfg.MaxCalls {
		return nil, ErrTooManyCalls
	}
	c := &Call{r: r, id: id, streams: make(map[int]*Stream)}
	r.calls[id] = c
	return c, nil
}

// pool returns the port pool of local address a; r.mu must be held.
func (r *Relay) pool(a netip.Addr) *pool {
	p := r.pools[a]
	if p == nil {
		p = newPool(a, r.cfg)
		r.pools[a] = p
	}
	return p
}

// Call groups the streams of one SIP dialog (or of one INVITE while it is
// not yet a dialog), so that BYE, CANCEL, a failure or a timeout frees
// them with one Close.
type Call struct {
	r  *Relay
	id string

	// Kernel-forwarded directions still being withdrawn after Close, and
	// what waits for them (AfterRelease).
	amu      sync.Mutex
	kpending int
	after    []func()

	closed   atomic.Bool     // written under r.mu
	streams  map[int]*Stream // guarded by r.mu
	reported int64           // last activity when OnInactive was called; r.mu

	// Forks (see Fork), guarded by r.mu: a call's forks by key; a
	// fork's call and key. A fork shares the call's ID, is not in
	// Relay.calls and has no forks itself.
	forks  map[string]*Call
	parent *Call
	key    string
}

// ID returns the call's ID.
func (c *Call) ID() string { return c.id }

// Fork returns the fork of the call named key, creating it on first use:
// a set of streams of its own (Stream allocates them as for the call,
// each with its own ports on both sides), for one branch of a forked
// INVITE while the callees' early media may flow at once (RFC 3261
// §16.7 passes every early dialog upstream; RFC 3960 §3 lets each carry
// media). The key "" is the call itself. A fork's streams count against
// the relay's ports but not against MaxCalls, and close with the call.
// Keep makes one fork the call's own; Close on a fork releases just it.
func (c *Call) Fork(key string) (*Call, error) {
	if key == "" {
		return c, nil
	}
	r := c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || c.closed.Load() {
		return nil, ErrClosed
	}
	if c.parent != nil {
		return nil, fmt.Errorf("media: call %q: a fork has no forks", c.id)
	}
	if f := c.forks[key]; f != nil {
		return f, nil
	}
	if c.forks == nil {
		c.forks = make(map[string]*Call)
	}
	f := &Call{r: r, id: c.id, streams: make(map[int]*Stream), parent: c, key: key}
	c.forks[key] = f
	return f, nil
}

// Keep settles a forked call on fork key (the branch that answered with
// a 2xx): that fork's streams become the call's own, for Stream, Streams
// and the inactivity check, and every other fork's streams are released,
// the call's former own ones included (ports freed, pinholes closed).
// Keep("") keeps the call's own streams and releases the forks. An
// unknown key releases the forks too. The handle Fork returned for key
// must not be used afterwards.
func (c *Call) Keep(key string) {
	r := c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.closed.Load() || c.parent != nil {
		return
	}
	kept := c.forks[key]
	for k, f := range c.forks {
		if f != kept {
			f.closeLocked()
		}
		delete(c.forks, k)
	}
	if kept == nil {
		return
	}
	for i, s := range c.streams {
		s.release()
		s.w.nstreams--
		r.streams--
		delete(c.streams, i)
	}
	for i, s := range kept.streams {
		s.c = c
		c.streams[i] = s
	}
	kept.streams = nil
	kept.closed.Store(true)
}

// Stream returns media stream index of the call (the SDP media section
// number), allocating it on first use: a port pair on local address a
// for side A and one on b for side B. Asking again for an existing index
// returns the same stream, so a re-INVITE keeps its ports; asking with
// other addresses is an error. ErrNoPorts means no pair is free (or no fd
// is left) on one of the addresses.
func (c *Call) Stream(index int, a, b netip.Addr) (*Stream, error) {
	a, b = a.Unmap(), b.Unmap()
	if index < 0 || !a.IsValid() || !b.IsValid() {
		return nil, fmt.Errorf("media: stream %d: invalid index or local address (%v, %v)", index, a, b)
	}
	r := c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || c.closed.Load() {
		return nil, ErrClosed
	}
	if s := c.streams[index]; s != nil {
		if s.pairs[SideA].rtpPort.Addr() != a || s.pairs[SideB].rtpPort.Addr() != b {
			return nil, fmt.Errorf("media: stream %d already bound on %v/%v", index,
				s.pairs[SideA].rtpPort.Addr(), s.pairs[SideB].rtpPort.Addr())
		}
		return s, nil
	}
	if len(c.streams) >= r.cfg.MaxStreamsPerCall {
		return nil, ErrTooManyStreams
	}
	pa, err := r.pool(a).take()
	if err != nil {
		return nil, err
	}
	pb, err := r.pool(b).take()
	if err != nil {
		pa.release()
		return nil, err
	}
	s := &Stream{c: c, index: index, pairs: [2]pair{pa, pb}, created: nanotime()}
	for side := SideA; side <= SideB; side++ {
		p := &s.pairs[side]
		s.socks[side][0] = &sock{fd: p.rtp, st: s, side: side}
		s.socks[side][1] = &sock{fd: p.rtcp, st: s, side: side, rtcp: true}
	}
	// The least loaded thread gets the stream; all four sockets go to it,
	// so both directions share one mutex and one cache.
	w := r.workers[0]
	for _, x := range r.workers[1:] {
		if x.nstreams < w.nstreams {
			w = x
		}
	}
	s.w = w
	all := []*sock{s.socks[0][0], s.socks[0][1], s.socks[1][0], s.socks[1][1]}
	w.mu.Lock()
	for i, x := range all {
		if err = w.add(x); err != nil {
			for _, y := range all[:i] {
				w.remove(y)
			}
			break
		}
	}
	w.mu.Unlock()
	if err != nil {
		pa.release()
		pb.release()
		if outOfFDs(err) {
			return nil, fmt.Errorf("%w: epoll: %v", ErrNoPorts, err)
		}
		return nil, fmt.Errorf("media: epoll: %w", err)
	}
	if fw := r.cfg.Firewall; fw != nil {
		if err := fw.Open(s.ports()); err != nil {
			w.mu.Lock()
			for _, x := range all {
				w.remove(x)
			}
			w.mu.Unlock()
			pa.release()
			pb.release()
			return nil, fmt.Errorf("media: firewall pinhole: %w", err)
		}
	}
	w.nstreams++
	r.streams++
	c.streams[index] = s
	return s, nil
}

// Streams returns the call's streams in index order, closed calls
// included (their stats stay readable).
func (c *Call) Streams() []*Stream {
	c.r.mu.Lock()
	out := make([]*Stream, 0, len(c.streams))
	for _, s := range c.streams {
		out = append(out, s)
	}
	c.r.mu.Unlock()
	slices.SortFunc(out, func(a, b *Stream) int { return a.index - b.index })
	return out
}

// ports lists the stream's four local ports.
func (s *Stream) ports() []netip.AddrPort {
	a1, a2 := s.Local(SideA)
	b1, b2 := s.Local(SideB)
	return []netip.AddrPort{a1, a2, b1, b2}
}

// Close frees the call's ports at once. It is idempotent. Stats of its
// streams stay readable.
func (c *Call) Close() {
	c.r.mu.Lock()
	c.closeLocked()
	c.r.mu.Unlock()
}

func (c *Call) closeLocked() {
	if c.closed.Load() {
		return
	}
	c.closed.Store(true)
	r := c.r
	for _, s := range c.streams {
		s.release()
		s.w.nstreams--
		r.streams--
	}
	for _, f := range c.forks {
		f.closeLocked()
	}
	if c.parent != nil {
		if c.parent.forks[c.key] == c {
			delete(c.parent.forks, c.key)
		}
		return
	}
	delete(r.calls, c.id)
}

// AfterRelease runs fn once the call is closed and every packet count of
// its streams is final: at once when no stream was forwarded by the
// kernel, else when the kernel's exact counters have been read (a netlink
// round trip later, on the relay's own goroutine). fn must not block.
func (c *Call) AfterRelease(fn func()) {
	c.amu.Lock()
	if c.kpending > 0 {
		c.after = append(c.after, fn)
		c.amu.Unlock()
		return
	}
	c.amu.Unlock()
	fn()
}

// withdrawn is told that one awaited withdrawal ended.
func (c *Call) withdrawn() {
	c.amu.Lock()
	c.kpending--
	var fns []func()
	if c.kpending == 0 {
		fns, c.after = c.after, nil
	}
	c.amu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// kwithdraw takes the direction from side back from the kernel, if it is
// there or on its way; w.mu is held.
func (s *Stream) kwithdraw(side Side) {
	d := &s.dir[side]
	if d.k == kPending || d.k == kActive {
		d.k = kWithdrawing
		s.w.kern.enqueue(kreq{st: s, side: side})
	}
}

// Stream is one relayed media section: a port pair per side.
type Stream struct {
	c       *Call
	index   int
	w       *worker
	pairs   [2]pair
	socks   [2][2]*sock // [side][0: RTP, 1: RTCP]
	created int64
	closed  atomic.Bool  // written under Relay.mu
	last    atomic.Int64 // nanotime of the last accepted packet, either side

	// Guarded by w.mu.
	dir   [2]dirState  // by the side the packets came from
	rates *[128]uint32 // clock rates by payload type; nil: staticClock
}

// release unregisters and closes the stream's sockets; Relay.mu is held.
func (s *Stream) release() {
	s.closed.Store(true)
	if fw := s.c.r.cfg.Firewall; fw != nil {
		fw.Close(s.ports())
	}
	w := s.w
	w.mu.Lock()
	for side := range s.socks {
		for _, x := range s.socks[side] {
			w.remove(x)
		}
		if w.kern != nil {
			s.kwithdraw(Side(side))
			if d := &s.dir[side]; d.k == kWithdrawing && !d.kclose {
				d.kclose = true
				s.c.amu.Lock()
				s.c.kpending++
				s.c.amu.Unlock()
			}
		}
	}
	w.mu.Unlock()
	s.pairs[SideA].release()
	s.pairs[SideB].release()
}

// Index returns the stream's media section index.
func (s *Stream) Index() int { return s.index }

// Local returns the addresses to advertise to side: in the SDP sent to
// that side, c= and m= carry rtp; a=rtcp (RFC 3605) may carry rtcp, which
// is always rtp's port + 1.
func (s *Stream) Local(side Side) (rtp, rtcp netip.AddrPort) {
	p := &s.pairs[side&1]
	return p.rtpPort, p.rtcpPort
}

// SetPeer sets where side's media goes, from the SDP that side sent:
// rtp from c= and m=, rtcp from a=rtcp, or rtp's port + 1 when rtcp is
// the zero AddrPort. A zero rtp forgets the address (c=0.0.0.0 hold, or a
// rejected stream). Called again on every re-INVITE: the same address
// keeps the latch, a new one releases it so the next packet latches again.
// Latching (Config.Latch) overrides the address once packets arrive.
func (s *Stream) SetPeer(side Side, rtp, rtcp netip.AddrPort) error {
	if side > SideB {
		return fmt.Errorf("media: invalid side %d", side)
	}
	if s.closed.Load() {
		return ErrClosed
	}
	var rr, rc mmsg.Addr
	if rtp.IsValid() && !rtp.Addr().IsUnspecified() {
		if !rtcp.IsValid() {
			rtcp = netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
		}
		local := s.pairs[side].rtpPort.Addr()
		if rtp.Addr().Unmap().Is4() != local.Is4() || rtcp.Addr().Unmap().Is4() != local.Is4() {
			return fmt.Errorf("%w: %v for %v", ErrFamily, rtp, local)
		}
		rr, rc = mmsg.MakeAddr(rtp), mmsg.MakeAddr(rtcp)
	}
	s.w.mu.Lock()
	if s.socks[side][0].setSDP(rr) && s.w.kern != nil {
		// The side moved (re-INVITE, hold): its source and the other
		// direction's destination are no longer what the kernel has.
		s.kwithdraw(side)
		s.kwithdraw(side.other())
	}
	s.socks[side][1].setSDP(rc)
	s.w.mu.Unlock()
	return nil
}

// SetClockRate sets the RTP clock rate of payload type pt (from an SDP
// rtpmap), so jitter can be measured for dynamic types; static types
// (RFC 3551) are known already. hz 0 turns jitter off for pt.
func (s *Stream) SetClockRate(pt uint8, hz uint32) {
	if pt > 127 {
		return
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.rates == nil {
		t := staticClock
		s.rates = &t
	}
	s.rates[pt] = hz
}

// clockRate is pt's clock; w.mu is held.
func (s *Stream) clockRate(pt uint8) uint32 {
	if s.rates != nil {
		return s.rates[pt&0x7f]
	}
	return staticClock[pt&0x7f]
}

// Stats returns the stream's counters; they stay readable after Close.
func (s *Stream) Stats() StreamStats {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return StreamStats{AtoB: s.dirStats(SideA), BtoA: s.dirStats(SideB)}
}

func (s *Stream) dirStats(side Side) DirStats {
	d := &s.dir[side]
	rtp := s.socks[side][0]
	kp := d.kPackets + d.kLive
	ds := DirStats{
		Packets: d.packets + kp, Bytes: d.bytes + d.kBytes + d.kLiveBytes, RTCPPackets: d.rtcp, OtherPackets: d.other,
		Forwarded: d.forwarded + kp, Dropped: d.dropped,
		Lost: d.rtp.lost(), JitterUnits: d.rtp.jitterUnits(), SSRC: d.rtp.ssrc,
		Kernel: kp, InKernel: d.k == kActive || d.k == kWithdrawing,
		Source: rtp.src.AddrPort(), RTCPSource: s.socks[side][1].src.AddrPort(),
		SDP: rtp.sdp.AddrPort(), Latched: rtp.latched, RTP: d.rtpPackets, PayloadType: d.pt,
		Foreign: d.foreign, ForeignSource: d.foreignSrc.AddrPort(), NoPeer: d.noPeer, SendErrors: d.sendErr,
	}
	if ds.InKernel {
		// Only the samples reach userspace: the loss is known again
		// when the kernel's exact count is read.
		ds.Lost = d.kLost0
	}
	if d.first != 0 {
		ds.First = epoch.Add(time.Duration(d.first))
	}
	if d.rtp.rate != 0 {
		ds.Jitter = time.Duration(uint64(ds.JitterUnits) * uint64(time.Second) / uint64(d.rtp.rate))
	}
	if d.last != 0 {
		ds.Last = epoch.Add(time.Duration(d.last))
	}
	return ds
}

// Stats returns the relay's counters.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	st := RelayStats{Calls: len(r.calls), Streams: r.streams}
	for _, p := range r.pools {
		st.PortsFree += 2 * p.free
		st.PortsInUse += 2 * (len(p.ring) - p.free)
	}
	r.mu.Unlock()
	var c counters
	for _, w := range r.workers {
		w.mu.Lock()
		c.add(&w.ctr)
		w.mu.Unlock()
	}
	st.Received, st.Relayed, st.Relatched = c.received, c.relayed, c.relatched
	if k := r.Kernel(); k.Active {
		st.Kernel = KernelCounts{Active: 1, Directions: k.Directions, Handovers: k.Added, Returns: k.Removed, Refused: k.Failed}
	}
	st.Drops = Drops{NoPeer: c.noPeer, Foreign: c.foreign, SendError: c.sendErr,
		Truncated: c.truncated, RecvError: c.recvErr}
	return st
}

// Kernel says whether the in-kernel path is in use, and if not, why.
func (r *Relay) Kernel() KernelStatus {
	if r.kern == nil {
		return KernelStatus{Reason: r.kernWhy}
	}
	return r.kern.status()
}

// janitor reports calls whose streams have all been silent for
// Inactivity. It reads only the streams' atomic last-packet times, so it
// never waits for a relay thread.
func (r *Relay) janitor() {
	defer r.wg.Done()
	r.mu.Lock()
	period := r.cfg.Inactivity / 4
	r.mu.Unlock()
	// The limit may change later (SetLimits): scans every second at most
	// apart keep a new one accurate to a second.
	period = min(max(period, 10*time.Millisecond), time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	var silent []string
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		now := nanotime()
		silent = silent[:0]
		r.mu.Lock()
		limit := int64(r.cfg.Inactivity)
		if limit <= 0 {
			r.mu.Unlock()
			continue
		}
		for _, c := range r.calls {
			// Once per silence: a silence is identified by the time of
			// the last packet before it, so a call that had media again
			// is reported again even if no scan saw it active.
			if last, quiet := c.quiet(now, limit); quiet && last != c.reported {
				c.reported = last
				silent = append(silent, c.id)
			}
		}
		r.mu.Unlock()
		for _, id := range silent {
			r.cfg.OnInactive(id)
		}
	}
}

// quiet reports whether every stream of c has been without packets for
// limit at now, counting from its creation if it never had one, and the
// time of the call's latest activity. A call without streams is never
// quiet: there is no media to judge. r.mu is held.
func (c *Call) quiet(now, limit int64) (last int64, quiet bool) {
	n := len(c.streams)
	for _, s := range c.streams {
		last = max(last, s.last.Load(), s.created)
	}
	// Early media of any fork keeps the call alive.
	for _, f := range c.forks {
		n += len(f.streams)
		for _, s := range f.streams {
			last = max(last, s.last.Load(), s.created)
		}
	}
	return last, n > 0 && now-last >= limit
}
