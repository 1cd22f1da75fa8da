// Package resolve locates SIP servers: it turns a sip: or sips: URI into the
// ordered list of (transport, address, port) targets to try, following
// RFC 3263 §4 (NAPTR → SRV → A/AAAA) with the SRV selection rules of
// RFC 2782, over a small TTL cache of DNS answers.
//
// The DNS client is github.com/miekg/dns talking to the configured recursive
// servers; no system resolver is involved, so behaviour is the same on every
// platform and every query is visible in Stats.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"sipedge/sip"
	"sipedge/transport"
)

// Errors returned by Resolve. They are wrapped with detail; test with
// errors.Is.
var (
	// ErrNotFound: the name does not exist, has no usable records, or its
	// SRV records say the service is "decidedly not available" (RFC 2782).
	ErrNotFound = errors.New("resolve: name not found")
	// ErrTimeout: no DNS server answered (every attempt timed out or the
	// server was unreachable).
	ErrTimeout = errors.New("resolve: DNS servers did not answer")
	// ErrServerFailure: a server answered, but with SERVFAIL, REFUSED or a
	// reply that could not be used.
	ErrServerFailure = errors.New("resolve: DNS server failure")
	// ErrUnsupported: the URI asks for a transport this proxy does not
	// support (not in Config.Prefer), or an impossible one (sips over UDP).
	ErrUnsupported = errors.New("resolve: unsupported transport")
	// ErrBadURI: not a sip/sips URI, or its host is not a usable name.
	ErrBadURI = errors.New("resolve: bad URI")
)

// Target is one place to send a request to.
type Target struct {
	Proto transport.Proto
	Addr  netip.AddrPort
	// Host is the SRV target or host name the address came from, without
	// the trailing dot. "" for IP literals.
	Host string
	// Domain is the name the URI asked for (its host, or its maddr, RFC
	// 3263 §4), lower case and without the trailing dot: the identity a
	// TLS server must prove, whatever SRV target it was found under
	// (RFC 5922 §4.1: a certificate names the SIP domain, and an SRV
	// answer, unsigned, cannot vouch for another name). "" for IP
	// literals.
	Domain string
}

func (t Target) String() string {
	if t.Host == "" {
		return t.Proto.String() + " " + t.Addr.String()
	}
	return t.Proto.String() + " " + t.Addr.String() + " (" + t.Host + ")"
}

// Config configures a Resolver. The zero value is usable: it reads
// /etc/resolv.conf and supports UDP, TCP and TLS.
type Config struct {
	Servers  []string          // "ip:port" DNS servers (a bare IP means port 53); empty = /etc/resolv.conf
	Timeout  time.Duration     // per query attempt (default 2s); one retry goes to the next server
	MaxCache int               // cached answers (default 10000), least recently used evicted first
	Prefer   []transport.Proto // transports this proxy supports, in preference order (default UDP, TCP, TLS)
	Logger   *slog.Logger      // default: discard
	Now      func() time.Time  // clock for cache expiry (default time.Now)
}

// Stats are counters since New.
type Stats struct {
	Queries      uint64 // DNS messages sent (UDP and TCP, retries included)
	CacheHits    uint64 // lookups answered from the cache (positive or negative)
	Coalesced    uint64 // lookups that waited for an identical query already in flight
	Deferred     uint64 // CacheOnly lookups that missed and left the query running
	Failures     uint64 // lookups that got no usable answer (timeout, server failure)
	Timeouts     uint64 // single query attempts that timed out or found no server
	TCPRetries   uint64 // truncated UDP answers asked again over TCP
	CacheEntries int    // answers currently cached
}

// Resolver resolves SIP URIs. It is safe for concurrent use.
type Resolver struct {
	servers []string
	timeout time.Duration
	prefer  []transport.Proto
	log     *slog.Logger
	now     func() time.Time
	intn    func(n int) int // random source for RFC 2782 weights

	cache *cache

	mu    sync.Mutex
	calls map[cacheKey]*call

	// cur is the index of the server tried first. It moves to the next
	// server when one times out so that a dead first server does not cost
	// a timeout on every query.
	cur atomic.Uint32

	nQueries, nHits, nCoalesced, nDeferred, nFailures, nTimeouts, nTCP atomic.Uint64
}

// resolvConf is where servers come from when Config.Servers is empty;
// a variable so tests can point it elsewhere.
var resolvConf = "/etc/resolv.conf"

