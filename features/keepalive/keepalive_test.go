package keepalive_test

import (
	"testing"
	"time"

	"sipedge/features/keepalive"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/registrar"
	"sipedge/txn"
)

// TestKeepAlives: a phone registered from behind NAT gets OPTIONS at its
// real address every interval; when it stops answering, its binding is
// removed after MaxFailures probes. A phone not behind NAT gets none. The
// sender runs from Attach: either configured from the start (as sipedge
// builds it) or given its interval later (a reload), once both phones are
// registered, as when keep-alives were started after the registrations.
func TestKeepAlives(t *testing.T) {
	want := keepalive.Config{Interval: 300 * time.Millisecond, MaxFailures: 2}
	t.Run("configured", func(t *testing.T) { testKeepAlives(t, want, keepalive.Config{}) })
	t.Run("reloaded", func(t *testing.T) { testKeepAlives(t, keepalive.Config{}, want) })
}

// testKeepAlives builds the sender with first, and after the phones
// registered sets later unless it is zero.
func testKeepAlives(t *testing.T, first, later keepalive.Config) {
	reg, err := registrar.New(registrar.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	var ka *keepalive.Feature
	_, px := proxytest.StartCore(t, proxy.Config{Policy: proxy.Policy{Router: &proxy.Table{Location: &proxy.LocationRouter{Registrar: reg}}}, Registrar: reg,
		Txn: txn.Config{T1: 20 * time.Millisecond, T2: 80 * time.Millisecond, T4: 100 * time.Millisecond, Tick: 5 * time.Millisecond}},
		func(c *proxy.Core) []proxy.Feature {
			ka = keepalive.New(c, reg, first)
			return []proxy.Feature{ka}
		})

	natted, direct := proxytest.NewPeer(t), proxytest.NewPeer(t)
	register := func(p *proxytest.Peer, user, hostport string) {
		p.Send(px, "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP "+hostport+";branch=z9hG4bK"+user+";rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:"+user+"@example.com>;tag=r\r\nTo: <sip:"+user+"@example.com>\r\nCall-ID: "+user+"\r\n"+
			"CSeq: 1 REGISTER\r\nContact: <sip:"+user+"@"+hostport+">\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
		p.Expect(200)
	}
	register(natted, "natted", "10.77.0.10:5060")
	register(direct, "direct", direct.Addr.String())
	if later.Interval > 0 {
		ka.SetConfig(later)
	}

	// Answer two probes: the binding stays.
	for i := 0; i < 2; i++ {
		o := natted.ExpectRequest("OPTIONS")
		if got := string(o.RequestURIBytes()); got != "sip:natted@10.77.0.10:5060" {
			t.Fatalf("keep-alive Request-URI %q", got)
		}
		natted.Send(px, natted.Answer(o, 200, "ka"))
	}
	if m := direct.Recv(400 * time.Millisecond); m != nil {
		t.Fatalf("a phone not behind NAT got %s", proxytest.FirstLine(m))
	}
	// Stop answering: after two unanswered probes the binding is gone.
	deadline := time.Now().Add(10 * time.Second)
	for len(reg.Lookup("sip:natted@example.com")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("binding still there after unanswered keep-alives; stats %d sent, %d failed",
				ka.Stats().Sent, ka.Stats().Failures)
		}
		natted.Recv(50 * time.Millisecond) // swallow probes and retransmissions
	}
	// The counter moves just after the binding goes.
	for deadline := time.Now().Add(5 * time.Second); ka.Stats().BindingsRemoved == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if ka.Stats().BindingsRemoved != 1 || len(reg.Lookup("sip:direct@example.com")) != 1 {
		t.Fatalf("removed %d bindings; the direct phone's binding must stay", ka.Stats().BindingsRemoved)
	}
}
