// Package keepalive keeps the NAT mappings of phones registered over UDP
// from behind a NAT open: a NAT forgets a UDP mapping after a quiet while
// (often 30 s, sometimes less), and then no call can reach the phone until
// it registers again. sipedge sends each such binding a packet every
// Interval. With OPTIONS, a phone that answers nothing MaxFailures times in
// a row is taken out of the location service (its binding removed) instead
// of letting calls ring into the void.
//
// The feature plugs no hook into the request path: it is a sender with a
// lifecycle (proxy.Starter, proxy.Closer).
package keepalive

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// Config configures the sender.
type Config struct {
	Interval    time.Duration // 0: no keep-alives
	Method      Method
	MaxFailures int // OPTIONS without any answer before the binding goes; default 3
}

// Method is what a keep-alive is.
type Method uint8

const (
	// Options sends an OPTIONS request; its answer proves the phone is
	// there.
	Options Method = iota
	// CRLF sends a bare CRLFCRLF (RFC 5626 §3.5.1 style); nothing comes
	// back.
	CRLF
	// None sends nothing (a reload may turn keep-alives on again).
	None
)

// ParseMethod reads "options", "crlf" or "none".
func ParseMethod(s string) (Method, bool) {
	switch s {
	case "options", "":
		return Options, true
	case "crlf":
		return CRLF, true
	case "none":
		return None, true
	}
	return 0, false
}

// Locator is the location service as keep-alives need it: the NATed UDP
// bindings, and removing one whose phone is gone.
type Locator interface {
	RangeNAT(fn func(aor, uri string, src netip.AddrPort, updated time.Time))
	Remove(aor, uri string) bool
}

// Feature is the keep-alive sender of one core.
type Feature struct {
	core *proxy.Core
	loc  Locator
	cfg  atomic.Pointer[Config]
	log  *slog.Logger

	mu       sync.Mutex
	failures map[string]int // aor "\x00" contact → OPTIONS in a row without answer
	stop     chan struct{}
	done     chan struct{}
	kick     chan struct{} // a new configuration: wake the idle sender
	wakes    atomic.Uint64 // the loop's wake-ups (tests: none per step while there is nobody to ping)

	stats counters
}

// counters are the feature's live counters.
type counters struct {
	Sent            atomic.Uint64
	Failures        atomic.Uint64
	BindingsRemoved atomic.Uint64
	SendErrors      atomic.Uint64
}

// Stats is a snapshot of the feature's counters (the metrics convention
// of package metrics).
type Stats struct {
	Sent            uint64 // keep-alives sent to NATed phones
	Failures        uint64 // keep-alive OPTIONS that got no answer
	BindingsRemoved uint64 // bindings removed after failed keep-alives
	SendErrors      uint64
}

// New returns the sender for core over the bindings of loc.
func New(core *proxy.Core, loc Locator, cfg Config) *Feature {
	f := &Feature{core: core, loc: loc, log: core.Logger(), failures: map[string]int{}, kick: make(chan struct{}, 1)}
	f.SetConfig(cfg)
	return f
}

// SetConfig replaces the configuration (reload); the next round uses it.
func (f *Feature) SetConfig(cfg Config) {
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 3
	}
	f.cfg.Store(&cfg)
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (c *Config) off() bool { return c.Interval <= 0 || c.Method == None }

// Stats returns a snapshot of the counters.
func (f *Feature) Stats() Stats {
	return Stats{Sent: f.stats.Sent.Load(), Failures: f.stats.Failures.Load(), BindingsRemoved: f.stats.BindingsRemoved.Load(), SendErrors: f.stats.SendErrors.Load()}
}

// Hooks implements proxy.Feature: none.
func (f *Feature) Hooks() proxy.Hooks { return proxy.Hooks{} }

// Start starts the sender (proxy.Starter).
func (f *Feature) Start() {
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.loop()
}

// Close stops it (proxy.Closer).
func (f *Feature) Close() {
	if f.stop != nil {
		close(f.stop)
		<-f.done
		f.stop = nil
	}
}

type target struct {
	aor, uri string
	src      netip.AddrPort
}

