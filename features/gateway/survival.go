package gateway

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/nat"
	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/transport"
)

// SurvivalConfig configures survival mode, which keeps the phones behind
// sipedge working while the upstream (the provider's registrar and proxy
// they register with) does not answer. sipedge watches the upstream with OPTIONS probes and with what becomes of
// the REGISTERs and INVITEs it forwards there (a timeout or a 503 counts as
// a failure, like an unanswered probe). DownAfter failures in a row switch
// to survival mode; UpAfter answers in a row switch back.
//
// In survival mode, a REGISTER for one of the upstream's domains is
// answered by sipedge itself: the binding goes into the passive store
// with a short expiry (RegisterExpires), so that the phone comes back soon
// and its next REGISTER reaches the upstream once it answers again. A new
// request for a user of those domains goes to the phone's bindings
// (mirrored from the upstream while it answered, or registered since),
// anything else to the fallback route. Requests inside a dialog keep
// their route set, except that Route entries naming the upstream are
// passed over: a call set up through it ends with a BYE that reaches the
// other side instead of timing out on the dead hop (RFC 3261 §16.12
// loose routing leaves the remaining set intact).
type SurvivalConfig struct {
	Enabled bool
	// Upstream is the URI probed (sip:IP[:port][;transport=...]) and
	// Target its next hop.
	Upstream string
	Target   proxy.Target
	// Domains are the Request-URI hosts served by the upstream; empty:
	// the upstream's host.
	Domains []string
	// Interval and Timeout of the probes; defaults 10s and 2s.
	Interval, Timeout time.Duration
	// DownAfter failures in a row switch to survival (default 3); UpAfter
	// answered probes in a row switch back (default 2).
	DownAfter, UpAfter int
	// RegisterExpires is the expiry given to phones in survival (default
	// 60s).
	RegisterExpires time.Duration
	// Fallback receives requests for users without a binding in survival
	// (nil: 480); FallbackName is how the configuration wrote it.
	Fallback     proxy.Router
	FallbackName string
}

func (c *SurvivalConfig) defaults() {
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Timeout > c.Interval {
		c.Timeout = c.Interval
	}
	if c.DownAfter <= 0 {
		c.DownAfter = 3
	}
	if c.UpAfter <= 0 {
		c.UpAfter = 2
	}
	if c.RegisterExpires <= 0 {
		c.RegisterExpires = 60 * time.Second
	}
	if len(c.Domains) == 0 {
		if u, err := sip.ParseURI([]byte(c.Upstream)); err == nil {
			c.Domains = []string{string(u.Host)}
		}
	}
}

// survival is the state of the mode.
type survival struct {
	cfg  atomic.Pointer[SurvivalConfig]
	on   atomic.Bool // fast path: read by every request
	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	since    time.Time // last switch (or start)
	why      string    // reason of the last switch
	fails    int       // failures in a row
	oks      int       // answers in a row
	lastErr  string    // last failure seen
	seq      uint64    // probe in flight
	sent     time.Time // zero: no probe in flight
	lastRTT  time.Duration
	lastSeen time.Time // last answer of the upstream

	stats survivalCounters
}

type survivalCounters struct {
	probes, probeFailures, passiveFailures, switches                   atomic.Uint64
	registers, localRoutes, fallbackRoutes, unavailable, routesSkipped atomic.Uint64
}

// SurvivalStats are the counters and state of survival (the metrics
// convention of package metrics).
type SurvivalStats struct {
	Active          int64  // 1 while in survival mode
	Probes          uint64 // OPTIONS probes sent to the upstream
	ProbeFailures   uint64 // probes unanswered in time, answered 5xx, or not sent
	PassiveFailures uint64 // REGISTERs and INVITEs to the upstream that timed out or got 503
	Switches        uint64 // switches between normal and survival mode
	Registers       uint64 // REGISTERs answered by sipedge in survival mode
	LocalRoutes     uint64 // requests routed to a local phone's binding in survival mode
	FallbackRoutes  uint64 // requests sent to the fallback route in survival mode
	Unavailable     uint64 // requests answered 480 in survival mode (no binding, no fallback)
	RoutesSkipped   uint64 // in-dialog requests sent on past the upstream's Route entry
}

