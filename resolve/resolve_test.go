package resolve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// zone is the DNS data most tests share (dnsmasq option syntax).
//
//   - example.test: NAPTR → SRV → A/AAAA for every transport, plus records
//     that must be ignored (SCTP, an ENUM-style "u" record) at a better order.
//   - srv.test: no NAPTR; SRV for UDP and TCP but not TLS; an A record that
//     must not be used while SRV exists.
//   - plain.test: A and AAAA only.
//   - gone.test: SRV target "." (service not available) and an A record.
//   - alias.test → alias2.test → plain.test: CNAME chain.
var zone = []string{
	"--naptr-record=example.test,5,10,s,SIP+D2S,,_sip._sctp.example.test",
	"--naptr-record=example.test,5,10,u,E2U+sip,!^.*$!sip:info@example.test!",
	"--naptr-record=example.test,10,20,s,SIP+D2T,,_sip._tcp.example.test",
	"--naptr-record=example.test,10,10,s,SIPS+D2T,,_sips._tcp.example.test",
	"--naptr-record=example.test,20,10,s,SIP+D2U,,_sip._udp.example.test",
	"--srv-host=_sip._sctp.example.test,sctp.example.test,5060,0,10",
	"--srv-host=_sips._tcp.example.test,tls.example.test,5061,0,10",
	"--srv-host=_sip._tcp.example.test,tcp.example.test,5060,0,10",
	"--srv-host=_sip._udp.example.test,udp.example.test,5060,0,10",
	"--host-record=sctp.example.test,192.0.2.13",
	"--host-record=tls.example.test,192.0.2.10,2001:db8::10",
	"--host-record=tcp.example.test,192.0.2.11",
	"--host-record=udp.example.test,192.0.2.12",

	"--srv-host=_sip._udp.srv.test,u1.srv.test,5070,0,10",
	"--srv-host=_sip._tcp.srv.test,t1.srv.test,5071,0,10",
	"--host-record=u1.srv.test,192.0.2.20",
	"--host-record=t1.srv.test,192.0.2.21",
	"--host-record=srv.test,192.0.2.29",

	"--host-record=plain.test,192.0.2.30,2001:db8::30",

	"--srv-host=_sip._udp.gone.test",
	"--host-record=gone.test,192.0.2.40",

	"--cname=alias2.test,plain.test",
	"--cname=alias.test,alias2.test",
}

func mustURI(t *testing.T, s string) *sip.URI {
	t.Helper()
	u, err := sip.ParseURI([]byte(s))
	if err != nil {
		t.Fatalf("ParseURI(%q): %v", s, err)
	}
	return &u
}