// New checks cfg and returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{
		timeout: cfg.Timeout,
		log:     cfg.Logger,
		now:     cfg.Now,
		intn:    randIntN,
		calls:   make(map[cacheKey]*call),
	}
	if r.timeout <= 0 {
		r.timeout = 2 * time.Second
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	maxCache := cfg.MaxCache
	if maxCache <= 0 {
		maxCache = 10000
	}
	r.cache = newCache(maxCache)

	prefer := cfg.Prefer
	if len(prefer) == 0 {
		prefer = []transport.Proto{transport.UDP, transport.TCP, transport.TLS}
	}
	for _, p := range prefer {
		if p != transport.UDP && p != transport.TCP && p != transport.TLS {
			return nil, fmt.Errorf("resolve: Prefer: unknown transport %v", p)
		}
		if !containsProto(r.prefer, p) {
			r.prefer = append(r.prefer, p)
		}
	}

	servers := cfg.Servers
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("resolve: no Servers and %s unreadable: %w", resolvConf, err)
		}
		servers = cc.Servers // bare addresses: port 53 is added below
		if len(servers) == 0 {
			return nil, fmt.Errorf("resolve: no Servers and no nameserver in %s", resolvConf)
		}
	}
	for _, s := range servers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			a, err2 := netip.ParseAddr(strings.Trim(s, "[]"))
			if err2 != nil {
				return nil, fmt.Errorf("resolve: bad DNS server %q: want ip or ip:port", s)
			}
			ap = netip.AddrPortFrom(a, 53)
		}
		r.servers = append(r.servers, ap.String())
	}
	return r, nil
}

// Stats returns a snapshot of the counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		Queries:      r.nQueries.Load(),
		CacheHits:    r.nHits.Load(),
		Coalesced:    r.nCoalesced.Load(),
		Deferred:     r.nDeferred.Load(),
		Failures:     r.nFailures.Load(),
		Timeouts:     r.nTimeouts.Load(),
		TCPRetries:   r.nTCP.Load(),
		CacheEntries: r.cache.len(),
	}
}

// Resolve returns the ordered list of targets to try for a SIP or SIPS URI
// (RFC 3263 §4). The caller tries them in order and moves to the next on
// timeout, transport error or 503 (§4.3). The list is never empty when the
// error is nil.
func (r *Resolver) Resolve(ctx context.Context, u *sip.URI) ([]Target, error) {
	if u == nil || !u.IsSIP() {
		return nil, fmt.Errorf("%w: not a sip or sips URI", ErrBadURI)
	}
	secure := u.Kind == sip.SchemeSIPS

	// RFC 3263 §4: "If the URI contains an maddr parameter with a value,
	// TARGET is the maddr value, else TARGET is the host value."
	host := string(u.Host)
	if m, ok := u.Param("maddr"); ok && len(m) > 0 {
		host = string(sip.Unescape(nil, m))
	}
	proto, explicit, err := r.uriTransport(u, secure)
	if err != nil {
		return nil, err
	}
	if !explicit {
		// RFC 3263 §4.1: a numeric TARGET or an explicit port without a
		// transport means UDP for SIP and TCP (that is TLS) for SIPS.
		if proto, err = r.defaultProto(secure); err != nil {
			return nil, err
		}
	}

	// §4.1/§4.2: a numeric IP address needs no DNS at all.
	if addr, ok := ipLiteral(host); ok {
		port := uint16(u.Port)
		if port == 0 {
			port = defaultPort(proto)
		}
		return []Target{{Proto: proto, Addr: netip.AddrPortFrom(addr, port)}}, nil
	}

	name, err := fqdn(host)
	if err != nil {
		return nil, err
	}
	ts, err := r.resolveName(ctx, u, name, proto, explicit, secure)
	domain := trimDot(strings.ToLower(name))
	for i := range ts {
		ts[i].Domain = domain
	}
	return ts, err
}