// SurvivalState is what the operations API shows.
type SurvivalState struct {
	Enabled       bool      `json:"enabled"`
	Mode          string    `json:"mode"` // "normal" or "survival"
	Since         time.Time `json:"since"`
	Reason        string    `json:"reason"`
	Upstream      string    `json:"upstream,omitempty"`
	Fallback      string    `json:"fallback,omitempty"`
	Failures      int       `json:"failures_in_a_row"`
	Answers       int       `json:"answers_in_a_row"`
	LastError     string    `json:"last_error,omitempty"`
	LastAnswer    time.Time `json:"last_answer,omitzero"`
	ProbeRTTMs    float64   `json:"probe_rtt_ms"`
	DownAfter     int       `json:"down_after"`
	UpAfter       int       `json:"up_after"`
	Interval      string    `json:"probe_interval"`
	ExpiresInMode int       `json:"register_expires"`
}

// SetSurvival puts a survival configuration in force (at start and on
// reload). Turning it off returns to normal mode at once; a changed
// upstream starts counting again from normal mode.
func (f *Feature) SetSurvival(c SurvivalConfig) {
	c.defaults()
	s := &f.surv
	old := s.cfg.Load()
	s.cfg.Store(&c)
	s.mu.Lock()
	if s.since.IsZero() {
		s.since, s.why = time.Now(), "started"
	}
	s.mu.Unlock()
	if !c.Enabled || old != nil && old.Upstream != c.Upstream {
		why := "survival turned off"
		if c.Enabled {
			why = "upstream changed to " + c.Upstream
		}
		s.mu.Lock()
		s.fails, s.oks = 0, 0
		s.mu.Unlock()
		f.setMode(false, why)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Survival returns the state of survival for the operations API.
func (f *Feature) Survival() SurvivalState {
	s := &f.surv
	c := s.cfg.Load()
	if c == nil {
		c = &SurvivalConfig{}
		c.defaults()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SurvivalState{Enabled: c.Enabled, Mode: "normal", Since: s.since, Reason: s.why, Upstream: c.Upstream,
		Fallback: c.FallbackName, Failures: s.fails, Answers: s.oks, LastError: s.lastErr, LastAnswer: s.lastSeen,
		ProbeRTTMs: float64(s.lastRTT.Microseconds()) / 1000, DownAfter: c.DownAfter, UpAfter: c.UpAfter,
		Interval: c.Interval.String(), ExpiresInMode: int(c.RegisterExpires / time.Second)}
	if s.on.Load() {
		st.Mode = "survival"
	}
	return st
}

// Stats returns the counters of survival (exported as survival_*).
func (f *Feature) Stats() SurvivalStats {
	s := &f.surv
	var on int64
	if s.on.Load() {
		on = 1
	}
	return SurvivalStats{Active: on, Probes: s.stats.probes.Load(), ProbeFailures: s.stats.probeFailures.Load(),
		PassiveFailures: s.stats.passiveFailures.Load(), Switches: s.stats.switches.Load(),
		Registers: s.stats.registers.Load(), LocalRoutes: s.stats.localRoutes.Load(),
		FallbackRoutes: s.stats.fallbackRoutes.Load(), Unavailable: s.stats.unavailable.Load(),
		RoutesSkipped: s.stats.routesSkipped.Load()}
}

// observe counts one piece of evidence about the upstream and switches
// mode when a threshold is reached.
func (f *Feature) observe(ok bool, why string) {
	s := &f.surv
	c := s.cfg.Load()
	if c == nil || !c.Enabled {
		return
	}
	s.mu.Lock()
	if ok {
		s.oks++
		s.fails = 0
		s.lastSeen = time.Now()
	} else {
		s.fails++
		s.oks = 0
		s.lastErr = why
	}
	on := s.on.Load()
	var sw bool
	var reason string
	switch {
	case !on && s.fails >= c.DownAfter:
		sw, reason = true, fmt.Sprintf("upstream %s failed %d times in a row (last: %s)", c.Upstream, s.fails, why)
	case on && s.oks >= c.UpAfter:
		sw, reason = true, fmt.Sprintf("upstream %s answered %d probes in a row", c.Upstream, s.oks)
	}
	s.mu.Unlock()
	if sw {
		f.setMode(!on, reason)
	}
}

// setMode switches (once per change: one log line each).
func (f *Feature) setMode(on bool, why string) {
	s := &f.surv
	s.mu.Lock()
	if s.on.Load() == on {
		s.mu.Unlock()
		return
	}
	s.on.Store(on)
	s.since, s.why = time.Now(), why
	s.mu.Unlock()
	s.stats.switches.Add(1)
	if on {
		f.log.Warn("survival mode: phones register with sipedge, calls stay local", "reason", why)
	} else {
		f.log.Info("normal mode: registrations go to the upstream again", "reason", why)
	}
}

// InSurvival reports whether survival mode is on.
func (f *Feature) InSurvival() bool { return f.surv.on.Load() }

// forUpstream reports whether host is one of the upstream's domains.
func (c *SurvivalConfig) forUpstream(host []byte) bool {
	for _, d := range c.Domains {
		if strings.EqualFold(d, string(host)) {
			return true
		}
	}
	return false
}

// routeStage sends an in-dialog request on past the upstream's Route
// entries in survival mode (before the stateless stage: the ACK of a 2xx
// follows its route set too).
func (f *Feature) routeStage(r *proxy.Request) bool {
	if f.surv.on.Load() && r.InDialog() {
		f.skipUpstreamRoutes(r, f.surv.cfg.Load())
	}
	return false
}

// survivalStage serves requests in survival mode (nothing in normal
// mode: one atomic load).
func (f *Feature) survivalStage(r *proxy.Request) bool {
	if !f.surv.on.Load() {
		return false
	}
	c := f.surv.cfg.Load()
	m := r.Msg()
	if r.InDialog() || r.HasFurtherRoute() {
		return false
	}
	u, err := m.RequestURI()
	if err != nil || !u.IsSIP() || !c.forUpstream(u.Host) || r.IsLocal(&u) {
		return false
	}
	if _, passive := u.Param(Param); passive {
		return false
	}
	switch m.MethodKind() {
	case sip.REGISTER:
		f.survivalRegister(r, c)
		return true
	case sip.ACK, sip.CANCEL:
		return false
	}
	if ts := f.lookup(u.User, u.Host); len(ts) > 0 {
		f.surv.stats.localRoutes.Add(1)
		r.Decide(proxy.Decision{Groups: [][]proxy.Target{ts}})
		return false
	}
	if c.Fallback == nil {
		f.surv.stats.unavailable.Add(1)
		r.Respond(480, "Temporarily Unavailable", nil)
		return true
	}
	d := c.Fallback.Route(r.Ctx(), m, r.Src(), r.Proto())
	if d.Blocked {
		r.Defer()
		return true
	}
	if len(d.Groups) == 0 {
		f.surv.stats.unavailable.Add(1)
		if d.Code == 0 {
			d.Code, d.Reason = 480, "Temporarily Unavailable"
		}
		r.Respond(d.Code, d.Reason, nil)
		return true
	}
	f.surv.stats.fallbackRoutes.Add(1)
	r.Decide(d)
	return false
}

// lookup returns the active bindings of user@host.
func (f *Feature) lookup(user, host []byte) []proxy.Target {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []proxy.Target
	for _, pb := range f.m {
		if pb.expires.IsZero() || now.After(pb.expires) {
			continue
		}
		u, h, ok := strings.Cut(pb.aor, "@")
		if ok && u == string(user) && strings.EqualFold(h, string(host)) {
			out = append(out, pb.target)
		}
	}
	return out
}

// survivalRegister answers a REGISTER itself (RFC 3261 §10.3, as the
// registrar of the upstream's domain would): the first Contact becomes a
// binding of the passive store for at most RegisterExpires, and the 200
// lists it with that expiry (§10.3 step 8) so the phone refreshes soon.
// A phone sipedge knows (its binding mirrored from the upstream) may
// refresh from where it registered; a phone it does not know only from
// a trusted network.
func (f *Feature) survivalRegister(r *proxy.Request, c *SurvivalConfig) {
	m := r.Msg()
	to, err := m.To()
	if err != nil || !to.URI.IsSIP() {
		r.Respond(400, "Bad To", nil)
		return
	}
	v := m.Get(sip.KindContact)
	if v == nil {
		// A query (§10.2.3): the bindings are not listed; the phone only
		// learns its registration is accepted.
		r.Respond(200, "OK", nil)
		return
	}
	a, err := sip.ParseAddress(v[:sip.SplitComma(v)])
	if err != nil || !a.URI.IsSIP() && !a.Wildcard {
		r.Respond(400, "Bad Contact", nil)
		return
	}
	exp := int(c.RegisterExpires / time.Second)
	asked := -1
	if e := m.Get(sip.KindExpires); e != nil {
		if n, err := strconv.Atoi(string(bytes.TrimSpace(e))); err == nil {
			asked = n
		}
	}
	if e, ok := a.Params.Get("expires"); ok {
		if n, err := strconv.Atoi(string(e)); err == nil {
			asked = n
		}
	}
	aor := string(to.URI.User) + "@" + string(to.URI.Host)
	if a.Wildcard && asked != 0 {
		r.Respond(400, "Wildcard Contact Needs Expires: 0", nil) // §10.3 step 6
		return
	}
	if a.Wildcard || asked == 0 {
		f.mu.Lock()
		for k, pb := range f.m {
			if pb.aor == aor && (a.Wildcard || bytes.Equal(pb.contact, a.RawURI)) {
				f.forgetLocked(k)
			}
		}
		f.mu.Unlock()
		f.surv.stats.registers.Add(1)
		r.Respond(200, "OK", nil)
		return
	}
	if asked > 0 && asked < exp {
		exp = asked
	}
	t, ok := proxy.URITarget(&a.URI)
	if !ok {
		r.Respond(400, "Bad Contact", nil)
		return
	}
	if nat.BehindRequest(m, r.Via(), r.Src()) && r.Proto() == transport.UDP {
		t = proxy.Target{Proto: r.Proto(), Addr: r.Src(), NAT: true}
	}
	tok := f.token(a.RawURI, r.Src())
	f.mu.Lock()
	pb := f.m[tok]
	if pb == nil && !r.Trusted() {
		f.mu.Unlock()
		r.Respond(403, "Forbidden", nil)
		return
	}
	if pb == nil {
		pb = &binding{contact: append([]byte(nil), a.RawURI...)}
		f.m[tok] = pb
		if f.adds++; f.adds%1024 == 0 {
			f.sweepLocked(time.Now())
		}
	}
	pb.target = t
	pb.target.URI = pb.contact
	pb.aor = aor
	pb.expires, pb.pending = time.Now().Add(time.Duration(exp)*time.Second), time.Time{}
	// Not stored: the binding lasts less than a restart takes to matter,
	// and the upstream confirms it again once back.
	f.mu.Unlock()
	f.surv.stats.registers.Add(1)
	extra := make([]byte, 0, 64+len(a.RawURI))
	extra = append(extra, "Contact: <"...)
	extra = append(extra, a.RawURI...)
	extra = append(extra, ">;expires="...)
	extra = strconv.AppendInt(extra, int64(exp), 10)
	extra = append(extra, "\r\n"...)
	r.Respond(200, "OK", extra)
}

// skipUpstreamRoutes drops, from an in-dialog request, the Route entries
// after sipedge's own that name the upstream (its address or one of its
// domains) (and entries of sipedge's
// own right after them: a call that left through sipedge and came back):
// the request goes on by the rest of its route set or its Request-URI.
// The Route header fields are written again as one.
func (f *Feature) skipUpstreamRoutes(r *proxy.Request, c *SurvivalConfig) {
	m := r.Msg()
	up := c.Target.Addr
	if !up.IsValid() {
		return
	}
	self := f.core.Self()
	var kept [][]byte
	skipping, seenUp, decided := false, false, false
	n := 0
	for it := m.Values(sip.KindRoute); ; n++ {
		v, ok := it.Next()
		if !ok {
			break
		}
		if n < r.OwnRoutes() || decided {
			kept = append(kept, v)
			continue
		}
		a, err := sip.ParseAddress(v)
		if err != nil {
			return
		}
		switch {
		case routeNames(&a.URI, up) || c.forUpstream(a.URI.Host):
			skipping, seenUp = true, true
		case skipping && self.Is(a.URI.Host, a.URI.Port, a.URI.Kind == sip.SchemeSIPS):
		default:
			decided = true
			kept = append(kept, v)
		}
	}
	if !seenUp {
		return
	}
	err := r.Rewrite(func(m *sip.Message) error {
		first := true
		for h := m.Find(sip.KindRoute); h >= 0; h = m.FindNext(sip.KindRoute, h) {
			s, e := m.HeaderLine(h)
			if !first || len(kept) == 0 {
				if err := m.Delete(s, e); err != nil {
					return err
				}
				continue
			}
			first = false
			line := append([]byte(nil), "Route: "...)
			line = append(line, bytes.Join(kept, []byte(", "))...)
			line = append(line, "\r\n"...)
			if err := m.Replace(s, e, line); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		f.surv.stats.routesSkipped.Add(1)
	}
}

// routeNames reports whether a Route URI names addr.
func routeNames(u *sip.URI, addr netip.AddrPort) bool {
	t, ok := proxy.URITarget(u)
	return ok && t.Addr.Addr().Unmap() == addr.Addr().Unmap() && t.Addr.Port() == addr.Port()
}
