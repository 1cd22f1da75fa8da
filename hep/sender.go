package hep

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/internal/rawio"
	"sipedge/transport"
)

// Sender mirrors the transport's messages to one or more collectors, over
// UDP (one datagram per packet, the way every HEP agent and collector
// speaks) or TCP (packets back to back on one connection, as
// heplify-server and Homer accept: a batch is one write, so one segment
// instead of one datagram per message).
//
// The tap (on reader and sender goroutines) encodes each message once,
// straight into the open batch, under one mutex: no pooled buffer, no
// channel send, no wake-up per message. The batch's first packet wakes
// the batcher goroutine (under a steady flow it is awake already), which
// lets the next moments' packets join (its window, s.wait, or until the
// batch holds swapBytes) and then sends the whole batch: to a single
// collector itself, to several through a queue of batches and a
// goroutine per collector, so that a slow or absent collector holds up
// neither SIP nor the others (a collector whose queue is full drops
// that batch, its packets counted). SIP is never held up:
// while a write takes, taps fill the next batch, and past maxBatchBytes
// they drop (counted).
//
// Lock order: mu is a leaf; nothing blocks while holding it.
type Sender struct {
	agent Agent
	cols  []*collector
	wg    sync.WaitGroup
	log   *slog.Logger

	tooLarge, reports, overflow atomic.Uint64
	wakes                       atomic.Uint64 // the batcher's wake-ups (TestBatcherWakeups)

	mu     sync.Mutex
	open   *batch   // the batch taps append to
	free   []*batch // batches every collector is done with, for reuse
	closed bool     // Close ran: taps (which may outlive their subscription) add nothing

	wait time.Duration // the batch window: batchWait, streamBatchWait

	kick chan struct{} // 1 slot: the open batch got its first packet
	full chan struct{} // 1 slot: the open batch reached swapBytes
	quit chan struct{}
	once sync.Once
}

// batch is the packets of one window, encoded back to back; the last
// collector done with it gives it back.
type batch struct {
	buf      []byte
	ends     []int // where each packet ends in buf
	signaled bool  // the batcher was told the batch is full
	refs     atomic.Int32
}

// packet returns the i-th packet.
func (b *batch) packet(i int) []byte {
	from := 0
	if i > 0 {
		from = b.ends[i-1]
	}
	return b.buf[from:b.ends[i]]
}

// collector is one destination: its queue, writer and counters.
type collector struct {
	name                  string // host:port as configured (tcp: prefixed for TCP): the metrics label
	out                   writer
	queue                 chan *batch
	sent, dropped, errors atomic.Uint64
	failing               bool // a failure was logged; only its writer touches it
}

// writer sends a batch to one collector; only the collector's goroutine
// calls it.
type writer interface {
	// write reports how many packets went out and the first error.
	write(b *batch) (int, error)
	close()
}

// Stats are the sender's counters (the metrics convention), per collector
// where a collector can make them differ.
type Stats struct {
	Sent         map[string]uint64 `label:"collector"` // packets written to the collector
	Dropped      map[string]uint64 `label:"collector"` // queue full: the collector or the network is slower than SIP
	Errors       map[string]uint64 `label:"collector"` // write errors (an ICMP unreachable from the collector, ...)
	TooLarge     uint64            // messages over MaxDatagram, not sent
	MediaReports uint64            // call media quality reports queued (one per stream direction)
}

// The bounds of what waits to be sent. A batch is handed over after its
// window (batchWait, or streamBatchWait when every collector is TCP) or
// once it holds swapBytes; one that reaches maxBatchBytes or
// maxBatchPackets before the batcher takes it (the batcher did not run,
// or a single collector's write took, that long) drops further packets.
// With several collectors each queues queueBatches batches behind the one
// it is writing: a collector that stops reading holds at most
// (queueBatches+1) × maxBatchBytes, 20 MiB; a single one, two batches.
const (
	batchWait       = 20 * time.Millisecond
	streamBatchWait = 100 * time.Millisecond
	swapBytes       = 1 << 20
	maxBatchBytes   = 4 << 20
	maxBatchPackets = 32768
	queueBatches    = 4
	maxFreeBatches  = 4
)

