package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// listResolver stands in for DNS here: the ordering and failover logic is
// what is tested; resolve/ tests RFC 3263 against a real DNS server.
type listResolver []Target

func (l listResolver) ResolveTargets(context.Context, *sip.URI) ([]Target, error) { return l, nil }

func parseReq(t *testing.T, ruri string) *sip.Message {
	m := new(sip.Message)
	s := fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKr\r\nFrom: <sip:a@x>;tag=1\r\nTo: <%s>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", ruri, ruri)
	if err := m.Parse([]byte(s), nil); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTableMatching(t *testing.T) {
	gw := netip.MustParseAddrPort("127.0.0.1:5091")
	tab := &Table{
		Routes: []StaticRoute{
			{Name: "intl", Prefix: "00", To: "sip:127.0.0.1:5091;transport=tcp"},
			{Name: "partner", Domain: "partner.example", To: "sip:127.0.0.1:5092"},
		},
		Domains:  NewDomains([]string{"example.com"}),
		Location: staticRouter{[][]Target{{{Proto: transport.UDP, Addr: netip.MustParseAddrPort("127.0.0.1:5093")}}}},
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
		d := tab.Route(parseReq(t, tc.ruri), netip.AddrPort{}, transport.UDP)
		got := fmt.Sprint(d.Code)
		if len(d.Groups) > 0 {
			got = d.Groups[0][0].Proto.String() + " " + d.Groups[0][0].Addr.String()
		}
		if got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.ruri, got, tc.want)
		}
	}
	_ = gw
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
			uac, a, b := newPeer(t), newPeer(t), newPeer(t)
			tab := &Table{
				Domains:       NewDomains([]string{"example.com"}),
				OutboundProxy: "sip:proxy.example.net",
				Resolver:      listResolver{{Proto: transport.UDP, Addr: a.addr}, {Proto: transport.UDP, Addr: b.addr}},
			}
			if err := tab.Compile(); err != nil {
				t.Fatal(err)
			}
			_, px := startProxy(t, tab)
			inv := fmt.Sprintf("INVITE sip:bob@other.example SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfo%d;rport\r\nMax-Forwards: 70\r\n"+
				"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@other.example>\r\nCall-ID: fo%d\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
				uac.addr, tc.firstCode, tc.firstCode)
			uac.send(px, inv)
			ia := a.expectRequest("INVITE")
			a.send(px, a.answer(ia, tc.firstCode, "ta"))
			a.expectRequest("ACK")
			if tc.second {
				ib := b.expectRequest("INVITE")
				b.send(px, b.answer(ib, 200, "tb"))
			} else if m := b.recv(300 * time.Millisecond); m != nil {
				t.Fatalf("second target tried after %d", tc.firstCode)
			}
			uac.expect(tc.want)
		})
	}
}
