package hep

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"sipedge/transport"
)

// Sender mirrors the transport's messages to a collector over UDP. The
// tap (on reader and sender goroutines) only encodes into a pooled buffer
// and queues it; one goroutine of its own writes to the network, so a
// slow or absent collector never holds up SIP. A full queue drops the
// packet (counted).
type Sender struct {
	agent Agent
	conn  *net.UDPConn
	queue chan *[]byte
	pool  sync.Pool
	done  chan struct{}
	log   *slog.Logger

	sent, dropped, tooLarge, errors atomic.Uint64
	once                            sync.Once
	// mu keeps Tap from queueing on a closed queue: a tap call may still
	// run after its subscription was cancelled.
	mu     sync.RWMutex
	closed bool
}

// Stats are the sender's counters (the metrics convention).
type Stats struct {
	Sent     uint64 // packets written to the collector
	Dropped  uint64 // queue full: the collector or the network is slower than SIP
	TooLarge uint64 // messages over MaxDatagram, not sent
	Errors   uint64 // write errors (an ICMP unreachable from the collector, ...)
}

const queueLen = 4096

// ParseCollector reads "udp:host:port" or "host:port".
func ParseCollector(s string) (string, error) {
	addr := strings.TrimPrefix(s, "udp:")
	if strings.HasPrefix(addr, "tcp:") || strings.HasPrefix(addr, "tls:") {
		return "", fmt.Errorf("%q: only udp: collectors are supported", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("%q: want udp:host:port, e.g. udp:127.0.0.1:9060", s)
	}
	return addr, nil
}

// Dial opens the socket to collector ("udp:host:port") and starts the
// writer.
func Dial(collector string, a Agent, log *slog.Logger) (*Sender, error) {
	addr, err := ParseCollector(collector)
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("hep.collector %q: %v", collector, err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, fmt.Errorf("hep.collector %q: %v", collector, err)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Sender{agent: a, conn: c, queue: make(chan *[]byte, queueLen), done: make(chan struct{}), log: log}
	s.pool.New = func() any { b := make([]byte, 0, 2048); return &b }
	go s.run()
	return s, nil
}

// Tap is a transport.Tap: every message received and sent.
func (s *Sender) Tap(ev *transport.TapEvent) {
	p := Packet{Time: ev.Time, Payload: ev.Data, Transport: TCP}
	if ev.Proto == transport.UDP {
		p.Transport = UDP
	}
	if ev.Dir == transport.TapIn {
		p.Src, p.Dst = ev.Remote, ev.Local
	} else {
		p.Src, p.Dst = ev.Local, ev.Remote
	}
	bp := s.pool.Get().(*[]byte)
	b, ok := Append((*bp)[:0], &s.agent, &p)
	if !ok {
		s.tooLarge.Add(1)
		s.pool.Put(bp)
		return
	}
	*bp = b
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return
	}
	select {
	case s.queue <- bp:
	default:
		s.dropped.Add(1)
		s.pool.Put(bp)
	}
	s.mu.RUnlock()
}

func (s *Sender) run() {
	defer close(s.done)
	logged := false
	for bp := range s.queue {
		if _, err := s.conn.Write(*bp); err != nil {
			s.errors.Add(1)
			if !logged {
				s.log.Warn("hep: sending to the collector failed (logged once)", "collector", s.conn.RemoteAddr().String(), "err", err)
				logged = true
			}
		} else {
			s.sent.Add(1)
		}
		if cap(*bp) <= 64<<10 {
			s.pool.Put(bp)
		}
	}
}

// Close stops the writer once the queue is written out; the caller
// unsubscribes the tap first.
func (s *Sender) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		s.mu.Unlock()
		<-s.done
		s.conn.Close()
	})
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	return Stats{Sent: s.sent.Load(), Dropped: s.dropped.Load(), TooLarge: s.tooLarge.Load(), Errors: s.errors.Load()}
}
