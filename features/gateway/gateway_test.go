package gateway_test

import (
	"fmt"
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
		gw = gateway.New(c)
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
