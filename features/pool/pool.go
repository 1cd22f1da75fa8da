// Package pool owns named pools of upstreams — PBXs, a provider's
// proxies — that routes send calls to (to: pool:NAME). Each pool orders
// its targets for every new request by its algorithm (weighted, hash over
// the Call-ID, priority, least active calls) and hands the core the whole
// order as failover groups: when the first answers nothing in time
// (Target.NoAnswer), fails at the transport or answers 503, the next is
// tried (RFC 3263 §4.3, RFC 3261 §16.7).
//
// Health: sipedge probes every target with OPTIONS (RFC 3261 §11) at an
// interval; DownAfter failures in a row take it down, UpAfter answers in
// a row bring it back. Requests count too (passive marking): a target
// that does not answer a forwarded request in time or answers it 503 has
// failed once more. A target that is down is left out of every order at
// once.
//
// In-dialog requests follow the dialog's route set, not the pool: a call
// stays on the target that answered it whatever the algorithm.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// Defaults of a pool's settings left at zero.
const (
	DefaultInterval      = 10 * time.Second
	DefaultTimeout       = 2 * time.Second
	DefaultDownAfter     = 3
	DefaultUpAfter       = 2
	DefaultAnswerTimeout = 2 * time.Second
)

// maxCallAge bounds how long an answered call is counted on its target
// when no BYE is seen (a BYE that took another path, a phone that
// vanished): least-calls must not count ghosts for ever.
const maxCallAge = 12 * time.Hour

// Config is one pool.
type Config struct {
	Name      string
	Algorithm Algorithm
	Targets   []TargetConfig
	Probe     Probe
	// AnswerTimeout is how long a target has to answer a forwarded
	// request (a 100 Trying will do) before the next one is tried.
	AnswerTimeout time.Duration
}

// TargetConfig is one upstream of a pool.
type TargetConfig struct {
	URI      string // sip:IP[:port][;transport=tcp|tls]
	Weight   int    // share of new calls (weighted, hash, least-calls); 0: 1
	Priority int    // priority: lower first
}

// Probe configures the OPTIONS health probes of a pool's targets.
type Probe struct {
	Interval  time.Duration // between probes of one target
	Timeout   time.Duration // an OPTIONS unanswered this long has failed
	DownAfter int           // failures in a row that take an up target down
	UpAfter   int           // answered probes in a row that bring a down target back
}

func (c *Config) withDefaults() {
	p := &c.Probe
	if p.Interval <= 0 {
		p.Interval = DefaultInterval
	}
	if p.Timeout <= 0 {
		p.Timeout = min(DefaultTimeout, p.Interval)
	}
	if p.DownAfter <= 0 {
		p.DownAfter = DefaultDownAfter
	}
	if p.UpAfter <= 0 {
		p.UpAfter = DefaultUpAfter
	}
	if c.AnswerTimeout <= 0 {
		c.AnswerTimeout = DefaultAnswerTimeout
	}
}

// Sender is what the pools need of the core: sending a request of
// sipedge's own (the probes).
type Sender interface {
	Originate(o *proxy.Originate, h txn.ClientHandler) error
}

// Feature owns the pools of one core.
type Feature struct {
	core Sender
	log  *slog.Logger
	cur  atomic.Pointer[Set]
	intN func(int) int

	mu    sync.Mutex
	calls map[string]call // answered calls by Call-ID, for least-calls

	stop, done chan struct{}
	kick       chan struct{}

	stats counters
}

// call is an answered call counted on its target until its BYE.
type call struct {
	st    *state
	since time.Time
}

type counters struct {
	probes, probeFailures, passiveFailures, unavailable, stateChanges atomic.Uint64
}

// Stats is a snapshot of the pools' counters and gauges (the metrics
// convention). Target labels are "POOL/URI": names the configuration
// bounds.
type Stats struct {
	Probes          uint64                   // OPTIONS probes sent to pool targets
	ProbeFailures   uint64                   // probes unanswered within the timeout, answered 5xx, or not sent
	PassiveFailures uint64                   // forwarded requests a target did not answer in time, or answered 503
	Unavailable     uint64                   // requests answered 503 because no target of their pool was up
	StateChanges    uint64                   // targets that went down or came back up
	TargetsUp       map[string]int64         `label:"pool"`   // targets up now, per pool
	Up              map[string]int64         `label:"target"` // 1 while the target is up, 0 while it is down
	ActiveCalls     map[string]int64         `label:"target"` // INVITEs in progress and answered calls not yet ended
	Latency         map[string]time.Duration `label:"target"` // smoothed OPTIONS round-trip time
	Calls           map[string]uint64        `label:"target"` // INVITEs sent to the target
}