func newTestResolver(t *testing.T, cfg Config) *Resolver {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func render(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}

type resolveCase struct {
	uri    string
	prefer []transport.Proto
	want   []string // Target.String() values, in order
	err    error    // errors.Is target when an error is expected
}

// runCases resolves each case with a fresh resolver (so caches do not
// interfere) against server.
func runCases(t *testing.T, servers []string, cases []resolveCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.uri+fmt.Sprint(c.prefer), func(t *testing.T) {
			r := newTestResolver(t, Config{Servers: servers, Prefer: c.prefer})
			ts, err := r.Resolve(context.Background(), mustURI(t, c.uri))
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v (targets %v), want %v", err, render(ts), c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got := render(ts); !slices.Equal(got, c.want) {
				t.Fatalf("targets:\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

var (
	udpOnly = []transport.Proto{transport.UDP}
	noTLS   = []transport.Proto{transport.UDP, transport.TCP}
	tlsTCP  = []transport.Proto{transport.TLS, transport.TCP, transport.UDP}
)

// TestIPLiteral: RFC 3263 §4.1/§4.2 numeric hosts, no DNS at all (the only
// server configured does not exist, and no query may be sent).
func TestIPLiteral(t *testing.T) {
	t.Parallel()
	cases := []resolveCase{
		{uri: "sip:192.0.2.1", want: []string{"UDP 192.0.2.1:5060"}},
		{uri: "sip:192.0.2.1:5070", want: []string{"UDP 192.0.2.1:5070"}},
		{uri: "sip:alice@192.0.2.1;transport=tcp", want: []string{"TCP 192.0.2.1:5060"}},
		{uri: "sip:192.0.2.1;transport=TLS", want: []string{"TLS 192.0.2.1:5061"}},
		{uri: "sip:[2001:db8::1]", want: []string{"UDP [2001:db8::1]:5060"}},
		{uri: "sip:[2001:db8::1]:5062;transport=tcp", want: []string{"TCP [2001:db8::1]:5062"}},
		{uri: "sips:192.0.2.1", want: []string{"TLS 192.0.2.1:5061"}},
		{uri: "sips:[2001:db8::1];transport=tcp", want: []string{"TLS [2001:db8::1]:5061"}},
		{uri: "sips:192.0.2.1:5071", want: []string{"TLS 192.0.2.1:5071"}},
		{uri: "sip:192.0.2.1", prefer: []transport.Proto{transport.TCP}, want: []string{"TCP 192.0.2.1:5060"}},
		{uri: "sip:192.0.2.1;transport=sctp", err: ErrUnsupported},
		{uri: "sip:192.0.2.1;transport=tls", prefer: noTLS, err: ErrUnsupported},
		{uri: "sips:192.0.2.1;transport=udp", err: ErrUnsupported},
		{uri: "sips:192.0.2.1", prefer: noTLS, err: ErrUnsupported},
		// maddr overrides the host (RFC 3263 §4): no lookup of the name.
		{uri: "sip:pbx.nowhere.test:5090;maddr=192.0.2.99;transport=tcp", want: []string{"TCP 192.0.2.99:5090"}},
		{uri: "sip:pbx.nowhere.test;maddr=[2001:db8::5]", want: []string{"UDP [2001:db8::5]:5060"}},
		{uri: "tel:+15551234", err: ErrBadURI},
	}
	// 192.0.2.0/24 is TEST-NET-1; nothing is ever sent there, which the
	// Queries counter below checks.
	for _, c := range cases {
		t.Run(c.uri+fmt.Sprint(c.prefer), func(t *testing.T) {
			r := newTestResolver(t, Config{Servers: []string{"127.0.0.1:9"}, Prefer: c.prefer})
			ts, err := r.Resolve(context.Background(), mustURI(t, c.uri))
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
			} else if err != nil {
				t.Fatalf("err = %v", err)
			} else if got := render(ts); !slices.Equal(got, c.want) {
				t.Fatalf("got %q want %q", got, c.want)
			}
			if ts != nil && ts[0].Host != "" {
				t.Errorf("Host = %q for an IP literal", ts[0].Host)
			}
			if q := r.Stats().Queries; q != 0 {
				t.Errorf("%d DNS queries for an IP literal", q)
			}
		})
	}
}

// TestNameWithPort: §4.2, a port in the URI means A/AAAA only.
func TestNameWithPort(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	runCases(t, []string{d.addr}, []resolveCase{
		{uri: "sip:tcp.example.test:5080", want: []string{"UDP 192.0.2.11:5080 (tcp.example.test)"}},
		{uri: "sip:TLS.Example.Test.:5082;transport=tcp", want: []string{
			"TCP 192.0.2.10:5082 (tls.example.test)", "TCP [2001:db8::10]:5082 (tls.example.test)"}},
		{uri: "sips:tls.example.test:5081", want: []string{
			"TLS 192.0.2.10:5081 (tls.example.test)", "TLS [2001:db8::10]:5081 (tls.example.test)"}},
		// example.test has NAPTR and SRV but no address: with a port,
		// they must not be used.
		{uri: "sip:example.test:5080", err: ErrNotFound},
	})
	r := newTestResolver(t, Config{Servers: []string{d.addr}})
	if _, err := r.Resolve(context.Background(), mustURI(t, "sip:plain.test:5060")); err != nil {
		t.Fatal(err)
	}
	if q := r.Stats().Queries; q != 2 {
		t.Errorf("Queries = %d, want 2 (A and AAAA only)", q)
	}
}

// TestTransportParamSRV: §4.1/§4.2, transport given, no port: SRV for that
// transport, else A/AAAA on the default port.
func TestTransportParamSRV(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	runCases(t, []string{d.addr}, []resolveCase{
		{uri: "sip:example.test;transport=tcp", want: []string{"TCP 192.0.2.11:5060 (tcp.example.test)"}},
		{uri: "sip:example.test;transport=UDP", want: []string{"UDP 192.0.2.12:5060 (udp.example.test)"}},
		{uri: "sip:example.test;transport=tls", want: []string{
			"TLS 192.0.2.10:5061 (tls.example.test)", "TLS [2001:db8::10]:5061 (tls.example.test)"}},
		{uri: "sips:example.test;transport=tcp", want: []string{
			"TLS 192.0.2.10:5061 (tls.example.test)", "TLS [2001:db8::10]:5061 (tls.example.test)"}},
		// No SRV for the transport: A/AAAA, default port.
		{uri: "sip:plain.test;transport=tcp", want: []string{
			"TCP 192.0.2.30:5060 (plain.test)", "TCP [2001:db8::30]:5060 (plain.test)"}},
		{uri: "sips:plain.test;transport=tcp", want: []string{
			"TLS 192.0.2.30:5061 (plain.test)", "TLS [2001:db8::30]:5061 (plain.test)"}},
		// SRV target "." (RFC 2782): not available, no A fallback.
		{uri: "sip:gone.test;transport=udp", err: ErrNotFound},
		{uri: "sip:nothing.test;transport=udp", err: ErrNotFound},
	})
}

// TestNAPTRChain: §4.1 full NAPTR → SRV → A/AAAA.
func TestNAPTRChain(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	tls := []string{"TLS 192.0.2.10:5061 (tls.example.test)", "TLS [2001:db8::10]:5061 (tls.example.test)"}
	tcp := "TCP 192.0.2.11:5060 (tcp.example.test)"
	runCases(t, []string{d.addr}, []resolveCase{
		// Order 5 is SCTP and ENUM: discarded. Order 10: SIPS+D2T (pref
		// 10) before SIP+D2T (pref 20). Order 20 (UDP) is never reached.
		{uri: "sip:example.test", want: append(slices.Clone(tls), tcp)},
		{uri: "sip:Example.Test.", want: append(slices.Clone(tls), tcp)},
		// A SIPS URI keeps only SIPS+D2T.
		{uri: "sips:example.test", want: tls},
		// Without TLS support, SIP+D2T is the usable order-10 record.
		{uri: "sip:example.test", prefer: noTLS, want: []string{tcp}},
		// UDP only: order 10 has nothing usable, order 20 does.
		{uri: "sip:example.test", prefer: udpOnly, want: []string{"UDP 192.0.2.12:5060 (udp.example.test)"}},
		{uri: "sips:example.test", prefer: noTLS, err: ErrUnsupported},
	})

	// The SRV answers carry the targets' addresses in the additional
	// section, so no A/AAAA query is needed: NAPTR + two SRV.
	r := newTestResolver(t, Config{Servers: []string{d.addr}})
	if _, err := r.Resolve(context.Background(), mustURI(t, "sip:example.test")); err != nil {
		t.Fatal(err)
	}
	if q := r.Stats().Queries; q != 3 {
		t.Errorf("Queries = %d, want 3 (NAPTR, 2×SRV; addresses from additional section)", q)
	}
}

// TestSRVFallback: §4.1, no NAPTR: SRV for each supported transport, in
// Prefer order; none: A/AAAA with UDP (TLS for sips) on the default port.
func TestSRVFallback(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	udp := "UDP 192.0.2.20:5070 (u1.srv.test)"
	tcp := "TCP 192.0.2.21:5071 (t1.srv.test)"
	runCases(t, []string{d.addr}, []resolveCase{
		{uri: "sip:srv.test", want: []string{udp, tcp}},
		{uri: "sip:srv.test", prefer: tlsTCP, want: []string{tcp, udp}},
		{uri: "sip:srv.test", prefer: udpOnly, want: []string{udp}},
		// No _sips._tcp SRV: A record, TLS, 5061.
		{uri: "sips:srv.test", want: []string{"TLS 192.0.2.29:5061 (srv.test)"}},
		// No SRV at all.
		{uri: "sip:plain.test", want: []string{"UDP 192.0.2.30:5060 (plain.test)", "UDP [2001:db8::30]:5060 (plain.test)"}},
		{uri: "sips:plain.test", want: []string{"TLS 192.0.2.30:5061 (plain.test)", "TLS [2001:db8::30]:5061 (plain.test)"}},
		{uri: "sip:plain.test", prefer: []transport.Proto{transport.TCP}, want: []string{
			"TCP 192.0.2.30:5060 (plain.test)", "TCP [2001:db8::30]:5060 (plain.test)"}},
		// Only SRV "." exists: decidedly not available, no A fallback.
		{uri: "sip:gone.test", err: ErrNotFound},
		{uri: "sip:missing.test", err: ErrNotFound},
	})
}

// TestMaddr: RFC 3263 §4, maddr replaces the host as TARGET.
func TestMaddr(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	runCases(t, []string{d.addr}, []resolveCase{
		{uri: "sip:bob@missing.test;maddr=plain.test", want: []string{
			"UDP 192.0.2.30:5060 (plain.test)", "UDP [2001:db8::30]:5060 (plain.test)"}},
		{uri: "sip:bob@missing.test;transport=tcp;maddr=example.test", want: []string{"TCP 192.0.2.11:5060 (tcp.example.test)"}},
		{uri: "sip:plain.test;maddr=missing.test", err: ErrNotFound},
	})
}

// TestCNAME: chains are followed; Host stays the name asked for.
func TestCNAME(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	runCases(t, []string{d.addr}, []resolveCase{
		{uri: "sip:alias.test:5060", want: []string{
			"UDP 192.0.2.30:5060 (alias.test)", "UDP [2001:db8::30]:5060 (alias.test)"}},
		{uri: "sip:alias2.test;transport=tcp", want: []string{
			"TCP 192.0.2.30:5060 (alias2.test)", "TCP [2001:db8::30]:5060 (alias2.test)"}},
	})
}

// TestSRVPriorityWeights: RFC 2782 ordering over many calls answered from
// the cache: priority 10 (weights 80/20) before priority 20.
func TestSRVPriorityWeights(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t,
		"--srv-host=_sip._udp.wt.test,backup.wt.test,5060,20,0",
		"--srv-host=_sip._udp.wt.test,a.wt.test,5060,10,80",
		"--srv-host=_sip._udp.wt.test,b.wt.test,5060,10,20",
		"--host-record=a.wt.test,192.0.2.51",
		"--host-record=b.wt.test,192.0.2.52",
		"--host-record=backup.wt.test,192.0.2.53",
	)
	clk := newFakeClock()
	r := newTestResolver(t, Config{Servers: []string{d.addr}, Now: clk.Now})
	u := mustURI(t, "sip:wt.test;transport=udp")
	const n = 2000
	firstA := 0
	for i := 0; i < n; i++ {
		ts, err := r.Resolve(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 3 || ts[2].Host != "backup.wt.test" {
			t.Fatalf("targets %q: want 3 with backup.wt.test last", render(ts))
		}
		if ts[0].Host == "a.wt.test" {
			firstA++
		}
	}
	frac := float64(firstA) / n
	t.Logf("weight 80 first in %.1f%% of %d calls", 100*frac, n)
	if frac < 0.70 || frac > 0.90 {
		t.Errorf("weight-80 target first in %.1f%% of calls, want 70–90%%", 100*frac)
	}
	st := r.Stats()
	if st.Queries != 1 || st.CacheHits != n-1 {
		t.Errorf("Queries = %d, CacheHits = %d; want 1 and %d (SRV cached, addresses from additional)", st.Queries, st.CacheHits, n-1)
	}
}

// TestTTLExpiry: positive answers live for their TTL (min 1 s), negative
// ones 30 s without SOA.
func TestTTLExpiry(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t,
		"--host-record=ttl.test,192.0.2.60,5",
		"--host-record=zero.test,192.0.2.61,0",
	)
	clk := newFakeClock()
	r := newTestResolver(t, Config{Servers: []string{d.addr}, Now: clk.Now})
	resolve := func(uri string) {
		t.Helper()
		if _, err := r.Resolve(context.Background(), mustURI(t, uri)); err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
	}
	step := func(adv time.Duration, uri string, want uint64) {
		t.Helper()
		clk.Advance(adv)
		resolve(uri)
		if q := r.Stats().Queries; q != want {
			t.Fatalf("after +%v: Queries = %d, want %d", adv, q, want)
		}
	}
	step(0, "sip:ttl.test:5060", 2)              // A (TTL 5) and AAAA (NODATA, 30 s)
	step(4*time.Second, "sip:ttl.test:5060", 2)  // both cached
	step(2*time.Second, "sip:ttl.test:5060", 3)  // t=6: A expired, AAAA still cached
	step(25*time.Second, "sip:ttl.test:5060", 5) // t=31: both expired

	// TTL 0 is cached for the 1 s minimum.
	step(0, "sip:zero.test:5060", 7)
	step(500*time.Millisecond, "sip:zero.test:5060", 7)
	step(500*time.Millisecond, "sip:zero.test:5060", 8) // A re-asked; AAAA NODATA cached 30 s
	if n := d.waitQueries(8); n != 8 {
		t.Errorf("dnsmasq logged %d queries, want 8", n)
	}
}

// TestNegativeCaching: NXDOMAIN is cached, so the second lookup sends no
// query (checked both by Stats and by dnsmasq's own query log).
func TestNegativeCaching(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	clk := newFakeClock()
	r := newTestResolver(t, Config{Servers: []string{d.addr}, Now: clk.Now})
	u := mustURI(t, "sip:missing.test:5060")
	for i := 0; i < 2; i++ {
		_, err := r.Resolve(context.Background(), u)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("lookup %d: err = %v, want ErrNotFound", i, err)
		}
	}
	st := r.Stats()
	if st.Queries != 2 || st.CacheHits != 2 {
		t.Errorf("Queries = %d, CacheHits = %d; want 2 and 2", st.Queries, st.CacheHits)
	}
	if n := d.waitQueries(2); n != 2 {
		t.Errorf("dnsmasq saw %d queries, want 2", n)
	}
	time.Sleep(100 * time.Millisecond)
	if n := d.queries(); n != 2 {
		t.Errorf("dnsmasq saw %d queries after the cached lookup, want 2", n)
	}
	clk.Advance(29 * time.Second)
	r.Resolve(context.Background(), u)
	if q := r.Stats().Queries; q != 2 {
		t.Errorf("at +29s: Queries = %d, want 2 (30 s negative TTL without SOA)", q)
	}
	clk.Advance(2 * time.Second)
	r.Resolve(context.Background(), u)
	if q := r.Stats().Queries; q != 4 {
		t.Errorf("at +31s: Queries = %d, want 4", q)
	}
}

// TestNegativeCachingSOA: with an SOA in the authority section, the negative
// TTL is min(SOA TTL, SOA MINIMUM) (RFC 2308 §5). dnsmasq in authoritative
// mode sends an SOA with MINIMUM = --auth-ttl.
func TestNegativeCachingSOA(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t,
		"--auth-server=ns.authz.test,127.0.0.1",
		"--auth-zone=authz.test",
		"--auth-soa=1,hostmaster.authz.test",
		"--auth-ttl=45",
	)
	clk := newFakeClock()
	r := newTestResolver(t, Config{Servers: []string{d.addr}, Now: clk.Now})
	u := mustURI(t, "sip:missing.authz.test:5060")
	check := func(adv time.Duration, want uint64) {
		t.Helper()
		clk.Advance(adv)
		if _, err := r.Resolve(context.Background(), u); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		if q := r.Stats().Queries; q != want {
			t.Fatalf("after +%v: Queries = %d, want %d", adv, q, want)
		}
	}
	check(0, 2)
	check(40*time.Second, 2) // past the 30 s default, within the SOA's 45 s
	check(6*time.Second, 4)
}

