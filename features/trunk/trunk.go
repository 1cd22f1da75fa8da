// Package trunk connects sipedge to SIP providers as a user agent of its
// own: for each configured trunk it registers a contact of sipedge's at
// the provider's registrar (RFC 3261 §10.2) and keeps it registered,
// answers the provider's digest challenges with the trunk's credentials
// (RFC 3261 §22, RFC 7616, RFC 8760), routes the calls the provider sends
// to that contact by the trunk's inbound rule, and is the named
// destination "trunk:NAME" that routes send calls to the provider
// through, answering the provider's 401/407 to them (proxy.Target.Auth).
//
// Registration never gives up: a failure (an error response, a timeout, a
// refused password) is retried after a delay that doubles from RetryMin up
// to RetryMax, with jitter so that many sipedges behind one provider do
// not come back in step; one failure never disables a trunk (Kamailio's
// uac_reg disables a registration for good after some failures, and only
// an operator brings it back).
//
// Hooks: stage "trunk-in"; branch and reply hooks "trunk-cseq" and failure
// hook "trunk" (cseq.go); the destinations through Routers; a sender per
// trunk with a lifecycle (proxy.Starter, proxy.Closer).
package trunk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/digest"
	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// Trunk is the configuration of one trunk.
type Trunk struct {
	Name string
	// Registrar is the provider's registrar, a SIP URI
	// (sip:sip.provider.example, sip:192.0.2.7:5080;transport=tcp): the
	// Request-URI of the REGISTER and, unless Proxy is set, where it and
	// the calls to the provider are sent.
	Registrar string
	// Proxy is the provider's outbound proxy (a SIP URI); empty: the
	// registrar.
	Proxy string
	// Domain is the host of the trunk's address of record (From and To of
	// the REGISTER) and of the Request-URI of calls to the provider;
	// empty: the registrar's host.
	Domain string
	// Username and Password are the credentials; Username is also the
	// user of the address of record.
	Username, Password string
	// Realm: only challenges of this realm are answered; empty: any
	// realm the provider names.
	Realm string
	// Expires is the registration interval asked for; the registrar may
	// grant less (or more, after 423).
	Expires time.Duration
	// ContactUser is the user part of the contact registered; the calls
	// the provider sends arrive with it in the Request-URI. Empty: the
	// username.
	ContactUser string
	// NoRegister: the provider knows sipedge by its address and needs no
	// registration (the trunk is still a destination and answers
	// challenges).
	NoRegister bool
	// Inbound is where calls arriving on the contact go: a SIP URI routed
	// like a Request-URI (a local user, sip:alice@example.com, or a PBX).
	// "{to}" in it stands for the user of the To URI of the call (the
	// number dialled at the provider), so sip:{to}@pbx.example maps each
	// number to a user.
	Inbound string
	// RetryMin and RetryMax bound the delay after a failed registration:
	// it starts at RetryMin and doubles up to RetryMax.
	RetryMin, RetryMax time.Duration
}

// Defaults.
const (
	DefaultExpires  = 600 * time.Second
	DefaultRetryMin = 5 * time.Second
	DefaultRetryMax = 5 * time.Minute
)

// refreshAt is the share of the granted interval after which a
// registration is refreshed: early enough that a lost or challenged
// refresh still lands before the binding expires.
const refreshAt = 0.85

// Feature is the trunks of one sipedge.
type Feature struct {
	log    *slog.Logger
	res    proxy.Resolver
	core   *proxy.Core
	trunks []*trunk
	byUser map[string]*trunk // contact user → trunk
	stop   chan struct{}
	wg     sync.WaitGroup
	shifts shifts // dialogs whose INVITE went out with the next CSeq (cseq.go)
}

