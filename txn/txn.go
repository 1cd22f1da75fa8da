// Package txn implements SIP transactions (RFC 3261 §17 with the RFC 6026
// corrections): server transactions that absorb request retransmissions and
// retransmit responses, and client transactions that retransmit requests,
// time out, and acknowledge non-2xx final responses hop by hop. All timers
// run on one timing wheel, never on a goroutine per transaction.
package txn

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// Sender is what transactions send through: the transport layer.
type Sender interface {
	Send(proto transport.Proto, dst netip.AddrPort, b []byte) error
}

// DestSender is an optional capability of a Sender: sending to a
// destination with a name (TLS server name), and whether a connection
// verified for that name is open. Without it, named destinations are sent
// to by address.
type DestSender interface {
	SendDest(d transport.Dest, b []byte) error
	HasConnDest(d transport.Dest) bool
}

// ConnChecker is an optional capability of a Sender: whether a
// connection-oriented send to dst would go over a connection that is
// already open. When it would have to connect (TCP handshake, TLS, up to
// the transport's connect timeout), the layer sends from a goroutine of its
// own, so that no message reader, no timer-wheel callback and no caller
// holding a lock ever waits for a connect.
type ConnChecker interface {
	HasConn(proto transport.Proto, dst netip.AddrPort) bool
}

// maxDialing bounds the sends waiting for a connection at once; more fail
// at once as transport errors (a flood towards dead TCP peers must not
// turn into a flood of goroutines).
const maxDialing = 1024

// ErrTooManyDials is the transport error of a send refused because
// maxDialing sends already wait for a connection.
var ErrTooManyDials = errors.New("txn: too many connections being opened")

// Config holds the RFC 3261 timer values (§17.1.1.1, Table 4).
type Config struct {
	T1     time.Duration // RTT estimate, default 500 ms
	T2     time.Duration // maximum non-INVITE retransmit interval, default 4 s
	T4     time.Duration // maximum time a message stays in the network, default 5 s
	TimerC time.Duration // proxy INVITE transaction timeout, default 3 min (> 3 min per §16.6 step 11)
	TimerD time.Duration // wait for response retransmissions after an INVITE's non-2xx final, UDP; default 32 s (§17.1.1.2)
	Sender Sender
	Logger *slog.Logger
	// Tick is the timer wheel resolution, default 10 ms.
	Tick time.Duration
	// MaxServers caps the live server transactions (default
	// DefaultMaxServers; negative: no cap). Past it ServerFor refuses new
	// ones, so that a flood of requests the next hops are slow to answer
	// cannot grow memory without end; the caller answers them 503
	// statelessly. Retransmissions, ACKs and CANCELs still match.
	MaxServers int
}

// DefaultMaxServers is MaxServers for a zero Config field: far above what a
// busy edge holds (a transaction lives for the seconds its request takes
// to be answered), and about 100 MB of transactions and their responses.
const DefaultMaxServers = 100000

// Layer holds every live transaction.
type Layer struct {
	cfg     Config
	log     *slog.Logger
	wheel   *Wheel
	servers shardedMap[*Server]
	clients shardedMap[*Client]
	done    completed // non-INVITE server transactions waiting out Timer J
	replies replyQueue
	sweep   *Timer
	stats   counters
	dialing chan struct{} // one token per send waiting for a connect
}

// counters count transaction events.
type counters struct {
	ServerCreated, ServerTerminated, ClientCreated, ClientTerminated atomic.Uint64
	RequestRetransAbsorbed, ResponseRetransAbsorbed, Retransmissions atomic.Uint64
	Timeouts, Dials, SendErrors, ServersRefused                      atomic.Uint64
}

// Stats is a snapshot of the transaction layer (the metrics convention of
// package metrics).
type Stats struct {
	ServerCreated, ServerTerminated uint64
	ClientCreated, ClientTerminated uint64
	RequestRetransAbsorbed          uint64 // request retransmissions answered from a server transaction
	ResponseRetransAbsorbed         uint64 // response retransmissions absorbed by a client transaction
	Retransmissions                 uint64 // requests and responses we retransmitted
	Timeouts                        uint64 // client transactions ended by Timer B/F/C
	Dials                           uint64 // sends that opened a connection off the caller's goroutine
	SendErrors                      uint64
	ServersRefused                  uint64 // new server transactions refused over MaxServers
	Servers, Clients                int    // live transactions
	Completed                       int    // non-INVITE server transactions waiting out Timer J
}