// TestCoalescing: concurrent identical lookups share one query. A relay
// delays dnsmasq's answers so that all callers overlap.
func TestCoalescing(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	relay := startDelayRelay(t, d.addr, 200*time.Millisecond)
	r := newTestResolver(t, Config{Servers: []string{relay.addr}})
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			ts, err := r.Resolve(context.Background(), mustURI(t, "sip:plain.test:5060"))
			if err == nil && len(ts) != 2 {
				err = fmt.Errorf("targets %q", render(ts))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	st := r.Stats()
	if st.Queries != 2 || relay.packets.Load() != 2 {
		t.Errorf("Queries = %d, relay saw %d; want 2 (one A, one AAAA)", st.Queries, relay.packets.Load())
	}
	if st.Coalesced+st.CacheHits != 2*(n-1) || st.Coalesced == 0 {
		t.Errorf("Coalesced = %d, CacheHits = %d; want them to add up to %d", st.Coalesced, st.CacheHits, 2*(n-1))
	}
	t.Logf("stats: %+v", st)
}

// TestTimeout: a server that never answers gives ErrTimeout after the
// per-query timeout and its one retry.
func TestTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 150 * time.Millisecond
	for _, uri := range []string{"sip:plain.test:5060", "sip:plain.test", "sip:plain.test;transport=tcp"} {
		r := newTestResolver(t, Config{Servers: []string{silentServer(t)}, Timeout: timeout})
		start := time.Now()
		_, err := r.Resolve(context.Background(), mustURI(t, uri))
		el := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("%s: err = %v, want ErrTimeout", uri, err)
		}
		// Two attempts (one retry), A and AAAA in parallel.
		// Upper bound generous: the whole module's tests may share the CPU.
		if el < 2*timeout-20*time.Millisecond || el > 2*timeout+time.Second {
			t.Errorf("%s: took %v, want about %v", uri, el, 2*timeout)
		}
		if st := r.Stats(); st.Failures == 0 || st.Timeouts < 2 {
			t.Errorf("%s: stats %+v", uri, st)
		}
	}
}