// ParseCollector reads "udp:host:port", "tcp:host:port" or "host:port"
// (UDP) and returns the transport ("udp" or "tcp") and host:port.
func ParseCollector(s string) (proto, addr string, err error) {
	proto, addr = "udp", s
	switch {
	case strings.HasPrefix(s, "udp:"):
		addr = s[len("udp:"):]
	case strings.HasPrefix(s, "tcp:"):
		proto, addr = "tcp", s[len("tcp:"):]
	case strings.HasPrefix(s, "tls:"):
		return "", "", fmt.Errorf("%q: HEP over TLS is not supported; use udp: or tcp:", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("%q: want udp:host:port or tcp:host:port, e.g. udp:127.0.0.1:9060", s)
	}
	return proto, addr, nil
}

// Dial opens a socket to each collector ("udp:host:port") and starts
// their writers. A host name is resolved once, here.
func Dial(collectors []string, a Agent, log *slog.Logger) (*Sender, error) {
	if len(collectors) == 0 {
		return nil, fmt.Errorf("hep: no collector")
	}
	var cols []*collector
	for _, c := range collectors {
		col, err := dialCollector(c, log)
		if err != nil {
			for _, o := range cols {
				o.out.close()
			}
			return nil, err
		}
		cols = append(cols, col)
	}
	return start(a, log, cols), nil
}

// start makes the sender and a writer per collector.
func start(a Agent, log *slog.Logger, cols []*collector) *Sender {
	if log == nil {
		log = slog.Default()
	}
	s := &Sender{agent: a, log: log, cols: cols, open: &batch{}, wait: streamBatchWait,
		kick: make(chan struct{}, 1), full: make(chan struct{}, 1), quit: make(chan struct{})}
	// A UDP collector gets a batch as a burst of datagrams, which its
	// socket's receive buffer (212 KiB by default on Linux) must hold
	// until it reads them: 20 ms of a busy server's messages, not 100.
	// Over TCP the window only trades a collector's delay for fewer
	// wake-ups and writes on both sides (docs/PERFORMANCE.md).
	for _, c := range cols {
		if _, ok := c.out.(*streamWriter); !ok {
			s.wait = batchWait
		}
	}
	if len(s.cols) > 1 {
		for _, c := range s.cols {
			s.wg.Add(1)
			go s.run(c)
		}
	}
	s.wg.Add(1)
	go s.batcher()
	return s
}

// dialCollector opens a UDP collector's socket, or resolves a TCP
// collector's address (its writer connects, and connects again after a
// failure, on its own goroutine: a collector that is down at start-up
// does not stop sipedge).
func dialCollector(c string, log *slog.Logger) (*collector, error) {
	proto, addr, err := ParseCollector(c)
	if err != nil {
		return nil, err
	}
	if proto == "tcp" {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("hep collector %q: %v", c, err)
		}
		return &collector{name: "tcp:" + addr, out: newStreamWriter(ta.String(), log), queue: make(chan *batch, queueBatches)}, nil
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("hep collector %q: %v", c, err)
	}
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, fmt.Errorf("hep collector %q: %v", c, err)
	}
	return &collector{name: addr, out: newBatchWriter(conn), queue: make(chan *batch, queueBatches)}, nil
}

// Tap is a transport.Tap: every message received and sent.
func (s *Sender) Tap(ev *transport.TapEvent) {
	// Every stream is TCP to HEP, TLS and WebSocket (WS, WSS) included:
	// its IP protocol chunk has no value for them, and HEP agents send
	// them as TCP; the payload's Via names the transport.
	p := Packet{Time: ev.Time, Payload: ev.Data, Transport: TCP}
	if ev.Proto == transport.UDP {
		p.Transport = UDP
	}
	if ev.Dir == transport.TapIn {
		p.Src, p.Dst = ev.Remote, ev.Local
	} else {
		p.Src, p.Dst = ev.Local, ev.Remote
	}
	b := s.begin()
	if b == nil {
		return
	}
	buf, ok := Append(b.buf, &s.agent, &p)
	s.end(b, buf, ok)
}