// New starts a transaction layer.
func New(cfg Config) *Layer {
	if cfg.T1 == 0 {
		cfg.T1 = 500 * time.Millisecond
	}
	if cfg.T2 == 0 {
		cfg.T2 = 4 * time.Second
	}
	if cfg.T4 == 0 {
		cfg.T4 = 5 * time.Second
	}
	if cfg.TimerC == 0 {
		cfg.TimerC = 3*time.Minute + time.Second
	}
	if cfg.TimerD == 0 {
		cfg.TimerD = 32 * time.Second
	}
	if cfg.Tick == 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	if cfg.MaxServers == 0 {
		cfg.MaxServers = DefaultMaxServers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Layer{cfg: cfg, log: cfg.Logger, wheel: newWheel(cfg.Tick), dialing: make(chan struct{}, maxDialing)}
	l.replies.l = l
	l.servers.init()
	l.clients.init()
	l.done.init(time.Now)
	l.sweep = l.wheel.NewTimer(func() {
		l.done.sweep()
		l.sweep.Reset(time.Second)
	})
	l.sweep.Reset(time.Second)
	return l
}

// Close sends the queued responses and stops the timers. Live
// transactions are abandoned.
func (l *Layer) Close() {
	l.replies.close()
	l.wheel.Close()
	l.done.close()
}

// Stats returns a snapshot of the counters.
func (l *Layer) Stats() Stats {
	c := &l.stats
	return Stats{
		ServerCreated: c.ServerCreated.Load(), ServerTerminated: c.ServerTerminated.Load(),
		ClientCreated: c.ClientCreated.Load(), ClientTerminated: c.ClientTerminated.Load(),
		RequestRetransAbsorbed: c.RequestRetransAbsorbed.Load(), ResponseRetransAbsorbed: c.ResponseRetransAbsorbed.Load(),
		Retransmissions: c.Retransmissions.Load(), Timeouts: c.Timeouts.Load(), Dials: c.Dials.Load(),
		SendErrors: c.SendErrors.Load(), ServersRefused: c.ServersRefused.Load(), Servers: l.servers.len(), Clients: l.clients.len(), Completed: l.done.len(),
	}
}

// Counts returns the number of live server and client transactions.
func (l *Layer) Counts() (servers, clients int) { return l.servers.len(), l.clients.len() }

func (l *Layer) send(proto transport.Proto, dst netip.AddrPort, b []byte) {
	l.sendDest(transport.Dest{Proto: proto, Addr: dst}, b)
}

// sendDest sends b to d; a send that must connect first goes from a
// goroutine of its own.
func (l *Layer) sendDest(d transport.Dest, b []byte) {
	if l.wouldDial(d) {
		b = append([]byte(nil), b...) // the caller may reuse b
		_ = l.sendDialing(d, b, nil)  // counted; nobody waits for the error
		return
	}
	if err := l.sendNow(d, b); err != nil {
		l.stats.SendErrors.Add(1)
		l.log.Debug("transaction send failed", "dst", d.Addr, "proto", d.Proto, "err", err)
	}
}

// SendNoWait sends b outside any transaction (a stateless forward): over
// a connection that must be opened first, from a goroutine of its own (b
// is copied), like a transaction's sends. The error is the immediate one
// (a UDP send, or ErrTooManyDials); a failed connect is counted and logged.
func (l *Layer) SendNoWait(d transport.Dest, b []byte) error {
	if l.wouldDial(d) {
		return l.sendDialing(d, append([]byte(nil), b...), nil)
	}
	return l.sendNow(d, b)
}

// sendNow sends on the caller's goroutine.
func (l *Layer) sendNow(d transport.Dest, b []byte) error {
	if d.Name != "" {
		if ds, ok := l.cfg.Sender.(DestSender); ok {
			return ds.SendDest(d, b)
		}
	}
	return l.cfg.Sender.Send(d.Proto, d.Addr, b)
}

// wouldDial reports whether sending to d would open a connection first.
func (l *Layer) wouldDial(d transport.Dest) bool {
	if !d.Proto.Reliable() {
		return false
	}
	if d.Name != "" {
		if ds, ok := l.cfg.Sender.(DestSender); ok {
			return !ds.HasConnDest(d)
		}
	}
	cc, ok := l.cfg.Sender.(ConnChecker)
	return ok && !cc.HasConn(d.Proto, d.Addr)
}

// sendDialing sends b from a goroutine of its own (a connect may take up
// to the transport's connect timeout); failed, when not nil, runs there
// with the error. Past maxDialing it returns ErrTooManyDials (and tells
// failed, from another goroutine: never on the caller's stack).
func (l *Layer) sendDialing(d transport.Dest, b []byte, failed func(error)) error {
	select {
	case l.dialing <- struct{}{}:
	default:
		l.stats.SendErrors.Add(1)
		if failed != nil {
			go failed(ErrTooManyDials)
		}
		return ErrTooManyDials
	}
	l.stats.Dials.Add(1)
	go func() {
		defer func() { <-l.dialing }()
		if err := l.sendNow(d, b); err != nil {
			l.stats.SendErrors.Add(1)
			l.log.Debug("transaction send failed", "dst", d.Addr, "proto", d.Proto, "err", err)
			if failed != nil {
				failed(err)
			}
		}
	}()
	return nil
}

func (l *Layer) sendOrAppend(out *[]transport.Outgoing, proto transport.Proto, dst netip.AddrPort, b []byte) {
	if out != nil {
		*out = append(*out, transport.Outgoing{Proto: proto, Dst: dst, Data: b})
		return
	}
	l.send(proto, dst, b)
}

// shardedMap maps a 64-bit transaction key to a transaction. Sharding keeps
// the UDP reader goroutines from contending on one lock.
type shardedMap[T any] struct {
	shards [32]struct {
		sync.Mutex
		m map[uint64]T
	}
}

func (s *shardedMap[T]) init() {
	for i := range s.shards {
		s.shards[i].m = make(map[uint64]T)
	}
}

func (s *shardedMap[T]) get(k uint64) (T, bool) {
	sh := &s.shards[k%32]
	sh.Lock()
	v, ok := sh.m[k]
	sh.Unlock()
	return v, ok
}

// putIfAbsent stores v unless k is present; it returns the stored value and
// whether v was stored.
func (s *shardedMap[T]) putIfAbsent(k uint64, v T) (T, bool) {
	sh := &s.shards[k%32]
	sh.Lock()
	defer sh.Unlock()
	if old, ok := sh.m[k]; ok {
		return old, false
	}
	sh.m[k] = v
	return v, true
}

func (s *shardedMap[T]) del(k uint64) {
	sh := &s.shards[k%32]
	sh.Lock()
	delete(sh.m, k)
	sh.Unlock()
}

func (s *shardedMap[T]) len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].Lock()
		n += len(s.shards[i].m)
		s.shards[i].Unlock()
	}
	return n
}