// New checks the trunks and builds the feature; Use gives it the core
// before it starts. res resolves host names of registrars and proxies
// (RFC 3263); it may be nil when every URI is an IP address.
func New(trunks []Trunk, res proxy.Resolver, log *slog.Logger) (*Feature, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &Feature{log: log, res: res, byUser: map[string]*trunk{}}
	for i := range trunks {
		t, err := newTrunk(f, trunks[i])
		if err != nil {
			return nil, err
		}
		if o := f.byUser[t.contactUser]; o != nil {
			return nil, fmt.Errorf("trunks %s and %s register the same contact user %q: give one a contact_user of its own", o.cfg.Name, t.cfg.Name, t.contactUser)
		}
		f.byUser[t.contactUser] = t
		f.trunks = append(f.trunks, t)
	}
	return f, nil
}

// Use gives the feature the core it sends through.
func (f *Feature) Use(core *proxy.Core) { f.core = core }

// Routers returns the trunks as named destinations, "trunk:NAME"
// (proxy.Table.Named).
func (f *Feature) Routers() map[string]proxy.Router {
	m := make(map[string]proxy.Router, len(f.trunks))
	for _, t := range f.trunks {
		m["trunk:"+t.cfg.Name] = t
	}
	return m
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	if len(f.trunks) == 0 {
		return proxy.Hooks{}
	}
	return proxy.Hooks{
		Stages:      []proxy.Stage{{Name: "trunk-in", Run: f.inbound}},
		Branch:      []proxy.BranchHook{{Name: "trunk-cseq", Run: f.branch}},
		Reply:       []proxy.ReplyHook{{Name: "trunk-cseq", Run: f.reply}},
		Failure:     []proxy.FailureHook{{Name: "trunk", Run: f.failed}},
		DialogEnded: []func(callID, fromTag string){f.ended},
	}
}

// Start starts the registration of every trunk (proxy.Starter).
func (f *Feature) Start() {
	f.stop = make(chan struct{})
	for _, t := range f.trunks {
		if t.cfg.NoRegister {
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			t.run(f.stop)
		}()
	}
}

// Close stops the registrations (proxy.Closer). Bindings are left to
// expire at the provider: a restarted sipedge registers the same contact
// again.
func (f *Feature) Close() {
	if f.stop != nil {
		close(f.stop)
		f.wg.Wait()
		f.stop = nil
	}
}

// trunk is one trunk's state.
type trunk struct {
	f           *Feature
	cfg         Trunk
	registrar   sip.URI // parsed cfg.Registrar
	next        string  // the URI the next hop is resolved from
	domain      string
	contactUser string
	aor         string // sip:user@domain
	callID      string // one Call-ID for every REGISTER (RFC 3261 §10.2.4)
	fromTag     string
	cseq        atomic.Uint32

	mu    sync.Mutex
	state State

	stats counters
}

// counters are one trunk's live counters.
type counters struct {
	Registrations, Failures, Inbound, Outbound, Challenges atomic.Uint64
}