// TestTimeoutClosedPort: nothing listening at all (ICMP port unreachable
// or silence) is also ErrTimeout, and never slower than the timeout.
func TestTimeoutClosedPort(t *testing.T) {
	t.Parallel()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	r := newTestResolver(t, Config{Servers: []string{fmt.Sprintf("127.0.0.1:%d", port)}, Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err = r.Resolve(context.Background(), mustURI(t, "sip:plain.test:5060"))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v", el)
	}
}

// TestFailover: the first server is dead; the retry goes to the second,
// which then stays first so later queries do not wait again.
func TestFailover(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	const timeout = 300 * time.Millisecond
	r := newTestResolver(t, Config{Servers: []string{silentServer(t), d.addr}, Timeout: timeout})
	start := time.Now()
	ts, err := r.Resolve(context.Background(), mustURI(t, "sip:plain.test:5060"))
	if err != nil || len(ts) != 2 {
		t.Fatalf("targets %q, err %v", render(ts), err)
	}
	if el := time.Since(start); el < timeout-20*time.Millisecond {
		t.Errorf("first resolve took %v: the dead server was not tried first?", el)
	}
	if st := r.Stats(); st.Timeouts == 0 || st.Failures != 0 {
		t.Errorf("stats %+v: want timeouts and no failure", st)
	}
	before := r.Stats().Timeouts
	start = time.Now()
	if _, err := r.Resolve(context.Background(), mustURI(t, "sip:tcp.example.test:5060")); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el >= timeout {
		t.Errorf("second resolve took %v: the dead server is still tried first", el)
	}
	if r.Stats().Timeouts != before {
		t.Errorf("more timeouts after failover")
	}
}

// TestServerFailureFailover: a server answering REFUSED (dnsmasq in
// authoritative mode refuses other zones) is skipped for the next one; alone
// it gives ErrServerFailure.
func TestServerFailureFailover(t *testing.T) {
	t.Parallel()
	auth := startDNSMasq(t, "--auth-server=ns.authz.test,127.0.0.1", "--auth-zone=authz.test")
	d := startDNSMasq(t, zone...)
	r := newTestResolver(t, Config{Servers: []string{auth.addr, d.addr}})
	if ts, err := r.Resolve(context.Background(), mustURI(t, "sip:plain.test:5060")); err != nil || len(ts) != 2 {
		t.Fatalf("targets %q, err %v", render(ts), err)
	}
	r = newTestResolver(t, Config{Servers: []string{auth.addr}})
	_, err := r.Resolve(context.Background(), mustURI(t, "sip:plain.test:5060"))
	if !errors.Is(err, ErrServerFailure) {
		t.Fatalf("err = %v, want ErrServerFailure", err)
	}
	if r.Stats().Failures == 0 {
		t.Error("Failures not counted")
	}
}

// TestContextCancel: the caller's deadline wins over the DNS timeout.
func TestContextCancel(t *testing.T) {
	t.Parallel()
	r := newTestResolver(t, Config{Servers: []string{silentServer(t)}, Timeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Resolve(ctx, mustURI(t, "sip:plain.test"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v", el)
	}
}

// TestTruncatedTCP: an SRV set too big for UDP comes back truncated and is
// asked again over TCP; every target survives.
func TestTruncatedTCP(t *testing.T) {
	t.Parallel()
	var recs []string
	const n = 40
	for i := 0; i < n; i++ {
		host := fmt.Sprintf("srvtarget-number-%02d-with-a-rather-long-label.test", i)
		recs = append(recs,
			fmt.Sprintf("--srv-host=_sip._udp.big.test,%s,%d,0,10", host, 5000+i),
			fmt.Sprintf("--host-record=%s,192.0.2.%d", host, 100+i))
	}
	d := startDNSMasq(t, recs...)
	r := newTestResolver(t, Config{Servers: []string{d.addr}})
	ts, err := r.Resolve(context.Background(), mustURI(t, "sip:big.test;transport=udp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != n {
		t.Fatalf("%d targets, want %d", len(ts), n)
	}
	if st := r.Stats(); st.TCPRetries == 0 {
		t.Errorf("no TCP retry: %+v", st)
	}
	seen := map[string]bool{}
	for _, tg := range ts {
		if !strings.HasPrefix(tg.Host, "srvtarget-number-") || seen[tg.Host] {
			t.Fatalf("bad or repeated target %v", tg)
		}
		seen[tg.Host] = true
	}
}

// TestCacheEviction: MaxCache bounds the cache.
func TestCacheEviction(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	r := newTestResolver(t, Config{Servers: []string{d.addr}, MaxCache: 3})
	for _, u := range []string{"sip:plain.test:1", "sip:tcp.example.test:1", "sip:udp.example.test:1"} {
		if _, err := r.Resolve(context.Background(), mustURI(t, u)); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.Stats(); st.CacheEntries != 3 || st.Queries != 6 {
		t.Errorf("stats %+v: want 3 entries after 6 queries", st)
	}
}

// TestNew: configuration checks and /etc/resolv.conf parsing.
func TestNew(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	os.WriteFile(conf, []byte("# test\nsearch example.test\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:1\n"), 0o644)
	old := resolvConf
	resolvConf = conf
	defer func() { resolvConf = old }()

	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:53", "[::1]:53"}; !slices.Equal(r.servers, want) {
		t.Errorf("servers %q, want %q", r.servers, want)
	}
	if !slices.Equal(r.prefer, []transport.Proto{transport.UDP, transport.TCP, transport.TLS}) || r.timeout != 2*time.Second {
		t.Errorf("defaults: prefer %v timeout %v", r.prefer, r.timeout)
	}
	r, err = New(Config{Servers: []string{"192.0.2.1", "[2001:db8::1]:5353", "[2001:db8::2]"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.1:53", "[2001:db8::1]:5353", "[2001:db8::2]:53"}; !slices.Equal(r.servers, want) {
		t.Errorf("servers %q, want %q", r.servers, want)
	}
	if _, err := New(Config{Servers: []string{"dns.example.test:53"}}); err == nil {
		t.Error("host name accepted as a server")
	}
	if _, err := New(Config{Servers: []string{"127.0.0.1"}, Prefer: []transport.Proto{0}}); err == nil {
		t.Error("invalid Prefer accepted")
	}
	os.WriteFile(conf, []byte("search example.test\n"), 0o644)
	if _, err := New(Config{}); err == nil {
		t.Error("resolv.conf without nameserver accepted")
	}
	resolvConf = filepath.Join(dir, "absent")
	if _, err := New(Config{}); err == nil {
		t.Error("missing resolv.conf accepted")
	}
}

// TestBadHost: hosts that are not DNS names are refused before any query.
func TestBadHost(t *testing.T) {
	t.Parallel()
	r := newTestResolver(t, Config{Servers: []string{"127.0.0.1:9"}})
	for _, h := range []string{"", "a..b", "[zz]", strings.Repeat("a", 64) + ".test"} {
		u := &sip.URI{Scheme: []byte("sip"), Kind: sip.SchemeSIP, Host: []byte(h)}
		if _, err := r.Resolve(context.Background(), u); !errors.Is(err, ErrBadURI) {
			t.Errorf("host %q: err = %v, want ErrBadURI", h, err)
		}
	}
	if _, err := r.Resolve(context.Background(), nil); !errors.Is(err, ErrBadURI) {
		t.Errorf("nil URI: %v", err)
	}
	if q := r.Stats().Queries; q != 0 {
		t.Errorf("%d queries", q)
	}
}

// TestCacheOnly: under CacheOnly a miss returns ErrNotCached at once (no
// waiting for the slow server) but starts the query, so a later lookup is
// answered from what that query brought. Resolution is several questions
// (A and AAAA here), so a caller may need more than one try to see them
// all; it never waits for the network.
func TestCacheOnly(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	relay := startDelayRelay(t, d.addr, 1500*time.Millisecond)
	r := newTestResolver(t, Config{Servers: []string{relay.addr}, Timeout: 5 * time.Second})
	u := mustURI(t, "sip:plain.test:5060")
	ctx := CacheOnly(context.Background())
	start := time.Now()
	if _, err := r.Resolve(ctx, u); !errors.Is(err, ErrNotCached) {
		t.Fatalf("first cache-only lookup: %v, want ErrNotCached", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("cache-only lookup waited %v for the network", el)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ts, err := r.Resolve(ctx, u)
		if err == nil {
			if got := render(ts); len(got) != 2 {
				t.Fatalf("targets %q", got)
			}
			break
		}
		if !errors.Is(err, ErrNotCached) || time.Now().After(deadline) {
			t.Fatalf("cache-only lookup never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := r.Stats(); st.Deferred == 0 || st.Queries != 2 {
		t.Errorf("stats %+v: want Deferred > 0 and exactly 2 queries (A, AAAA)", st)
	}
}

// TestDomain: whatever path the lookup took (NAPTR, SRV, A/AAAA, CNAME,
// maddr), Domain is the name the URI asked for: the identity a TLS next
// hop's certificate must carry (RFC 5922 §4.1), never the SRV target.
func TestDomain(t *testing.T) {
	t.Parallel()
	d := startDNSMasq(t, zone...)
	for _, c := range []struct{ uri, domain, host string }{
		{"sips:example.test", "example.test", "tls.example.test"},                                     // NAPTR → SRV
		{"sip:example.test;transport=tls", "example.test", "tls.example.test"},                        // SRV
		{"sips:Example.Test.", "example.test", "tls.example.test"},                                    // case and root dot
		{"sip:srv.test;transport=tcp", "srv.test", "t1.srv.test"},                                     // SRV, no NAPTR
		{"sips:plain.test", "plain.test", "plain.test"},                                               // A/AAAA
		{"sips:plain.test:5061", "plain.test", "plain.test"},                                          // explicit port
		{"sip:alias.test:5060", "alias.test", "alias.test"},                                           // CNAME: the name asked for
		{"sip:bob@missing.test;transport=tls;maddr=example.test", "example.test", "tls.example.test"}, // maddr is TARGET
		{"sips:192.0.2.1", "", ""},
		{"sips:[2001:db8::1]:5071", "", ""},
	} {
		r := newTestResolver(t, Config{Servers: []string{d.addr}, Prefer: tlsTCP})
		ts, err := r.Resolve(context.Background(), mustURI(t, c.uri))
		if err != nil || len(ts) == 0 {
			t.Errorf("%s: %v", c.uri, err)
			continue
		}
		for _, tg := range ts {
			if tg.Domain != c.domain || tg.Host != c.host {
				t.Errorf("%s: %s: Domain %q Host %q, want %q and %q", c.uri, tg, tg.Domain, tg.Host, c.domain, c.host)
			}
		}
	}
}
