package dialplan

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
)

// startWith runs a core on loopback whose only route sends everything to
// def, with the dial plan's rules.
func startWith(t *testing.T, def *proxytest.Peer, rules []Rule) (*Feature, netip.AddrPort) {
	t.Helper()
	var f *Feature
	_, px := proxytest.Start(t, proxytest.To(def.Addr), func(c *proxy.Core) []proxy.Feature {
		var err error
		if f, err = New(c, rules, testEnv); err != nil {
			t.Fatal(err)
		}
		return []proxy.Feature{f}
	})
	return f, px
}

// redirect is a 3xx from p to req with one Contact.
func redirect(p *proxytest.Peer, req *sip.Message, contact string) string {
	a := p.Answer(req, 302, "r1")
	i := strings.Index(a, "Contact: ")
	j := strings.Index(a[i:], "\r\n") + i
	return a[:i] + "Contact: " + contact + a[j:]
}

// TestRedirects: a rule with redirects: follow tries the contact of the
// 3xx (with the rule's header edits on that branch too); a rule without
// relays the 3xx to the caller.
func TestRedirects(t *testing.T) {
	uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := startWith(t, a, []Rule{
		{Name: "follow", Prefix: "1", Redirects: "follow", Headers: Headers{Add: []string{"X-Rule: follow"}}},
		{Name: "relay", Prefix: "2"},
	})
	call := func(user, callID string) string {
		return strings.Replace(proxytest.Invite(uac, px, callID, "z9hG4bK"+callID), "sip:bob@example.com SIP", "sip:"+user+"@example.com SIP", 1)
	}

	uac.Send(px, call("100", "f1"))
	ia := a.ExpectRequest("INVITE")
	a.Send(px, redirect(a, ia, fmt.Sprintf("<sip:carol@%s>", b.Addr)))
	a.ExpectRequest("ACK")
	ib := b.ExpectRequest("INVITE")
	if string(ib.RequestURIBytes()) != "sip:carol@"+b.Addr.String() || string(ib.GetByName("X-Rule")) != "follow" {
		t.Fatalf("recursed INVITE:\n%s", ib.Bytes())
	}
	b.Send(px, b.Answer(ib, 200, "c1"))
	uac.Expect(200)

	uac.Send(px, call("200", "r1"))
	ia = a.ExpectRequest("INVITE")
	a.Send(px, redirect(a, ia, fmt.Sprintf("<sip:carol@%s>", b.Addr)))
	a.ExpectRequest("ACK")
	if r := uac.Expect(302); !strings.Contains(string(r.Get(sip.KindContact)), "carol@") {
		t.Fatalf("3xx relayed without its contact: %q", r.Get(sip.KindContact))
	}
}