// resolveName is Resolve for a host name (FQDN name): the port, transport,
// NAPTR, SRV and A/AAAA steps.
func (r *Resolver) resolveName(ctx context.Context, u *sip.URI, name string, proto transport.Proto, explicit, secure bool) ([]Target, error) {
	// §4.2: a name with an explicit port is looked up with A/AAAA only;
	// NAPTR and SRV would override a port the URI chose.
	if u.Port != 0 {
		return r.addrTargets(ctx, name, proto, uint16(u.Port))
	}

	// §4.1/§4.2: the transport is known but not the port: SRV for that
	// transport, falling back to A/AAAA on the default port.
	if explicit {
		ts, found, err := r.srvTargets(ctx, srvName(proto, name), proto)
		if err != nil || len(ts) > 0 {
			return ts, err
		}
		if found {
			return nil, fmt.Errorf("%w: %s: no SRV target usable for %v", ErrNotFound, trimDot(name), proto)
		}
		return r.addrTargets(ctx, name, proto, defaultPort(proto))
	}

	// §4.1: neither transport nor port: NAPTR first.
	ts, done, err := r.naptrTargets(ctx, name, secure)
	if err != nil || done {
		return ts, err
	}

	// §4.1: "If no NAPTR records are found, the client constructs SRV
	// queries for those transport protocols it supports, and does a query
	// for each."
	ts, found, err := r.srvFallback(ctx, name, secure)
	if err != nil || len(ts) > 0 {
		return ts, err
	}
	if found {
		return nil, fmt.Errorf("%w: %s: every SRV record says the service is not available", ErrNotFound, trimDot(name))
	}

	// §4.1: "If no SRV records are found, the client SHOULD use TCP for a
	// SIPS URI, and UDP for a SIP URI" and §4.2: A/AAAA on the default port.
	return r.addrTargets(ctx, name, proto, defaultPort(proto))
}

// uriTransport reads the transport parameter. explicit reports whether the
// URI had one.
func (r *Resolver) uriTransport(u *sip.URI, secure bool) (p transport.Proto, explicit bool, err error) {
	v, ok := u.Param("transport")
	if !ok {
		return 0, false, nil
	}
	s := string(sip.Unescape(nil, v))
	p, err = transport.ParseProto(s)
	if err != nil {
		return 0, true, fmt.Errorf("%w: transport=%s", ErrUnsupported, s)
	}
	if secure {
		switch p {
		case transport.UDP:
			// RFC 3261 §26.2.2: SIPS needs TLS over a reliable transport.
			return 0, true, fmt.Errorf("%w: sips URI with transport=udp", ErrUnsupported)
		case transport.TCP:
			// RFC 3263 §4.1: for SIPS, transport=tcp means TLS over TCP.
			p = transport.TLS
		}
	}
	if !containsProto(r.prefer, p) {
		return 0, true, fmt.Errorf("%w: transport=%s not enabled", ErrUnsupported, s)
	}
	return p, true, nil
}

// defaultProto is the transport when the URI names none and DNS gives none:
// UDP for SIP, TLS for SIPS (RFC 3263 §4.1). If UDP is disabled, a SIP URI
// goes over the next supported transport instead of failing.
func (r *Resolver) defaultProto(secure bool) (transport.Proto, error) {
	if secure {
		if containsProto(r.prefer, transport.TLS) {
			return transport.TLS, nil
		}
		return 0, fmt.Errorf("%w: sips URI but TLS not enabled", ErrUnsupported)
	}
	for _, p := range []transport.Proto{transport.UDP, transport.TCP, transport.TLS} {
		if containsProto(r.prefer, p) {
			return p, nil
		}
	}
	return 0, ErrUnsupported
}

// naptrTargets does the NAPTR step of RFC 3263 §4.1. done reports that the
// NAPTR records decided the answer, so the SRV fallback must not run.
func (r *Resolver) naptrTargets(ctx context.Context, name string, secure bool) (ts []Target, done bool, err error) {
	rrs, _, err := r.lookup(ctx, name, dns.TypeNAPTR)
	if err != nil {
		return nil, true, err
	}
	var recs []*dns.NAPTR
	for _, rr := range rrs {
		if n, ok := rr.(*dns.NAPTR); ok {
			recs = append(recs, n)
		}
	}
	choices := usableNAPTR(recs, secure, r.prefer)
	if len(choices) == 0 {
		if len(recs) > 0 {
			r.log.Debug("resolve: no usable NAPTR, trying SRV", "name", name, "records", len(recs))
		}
		return nil, false, nil
	}
	// RFC 3403 §4.1: once a record of some order value is usable, records
	// with a higher order are not considered. Groups of equal order are
	// therefore tried one after another until one yields targets; inside a
	// group, preference decides (usableNAPTR sorted them).
	var firstErr error
	found := false
	for i := 0; i < len(choices); {
		j := i
		for j < len(choices) && choices[j].order == choices[i].order {
			j++
		}
		var out []Target
		for _, c := range choices[i:j] {
			t, f, err := r.srvTargets(ctx, c.replacement, c.proto)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			found = found || f
			out = append(out, t...)
		}
		if len(out) > 0 {
			return dedupe(out), true, nil
		}
		i = j
	}
	if firstErr != nil {
		return nil, true, firstErr
	}
	if found {
		return nil, true, fmt.Errorf("%w: %s: NAPTR/SRV records say the service is not available", ErrNotFound, trimDot(name))
	}
	// The NAPTRs point at SRV names that do not exist: a broken zone. The
	// SRV and A fallbacks of §4.1 may still reach the server.
	r.log.Debug("resolve: NAPTR replacements have no SRV records", "name", name)
	return nil, false, nil
}

