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
// instead of one datagram per message). The tap (on reader and sender goroutines) only encodes each message
// once, into a pooled buffer, and queues it to every collector; each
// collector has a queue, a socket and a goroutine of its own, so a slow or
// absent collector never holds up SIP nor the other collectors. A full
// queue drops the packet for that collector only (counted).
type Sender struct {
	agent Agent
	cols  []*collector
	pool  sync.Pool // *packet
	wg    sync.WaitGroup
	log   *slog.Logger

	tooLarge, reports atomic.Uint64
	once              sync.Once
	// mu keeps Tap and QoS from queueing on a closed queue: a tap call may
	// still run after its subscription was cancelled.
	mu     sync.RWMutex
	closed bool
}

// collector is one destination: its queue, writer and counters.
type collector struct {
	name                  string // host:port as configured (tcp: prefixed for TCP): the metrics label
	out                   writer
	queue                 chan *packet
	sent, dropped, errors atomic.Uint64
}

// writer sends a batch of packets to one collector; only the collector's
// goroutine calls it.
type writer interface {
	// write reports how many packets went out and the first error.
	write(batch []*packet) (int, error)
	close()
}

// packet is one encoded datagram shared by every collector's queue; the
// last collector done with it returns it to the pool.
type packet struct {
	b    []byte
	refs atomic.Int32
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

// queueLen bounds each collector's backlog: at 2 KiB a message, 8 MiB at
// most per collector that stopped reading.
const queueLen = 4096

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
	s := &Sender{agent: a, log: log, cols: cols}
	s.pool.New = func() any { return &packet{b: make([]byte, 0, 2048)} }
	for _, c := range s.cols {
		s.wg.Add(1)
		go s.run(c)
	}
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
		return &collector{name: "tcp:" + addr, out: newStreamWriter(ta.String(), log), queue: make(chan *packet, queueLen)}, nil
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("hep collector %q: %v", c, err)
	}
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, fmt.Errorf("hep collector %q: %v", c, err)
	}
	return &collector{name: addr, out: newBatchWriter(conn), queue: make(chan *packet, queueLen)}, nil
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
	pk := s.pool.Get().(*packet)
	b, ok := Append(pk.b[:0], &s.agent, &p)
	if !ok {
		s.tooLarge.Add(1)
		s.pool.Put(pk)
		return
	}
	pk.b = b
	s.queue(pk)
}

// queue hands pk to every collector; one whose queue is full drops it.
func (s *Sender) queue(pk *packet) {
	pk.refs.Store(int32(len(s.cols)))
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		s.pool.Put(pk)
		return
	}
	for _, c := range s.cols {
		select {
		case c.queue <- pk:
		default:
			c.dropped.Add(1)
			s.release(pk)
		}
	}
	s.mu.RUnlock()
}

func (s *Sender) release(pk *packet) {
	if pk.refs.Add(-1) == 0 && cap(pk.b) <= 64<<10 {
		s.pool.Put(pk)
	}
}

func (s *Sender) run(c *collector) {
	defer s.wg.Done()
	batch := make([]*packet, 0, sendBatch)
	logged := false
	for pk := range c.queue {
		// Let the packets of the next moments join this one: at a few
		// thousand messages a second a wake-up and a system call per
		// message cost more than the messages (docs/PERFORMANCE.md); the
		// capture is at most batchWait late.
		batch = append(batch[:0], pk)
		time.Sleep(batchWait)
	drain:
		for len(batch) < sendBatch {
			select {
			case pk, ok := <-c.queue:
				if !ok {
					break drain
				}
				batch = append(batch, pk)
			default:
				break drain
			}
		}
		sent, err := c.out.write(batch)
		c.sent.Add(uint64(sent))
		if failed := len(batch) - sent; failed > 0 {
			c.errors.Add(uint64(failed))
			if !logged {
				s.log.Warn("hep: sending to the collector failed; packets are dropped until it works again (logged once per outage)", "collector", c.name, "err", err)
				logged = true
			}
		} else if logged && sent > 0 {
			s.log.Info("hep: sending to the collector works again", "collector", c.name)
			logged = false
		}
		for i, pk := range batch {
			s.release(pk)
			batch[i] = nil
		}
	}
}

// sendBatch is the most packets one write sends; batchWait how long the
// writer waits after a packet for others to join it. At 10 000 messages a
// second a window is about 200 packets, and the writer wakes at most
// twice per window; a collector sees a message at most 20 ms late (its
// HEP timestamp is the capture's, not the arrival's).
const (
	sendBatch = 256
	batchWait = 20 * time.Millisecond
)

// Close stops the writers once their queues are written out; the caller
// unsubscribes the tap first.
func (s *Sender) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		for _, c := range s.cols {
			close(c.queue)
		}
		s.mu.Unlock()
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
		st.Dropped[c.name] += c.dropped.Load()
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
// the queue takes the next packets, then drops).
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

func (w *streamWriter) write(batch []*packet) (int, error) {
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
	w.bufs = w.bufs[:0]
	for _, pk := range batch {
		w.bufs = append(w.bufs, pk.b)
	}
	if err := w.conn.SetWriteDeadline(now.Add(streamWriteTimeout)); err != nil {
		w.fail(now)
		return 0, err
	}
	// One raw writev of the packets as they are (internal/rawio): no
	// copy into one buffer, no entersyscall waking the runtime's
	// monitor thread.
	err := rawio.WriteStreamBuffers(w.conn, w.bufs)
	clear(w.bufs) // keep no packet alive
	if err != nil {
		w.fail(now)
		return 0, err
	}
	return len(batch), nil
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

// writeEach sends batch one write per packet.
func writeEach(c net.Conn, batch []*packet) (int, error) {
	ok := 0
	var first error
	for _, pk := range batch {
		if _, err := c.Write(pk.b); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		ok++
	}
	return ok, first
}
