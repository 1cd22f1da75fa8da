package proxy

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"sipedge/sip"
	"sipedge/transport"
)

// sipsRequest is an INVITE for ruri with the given Route header values.
func sipsRequest(ruri string, routes ...string) string {
	var sb strings.Builder
	sb.WriteString("INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.9:5061;branch=z9hG4bKs1\r\n")
	for _, r := range routes {
		sb.WriteString("Route: " + r + "\r\n")
	}
	sb.WriteString("Max-Forwards: 70\r\nFrom: <sips:alice@example.com>;tag=a\r\nTo: <" + ruri + ">\r\n" +
		"Call-ID: s1\r\nCSeq: 1 INVITE\r\nContact: <sips:alice@192.0.2.9>\r\nContent-Length: 0\r\n\r\n")
	return sb.String()
}

// RFC 3261 §26.2.2 and §16.6 step 4: a request is SIPS when its
// Request-URI (as a target rewrites it) or its next Route value, after
// sipedge's own entries, is a sips URI.
func TestSIPSNext(t *testing.T) {
	for _, tt := range []struct {
		name   string
		msg    string
		routes int    // sipedge's own Route entries
		uri    string // target's new Request-URI
		want   bool
	}{
		{"sip Request-URI", sipsRequest("sip:bob@example.com"), 0, "", false},
		{"sips Request-URI", sipsRequest("sips:bob@example.com"), 0, "", true},
		{"SIPS in capitals", sipsRequest("SIPS:bob@example.com"), 0, "", true},
		{"sip rewritten to sips", sipsRequest("sip:bob@example.com"), 0, "sips:bob@192.0.2.7", true},
		{"sips rewritten to a sip contact", sipsRequest("sips:bob@example.com"), 0, "sip:bob@192.0.2.7;transport=tls", false},
		{"next Route sips", sipsRequest("sip:bob@example.com", "<sips:p2.example.net;lr>"), 0, "", true},
		{"next Route sip", sipsRequest("sip:bob@example.com", "<sip:p2.example.net;lr>"), 0, "", false},
		{"own sips Route skipped", sipsRequest("sip:bob@example.com", "<sips:192.0.2.1;lr>", "<sip:p2.example.net;lr>"), 1, "", false},
		{"sips after own Route", sipsRequest("sip:bob@example.com", "<sip:192.0.2.1;lr>", "<sips:p2.example.net;lr>"), 1, "", true},
	} {
		var m sip.Message
		if err := m.Parse([]byte(tt.msg), nil); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var uri []byte
		if tt.uri != "" {
			uri = []byte(tt.uri)
		}
		if got := sipsNext(&m, tt.routes, uri); got != tt.want {
			t.Errorf("%s: sipsNext = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// A SIPS request leaves over TLS only (RFC 3261 §26.2.2): targets reached
// otherwise are dropped; with none left the answer is 480 with warn-code
// 380 (RFC 5630 §5.1.1).
func TestSIPSStage(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := netip.MustParseAddrPort("192.0.2.7:5060")
	b := netip.MustParseAddrPort("192.0.2.8:5061")
	udp := Target{Proto: transport.UDP, Addr: a}
	tcp := Target{Proto: transport.TCP, Addr: a}
	tls := Target{Proto: transport.TLS, Addr: b}
	sipsContact := Target{Proto: transport.UDP, Addr: a, URI: []byte("sips:bob@192.0.2.7;transport=udp")}
	for _, tt := range []struct {
		name   string
		ruri   string
		groups [][]Target
		want   [][]Target // nil: answered
	}{
		{"sip: anything goes", "sip:bob@example.com", [][]Target{{udp}, {tls}}, [][]Target{{udp}, {tls}}},
		{"sips: TLS kept", "sips:bob@example.com", [][]Target{{tls}}, [][]Target{{tls}}},
		{"sips: UDP and TCP dropped", "sips:bob@example.com", [][]Target{{udp, tls}, {tcp}}, [][]Target{{tls}}},
		{"sips: no TLS target", "sips:bob@example.com", [][]Target{{udp}, {tcp}}, nil},
		{"sip: a target made sips must be TLS", "sip:bob@example.com", [][]Target{{sipsContact, udp}}, [][]Target{{udp}}},
		{"sip: only a sips target, not over TLS", "sip:bob@example.com", [][]Target{{sipsContact}}, nil},
	} {
		var codes []int
		var answer []byte
		r, err := c.TestRequest([]byte(sipsRequest(tt.ruri)), netip.MustParseAddrPort("192.0.2.9:5061"), transport.TLS,
			func(code int, b []byte) { codes, answer = append(codes, code), b })
		if err != nil {
			t.Fatal(err)
		}
		r.decision, r.decided = Decision{Groups: tt.groups}, true
		done := sipsStage(r)
		if tt.want == nil {
			if !done || !slices.Equal(codes, []int{480}) || !strings.Contains(string(answer), "\r\nWarning: 380 sipedge \"SIPS Not Allowed\"\r\n") {
				t.Errorf("%s: done %v codes %v\n%s", tt.name, done, codes, answer)
			}
			continue
		}
		if done || len(codes) != 0 {
			t.Errorf("%s: answered %v", tt.name, codes)
			continue
		}
		if got := r.decision.Groups; !slices.EqualFunc(got, tt.want, func(x, y []Target) bool {
			return slices.EqualFunc(x, y, func(p, q Target) bool { return p.Proto == q.Proto && p.Addr == q.Addr })
		}) {
			t.Errorf("%s: groups %v, want %v", tt.name, got, tt.want)
		}
	}
	if n := c.Stats().SIPSRefused; n != 2 {
		t.Errorf("SIPSRefused = %d, want 2", n)
	}
}

// RFC 3261 §16.6 step 4: for a SIPS request the Record-Route of the side
// reached over TLS is a sips URI.
func TestAppendRR(t *testing.T) {
	ap := netip.MustParseAddrPort("192.0.2.1:5061")
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	signed, err := New(Config{Secret: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	defer signed.Close()
	var sig [16]byte
	ck := ";ck=" + string(appendHex(sig[:0], signed.rrKey.sum([]byte("call-1"))))
	if got, want := string(signed.appendRR(nil, ap, transport.TLS, true, []byte("call-1"))), "<sips:192.0.2.1:5061"+ck+";lr>"; got != want {
		t.Errorf("signed: %s, want %s", got, want)
	}
	for _, tt := range []struct {
		proto  transport.Proto
		secure bool
		want   string
	}{
		{transport.UDP, false, "<sip:192.0.2.1:5061;lr>"},
		{transport.TLS, false, "<sip:192.0.2.1:5061;transport=tls;lr>"},
		{transport.TLS, true, "<sips:192.0.2.1:5061;lr>"},
		{transport.TCP, true, "<sip:192.0.2.1:5061;transport=tcp;lr>"}, // the side that came in clear
		{transport.WS, false, "<sip:192.0.2.1:5061;transport=ws;lr>"},
		{transport.WSS, true, "<sip:192.0.2.1:5061;transport=wss;lr>"}, // a WebSocket client keeps sip: (RFC 7118)
	} {
		if got := string(c.appendRR(nil, ap, tt.proto, tt.secure, []byte("call-1"))); got != tt.want {
			t.Errorf("%v secure %v: %s, want %s", tt.proto, tt.secure, got, tt.want)
		}
	}
}

// domainResolver answers like sipedge's RFC 3263 resolver: the target's
// Host is the host of the URI it was asked (the SIP domain, RFC 5922
// §4.1), whatever SRV target the address came from.
type domainResolver struct{ asked []string }

func (d *domainResolver) ResolveTargets(_ context.Context, u *sip.URI) ([]Target, error) {
	d.asked = append(d.asked, string(u.Host))
	return []Target{{Proto: transport.TLS, Addr: netip.MustParseAddrPort("192.0.2.50:5061"), Host: strings.ToLower(string(u.Host))}}, nil
}

// RFC 5922 §4.1: the TLS identity of the next hop is the domain of the URI
// the request was routed to: a route's or the outbound proxy's URI, the
// Request-URI, the next Route value; an IP literal is verified as an
// address (Host "").
func TestRoutedDomain(t *testing.T) {
	for _, tt := range []struct {
		name     string
		routes   []StaticRoute
		outbound string
		msg      string
		want     string
	}{
		{"request-uri", nil, "", sipsRequest("sips:bob@Example.COM"), "example.com"},
		{"static route", []StaticRoute{{Name: "gw", To: "sips:gw.carrier.test"}}, "", sipsRequest("sips:bob@example.com"), "gw.carrier.test"},
		{"outbound proxy", nil, "sips:edge.provider.test", sipsRequest("sips:bob@example.com"), "edge.provider.test"},
		{"route to an address", []StaticRoute{{Name: "gw", To: "sips:192.0.2.60"}}, "", sipsRequest("sips:bob@example.com"), ""},
		{"preloaded Route", nil, "", sipsRequest("sips:bob@example.com", "<sips:next.example.net;lr>"), "next.example.net"},
	} {
		res := &domainResolver{}
		table := &Table{Domains: NewDomains([]string{"local.test"}), Routes: tt.routes, OutboundProxy: tt.outbound, Resolver: res}
		if err := table.Compile(); err != nil {
			t.Fatal(err)
		}
		c, err := New(Config{Resolver: res, Policy: Policy{Router: table}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.TestRequest([]byte(tt.msg), netip.MustParseAddrPort("192.0.2.9:5061"), transport.TLS, func(int, []byte) {})
		if err != nil {
			t.Fatal(err)
		}
		routeStage(r)
		if locateStage(r) {
			t.Fatalf("%s: answered instead of routed", tt.name)
		}
		got := r.decision.Groups[0][0]
		if got.Host != tt.want || got.Proto != transport.TLS {
			t.Errorf("%s: next hop %v %s (resolver asked %v), want TLS with name %q", tt.name, got.Proto, got.Host, res.asked, tt.want)
		}
		c.Close()
	}
}

// URITarget: transport=ws and wss name the WebSocket transports (the
// connection a client opened); an alias names a client's connection.
func TestURITargetWebSocket(t *testing.T) {
	for _, tt := range []struct {
		uri   string
		proto transport.Proto
		addr  string
	}{
		{"sip:a@192.0.2.1:8080;transport=ws", transport.WS, "192.0.2.1:8080"},
		{"sip:a@192.0.2.1;transport=WSS", transport.WSS, "192.0.2.1:5061"},
		{"sips:a@192.0.2.1:443;transport=ws", transport.WSS, "192.0.2.1:443"},
		{"sip:a@x.invalid;transport=ws;alias=192.0.2.9~50000~6", transport.WSS, "192.0.2.9:50000"},
	} {
		u, err := sip.ParseURI([]byte(tt.uri))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := URITarget(&u)
		if !ok || got.Proto != tt.proto || got.Addr.String() != tt.addr {
			t.Errorf("%s: %v %v %v", tt.uri, got.Proto, got.Addr, ok)
		}
	}
	u, _ := sip.ParseURI([]byte("sip:a@x.invalid;transport=ws"))
	if _, ok := URITarget(&u); ok {
		t.Error("a host name is not a target by itself")
	}
}