// loop sends one round per Interval, spread over the interval in 100 ms
// steps so that a hundred thousand phones do not get their packet in the
// same millisecond. While keep-alives are off it sleeps until a new
// configuration comes; in an interval with nobody to ping it wakes once,
// for the next round, not at every step.
func (f *Feature) loop() {
	defer close(f.done)
	const step = 100 * time.Millisecond
	tk := time.NewTicker(step)
	defer tk.Stop()
	var round []target
	next, perStep, steps := 0, 0, 0
	for i := 0; ; i++ {
		f.wakes.Add(1)
		cfg := f.cfg.Load()
		if cfg.off() {
			// Off: no wake-ups until a reload turns it on.
			tk.Stop()
			if !f.idle(0) {
				return
			}
			tk.Reset(step)
			steps = 0
			continue
		}
		if steps == 0 || i%steps == 0 {
			steps = max(1, int(cfg.Interval/step))
			i = 0
			// A phone that registered within half an interval has just
			// refreshed its mapping itself; its first keep-alive comes
			// between half an interval and one and a half after that.
			round = round[:0]
			recent := time.Now().Add(-cfg.Interval / 2)
			f.loc.RangeNAT(func(aor, uri string, src netip.AddrPort, updated time.Time) {
				if updated.Before(recent) {
					round = append(round, target{aor, uri, src})
				}
			})
			next, perStep = 0, (len(round)+steps-1)/steps
			if len(round) == 0 {
				// Nobody to ping this interval (a phone that registers now
				// is not due before the next round anyway): one wake-up
				// for the next round instead of one per step.
				tk.Stop()
				if !f.idle(cfg.Interval) {
					return
				}
				tk.Reset(step)
				steps = 0
				continue
			}
		}
		for end := min(len(round), next+perStep); next < end; next++ {
			f.send(cfg, &round[next])
		}
		select {
		case <-f.stop:
			return
		case <-tk.C:
		case <-f.kick:
			steps = 0 // a new interval: start a new round
		}
	}
}

// idle waits for d (for ever when 0) or a new configuration, whichever
// comes first; false when the sender is stopped meanwhile.
func (f *Feature) idle(d time.Duration) bool {
	var due <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		due = t.C
	}
	select {
	case <-f.stop:
		return false
	case <-due:
	case <-f.kick:
	}
	return true
}

func (f *Feature) send(cfg *Config, t *target) {
	f.stats.Sent.Add(1)
	if cfg.Method == CRLF {
		if err := f.core.Send(transport.UDP, t.src, []byte("\r\n\r\n")); err != nil {
			f.stats.SendErrors.Add(1)
		}
		return
	}
	o := &proxy.Originate{Method: "OPTIONS", URI: t.uri, Target: proxy.Target{Proto: transport.UDP, Addr: t.src}}
	h := &probe{f: f, key: t.aor + "\x00" + t.uri, aor: t.aor, uri: t.uri, max: cfg.MaxFailures}
	if err := f.core.Originate(o, h); err != nil {
		f.stats.SendErrors.Add(1)
	}
}

// probe is the client transaction handler of one keep-alive OPTIONS.
type probe struct {
	f        *Feature
	key      string
	aor, uri string
	max      int
}

// OnResponse: any answer, even an error, shows the phone is there and its
// NAT mapping open.
func (p *probe) OnResponse(_ *txn.Client, m *sip.Message) {
	if m.StatusCode() < 200 {
		return
	}
	p.f.mu.Lock()
	delete(p.f.failures, p.key)
	p.f.mu.Unlock()
}

func (p *probe) OnTimeout(*txn.Client, bool)         { p.failed() }
func (p *probe) OnTransportError(*txn.Client, error) { p.failed() }

func (p *probe) failed() {
	f := p.f
	f.stats.Failures.Add(1)
	f.mu.Lock()
	f.failures[p.key]++
	n := f.failures[p.key]
	if n >= p.max {
		delete(f.failures, p.key)
	}
	f.mu.Unlock()
	if n >= p.max && f.loc.Remove(p.aor, p.uri) {
		f.stats.BindingsRemoved.Add(1)
		f.log.Info("binding removed: no answer to keep-alives", "aor", p.aor, "contact", p.uri, "failures", n)
	}
}