func newTrunk(f *Feature, c Trunk) (*trunk, error) {
	if c.Expires <= 0 {
		c.Expires = DefaultExpires
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	t := &trunk{f: f, cfg: c, contactUser: c.ContactUser}
	u, err := sip.ParseURI([]byte(c.Registrar))
	if err != nil || !u.IsSIP() {
		return nil, fmt.Errorf("trunk %s: registrar %q is not a SIP URI", c.Name, c.Registrar)
	}
	t.registrar = u
	t.next = c.Registrar
	if c.Proxy != "" {
		if p, err := sip.ParseURI([]byte(c.Proxy)); err != nil || !p.IsSIP() {
			return nil, fmt.Errorf("trunk %s: proxy %q is not a SIP URI", c.Name, c.Proxy)
		}
		t.next = c.Proxy
	}
	t.domain = c.Domain
	if t.domain == "" {
		t.domain = string(u.Host)
		if u.HasPort {
			t.domain += ":" + strconv.Itoa(u.Port)
		}
	}
	if c.Username == "" {
		return nil, fmt.Errorf("trunk %s: username is required", c.Name)
	}
	if t.contactUser == "" {
		t.contactUser = c.Username
	}
	if c.Inbound != "" {
		in := strings.ReplaceAll(c.Inbound, "{to}", "x")
		if iu, err := sip.ParseURI([]byte(in)); err != nil || !iu.IsSIP() {
			return nil, fmt.Errorf("trunk %s: inbound %q is not a SIP URI", c.Name, c.Inbound)
		}
	}
	t.aor = "sip:" + c.Username + "@" + t.domain
	t.callID = randomToken(12) + "@sipedge"
	t.fromTag = randomToken(8)
	t.state = State{Name: c.Name, Registrar: c.Registrar, Status: StatusRegistering, Since: time.Now()}
	if c.NoRegister {
		t.state.Status = StatusNotRegistering
	}
	return t, nil
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Status is where a trunk's registration stands.
type Status string

// The statuses.
const (
	StatusRegistering    Status = "registering"     // the first attempt is under way
	StatusRegistered     Status = "registered"      // the provider holds a current binding
	StatusFailed         Status = "failed"          // the last attempt failed and no binding is current: retrying
	StatusNotRegistering Status = "not-registering" // register: false
)

// State is a trunk's registration as the operations API shows it.
type State struct {
	Name      string
	Registrar string
	Status    Status
	Since     time.Time // when Status began
	Contact   string    // the contact registered (once one was)
	// Expires is when the current binding expires (zero without one).
	Expires time.Time
	// LastError is the last failure ("401 Unauthorized: credentials
	// refused", "timeout"), kept after a success; LastErrorAt its time.
	LastError   string
	LastErrorAt time.Time
	// NextAttempt is when the next REGISTER goes (a refresh or a retry).
	NextAttempt time.Time
	// Failures counts the attempts that failed in a row.
	Failures int
}

// States returns the state of every trunk, in configuration order.
func (f *Feature) States() []State {
	out := make([]State, 0, len(f.trunks))
	for _, t := range f.trunks {
		t.mu.Lock()
		out = append(out, t.state)
		t.mu.Unlock()
	}
	return out
}

// Stats is a snapshot of the trunks' counters (the metrics convention of
// package metrics).
type Stats struct {
	Registered    int               // trunks registered now
	Registrations map[string]uint64 `label:"trunk"` // REGISTERs that got a 2xx
	Failures      map[string]uint64 `label:"trunk"` // registration attempts that failed
	Inbound       map[string]uint64 `label:"trunk"` // calls and other requests from the provider routed by the inbound rule
	Outbound      map[string]uint64 `label:"trunk"` // requests routed to the provider
	Challenges    map[string]uint64 `label:"trunk"` // provider challenges answered with the trunk's credentials
}

// Stats returns a snapshot of the counters.
func (f *Feature) Stats() Stats {
	n := len(f.trunks)
	st := Stats{Registrations: make(map[string]uint64, n), Failures: make(map[string]uint64, n),
		Inbound: make(map[string]uint64, n), Outbound: make(map[string]uint64, n), Challenges: make(map[string]uint64, n)}
	for _, t := range f.trunks {
		name := t.cfg.Name
		st.Registrations[name] = t.stats.Registrations.Load()
		st.Failures[name] = t.stats.Failures.Load()
		st.Inbound[name] = t.stats.Inbound.Load()
		st.Outbound[name] = t.stats.Outbound.Load()
		st.Challenges[name] = t.stats.Challenges.Load()
		t.mu.Lock()
		if t.state.Status == StatusRegistered {
			st.Registered++
		}
		t.mu.Unlock()
	}
	return st
}

// targets resolves the next hop of the trunk. ctx may forbid waiting
// (proxy.WithoutBlocking): then proxy.ErrWouldBlock.
func (t *trunk) targets(ctx context.Context) ([]proxy.Target, error) {
	u, err := sip.ParseURI([]byte(t.next))
	if err != nil {
		return nil, err
	}
	if tg, ok := proxy.URITarget(&u); ok {
		return []proxy.Target{tg}, nil
	}
	if t.f.res == nil {
		return nil, errors.New("no resolver for " + t.next)
	}
	ts, err := t.f.res.ResolveTargets(ctx, &u)
	if err == nil && len(ts) == 0 {
		err = errors.New("no address for " + t.next)
	}
	return ts, err
}

// Route implements proxy.Router for "trunk:NAME": the request goes to the
// provider with the Request-URI's user at the trunk's domain, and the
// provider's challenges are answered with the trunk's credentials. The
// resolved addresses of the next hop are alternatives (RFC 3263 §4.3).
func (t *trunk) Route(ctx context.Context, m *sip.Message, _ netip.AddrPort, _ transport.Proto) proxy.Decision {
	u, err := m.RequestURI()
	if err != nil {
		return proxy.Decision{Code: 416, Reason: "Unsupported URI Scheme"}
	}
	user := u.User
	if u.Kind == sip.SchemeTel {
		user = u.Opaque
		if i := strings.IndexByte(string(user), ';'); i >= 0 {
			user = user[:i]
		}
	}
	ts, err := t.targets(ctx)
	switch {
	case errors.Is(err, proxy.ErrWouldBlock):
		return proxy.Decision{Blocked: true}
	case err != nil:
		return proxy.Decision{Code: 503, Reason: "Trunk Unreachable"}
	}
	ruri := []byte("sip:")
	if len(user) > 0 {
		ruri = append(append(ruri, user...), '@')
	}
	ruri = append(ruri, t.domain...)
	if tp, ok := t.registrar.Param("transport"); ok && t.cfg.Proxy == "" {
		ruri = append(append(ruri, ";transport="...), tp...)
	}
	t.stats.Outbound.Add(1)
	d := proxy.Decision{Failover: true}
	for _, tg := range ts {
		tg.URI, tg.Auth = ruri, t
		d.Groups = append(d.Groups, []proxy.Target{tg})
	}
	return d
}

// Authorize implements proxy.Authenticator: the provider's challenge to a
// request sent to it is answered with the trunk's credentials.
func (t *trunk) Authorize(method, uri []byte, resp *sip.Message) (string, []byte, bool) {
	v, ok := t.answer(method, uri, resp)
	if !ok {
		return "", nil, false
	}
	t.stats.Challenges.Add(1)
	if string(method) == "INVITE" {
		t.f.shifts.add(resp)
	}
	name := "Authorization"
	if resp.StatusCode() == 407 {
		name = "Proxy-Authorization"
	}
	return name, v, true
}

// answer writes the credentials for a 401 (WWW-Authenticate) or 407
// (Proxy-Authenticate): the strongest challenge sipedge supports (RFC 8760
// §2.4), qop=auth with a fresh cnonce when offered, else the RFC 2069
// form. A challenge of another realm than the configured one is not
// answered: the credentials are not given to whoever asks.
func (t *trunk) answer(method, uri []byte, resp *sip.Message) ([]byte, bool) {
	k := sip.KindWWWAuthenticate
	if resp.StatusCode() == 407 {
		k = sip.KindProxyAuthenticate
	}
	// One challenge per header field: its value has commas of its own
	// (between auth-params), so fields are not split at commas.
	ch, _, ok := digest.ChooseChallenge(headerValues(resp, k)...)
	if !ok {
		return nil, false
	}
	if t.cfg.Realm != "" && string(digest.Unquote(nil, ch.Realm)) != t.cfg.Realm {
		return nil, false
	}
	return ch.Authorize(nil, t.cfg.Username, t.cfg.Password, method, uri, []byte(randomToken(8)), 1), true
}

// headerValues returns the whole value of each header field of kind k.
func headerValues(m *sip.Message, k sip.HeaderKind) [][]byte {
	var out [][]byte
	for i := m.Find(k); i >= 0; i = m.FindNext(k, i) {
		out = append(out, m.HeaderValue(i))
	}
	return out
}

// inbound is the stage "trunk-in": a request outside a dialog whose
// Request-URI is a trunk's registered contact (its contact user at one of
// sipedge's addresses) is routed by the trunk's inbound rule instead of
// the routing table.
func (f *Feature) inbound(r *proxy.Request) bool {
	m := r.Msg()
	switch m.MethodKind() {
	case sip.REGISTER, sip.ACK, sip.CANCEL:
		return false
	}
	u, err := m.RequestURI()
	if err != nil || !u.IsSIP() || len(u.User) == 0 {
		return false
	}
	t := f.byUser[string(u.User)]
	if t == nil || r.InDialog() || r.HasFurtherRoute() || !r.ForSelf() {
		return false
	}
	if t.cfg.Inbound == "" {
		r.Respond(404, "Not Found", nil)
		return true
	}
	dest := t.cfg.Inbound
	if strings.Contains(dest, "{to}") {
		to, err := m.To()
		if err != nil || !plainUser(to.URI.User) {
			r.Respond(404, "Not Found", nil)
			return true
		}
		dest = strings.ReplaceAll(dest, "{to}", string(to.URI.User))
	}
	// The request as the routing table would see it with the inbound
	// rule's URI as its Request-URI.
	s, e := m.RequestURISpan()
	b := m.Bytes()
	buf := make([]byte, 0, len(b)+len(dest))
	buf = append(append(append(buf, b[:s]...), dest...), b[e:]...)
	var nm sip.Message
	if err := nm.Parse(buf, r.Policy().Limits); err != nil {
		r.Respond(500, "Server Internal Error", nil)
		return true
	}
	if r.Policy().Router == nil {
		r.Respond(480, "Temporarily Unavailable", nil)
		return true
	}
	d := r.Policy().Router.Route(r.Ctx(), &nm, r.Src(), r.Proto())
	if d.Blocked {
		r.Defer()
		return true
	}
	if len(d.Groups) == 0 {
		code, reason := d.Code, d.Reason
		if code == 0 {
			code, reason = 480, "Temporarily Unavailable"
		}
		r.Respond(code, reason, nil)
		return true
	}
	// Targets that keep the Request-URI get the rule's; the groups are
	// copied, since a router may hand out the same slices every time.
	groups := make([][]proxy.Target, len(d.Groups))
	for i, g := range d.Groups {
		groups[i] = append([]proxy.Target(nil), g...)
		for j := range groups[i] {
			if groups[i][j].URI == nil {
				groups[i][j].URI = []byte(dest)
			}
		}
	}
	d.Groups = groups
	t.stats.Inbound.Add(1)
	r.Decide(d)
	return false
}

// plainUser accepts a user part made of unreserved characters only (RFC
// 3261 §25.1): what "{to}" may put into a URI without changing its shape.
func plainUser(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()+", c) >= 0) {
			return false
		}
	}
	return true
}

