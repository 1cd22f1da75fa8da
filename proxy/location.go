package proxy

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"time"

	"sipedge/registrar"
	"sipedge/sip"
	"sipedge/transport"
)

// Locator is the location service as routing reads it: the current
// bindings of an address-of-record (RFC 3261 §10, §16.5).
type Locator interface {
	Lookup(aorKey string) []registrar.Binding
}

// Location is the whole location service the core and its features use:
// save (a REGISTER, §10.3), look up, remove a binding, range over the NATed
// UDP bindings (keep-alives). The registrar implements it; a shared
// (Redis) store or a survival mode may wrap or replace it. Passive
// bindings (phones registered elsewhere through sipedge) are the gateway
// feature's (gateway.Feature.Range).
type Location interface {
	Locator
	Register(req registrar.Request) registrar.Result
	Remove(aor, uri string) bool
	RangeNAT(fn func(aor, uri string, src netip.AddrPort, updated time.Time))
}

var _ Location = (*registrar.Registrar)(nil)

// LocationRouter routes requests for local domains through the location
// service (RFC 3261 §16.5): each current binding of the Request-URI's AoR
// is a target; bindings with the same q are tried in parallel, lower q
// values only after every higher one failed (§16.6, sequential search).
type LocationRouter struct {
	Registrar Locator
	Domains   *Domains
	// IsSelf: see Table.IsSelf.
	IsSelf func(u *sip.URI) bool
	// Flows tells whether a registration's connection is still open;
	// nil: never reuse.
	Flows interface {
		HasConn(transport.Proto, netip.AddrPort) bool
	}
	// Owners reaches the bindings whose flow another instance of a
	// cluster holds (features/peerflow); nil on a single instance.
	Owners Owners
}

// Owners routes a binding through the instance that owns its flow
// (registrar.Binding.Owner): a NATed phone's mapping lets in only the
// socket it registered to, a TCP phone's connection ends at one instance.
// Via returns the target that goes through that instance, or false when
// the binding is this instance's, needs no flow, or its owner is gone (the
// binding is then reached directly, and taken over at its next REGISTER).
type Owners interface {
	Via(b *registrar.Binding) (Target, bool)
}

// Route implements Router.
func (lr *LocationRouter) Route(_ context.Context, m *sip.Message, src netip.AddrPort, proto transport.Proto) Decision {
	u, err := m.RequestURI()
	if err != nil || !u.IsSIP() {
		return Decision{Code: 404, Reason: "Not Found"}
	}
	if !lr.Domains.local(u.Host) && (lr.IsSelf == nil || !isSelf(lr.IsSelf, u)) {
		// Routing to other domains (outbound proxy, static routes, RFC
		// 3263) is not configured: refuse rather than relay.
		return Decision{Code: 403, Reason: "Relaying Denied"}
	}
	key, ok := registrar.AORKey(&u)
	if !ok {
		return Decision{Code: 404, Reason: "Not Found"}
	}
	bs := lr.Registrar.Lookup(key)
	if len(bs) == 0 {
		// The user may exist but has no current binding.
		return Decision{Code: 480, Reason: "Temporarily Unavailable"}
	}
	slices.SortStableFunc(bs, func(a, b registrar.Binding) int { return cmp.Compare(b.Q, a.Q) })
	var groups [][]Target
	for i := range bs {
		b := &bs[i]
		t, ok := lr.bindingTarget(b)
		if !ok {
			continue
		}
		if i == 0 || bs[i-1].Q != b.Q || len(groups) == 0 {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], t)
	}
	if len(groups) == 0 {
		return Decision{Code: 480, Reason: "Temporarily Unavailable"}
	}
	return Decision{Groups: groups}
}

// isSelf asks f about a copy of u: only a call of f (a URI naming
// neither a local domain nor sipedge's address) moves the copy to the
// heap, not every request through the caller.
func isSelf(f func(*sip.URI) bool, u sip.URI) bool { return f(&u) }

// bindingTarget turns a binding into a target: the Request-URI becomes the
// contact (§16.5), Path becomes Route (RFC 3327 §5.2). Over TCP/TLS the
// request goes back on the connection the phone registered over while it is
// open (RFC 5626 §5.3; the only way through a NAT). A phone that registered
// over UDP from another address than its Contact names is behind NAT: the
// request goes where its REGISTER came from, through the NAT's mapping.
// Otherwise it goes to the contact address.
func (lr *LocationRouter) bindingTarget(b *registrar.Binding) (Target, bool) {
	if b.Owner != "" && lr.Owners != nil {
		if t, ok := lr.Owners.Via(b); ok {
			return t, true
		}
	}
	uri := []byte(b.URI) // one copy: the parsed URI and the target's view of it
	u, err := sip.ParseURI(uri)
	if err != nil {
		return Target{}, false
	}
	t, ok := URITarget(&u)
	switch {
	case b.Proto.Reliable() && b.Source.IsValid() && lr.Flows != nil && lr.Flows.HasConn(b.Proto, b.Source):
		t, ok = Target{Proto: b.Proto, Addr: b.Source}, true
	case b.NAT && b.Proto == transport.UDP && len(b.Path) == 0 && b.Source.IsValid() && (!ok || t.Proto == transport.UDP):
		t, ok = Target{Proto: transport.UDP, Addr: b.Source}, true
	}
	if !ok {
		if !b.Source.IsValid() {
			return Target{}, false
		}
		t = Target{Proto: b.Proto, Addr: b.Source}
	}
	t.URI = uri
	t.Q = b.Q
	t.NAT = b.NAT && len(b.Path) == 0 // with Path, an edge proxy stands in between
	for _, p := range b.Path {
		t.Path = append(t.Path, []byte(p))
	}
	return t, true
}