// New returns the pools' owner; Prepare and Use give it pools.
func New(core Sender, log *slog.Logger) *Feature {
	if log == nil {
		log = slog.Default()
	}
	f := &Feature{core: core, log: log, intN: rand.IntN, calls: map[string]call{}, kick: make(chan struct{}, 1)}
	f.cur.Store(&Set{byName: map[string]*Pool{}})
	return f
}

// Set is one configuration's pools. Prepare builds it; Use puts it in
// force. Its routers may be handed to a routing table before Use: they
// work from the start.
type Set struct {
	pools  []*Pool
	byName map[string]*Pool
}

// Routers returns the set's pools as named destinations: "pool:NAME" →
// its Router (proxy.Table.Named).
func (s *Set) Routers() map[string]proxy.Router {
	m := make(map[string]proxy.Router, len(s.pools))
	for _, p := range s.pools {
		m["pool:"+p.name] = p
	}
	return m
}

// Pool is one pool: a proxy.Router.
type Pool struct {
	f       *Feature
	name    string
	alg     Algorithm
	probe   Probe
	answer  time.Duration
	members []*member
}

// member is a target of a pool in one configuration; its health lives in
// the state, which a reload hands on.
type member struct {
	cfg    TargetConfig
	target proxy.Target
	st     *state
}

// state is what sipedge knows of one target of one pool; it outlives
// reloads that keep the target.
type state struct {
	f    *Feature
	pool string
	uri  string
	key  uint64 // for Hash

	active atomic.Int64  // INVITEs in progress and answered calls
	calls  atomic.Uint64 // INVITEs sent

	mu        sync.Mutex
	h         health
	lat       latency
	downAfter int // the pool's thresholds in force
	upAfter   int
	seq       uint64    // the last probe sent
	sent      time.Time // when it was sent; zero once it is counted
	next      time.Time // when the next probe is due (the loop's)
	last      probeResult
	failures  uint64 // probes and requests that failed
	why       string // the last failure, for the log line of a change
}

// probeResult is the last probe's outcome.
type probeResult struct {
	at      time.Time
	ok      bool
	status  int
	err     string
	latency time.Duration
}

var errAddress = errors.New("a pool target is sip:IP[:port][;transport=udp|tcp|tls] (or sips:): names are not resolved")

// Prepare builds the pools of cfgs, handing on the health of every target
// that was in the pool of the same name before. Nothing changes until
// Use.
func (f *Feature) Prepare(cfgs []Config) (*Set, error) {
	old := f.cur.Load()
	s := &Set{byName: map[string]*Pool{}}
	for _, c := range cfgs {
		c.withDefaults()
		if _, dup := s.byName[c.Name]; dup {
			return nil, fmt.Errorf("pool %s: configured twice", c.Name)
		}
		if len(c.Targets) == 0 {
			return nil, fmt.Errorf("pool %s: no targets", c.Name)
		}
		p := &Pool{f: f, name: c.Name, alg: c.Algorithm, probe: c.Probe, answer: c.AnswerTimeout}
		seen := map[string]bool{}
		for _, tc := range c.Targets {
			u, err := sip.ParseURI([]byte(tc.URI))
			if err != nil {
				return nil, fmt.Errorf("pool %s: target %q: %v", c.Name, tc.URI, errAddress)
			}
			tg, ok := proxy.URITarget(&u)
			if !ok || len(u.User) > 0 {
				return nil, fmt.Errorf("pool %s: target %q: %v", c.Name, tc.URI, errAddress)
			}
			if seen[tc.URI] {
				return nil, fmt.Errorf("pool %s: target %s listed twice", c.Name, tc.URI)
			}
			seen[tc.URI] = true
			if tc.Weight <= 0 {
				tc.Weight = 1
			}
			var st *state
			if op := old.byName[c.Name]; op != nil {
				for _, om := range op.members {
					if om.cfg.URI == tc.URI {
						st = om.st
					}
				}
			}
			if st == nil {
				st = &state{f: f, pool: c.Name, uri: tc.URI, key: keyOf(tc.URI), h: health{up: true, since: time.Now()}}
			}
			m := &member{cfg: tc, target: tg, st: st}
			m.target.NoAnswer = c.AnswerTimeout
			m.target.Observer = st
			p.members = append(p.members, m)
		}
		s.pools = append(s.pools, p)
		s.byName[c.Name] = p
	}
	return s, nil
}

