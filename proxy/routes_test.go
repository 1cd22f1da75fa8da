package proxy_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// listResolver stands in for DNS here: the ordering and failover logic is
// what is tested; resolve/ tests RFC 3263 against a real DNS server.
type listResolver []proxy.Target

func (l listResolver) ResolveTargets(context.Context, *sip.URI) ([]proxy.Target, error) {
	return l, nil
}

func parseReq(t *testing.T, ruri string) *sip.Message {
	m := new(sip.Message)
	s := fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKr\r\nFrom: <sip:a@x>;tag=1\r\nTo: <%s>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", ruri, ruri)
	if err := m.Parse([]byte(s), nil); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTableMatching(t *testing.T) {
	tab := &proxy.Table{
		Routes: []proxy.StaticRoute{
			{Name: "intl", Prefix: "00", To: "sip:127.0.0.1:5091;transport=tcp"},
			{Name: "partner", Domain: "partner.example", To: "sip:127.0.0.1:5092"},
		},
		Domains:  proxy.NewDomains([]string{"example.com"}),
		Location: proxytest.Static{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: netip.MustParseAddrPort("127.0.0.1:5093")}}}},
	}
	if err := tab.Compile(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ruri string
		want string
	}{
		{"sip:0049301234@example.com", "TCP 127.0.0.1:5091"}, // prefix rule before the location service
		{"sip:bob@partner.example", "UDP 127.0.0.1:5092"},    // domain rule
		{"sip:bob@example.com", "UDP 127.0.0.1:5093"},        // local domain: location service
		{"sip:bob@elsewhere.example", "404"},                 // no outbound proxy, no resolver
		{"tel:0049301234", "TCP 127.0.0.1:5091"},             // tel numbers match prefixes too
	} {
		d := tab.Route(context.Background(), parseReq(t, tc.ruri), netip.AddrPort{}, transport.UDP)
		got := fmt.Sprint(d.Code)
		if len(d.Groups) > 0 {
			got = d.Groups[0][0].Proto.String() + " " + d.Groups[0][0].Addr.String()
		}
		if got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.ruri, got, tc.want)
		}
	}
}

// TestFailover: RFC 3263 §4.3 — after a 503 the next target is tried; after
// a 404 it is not.
func TestFailover(t *testing.T) {
	for _, tc := range []struct {
		firstCode int
		want      int
		second    bool
	}{
		{503, 200, true},
		{404, 404, false},
	} {
		t.Run(fmt.Sprint(tc.firstCode), func(t *testing.T) {
			uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
			tab := &proxy.Table{
				Domains:       proxy.NewDomains([]string{"example.com"}),
				OutboundProxy: "sip:proxy.example.net",
				Resolver:      listResolver{{Proto: transport.UDP, Addr: a.Addr}, {Proto: transport.UDP, Addr: b.Addr}},
			}
			if err := tab.Compile(); err != nil {
				t.Fatal(err)
			}
			_, px := start(t, tab)
			inv := fmt.Sprintf("INVITE sip:bob@other.example SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfo%d;rport\r\nMax-Forwards: 70\r\n"+
				"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@other.example>\r\nCall-ID: fo%d\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
				uac.Addr, tc.firstCode, tc.firstCode)
			uac.Send(px, inv)
			ia := a.ExpectRequest("INVITE")
			a.Send(px, a.Answer(ia, tc.firstCode, "ta"))
			a.ExpectRequest("ACK")
			if tc.second {
				ib := b.ExpectRequest("INVITE")
				b.Send(px, b.Answer(ib, 200, "tb"))
			} else if m := b.Recv(300 * time.Millisecond); m != nil {
				t.Fatalf("second target tried after %d", tc.firstCode)
			}
			uac.Expect(tc.want)
		})
	}
}