// matchMethod is the method a request matches transactions under: an ACK
// matches the INVITE it acknowledges (RFC 3261 §17.2.3).
func matchMethod(m *sip.Message) []byte {
	if m.MethodKind() == sip.ACK {
		return []byte("INVITE")
	}
	return m.Method()
}

// serverKey computes the server transaction key of a request (§17.2.3):
// with an RFC 3261 branch, branch + sent-by + method; otherwise the RFC 2543
// fallback of Request-URI, From tag, Call-ID, CSeq number, top Via and
// method (the To tag is left out so the ACK of a non-2xx matches its
// INVITE).
func serverKey(m *sip.Message, via *sip.Via, method []byte) uint64 {
	h := sip.NewHash()
	if via.RFC3261Branch() {
		return uint64(h.Add(via.Branch).AddLower(via.Host).AddUint64(uint64(via.Port)).Add(method))
	}
	n, _ := m.CSeq()
	from, _ := m.From()
	v, _ := topViaValue(m)
	return uint64(h.AddString("2543").Add(m.RequestURIBytes()).Add(from.Tag).Add(m.CallID()).AddUint64(uint64(n)).Add(v).Add(method))
}

// clientKey is the client transaction key: our branch and the method
// (§17.1.3). CANCEL shares the INVITE's branch, so the method separates them.
func clientKey(branch, method []byte) uint64 {
	return uint64(sip.NewHash().Add(branch).Add(method))
}

func topViaValue(m *sip.Message) ([]byte, bool) {
	it := m.Values(sip.KindVia)
	return it.Next()
}

// NewTimer returns a stopped timer on the layer's wheel (for owners with
// long timers of their own, such as session timers). fn runs on the wheel
// goroutine and must not block or send: it should hand its work to a
// goroutine of its own.
func (l *Layer) NewTimer(fn func()) *Timer { return l.wheel.NewTimer(fn) }