// Use puts s in force: its targets are probed from now on; targets no
// longer configured are forgotten.
func (f *Feature) Use(s *Set) {
	for _, p := range s.pools {
		for _, m := range p.members {
			m.st.mu.Lock()
			m.st.downAfter, m.st.upAfter = p.probe.DownAfter, p.probe.UpAfter
			m.st.mu.Unlock()
		}
	}
	f.cur.Store(s)
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Configure is Prepare and Use.
func (f *Feature) Configure(cfgs []Config) error {
	s, err := f.Prepare(cfgs)
	if err != nil {
		return err
	}
	f.Use(s)
	return nil
}

// Route implements proxy.Router: the targets that are up, in the order
// of the pool's algorithm, each its own failover group.
func (p *Pool) Route(_ context.Context, m *sip.Message, _ netip.AddrPort, _ transport.Proto) proxy.Decision {
	var buf [8]candidate
	var ix [8]*member
	cands, up := buf[:0], ix[:0]
	for _, mb := range p.members {
		mb.st.mu.Lock()
		ok := mb.st.h.up
		mb.st.mu.Unlock()
		if !ok {
			continue
		}
		cands = append(cands, candidate{weight: mb.cfg.Weight, priority: mb.cfg.Priority, active: mb.st.active.Load(), key: mb.st.key})
		up = append(up, mb)
	}
	if len(cands) == 0 {
		p.f.stats.unavailable.Add(1)
		return proxy.Decision{Code: 503, Reason: "No Target Up In Pool " + p.name}
	}
	d := proxy.Decision{Failover: true, Groups: make([][]proxy.Target, 0, len(cands))}
	for _, i := range order(p.alg, cands, m.CallID(), p.f.intN) {
		d.Groups = append(d.Groups, []proxy.Target{up[i].target})
	}
	return d
}

// BranchStarted implements proxy.BranchObserver: an INVITE counts as an
// active call from now on.
func (st *state) BranchStarted(_ *proxy.Target, req *sip.Message) {
	if req.MethodKind() == sip.INVITE {
		st.active.Add(1)
		st.calls.Add(1)
	}
}

// BranchEnded implements proxy.BranchObserver: an INVITE's call stays
// counted when answered (until its BYE), and a timeout or a 503 is a
// failure of the target.
func (st *state) BranchEnded(_ *proxy.Target, req *sip.Message, code int, local bool) {
	f := st.f
	if req.MethodKind() == sip.INVITE {
		if code >= 200 && code < 300 && f.answered(string(req.CallID()), st) {
			// counted until the call ends
		} else {
			st.active.Add(-1)
		}
	}
	failed := code == 503 || local && code == 408
	why := ""
	if failed {
		f.stats.passiveFailures.Add(1)
		why = fmt.Sprintf("%d to %s", code, req.Method())
		if local && code == 408 {
			why = fmt.Sprintf("%s not answered in time", req.Method())
		} else if local {
			why = fmt.Sprintf("%s could not be sent", req.Method())
		}
	}
	st.mu.Lock()
	if failed {
		st.failures++
		st.why = why
	}
	changed := st.h.passive(!failed, st.downAfter, st.upAfter, time.Now())
	st.mu.Unlock()
	if changed {
		f.changed(st)
	}
}

// answered counts an answered INVITE as a call on st until its BYE. It
// reports false when the call is counted already (a second 2xx).
func (f *Feature) answered(callID string, st *state) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.calls[callID]; ok {
		return false
	}
	f.calls[callID] = call{st: st, since: time.Now()}
	return true
}

// ended stops counting a call.
func (f *Feature) ended(callID string) {
	f.mu.Lock()
	c, ok := f.calls[callID]
	delete(f.calls, callID)
	f.mu.Unlock()
	if ok {
		c.st.active.Add(-1)
	}
}

// sweep forgets calls older than maxCallAge.
func (f *Feature) sweep(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, c := range f.calls {
		if now.Sub(c.since) > maxCallAge {
			delete(f.calls, id)
			c.st.active.Add(-1)
		}
	}
}

// Hooks implements proxy.Feature: a stage that sees BYEs end the calls
// least-calls counts, and the dialog events of calls sipedge itself ends.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{
		Stages: []proxy.Stage{{Name: "pool-calls", Run: func(r *proxy.Request) bool {
			if m := r.Msg(); m.MethodKind() == sip.BYE {
				f.ended(string(m.CallID()))
			}
			return false
		}}},
		DialogEnded: []func(callID, fromTag string){func(callID, _ string) { f.ended(callID) }},
	}
}

// changed writes the one log line of a state change.
func (f *Feature) changed(st *state) {
	f.stats.stateChanges.Add(1)
	st.mu.Lock()
	up, why, lat := st.h.up, st.why, st.lat.smooth
	after := st.upAfter
	if !up {
		after = st.downAfter
	}
	st.mu.Unlock()
	if up {
		f.log.Info("pool target up", "pool", st.pool, "target", st.uri, "answered_probes", after, "latency", lat.Round(time.Microsecond))
		return
	}
	f.log.Warn("pool target down", "pool", st.pool, "target", st.uri, "failures", after, "last", why)
}