// srvFallback queries the SRV names of every supported transport (RFC 3263
// §4.1: _sips._tcp, _sip._tcp, _sip._udp; only _sips._tcp for a SIPS URI)
// in parallel and concatenates what exists in Prefer order.
func (r *Resolver) srvFallback(ctx context.Context, name string, secure bool) ([]Target, bool, error) {
	var protos []transport.Proto
	for _, p := range r.prefer {
		if !secure || p == transport.TLS {
			protos = append(protos, p)
		}
	}
	type res struct {
		ts    []Target
		found bool
		err   error
	}
	results := make([]res, len(protos))
	var wg sync.WaitGroup
	for i, p := range protos {
		wg.Go(func() {
			ts, f, err := r.srvTargets(ctx, srvName(p, name), p)
			results[i] = res{ts, f, err}
		})
	}
	wg.Wait()
	var out []Target
	var firstErr error
	found := false
	for _, x := range results {
		out = append(out, x.ts...)
		found = found || x.found
		if x.err != nil && firstErr == nil {
			firstErr = x.err
		}
	}
	if len(out) > 0 {
		return dedupe(out), true, nil
	}
	// A failed query must not be mistaken for "no SRV": falling back to
	// A/AAAA would then pick the wrong port or transport.
	return nil, found, firstErr
}

// srvTargets looks up one SRV name and expands it into targets: SRV records
// in RFC 2782 order, each target's A then AAAA addresses. found reports that
// SRV records exist, even if they yield no target (target "." or no
// address).
func (r *Resolver) srvTargets(ctx context.Context, name string, proto transport.Proto) (ts []Target, found bool, err error) {
	rrs, extra, err := r.lookup(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, false, err
	}
	var recs []*dns.SRV
	for _, rr := range rrs {
		s, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		found = true
		// RFC 2782: 'A Target of "." means that the service is decidedly
		// not available at this domain.'
		if s.Target == "." || s.Target == "" || s.Port == 0 {
			continue
		}
		recs = append(recs, s)
	}
	if len(recs) == 0 {
		return nil, found, nil
	}
	recs = orderSRV(recs, r.intn)

	// Expand targets in parallel (bounded), keeping SRV order.
	addrs := make([][]netip.Addr, len(recs))
	errs := make([]error, len(recs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, s := range recs {
		// RFC 2782 / RFC 3263 §4.2: address records in the additional
		// section are used when present, saving a query per target.
		if a := additionalAddrs(extra, s.Target); len(a) > 0 {
			addrs[i] = a
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			addrs[i], errs[i] = r.lookupAddrs(ctx, dns.Fqdn(s.Target))
		})
	}
	wg.Wait()
	for i, s := range recs {
		if errs[i] != nil {
			if err == nil && !errors.Is(errs[i], ErrNotFound) {
				err = errs[i]
			}
			r.log.Debug("resolve: SRV target has no address", "srv", name, "target", s.Target, "err", errs[i])
			continue
		}
		host := trimDot(strings.ToLower(s.Target))
		for _, a := range addrs[i] {
			ts = append(ts, Target{Proto: proto, Addr: netip.AddrPortFrom(a, s.Port), Host: host})
		}
	}
	if len(ts) > 0 {
		err = nil // some targets are usable; the failed ones are only logged
	}
	return ts, true, err
}

// addrTargets is the A/AAAA step of RFC 3263 §4.2: every address of name on
// one port, IPv4 first.
func (r *Resolver) addrTargets(ctx context.Context, name string, proto transport.Proto, port uint16) ([]Target, error) {
	addrs, err := r.lookupAddrs(ctx, name)
	if err != nil {
		return nil, err
	}
	host := trimDot(name)
	ts := make([]Target, 0, len(addrs))
	for _, a := range addrs {
		ts = append(ts, Target{Proto: proto, Addr: netip.AddrPortFrom(a, port), Host: host})
	}
	return ts, nil
}

// lookupAddrs queries A and AAAA in parallel and returns the A addresses
// then the AAAA ones. One family failing is tolerated if the other answers.
func (r *Resolver) lookupAddrs(ctx context.Context, name string) ([]netip.Addr, error) {
	var (
		v4, v6 []dns.RR
		e4, e6 error
		wg     sync.WaitGroup
	)
	wg.Go(func() { v4, _, e4 = r.lookup(ctx, name, dns.TypeA) })
	wg.Go(func() { v6, _, e6 = r.lookup(ctx, name, dns.TypeAAAA) })
	wg.Wait()
	// Under CacheOnly, one family answered from the cache and the other
	// still on its way must not pass for the whole answer: the caller
	// asks again off the reader and gets both.
	if errors.Is(e4, ErrNotCached) || errors.Is(e6, ErrNotCached) {
		return nil, ErrNotCached
	}
	out := appendAddrs(nil, v4)
	out = appendAddrs(out, v6)
	if len(out) > 0 {
		return dedupeAddrs(out), nil
	}
	if e4 != nil {
		return nil, e4
	}
	if e6 != nil {
		return nil, e6
	}
	return nil, fmt.Errorf("%w: %s has no A or AAAA record", ErrNotFound, trimDot(name))
}

func appendAddrs(out []netip.Addr, rrs []dns.RR) []netip.Addr {
	for _, rr := range rrs {
		if a, ok := rrAddr(rr); ok {
			out = append(out, a)
		}
	}
	return out
}

// rrAddr extracts the address of an A or AAAA record; false for anything
// malformed.
func rrAddr(rr dns.RR) (netip.Addr, bool) {
	switch v := rr.(type) {
	case *dns.A:
		if ip4 := v.A.To4(); ip4 != nil {
			return netip.AddrFrom4([4]byte(ip4)), true
		}
	case *dns.AAAA:
		if len(v.AAAA) == 16 {
			return netip.AddrFrom16([16]byte(v.AAAA)), true
		}
	}
	return netip.Addr{}, false
}

// additionalAddrs returns the A then AAAA addresses for target found in an
// SRV answer's additional section.
func additionalAddrs(extra []dns.RR, target string) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, rr := range extra {
		if !strings.EqualFold(rr.Header().Name, dns.Fqdn(target)) {
			continue
		}
		if a, ok := rrAddr(rr); ok {
			if a.Is4() {
				v4 = append(v4, a)
			} else {
				v6 = append(v6, a)
			}
		}
	}
	return dedupeAddrs(append(v4, v6...))
}