// TestStatelessRoute: a route marked stateless forwards without any
// transaction (RFC 3261 §16.11): no 100 Trying; a retransmitted INVITE is
// forwarded again with the same branch; the 486 comes back through the
// Via; the ACK of the 486 and a CANCEL carry the INVITE's branch so the
// next hop can match them; the core holds no transaction at the end.
func TestStatelessRoute(t *testing.T) {
	uac, gw := proxytest.NewPeer(t), proxytest.NewPeer(t)
	tab := &proxy.Table{Routes: []proxy.StaticRoute{{Name: "trunk", Prefix: "00", To: "sip:" + gw.Addr.String(), Stateless: true}}}
	if err := tab.Compile(); err != nil {
		t.Fatal(err)
	}
	core, px := start(t, tab)
	inv := strings.Replace(proxytest.Invite(uac, px, "sl1", "z9hG4bKsl1"), "sip:bob@example.com SIP", "sip:0049301234@example.com SIP", 1)

	uac.Send(px, inv)
	first := gw.ExpectRequest("INVITE")
	v1, _ := first.TopVia()
	if !strings.HasPrefix(string(v1.Branch), proxy.StatelessPrefix) {
		t.Fatalf("stateless branch %q", v1.Branch)
	}
	if rr := first.Get(sip.KindRecordRoute); rr == nil {
		t.Error("a stateless proxy still record-routes a dialog-creating request")
	}
	uac.Send(px, inv) // retransmission: forwarded again, same branch
	again := gw.ExpectRequest("INVITE")
	if v2, _ := again.TopVia(); string(v2.Branch) != string(v1.Branch) {
		t.Fatalf("retransmission got branch %q, first %q", v2.Branch, v1.Branch)
	}
	if m := uac.Recv(200 * time.Millisecond); m != nil {
		t.Fatalf("stateless forwarding answered %s", proxytest.FirstLine(m))
	}
	gw.Send(px, gw.Answer(first, 486, "gw1"))
	uac.Expect(486)

	ack := strings.Replace(strings.Replace(inv, "INVITE sip:", "ACK sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 ACK", 1)
	ack = strings.Replace(ack, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=gw1", 1)
	uac.Send(px, ack)
	a := gw.ExpectRequest("ACK")
	if va, _ := a.TopVia(); string(va.Branch) != string(v1.Branch) {
		t.Errorf("ACK branch %q, INVITE branch %q (RFC 3261 §17.1.1.3)", va.Branch, v1.Branch)
	}

	cancel := strings.Replace(strings.Replace(inv, "INVITE sip:", "CANCEL sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1)
	uac.Send(px, cancel)
	cn := gw.ExpectRequest("CANCEL")
	if vc, _ := cn.TopVia(); string(vc.Branch) != string(v1.Branch) {
		t.Errorf("CANCEL branch %q, INVITE branch %q (RFC 3261 §9.1)", vc.Branch, v1.Branch)
	}
	if tx := core.Transactions(); tx.Servers != 0 || tx.Clients != 0 {
		t.Errorf("transactions: %d server, %d client; a stateless route keeps none", tx.Servers, tx.Clients)
	}
}

// namedRouter is a feature's destination in tests.
type namedRouter struct{ d proxy.Decision }

func (n namedRouter) Route(context.Context, *sip.Message, netip.AddrPort, transport.Proto) proxy.Decision {
	return n.d
}

// A route to a named destination hands the request to the feature's
// Router; an unknown name or a stateless route to one is a configuration
// error naming the route.
func TestNamedDestinations(t *testing.T) {
	for _, c := range []struct {
		to         string
		kind, name string
		ok         bool
	}{
		{"pool:pbx", "pool", "pbx", true},
		{"trunk:provider-1.eu", "trunk", "provider-1.eu", true},
		{"sip:gw.example.net", "", "", false},
		{"sips:gw.example.net", "", "", false},
		{"tel:+4930", "", "", false},
		{"Pool:pbx", "", "", false},
		{"pool:", "", "", false},
		{"pool:a b", "", "", false},
	} {
		kind, name, ok := proxy.NamedDestination(c.to)
		if kind != c.kind || name != c.name || ok != c.ok {
			t.Errorf("NamedDestination(%q) = %q, %q, %v", c.to, kind, name, ok)
		}
	}
	want := proxy.Decision{Groups: [][]proxy.Target{{{Addr: netip.MustParseAddrPort("192.0.2.7:5060"), Proto: transport.UDP}}}}
	tb := &proxy.Table{Routes: []proxy.StaticRoute{{Name: "to-pbx", Prefix: "1", To: "pool:pbx"}},
		Named: map[string]proxy.Router{"pool:pbx": namedRouter{want}}}
	if err := tb.Compile(); err != nil {
		t.Fatal(err)
	}
	m := parseReq(t, "sip:100@example.net")
	if d := tb.Route(context.Background(), m, netip.MustParseAddrPort("192.0.2.1:5060"), transport.UDP); len(d.Groups) != 1 || d.Groups[0][0].Addr != want.Groups[0][0].Addr {
		t.Fatalf("decision %+v, want the pool's", d)
	}
	if err := (&proxy.Table{Routes: []proxy.StaticRoute{{Name: "r", To: "pool:nope"}}}).Compile(); err == nil || err.Error() != "route r: to pool:nope: no pool named nope is configured" {
		t.Fatalf("unknown pool: %v", err)
	}
	if err := (&proxy.Table{Routes: []proxy.StaticRoute{{Name: "r", To: "pool:pbx", Stateless: true}}, Named: tb.Named}).Compile(); err == nil {
		t.Fatal("a stateless route to a pool compiled")
	}
}