// result is the final answer to one REGISTER.
type result struct {
	code       int
	reason     string
	challenges [][]byte // WWW-Authenticate or Proxy-Authenticate values
	minExpires int      // Min-Expires of a 423
	granted    int      // seconds granted for our contact (-1: not said)
	retryAfter int      // Retry-After seconds of an error (0: none)
	resp       *sip.Message
	err        error // timeout or transport error
}

// waiter is the client transaction handler of one REGISTER: it copies
// what the registration needs out of the final response.
type waiter struct {
	ch      chan result
	contact string
	once    sync.Once
}

func (w *waiter) OnResponse(_ *txn.Client, m *sip.Message) {
	code := m.StatusCode()
	if code < 200 {
		return
	}
	// The message's buffer belongs to the transport: keep a copy.
	cp := new(sip.Message)
	if cp.Parse(append([]byte(nil), m.Bytes()...), nil) != nil {
		w.send(result{code: code, reason: string(m.Reason())})
		return
	}
	res := result{code: code, reason: string(cp.Reason()), granted: -1, resp: cp}
	if code >= 200 && code < 300 {
		res.granted = grantedExpires(cp, w.contact)
	}
	if v := cp.Get(sip.KindMinExpires); v != nil {
		res.minExpires, _ = strconv.Atoi(strings.TrimSpace(string(v)))
	}
	if v := cp.GetByName("Retry-After"); v != nil {
		s := strings.TrimSpace(string(v))
		if i := strings.IndexAny(s, " ;("); i >= 0 {
			s = s[:i]
		}
		res.retryAfter, _ = strconv.Atoi(s)
	}
	w.send(res)
}