func dedupeAddrs(in []netip.Addr) []netip.Addr {
	out := in[:0]
	for i, a := range in {
		dup := false
		for _, b := range in[:i] {
			if a == b {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}

// dedupe drops repeated (proto, address) pairs, keeping the first: two
// NAPTRs or SRV records may lead to the same place, and trying it twice
// after a failure gains nothing (RFC 3263 §4.3).
func dedupe(ts []Target) []Target {
	type k struct {
		p transport.Proto
		a netip.AddrPort
	}
	seen := make(map[k]bool, len(ts))
	out := ts[:0]
	for _, t := range ts {
		if !seen[k{t.Proto, t.Addr}] {
			seen[k{t.Proto, t.Addr}] = true
			out = append(out, t)
		}
	}
	return out
}

// srvName is the SRV owner name for a transport (RFC 3263 §4.1).
func srvName(p transport.Proto, name string) string {
	switch p {
	case transport.TCP:
		return "_sip._tcp." + name
	case transport.TLS:
		return "_sips._tcp." + name
	}
	return "_sip._udp." + name
}

// defaultPort is 5060, or 5061 for TLS (RFC 3261 §19.1.2).
func defaultPort(p transport.Proto) uint16 {
	if p == transport.TLS {
		return 5061
	}
	return 5060
}

// ipLiteral recognises an IPv4 address or a bracketed IPv6 reference (a
// bare IPv6 address is accepted too, as maddr values are written both ways).
func ipLiteral(host string) (netip.Addr, bool) {
	h := host
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	a, err := netip.ParseAddr(h)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// fqdn normalises a host name for DNS: lower case, absolute.
func fqdn(host string) (string, error) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "" || strings.ContainsAny(h, "[]:") {
		return "", fmt.Errorf("%w: host %q", ErrBadURI, host)
	}
	if _, ok := dns.IsDomainName(h); !ok {
		return "", fmt.Errorf("%w: host %q is not a domain name", ErrBadURI, host)
	}
	return h + ".", nil
}

func trimDot(s string) string { return strings.TrimSuffix(s, ".") }

func containsProto(ps []transport.Proto, p transport.Proto) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}