// begin locks mu and returns the open batch to append one packet to, or
// nil (mu unlocked) when the sender is closed or the batch is full.
func (s *Sender) begin() *batch {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	b := s.open
	if len(b.buf) >= maxBatchBytes || len(b.ends) >= maxBatchPackets {
		s.mu.Unlock()
		s.overflow.Add(1)
		return nil
	}
	return b
}

// end records the packet appended to b (buf is b.buf grown by it, or
// unchanged and ok false when it was too large), unlocks mu, and wakes
// the batcher for a batch's first packet and once it is full.
func (s *Sender) end(b *batch, buf []byte, ok bool) {
	if !ok {
		s.mu.Unlock()
		s.tooLarge.Add(1)
		return
	}
	b.buf = buf
	b.ends = append(b.ends, len(buf))
	first := len(b.ends) == 1
	full := !b.signaled && len(buf) >= swapBytes
	if full {
		b.signaled = true
	}
	s.mu.Unlock()
	if first {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	if full {
		select {
		case s.full <- struct{}{}:
		default:
		}
	}
}

// batcher hands the open batch to the collectors its window (s.wait)
// after its first packet, or under a steady flow its window after the
// batch before it (sooner when it is full): at a few thousand
// messages a second a wake-up and a system call per message cost more
// than the messages (docs/PERFORMANCE.md); a collector sees a message at
// most about the window late (its HEP timestamp is the capture's, not
// the arrival's).
func (s *Sender) batcher() {
	defer s.wg.Done()
	wait := time.NewTimer(s.wait)
	wait.Stop()
	defer func() {
		s.dispatch() // what the last taps added
		for _, c := range s.cols {
			close(c.queue)
		}
	}()
	for {
		select {
		case <-s.kick:
			s.wakes.Add(1)
		case <-s.quit:
			return
		}
		// While packets keep coming, one window follows the other with
		// the timer as the only wake-up: the taps' kicks meanwhile find
		// the slot full, or fill it without waking anyone. A window that
		// ends with nothing to send goes back to waiting for a kick.
		for {
			wait.Reset(s.wait)
			select {
			case <-wait.C:
			case <-s.full:
				wait.Stop()
			case <-s.quit:
				wait.Stop()
				return
			}
			s.wakes.Add(1)
			if !s.dispatch() {
				break
			}
		}
	}
}

// dispatch takes the open batch, if it has packets, and queues it to
// every collector; one whose queue is full drops it. It reports whether
// there was a batch.
func (s *Sender) dispatch() bool {
	s.mu.Lock()
	b := s.open
	if len(b.ends) == 0 {
		s.mu.Unlock()
		return false
	}
	if n := len(s.free); n > 0 {
		s.open = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		s.open = &batch{}
	}
	s.mu.Unlock()
	if len(s.cols) == 1 {
		// One collector (the usual case): the batcher writes to it
		// itself, without waking another goroutine. While the write
		// takes, taps fill the next batch, up to maxBatchBytes.
		s.write(s.cols[0], b)
		b.refs.Store(1)
		s.release(b)
		return true
	}
	b.refs.Store(int32(len(s.cols)))
	for _, c := range s.cols {
		select {
		case c.queue <- b:
		default:
			c.dropped.Add(uint64(len(b.ends)))
			s.release(b)
		}
	}
	return true
}

// release gives b back once every collector is done with it; a batch
// that grew past maxBatchBytes (a burst) is left to the collector.
func (s *Sender) release(b *batch) {
	if b.refs.Add(-1) != 0 {
		return
	}
	b.buf, b.ends, b.signaled = b.buf[:0], b.ends[:0], false
	s.mu.Lock()
	if len(s.free) < maxFreeBatches && cap(b.buf) <= 2*maxBatchBytes {
		s.free = append(s.free, b)
	}
	s.mu.Unlock()
}

// run is the goroutine of a collector (when there are several): it
// writes the batches queued to it.
func (s *Sender) run(c *collector) {
	defer s.wg.Done()
	for b := range c.queue {
		s.write(c, b)
		s.release(b)
	}
}

// write sends b to c and counts what went out; a failure is logged once
// per outage.
func (s *Sender) write(c *collector, b *batch) {
	n := len(b.ends)
	sent, err := c.out.write(b)
	c.sent.Add(uint64(sent))
	if failed := n - sent; failed > 0 {
		c.errors.Add(uint64(failed))
		if !c.failing {
			s.log.Warn("hep: sending to the collector failed; packets are dropped until it works again (logged once per outage)", "collector", c.name, "err", err)
			c.failing = true
		}
	} else if c.failing && sent > 0 {
		s.log.Info("hep: sending to the collector works again", "collector", c.name)
		c.failing = false
	}
}

// Close stops the batcher and the writers once what was tapped before it
// is written out; the caller unsubscribes the tap first.
func (s *Sender) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.quit)
		s.wg.Wait()
		for _, c := range s.cols {
			c.out.close()
		}
	})
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	st := Stats{Sent: make(map[string]uint64, len(s.cols)), Dropped: make(map[string]uint64, len(s.cols)),
		Errors: make(map[string]uint64, len(s.cols)), TooLarge: s.tooLarge.Load(), MediaReports: s.reports.Load()}
	for _, c := range s.cols {
		st.Sent[c.name] += c.sent.Load()
		st.Dropped[c.name] += c.dropped.Load() + s.overflow.Load()
		st.Errors[c.name] += c.errors.Load()
	}
	return st
}

