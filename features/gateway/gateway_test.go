package gateway_test

import (
	"fmt"
	"net/netip"
	"sipedge/store"
	"sipedge/transport"
	"strings"
	"testing"

	"sipedge/features/gateway"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
)

// TestPassiveRegistrar: a phone registers with an outside registrar
// through sipedge. The registrar sees sipedge's address in the Contact
// (with the phone's token), the phone gets its own Contact back in the
// 200, and a call the registrar sends to that Contact reaches the phone
// with the Request-URI the phone registered. Before the registrar's 200,
// nothing is routed (the binding is learnt from the 2xx only).
func TestPassiveRegistrar(t *testing.T) {
	phone, provider, caller := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	var gw *gateway.Feature
	_, px := proxytest.Start(t, proxytest.To(provider.Addr), func(c *proxy.Core) []proxy.Feature {
		gw = mustNew(t, c)
		return []proxy.Feature{gw}
	})
	phoneContact := "sip:alice@" + phone.Addr.String()
	reg := fmt.Sprintf("REGISTER sip:provider.example SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKpr1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@provider.example>;tag=r1\r\nTo: <sip:alice@provider.example>\r\n"+
		"Call-ID: preg\r\nCSeq: 1 REGISTER\r\nContact: <%s>;expires=600\r\nContent-Length: 0\r\n\r\n", phone.Addr, phoneContact)
	phone.Send(px, reg)
	fwd := provider.ExpectRequest("REGISTER")
	a, err := sip.ParseAddress(fwd.Get(sip.KindContact))
	if err != nil {
		t.Fatal(err)
	}
	_, ok := a.URI.Param(gateway.Param)
	if !ok || string(a.URI.User) != "alice" || fmt.Sprintf("%s:%d", a.URI.Host, a.URI.Port) != px.String() {
		t.Fatalf("forwarded Contact %q: want sipedge's address and a token", fwd.Get(sip.KindContact))
	}
	// A call before the provider confirmed: not routed.
	invite := func(branch string) string {
		return fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:bob@provider.example>;tag=b1\r\nTo: <sip:alice@provider.example>\r\nCall-ID: %s\r\n"+
			"CSeq: 1 INVITE\r\nContact: <sip:bob@%s>\r\nContent-Length: 0\r\n\r\n", a.RawURI, caller.Addr, branch, branch, caller.Addr)
	}
	caller.Send(px, invite("z9hG4bKearly"))
	caller.Expect(100)
	caller.Expect(480)

	ok200 := strings.Replace(provider.Answer(fwd, 200, "p1"), "Contact: <sip:uas@"+provider.Addr.String()+">",
		"Contact: <"+string(a.RawURI)+">;expires=600", 1)
	provider.Send(px, ok200)
	r := phone.Expect(200)
	if got := string(r.Get(sip.KindContact)); got != "<"+phoneContact+">;expires=600" {
		t.Fatalf("the phone got Contact %q in its 200, want its own", got)
	}
	caller.Send(px, invite("z9hG4bKcall"))
	caller.Expect(100)
	inv := phone.ExpectRequest("INVITE")
	if got := string(inv.RequestURIBytes()); got != phoneContact {
		t.Fatalf("Request-URI at the phone %q, want %q", got, phoneContact)
	}
	if n := gw.Bindings(); n != 1 {
		t.Fatalf("%d passive bindings", n)
	}
}

func mustNew(t testing.TB, c *proxy.Core) *gateway.Feature {
	t.Helper()
	f, err := gateway.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPassiveBindingsSurviveRestart: a binding the provider confirmed is
// kept in the gateway's store; after a restart a call to its contact
// reaches the phone at once, and the phone's next REGISTER carries the
// same token (the provider sees one contact, not two).
func TestPassiveBindingsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	phone, provider, caller := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	run := func() (netip.AddrPort, func()) {
		st, err := store.Open(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var px netip.AddrPort
		core, err := proxy.New(proxy.Config{Policy: proxy.Policy{Router: proxytest.To(provider.Addr)}})
		if err != nil {
			t.Fatal(err)
		}
		gw, err := gateway.New(core, st)
		if err != nil {
			t.Fatal(err)
		}
		if err := core.Use(gw); err != nil {
			t.Fatal(err)
		}
		layer, err := transport.New(transport.Config{Listen: []transport.ListenSpec{{Proto: transport.UDP, Addr: "127.0.0.1:0"}}}, core)
		if err != nil {
			t.Fatal(err)
		}
		if err := layer.Start(); err != nil {
			t.Fatal(err)
		}
		core.Attach(layer, nil)
		px = layer.Addrs()[0].Addr
		return px, func() { layer.Close(); core.Close(); st.Close() }
	}
	register := func(px netip.AddrPort, cseq int) *sip.Message {
		phone.Send(px, fmt.Sprintf("REGISTER sip:provider.example SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKrr%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@provider.example>;tag=r1\r\nTo: <sip:alice@provider.example>\r\n"+
			"Call-ID: rreg\r\nCSeq: %d REGISTER\r\nContact: <sip:alice@%s>;expires=600\r\nContent-Length: 0\r\n\r\n", phone.Addr, cseq, cseq, phone.Addr))
		return provider.ExpectRequest("REGISTER")
	}
	px1, stop1 := run()
	fwd := register(px1, 1)
	contact := string(fwd.Get(sip.KindContact))
	a, _ := sip.ParseAddress([]byte(contact))
	provider.Send(px1, strings.Replace(provider.Answer(fwd, 200, "p1"), "Contact: <sip:uas@"+provider.Addr.String()+">",
		"Contact: "+contact, 1))
	phone.Expect(200)
	stop1()

	// sipedge restarts on another port: the provider still has the
	// contact; here the test sends to the new port as the provider would
	// to the (same) address after a restart.
	px2, stop2 := run()
	defer stop2()
	uri := strings.Replace(string(a.RawURI), px1.String(), px2.String(), 1)
	caller.Send(px2, fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKafter;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:bob@provider.example>;tag=b1\r\nTo: <sip:alice@provider.example>\r\nCall-ID: after\r\n"+
		"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", uri, caller.Addr))
	caller.Expect(100)
	inv := phone.ExpectRequest("INVITE")
	if got := string(inv.RequestURIBytes()); got != "sip:alice@"+phone.Addr.String() {
		t.Fatalf("after the restart the phone got Request-URI %q", got)
	}
	tok1, _ := a.URI.Param(gateway.Param)
	fwd2 := register(px2, 2)
	a2, _ := sip.ParseAddress(fwd2.Get(sip.KindContact))
	if tok2, _ := a2.URI.Param(gateway.Param); string(tok2) != string(tok1) {
		t.Fatalf("token after the restart %q, before %q: the provider would see two contacts", tok2, tok1)
	}
}