func (w *waiter) OnTimeout(_ *txn.Client, timerC bool) {
	if !timerC {
		w.send(result{code: 408, reason: "Request Timeout", err: errors.New("no answer")})
	}
}

func (w *waiter) OnTransportError(_ *txn.Client, err error) {
	w.send(result{code: 503, reason: "Service Unavailable", err: err})
}

func (w *waiter) send(r result) { w.once.Do(func() { w.ch <- r }) }

// grantedExpires is the interval the registrar granted our contact (RFC
// 3261 §10.2.4): the expires parameter of its Contact in the 2xx, else the
// Expires header; -1 when neither says.
func grantedExpires(m *sip.Message, contact string) int {
	want, err := sip.ParseURI([]byte(contact))
	if err != nil {
		return -1
	}
	for it := m.Values(sip.KindContact); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		a, err := sip.ParseAddress(v)
		if err != nil || !sameContact(&a.URI, &want) {
			continue
		}
		if e, ok := a.Expires(); ok {
			return int(e)
		}
	}
	if v := m.Get(sip.KindExpires); v != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(v))); err == nil {
			return n
		}
	}
	return -1
}

// sameContact compares the parts of a contact URI a registrar keeps:
// user, host and port (RFC 3261 §19.1.4 would compare parameters too, but
// registrars add their own, such as Kamailio's received).
func sameContact(a, b *sip.URI) bool {
	return string(a.User) == string(b.User) && sip.EqualFold(a.Host, string(b.Host)) && a.Port == b.Port
}

