package peerflow

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/registrar"
	"sipedge/transport"
)

type nodes struct {
	self string
	live map[string]netip.AddrPort
}

func (n nodes) Node() string { return n.self }
func (n nodes) Alive(node string) (netip.AddrPort, bool) {
	ap, ok := n.live[node]
	return ap, ok
}

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestToken(t *testing.T) {
	f := New(nodes{}, secret)
	other := New(nodes{}, []byte("another cluster's secret........"))
	for _, tc := range []struct {
		p   transport.Proto
		src string
	}{
		{transport.UDP, "203.0.113.7:40000"},
		{transport.TCP, "[2001:db8::7]:5060"},
		{transport.TLS, "198.51.100.1:1"},
		{transport.WS, "[::ffff:192.0.2.1]:65535"},
	} {
		src := netip.MustParseAddrPort(tc.src)
		tok := string(f.appendToken(nil, tc.p, src))
		p, got, ok := f.parseToken(tok)
		if !ok || p != tc.p || got != src {
			t.Fatalf("%v %v: token %q reads %v %v %v", tc.p, src, tok, p, got, ok)
		}
		if _, _, ok := other.parseToken(tok); ok {
			t.Fatalf("another cluster accepted %q", tok)
		}
		// Every single-character change is refused.
		for i := range tok {
			b := []byte(tok)
			b[i] ^= 1
			if _, _, ok := f.parseToken(string(b)); ok {
				t.Fatalf("altered token %q accepted", b)
			}
		}
	}
}

func TestVia(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:5060")
	f := New(nodes{self: "192.0.2.2:5060", live: map[string]netip.AddrPort{"192.0.2.1:5060": a}}, secret)
	natted := registrar.Binding{URI: "sip:alice@10.0.0.5:5060", Owner: "192.0.2.1:5060", NAT: true, Proto: transport.UDP,
		Source: netip.MustParseAddrPort("203.0.113.7:40000"), Q: 500}
	tcp := natted
	tcp.NAT, tcp.Proto = false, transport.TCP
	for _, tc := range []struct {
		name string
		b    func(b registrar.Binding) registrar.Binding
		via  bool
	}{
		{"NATed UDP owned by a live peer", func(b registrar.Binding) registrar.Binding { return b }, true},
		{"TCP owned by a live peer", func(registrar.Binding) registrar.Binding { return tcp }, true},
		{"own binding", func(b registrar.Binding) registrar.Binding { b.Owner = "192.0.2.2:5060"; return b }, false},
		{"reachable at its Contact", func(b registrar.Binding) registrar.Binding { b.NAT = false; return b }, false},
		{"owner dead", func(b registrar.Binding) registrar.Binding { b.Owner = "192.0.2.3:5060"; return b }, false},
		{"behind an edge proxy (Path)", func(b registrar.Binding) registrar.Binding { b.Path = []string{"<sip:edge;lr>"}; return b }, false},
	} {
		b := tc.b(natted)
		tg, ok := f.Via(&b)
		if ok != tc.via {
			t.Errorf("%s: via %v", tc.name, ok)
			continue
		}
		if !ok {
			continue
		}
		if tg.Addr != a || tg.Proto != transport.UDP || string(tg.URI) != b.URI || tg.Q != 500 || len(tg.Path) != 1 {
			t.Fatalf("%s: target %+v", tc.name, tg)
		}
		route := string(tg.Path[0])
		_, tok, _ := strings.Cut(route, ";flow=")
		p, src, ok := f.parseToken(strings.TrimSuffix(tok, ">"))
		if !strings.HasPrefix(route, "<sip:192.0.2.1:5060;lr;flow=") || !ok || p != b.Proto || src != b.Source {
			t.Fatalf("%s: route %q reads %v %v %v", tc.name, route, p, src, ok)
		}
	}
}

// TestStage: a core with the feature, on loopback. A request that another
// instance routed here with a valid flow token goes to the flow (and not
// to its Request-URI), without the Route; a forged token, or one from a
// source that is neither trusted nor a peer, gets 403.
func TestStage(t *testing.T) {
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	flow := phone.LocalAddr().(*net.UDPAddr).AddrPort()
	f := New(nodes{self: "x"}, secret)
	core, addr := proxytest.StartCore(t, proxy.Config{Policy: proxy.Policy{
		AllowSources: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	}}, func(*proxy.Core) []proxy.Feature { return []proxy.Feature{f} })
	_ = core
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Skip("no 127.0.0.2")
	}
	defer stranger.Close()
	invite := func(c *net.UDPConn, branch, tok string) {
		msg := fmt.Sprintf("INVITE sip:alice@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
			"Route: <sip:%s;lr;flow=%s>\r\nMax-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b\r\nTo: <sip:alice@example.com>\r\n"+
			"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@%s>\r\nContent-Length: 0\r\n\r\n",
			c.LocalAddr(), branch, addr, tok, branch, c.LocalAddr())
		if _, err := c.WriteToUDPAddrPort([]byte(msg), addr); err != nil {
			t.Fatal(err)
		}
	}
	read := func(c *net.UDPConn, skip100 bool) string {
		buf := make([]byte, 8192)
		for {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				return ""
			}
			if m := string(buf[:n]); !skip100 || !strings.HasPrefix(m, "SIP/2.0 100") {
				return m
			}
		}
	}
	good := string(f.appendToken(nil, transport.UDP, flow))
	invite(peer, "good", good)
	m := read(phone, false)
	if !strings.HasPrefix(m, "INVITE sip:alice@10.0.0.5:5060 ") || strings.Contains(m, "\r\nRoute:") {
		t.Fatalf("at the flow: %q", m)
	}
	forged := string(New(nodes{}, []byte("not the cluster's secret")).appendToken(nil, transport.UDP, flow))
	invite(peer, "forged", forged)
	if m := read(peer, true); !strings.HasPrefix(m, "SIP/2.0 403 ") {
		t.Fatalf("forged token: %q", m)
	}
	invite(stranger, "stranger", good)
	if m := read(stranger, true); !strings.HasPrefix(m, "SIP/2.0 403 ") {
		t.Fatalf("token from a stranger: %q", m)
	}
	// (The stranger is stopped by the access stage already; an
	// authenticated phone that is no peer would reach this stage's own
	// check.)
	if s := f.Stats(); s.Delivered != 1 || s.Refused != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// FuzzParseToken: any token parses or is refused without a panic; one
// that parses is one the key made (appendToken gives it back).
//
//	go test -run '^$' -fuzz '^FuzzParseToken$' -fuzztime 60s ./features/peerflow/
func FuzzParseToken(f *testing.F) {
	ff := New(nodes{}, secret)
	f.Add(string(ff.appendToken(nil, transport.UDP, netip.MustParseAddrPort("203.0.113.7:40000"))))
	f.Add(string(ff.appendToken(nil, transport.TLS, netip.MustParseAddrPort("[2001:db8::1]:5061"))))
	f.Add("00.00")
	f.Add(".")
	f.Fuzz(func(t *testing.T, tok string) {
		p, src, ok := ff.parseToken(tok)
		if !ok {
			return
		}
		if again := string(ff.appendToken(nil, p, src)); !strings.EqualFold(again, tok) {
			t.Fatalf("%q parsed to %v %v, which makes %q", tok, p, src, again)
		}
	})
}