// Stats returns the counters and gauges.
func (f *Feature) Stats() Stats {
	s := Stats{
		Probes: f.stats.probes.Load(), ProbeFailures: f.stats.probeFailures.Load(), PassiveFailures: f.stats.passiveFailures.Load(),
		Unavailable: f.stats.unavailable.Load(), StateChanges: f.stats.stateChanges.Load(),
		TargetsUp: map[string]int64{}, Up: map[string]int64{}, ActiveCalls: map[string]int64{}, Latency: map[string]time.Duration{}, Calls: map[string]uint64{},
	}
	for _, p := range f.cur.Load().pools {
		s.TargetsUp[p.name] = 0
		for _, m := range p.members {
			k := p.name + "/" + m.cfg.URI
			m.st.mu.Lock()
			up, lat := m.st.h.up, m.st.lat.smooth
			m.st.mu.Unlock()
			if up {
				s.Up[k] = 1
				s.TargetsUp[p.name]++
			} else {
				s.Up[k] = 0
			}
			s.ActiveCalls[k] = m.st.active.Load()
			s.Latency[k] = lat
			s.Calls[k] = m.st.calls.Load()
		}
	}
	return s
}

// PoolView is a pool as the operations API shows it.
type PoolView struct {
	Name          string       `json:"name"`
	Algorithm     string       `json:"algorithm"`
	TargetsUp     int          `json:"targets_up"`
	AnswerTimeout string       `json:"answer_timeout"`
	Probe         ProbeView    `json:"probe"`
	Targets       []TargetView `json:"targets"`
}

// ProbeView is a pool's probe settings.
type ProbeView struct {
	Interval  string `json:"interval"`
	Timeout   string `json:"timeout"`
	DownAfter int    `json:"down_after"`
	UpAfter   int    `json:"up_after"`
}

// TargetView is a target as the operations API shows it.
type TargetView struct {
	URI          string     `json:"uri"`
	Weight       int        `json:"weight"`
	Priority     int        `json:"priority"`
	State        string     `json:"state"` // up or down
	Since        time.Time  `json:"since"`
	LastProbe    *LastProbe `json:"last_probe,omitempty"`
	LatencyMS    float64    `json:"latency_ms"`     // the last answered probe's round trip
	AvgLatencyMS float64    `json:"avg_latency_ms"` // smoothed
	ActiveCalls  int64      `json:"active_calls"`
	Calls        uint64     `json:"calls"`    // INVITEs sent
	Failures     uint64     `json:"failures"` // probes and requests that failed
	LastFailure  string     `json:"last_failure,omitempty"`
}

// LastProbe is a target's last probe.
type LastProbe struct {
	At        time.Time `json:"at"`
	OK        bool      `json:"ok"`
	Status    int       `json:"status,omitempty"` // the answer's status code
	Error     string    `json:"error,omitempty"`  // "timeout", or why it was not sent
	LatencyMS float64   `json:"latency_ms,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// View returns the pools in force, in configuration order.
func (f *Feature) View() []PoolView {
	out := []PoolView{}
	for _, p := range f.cur.Load().pools {
		v := PoolView{Name: p.name, Algorithm: p.alg.String(), AnswerTimeout: p.answer.String(),
			Probe:   ProbeView{Interval: p.probe.Interval.String(), Timeout: p.probe.Timeout.String(), DownAfter: p.probe.DownAfter, UpAfter: p.probe.UpAfter},
			Targets: []TargetView{}}
		for _, m := range p.members {
			st := m.st
			st.mu.Lock()
			t := TargetView{URI: m.cfg.URI, Weight: m.cfg.Weight, Priority: m.cfg.Priority, State: "down", Since: st.h.since,
				LatencyMS: ms(st.lat.last), AvgLatencyMS: ms(st.lat.smooth), Failures: st.failures, LastFailure: st.why}
			if st.h.up {
				t.State = "up"
				v.TargetsUp++
			}
			if !st.last.at.IsZero() {
				t.LastProbe = &LastProbe{At: st.last.at, OK: st.last.ok, Status: st.last.status, Error: st.last.err, LatencyMS: ms(st.last.latency)}
			}
			st.mu.Unlock()
			t.ActiveCalls, t.Calls = st.active.Load(), st.calls.Load()
			v.Targets = append(v.Targets, t)
		}
		out = append(out, v)
	}
	return out
}