// run registers the trunk and keeps it registered until stop closes.
func (t *trunk) run(stop <-chan struct{}) {
	var delay time.Duration
	failures := 0
	for {
		if delay > 0 {
			tm := time.NewTimer(delay)
			select {
			case <-stop:
				tm.Stop()
				return
			case <-tm.C:
			}
		}
		granted, retryAfter, err := t.register(stop)
		if errors.Is(err, errStopped) {
			return
		}
		now := time.Now()
		if err == nil {
			failures = 0
			t.stats.Registrations.Add(1)
			delay = time.Duration(float64(granted) * refreshAt)
			t.setRegistered(now, granted, now.Add(delay))
			continue
		}
		failures++
		t.stats.Failures.Add(1)
		delay = backoff(t.cfg.RetryMin, t.cfg.RetryMax, failures)
		if ra := time.Duration(retryAfter) * time.Second; ra > delay {
			delay = min(ra, t.cfg.RetryMax)
		}
		t.setFailed(now, err, failures, now.Add(delay))
	}
}

var errStopped = errors.New("stopped")

// backoff is the delay before retry n (n ≥ 1): RetryMin doubled n-1
// times, at most RetryMax, less up to a fifth at random.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d - time.Duration(mrand.Int64N(int64(d)/5+1))
}

// setRegistered records a success; the log says so once when the state
// changes, not at every refresh.
func (t *trunk) setRegistered(now time.Time, granted time.Duration, next time.Time) {
	t.mu.Lock()
	changed := t.state.Status != StatusRegistered
	if changed {
		t.state.Status, t.state.Since = StatusRegistered, now
	}
	t.state.Expires, t.state.NextAttempt, t.state.Failures = now.Add(granted), next, 0
	contact := t.state.Contact
	t.mu.Unlock()
	if changed {
		t.f.log.Info("trunk registered", "trunk", t.cfg.Name, "registrar", t.cfg.Registrar, "contact", contact, "expires", granted.String())
	}
}

// setFailed records a failure. The trunk stays registered while the
// binding it had is still current; the log says so once per state
// change, and again only for another error.
func (t *trunk) setFailed(now time.Time, err error, failures int, next time.Time) {
	t.mu.Lock()
	msg := err.Error()
	sameErr := msg == t.state.LastError
	t.state.LastError, t.state.LastErrorAt, t.state.NextAttempt, t.state.Failures = msg, now, next, failures
	changed := false
	if t.state.Status != StatusFailed && (t.state.Status != StatusRegistered || !now.Before(t.state.Expires)) {
		t.state.Status, t.state.Since, t.state.Expires = StatusFailed, now, time.Time{}
		changed = true
	}
	status := t.state.Status
	t.mu.Unlock()
	if changed || !sameErr {
		t.f.log.Warn("trunk registration failed", "trunk", t.cfg.Name, "registrar", t.cfg.Registrar, "err", msg,
			"status", string(status), "failures", failures, "retry_in", next.Sub(now).Round(time.Millisecond).String())
	}
}