// streamWriter sends to a TCP collector: a batch is one writev of its
// packets back to back (HEP's own length field frames them). It connects
// on its first batch, and after a failure again no sooner than a backoff
// (1 s, doubling to 30 s); packets of batches while it is not connected
// count as errors. A write that fails or times out closes the connection:
// the collector may have half a packet, so the stream starts afresh.
type streamWriter struct {
	addr    string
	log     *slog.Logger
	conn    net.Conn
	bufs    [][]byte
	backoff time.Duration
	retryAt time.Time
}

// Timeouts of a TCP collector: a connection attempt, and one batch's
// write (a collector that stops reading holds the writer that long, while
// the next batch and the queue take the next packets, then drop).
const (
	streamDialTimeout  = 3 * time.Second
	streamWriteTimeout = 5 * time.Second
)

func newStreamWriter(addr string, log *slog.Logger) *streamWriter {
	if log == nil {
		log = slog.Default()
	}
	return &streamWriter{addr: addr, log: log}
}

func (w *streamWriter) write(b *batch) (int, error) {
	now := time.Now()
	if w.conn == nil {
		if now.Before(w.retryAt) {
			return 0, fmt.Errorf("not connected to %s (next attempt in %v)", w.addr, w.retryAt.Sub(now).Round(time.Millisecond))
		}
		conn, err := net.DialTimeout("tcp", w.addr, streamDialTimeout)
		if err != nil {
			w.fail(now)
			return 0, err
		}
		w.conn, w.backoff = conn, 0
	}
	if err := w.conn.SetWriteDeadline(now.Add(streamWriteTimeout)); err != nil {
		w.fail(now)
		return 0, err
	}
	// One raw write of the batch, whose packets lie back to back
	// already (internal/rawio): no entersyscall waking the runtime's
	// monitor thread.
	w.bufs = append(w.bufs[:0], b.buf)
	err := rawio.WriteStreamBuffers(w.conn, w.bufs)
	w.bufs[0] = nil // keep no batch alive
	if err != nil {
		w.fail(now)
		return 0, err
	}
	return len(b.ends), nil
}

// fail drops the connection and sets when to try again.
func (w *streamWriter) fail(now time.Time) {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	w.backoff = min(max(2*w.backoff, time.Second), 30*time.Second)
	w.retryAt = now.Add(w.backoff)
}

func (w *streamWriter) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// writeEach sends b one write per packet.
func writeEach(c net.Conn, b *batch) (int, error) {
	ok := 0
	var first error
	for i := range b.ends {
		if _, err := c.Write(b.packet(i)); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		ok++
	}
	return ok, first
}
