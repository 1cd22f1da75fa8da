package proxy

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// Resolver turns a SIP URI into an ordered list of next hops (RFC 3263):
// the first is tried, the next one after a timeout, a transport error or a
// 503 (§4.3).
type Resolver interface {
	ResolveTargets(ctx context.Context, u *sip.URI) ([]Target, error)
}

// StaticRoute sends requests whose Request-URI matches to a fixed next hop.
type StaticRoute struct {
	Name   string
	Domain string // Request-URI host to match (case-insensitive); "" = any
	Prefix string // Request-URI user prefix; "" = any
	To     string // next hop SIP URI
	// Stateless: forward without transactions (RFC 3261 §16.11).
	Stateless bool
	to        sip.URI
	named     Router // To names a destination a feature owns (Table.Named)
}

// StatelessRouter is an optional capability of a Router: it names the
// next hop of a request that is to be forwarded statelessly, before any
// transaction is made for it. ok is false for everything else (and when the
// answer would block: the request then goes the stateful way).
type StatelessRouter interface {
	StatelessTarget(ctx context.Context, m *sip.Message) (t Target, ok bool)
}

// StatelessTarget implements StatelessRouter: the request matches a
// static route marked stateless. Only the first target of a host name is
// used: a stateless proxy has no state to fail over with.
func (t *Table) StatelessTarget(ctx context.Context, m *sip.Message) (Target, bool) {
	if !t.stateless {
		return Target{}, false // the common case, decided once in Compile
	}
	u, err := m.RequestURI()
	if err != nil {
		return Target{}, false
	}
	for i := range t.Routes {
		r := &t.Routes[i]
		if !r.matches(&u) {
			continue
		}
		if !r.Stateless {
			return Target{}, false
		}
		d := t.toURI(ctx, &r.to, "route "+r.Name)
		if len(d.Groups) == 0 || len(d.Groups[0]) == 0 {
			return Target{}, false
		}
		t.hit(i)
		return d.Groups[0][0], true
	}
	return Target{}, false
}

// Table is the Router for a configured sipedge: static routes first (in
// order, the first match wins), then the location service for local
// domains, then an outbound proxy, then RFC 3263 on the Request-URI.
type Table struct {
	Routes        []StaticRoute
	Location      Router // location service for local domains; nil: none
	Domains       *Domains
	OutboundProxy string // SIP URI; "" = resolve the Request-URI itself
	Resolver      Resolver
	// IsSelf reports whether a URI names sipedge itself: a user at
	// sipedge's own address is a local user even when Domains lists only
	// names (nil: by Domains alone).
	IsSelf func(u *sip.URI) bool
	// ResolveTimeout bounds one resolution (DNS is answered from the
	// cache almost always; a miss blocks this request only).
	ResolveTimeout time.Duration
	// Counters, when set, counts the requests each way of routing took;
	// it outlives the table (a reload keeps the counts).
	Counters *RouteCounters
	// Named are the destinations features own, by "KIND:NAME" (a pool of
	// upstreams "pool:pbx", a registered trunk "trunk:provider"): a route
	// whose To is such a name hands the request to that Router, which
	// decides the targets (and keeps whatever state that takes: health,
	// load, credentials). Features do not import each other: the
	// application fills this map from them.
	Named     map[string]Router
	outbound  sip.URI
	stateless bool             // some route is stateless: StatelessTarget has work to do
	hits      []*atomic.Uint64 // by route, then location, outbound, dns
}

// RouteCounters counts routed requests by route name, plus "location"
// (local users), "outbound_proxy" and "dns" (RFC 3263 on the
// Request-URI): names the configuration bounds, so they make a bounded
// metric label.
type RouteCounters struct {
	mu sync.Mutex
	m  map[string]*atomic.Uint64
}

// RouteStats are the routing counters (the metrics convention).
type RouteStats struct {
	Routed map[string]uint64 `label:"route"` // requests routed, by static route name or location, outbound_proxy, dns
}

func (rc *RouteCounters) counter(name string) *atomic.Uint64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.m == nil {
		rc.m = map[string]*atomic.Uint64{}
	}
	c := rc.m[name]
	if c == nil {
		c = new(atomic.Uint64)
		rc.m[name] = c
	}
	return c
}

// Stats returns the counts.
func (rc *RouteCounters) Stats() RouteStats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	st := RouteStats{Routed: make(map[string]uint64, len(rc.m))}
	for k, v := range rc.m {
		st.Routed[k] = v.Load()
	}
	return st
}

// hit counts a request routed the i-th way (see hits).
func (t *Table) hit(i int) {
	if t.hits != nil {
		t.hits[i].Add(1)
	}
}