// register sends REGISTERs until one gets a 2xx or fails for good: a
// 401/407 is answered once per nonce (again only with stale=true), a 423
// raises the interval to Min-Expires (RFC 3261 §10.2.8). It returns the
// interval granted, or the error with the Retry-After of the answer.
func (t *trunk) register(stop <-chan struct{}) (granted time.Duration, retryAfter int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ts, err := t.targets(ctx)
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("next hop %s: %v", t.next, err)
	}
	tg := ts[0]
	local, ok := t.f.core.LocalFor(tg.Proto, tg.Addr.Addr())
	if !ok {
		return 0, 0, fmt.Errorf("no local address towards %s over %s", tg.Addr, tg.Proto)
	}
	contact := "sip:" + t.contactUser + "@" + string(proxy.AppendHostPort(nil, local))
	if tg.Proto != transport.UDP {
		contact += ";transport=" + strings.ToLower(tg.Proto.String())
	}
	t.mu.Lock()
	t.state.Contact = contact
	t.mu.Unlock()
	expires := int(t.cfg.Expires / time.Second)
	var authz string
	answered := false
	for attempt := 0; attempt < 5; attempt++ {
		extra := "Contact: <" + contact + ">\r\nExpires: " + strconv.Itoa(expires) + "\r\n" + authz
		w := &waiter{ch: make(chan result, 1), contact: contact}
		o := &proxy.Originate{Method: "REGISTER", URI: t.cfg.Registrar, Target: tg,
			From: "<" + t.aor + ">;tag=" + t.fromTag, To: "<" + t.aor + ">", CallID: t.callID, CSeq: t.cseq.Add(1), Extra: []byte(extra)}
		if err := t.f.core.Originate(o, w); err != nil {
			return 0, 0, fmt.Errorf("REGISTER not sent: %v", err)
		}
		var res result
		select {
		case <-stop:
			return 0, 0, errStopped
		case res = <-w.ch:
		}
		switch {
		case res.err != nil:
			return 0, 0, fmt.Errorf("%d %s: %v", res.code, res.reason, res.err)
		case res.code >= 200 && res.code < 300:
			g := res.granted
			if g < 0 {
				g = expires
			}
			if g <= 0 {
				return 0, 0, fmt.Errorf("%d %s: the registrar granted no time to the contact", res.code, res.reason)
			}
			return time.Duration(g) * time.Second, 0, nil
		case res.code == 401 || res.code == 407:
			stale := false
			if ch, _, ok := digest.ChooseChallenge(headerValues(res.resp, challengeKind(res.code))...); ok {
				stale = ch.Stale
			}
			if answered && !stale {
				return 0, 0, fmt.Errorf("%d %s: credentials refused", res.code, res.reason)
			}
			v, ok := t.answer([]byte("REGISTER"), []byte(t.cfg.Registrar), res.resp)
			if !ok {
				return 0, 0, fmt.Errorf("%d %s: no challenge sipedge can answer (realm, algorithm)", res.code, res.reason)
			}
			t.stats.Challenges.Add(1)
			name := "Authorization"
			if res.code == 407 {
				name = "Proxy-Authorization"
			}
			authz, answered = name+": "+string(v)+"\r\n", true
		case res.code == 423 && res.minExpires > expires:
			expires = res.minExpires
		default:
			return 0, res.retryAfter, fmt.Errorf("%d %s", res.code, res.reason)
		}
	}
	return 0, 0, errors.New("no 2xx after five REGISTERs")
}

func challengeKind(code int) sip.HeaderKind {
	if code == 407 {
		return sip.KindProxyAuthenticate
	}
	return sip.KindWWWAuthenticate
}
