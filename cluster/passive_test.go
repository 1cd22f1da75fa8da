package cluster

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/features/gateway"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
)

// TestPassiveBindingsShared: the gateway deployment with two instances. A
// phone registers with its provider through A; the provider's 200 makes
// the binding active on A, and B installs it from Redis. A goes away; the
// provider's call, sent to B, reaches the phone with the Request-URI the
// phone registered; the phone's next REGISTER, through B, carries the same
// token (the provider keeps one contact for it); the provider's answer to
// an unregistration through B removes the binding from A's successor too.
func TestPassiveBindingsShared(t *testing.T) {
	r := startRedis(t)
	phone, provider, caller := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	const key = 0x5eed
	type instance struct {
		c  *Cluster
		gw *gateway.Feature
	}
	run := func(node string) (instance, func(), netip.AddrPort) {
		c := open(t, r, node)
		p := c.Passive(time.Hour)
		var gw *gateway.Feature
		_, addr := proxytest.Start(t, proxytest.To(provider.Addr), func(core *proxy.Core) []proxy.Feature {
			var err error
			if gw, err = gateway.New(core, p); err != nil {
				t.Fatal(err)
			}
			return []proxy.Feature{gw}
		})
		gw.SetTokenKey(key)
		p.Bind(gw)
		c.Start()
		return instance{c, gw}, func() { c.Close() }, addr
	}
	_, stopA, pxA := run("127.0.0.1:15061")
	b, _, pxB := run("127.0.0.1:15062")

	register := func(px netip.AddrPort, cseq, expires int) *sip.Message {
		phone.Send(px, fmt.Sprintf("REGISTER sip:provider.example SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKsh%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@provider.example>;tag=r1\r\nTo: <sip:alice@provider.example>\r\n"+
			"Call-ID: shreg\r\nCSeq: %d REGISTER\r\nContact: <sip:alice@%s>;expires=%d\r\nContent-Length: 0\r\n\r\n",
			phone.Addr, cseq, cseq, phone.Addr, expires))
		return provider.ExpectRequest("REGISTER")
	}
	answer := func(px netip.AddrPort, fwd *sip.Message, contact string) {
		provider.Send(px, strings.Replace(provider.Answer(fwd, 200, "p1"),
			"Contact: <sip:uas@"+provider.Addr.String()+">", contact, 1))
		phone.Expect(200)
	}

	fwd := register(pxA, 1, 600)
	contact := string(fwd.Get(sip.KindContact))
	ca, err := sip.ParseAddress([]byte(contact))
	if err != nil {
		t.Fatal(err)
	}
	tok1, _ := ca.URI.Param(gateway.Param)
	answer(pxA, fwd, "Contact: "+contact)
	deadline := time.Now().Add(2 * time.Second)
	for b.gw.Bindings() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("B did not install the binding A's provider confirmed")
		}
		time.Sleep(5 * time.Millisecond)
	}

	stopA() // A leaves; the provider's next call comes to B
	uri := strings.Replace(string(ca.RawURI), pxA.String(), pxB.String(), 1)
	caller.Send(pxB, fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKshinv;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:bob@provider.example>;tag=b1\r\nTo: <sip:alice@provider.example>\r\nCall-ID: shinv\r\n"+
		"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", uri, caller.Addr))
	caller.Expect(100)
	inv := phone.ExpectRequest("INVITE")
	if got := string(inv.RequestURIBytes()); got != "sip:alice@"+phone.Addr.String() {
		t.Fatalf("through B the phone got Request-URI %q", got)
	}

	fwd2 := register(pxB, 2, 600)
	a2, _ := sip.ParseAddress(fwd2.Get(sip.KindContact))
	if tok2, _ := a2.URI.Param(gateway.Param); string(tok2) != string(tok1) {
		t.Fatalf("token through B %q, through A %q: the provider would see two contacts", tok2, tok1)
	}
	answer(pxB, fwd2, "Contact: "+string(fwd2.Get(sip.KindContact)))

	// A's successor (a new instance on the same Redis) loads the binding,
	// and loses it when the phone unregisters through B.
	c, _, _ := run("127.0.0.1:15063")
	if c.gw.Bindings() != 1 {
		t.Fatalf("a new instance loaded %d passive bindings, want 1", c.gw.Bindings())
	}
	fwd3 := register(pxB, 3, 0)
	provider.Send(pxB, provider.Answer(fwd3, 200, "p1"))
	phone.Expect(200)
	deadline = time.Now().Add(2 * time.Second)
	for c.gw.Bindings() != 0 || b.gw.Bindings() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the unregistration: B %d, the new instance %d passive bindings", b.gw.Bindings(), c.gw.Bindings())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The counters move after the binding is visible (the write or the
	// install comes first), so they are awaited rather than read once.
	waitFor(t, 3*time.Second, "B's own writes and A's installed binding counted", func() bool {
		st := b.c.Stats()
		return st.PassiveWrites >= 2 && st.PassiveRemote >= 1
	})
}