// Compile checks the URIs; call it once before use.
func (t *Table) Compile() error {
	for i := range t.Routes {
		r := &t.Routes[i]
		if kind, name, ok := NamedDestination(r.To); ok {
			d, found := t.Named[r.To]
			if !found {
				return &namedError{r.Name, kind, name}
			}
			if r.Stateless {
				return &routeError{r.Name, r.To + " (a " + kind + " keeps state: the route cannot be stateless)"}
			}
			r.named = d
			continue
		}
		u, err := sip.ParseURI([]byte(r.To))
		if err != nil || !u.IsSIP() {
			return &routeError{r.Name, r.To}
		}
		r.to = u
		t.stateless = t.stateless || r.Stateless
	}
	if t.OutboundProxy != "" {
		u, err := sip.ParseURI([]byte(t.OutboundProxy))
		if err != nil || !u.IsSIP() {
			return &routeError{"outbound_proxy", t.OutboundProxy}
		}
		t.outbound = u
	}
	if t.ResolveTimeout == 0 {
		t.ResolveTimeout = 4 * time.Second
	}
	if t.Counters != nil {
		t.hits = t.hits[:0]
		for i := range t.Routes {
			t.hits = append(t.hits, t.Counters.counter(t.Routes[i].Name))
		}
		for _, n := range []string{"location", "outbound_proxy", "dns"} {
			t.hits = append(t.hits, t.Counters.counter(n))
		}
	}
	return nil
}

// NamedDestination splits a route's To of the form "KIND:NAME" (pool:pbx,
// trunk:provider): a lower-case kind other than sip, sips and tel, and a
// name of letters, digits, '-', '_' and '.'.
func NamedDestination(to string) (kind, name string, ok bool) {
	kind, name, ok = strings.Cut(to, ":")
	if !ok || kind == "" || name == "" || kind == "sip" || kind == "sips" || kind == "tel" {
		return "", "", false
	}
	for _, c := range kind {
		if c < 'a' || c > 'z' {
			return "", "", false
		}
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", false
		}
	}
	return kind, name, true
}

type namedError struct{ route, kind, name string }

func (e *namedError) Error() string {
	return "route " + e.route + ": to " + e.kind + ":" + e.name + ": no " + e.kind + " named " + e.name + " is configured"
}

type routeError struct{ name, uri string }

func (e *routeError) Error() string {
	return "route " + e.name + ": " + e.uri + " is not a SIP URI (e.g. sip:gw.example.net:5060;transport=tcp)"
}

// Route implements Router.
func (t *Table) Route(ctx context.Context, m *sip.Message, src netip.AddrPort, proto transport.Proto) Decision {
	u, err := m.RequestURI()
	if err != nil {
		return Decision{Code: 416, Reason: "Unsupported URI Scheme"}
	}
	for i := range t.Routes {
		r := &t.Routes[i]
		if r.matches(&u) {
			t.hit(i)
			if r.named != nil {
				return r.named.Route(ctx, m, src, proto)
			}
			return t.toURI(ctx, &r.to, "route "+r.Name)
		}
	}
	n := len(t.Routes)
	if u.IsSIP() && (t.Domains.local(u.Host) || t.IsSelf != nil && isSelf(t.IsSelf, u)) {
		t.hit(n)
		if t.Location == nil {
			return Decision{Code: 480, Reason: "Temporarily Unavailable"}
		}
		return t.Location.Route(ctx, m, src, proto)
	}
	if t.OutboundProxy != "" {
		t.hit(n + 1)
		return t.toURI(ctx, &t.outbound, "outbound proxy")
	}
	if !u.IsSIP() || t.Resolver == nil {
		return Decision{Code: 404, Reason: "Not Found"}
	}
	t.hit(n + 2)
	ru := u // only this path keeps a pointer to it
	return t.toURI(ctx, &ru, "request-uri")
}

func (r *StaticRoute) matches(u *sip.URI) bool {
	if r.Domain != "" && !sip.EqualFold(u.Host, r.Domain) {
		return false
	}
	if r.Prefix != "" {
		user := u.User
		if u.Kind == sip.SchemeTel {
			user = u.Opaque
		}
		if !strings.HasPrefix(string(user), r.Prefix) {
			return false
		}
	}
	return true
}

// toURI resolves a next-hop URI into a failover list: each target is its
// own sequential group, tried only after the previous one timed out, failed
// at the transport or answered 503 (RFC 3263 §4.3).
func (t *Table) toURI(ctx context.Context, u *sip.URI, what string) Decision {
	if tg, ok := URITarget(u); ok {
		return Decision{Groups: [][]Target{{tg}}}
	}
	if t.Resolver == nil {
		return Decision{Code: 503, Reason: "No Resolver For " + what}
	}
	ctx, cancel := context.WithTimeout(ctx, t.ResolveTimeout)
	defer cancel()
	ts, err := t.Resolver.ResolveTargets(ctx, u)
	switch {
	case errors.Is(err, ErrWouldBlock):
		return Decision{Blocked: true}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrDNSUnavailable):
		// No usable DNS answer: the destination may exist, so the caller
		// is not told it does not (404) but to try again (RFC 3261 §21.5.4).
		return Decision{Code: 503, Reason: "DNS Unavailable For " + what}
	case err != nil || len(ts) == 0:
		return Decision{Code: 404, Reason: "Not Found"}
	}
	d := Decision{Failover: true}
	for _, tg := range ts {
		d.Groups = append(d.Groups, []Target{tg})
	}
	return d
}

// Domains says which Request-URI hosts are sipedge's own (registrar and
// location service). Empty means every domain: the zero-configuration
// behaviour.
type Domains struct{ names []string }

// NewDomains returns the set; nil or empty means "every domain".
func NewDomains(names []string) *Domains { return &Domains{names: names} }

func (d *Domains) local(host []byte) bool {
	if d == nil || len(d.names) == 0 {
		return true
	}
	for _, n := range d.names {
		if sip.EqualFold(host, n) {
			return true
		}
	}
	return false
}
