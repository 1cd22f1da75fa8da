package dialogs_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/features/callmedia"
	"sipedge/features/dialogs"
	"sipedge/media"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/txn"
)

// withDialogs builds the dialog feature with cfg.
func withDialogs(cfg dialogs.Config) func(*proxy.Core) []proxy.Feature {
	return func(c *proxy.Core) []proxy.Feature { return []proxy.Feature{dialogs.New(c, cfg)} }
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestSessionTooSmall: an INVITE asking for a session interval below
// sipedge's Min-SE gets 422 with Min-SE (RFC 4028 §8.1) and goes nowhere.
func TestSessionTooSmall(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := proxytest.Start(t, proxytest.To(uas.Addr), withDialogs(dialogs.Config{MinSE: 90 * time.Second}))
	inv := strings.Replace(proxytest.Invite(uac, px, "se1", "z9hG4bKse1"), "Content-Length: 0", "Session-Expires: 30\r\nContent-Length: 0", 1)
	uac.Send(px, inv)
	uac.Expect(100)
	r := uac.Expect(422)
	if got := string(r.GetByName("Min-SE")); got != "90" {
		t.Fatalf("Min-SE %q, want 90", got)
	}
	if m := uas.Recv(200 * time.Millisecond); m != nil {
		t.Fatalf("the INVITE was forwarded: %s", proxytest.FirstLine(m))
	}
}

// TestSessionTimerExpires: a relayed call whose 2xx set a session interval
// and that is never refreshed is ended by sipedge: both sides get a BYE
// with a Reason, and the relay ports are freed. A refresh (re-INVITE 2xx)
// before that moves the end further out.
func TestSessionTimerExpires(t *testing.T) {
	relay, err := media.New(media.Config{PortMin: 43000, PortMax: 43099})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	var mc *callmedia.Feature
	var dlg *dialogs.Feature
	_, px := proxytest.StartCore(t, proxy.Config{Policy: proxy.Policy{Router: proxytest.To(uas.Addr)}, Txn: txn.Config{T1: 50 * time.Millisecond}},
		func(c *proxy.Core) []proxy.Feature {
			mc = callmedia.New(c, relay, callmedia.Config{Mode: callmedia.Always})
			dlg = dialogs.New(c, dialogs.Config{})
			return []proxy.Feature{mc, dlg}
		})
	aAddr := addrOf(proxytest.UDPSocket(t))

	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "st1", "z9hG4bKst1"), proxytest.OfferSDP(aAddr)))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	ok := strings.Replace(uas.Answer(inv, 200, "b1"), "Content-Length: 0", "Session-Expires: 2;refresher=uac\r\nContent-Length: 0", 1)
	uas.Send(px, proxytest.WithBody(ok, proxytest.OfferSDP(addrOf(proxytest.UDPSocket(t)))))
	r200 := uac.Expect(200)
	rr := string(r200.Get(sip.KindRecordRoute))
	to := string(r200.Get(sip.KindTo))

	// One refresh after 1 s: the call must still be up at 2.5 s.
	time.Sleep(time.Second)
	reinv := fmt.Sprintf("INVITE sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKst2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: st1\r\nCSeq: 2 INVITE\r\n"+
		"Contact: <sip:alice@%s>\r\nSession-Expires: 2;refresher=uac\r\nContent-Length: 0\r\n\r\n", uas.Addr, uac.Addr, rr, to, uac.Addr)
	uac.Send(px, reinv)
	uac.Expect(100)
	re := uas.ExpectRequest("INVITE")
	uas.Send(px, strings.Replace(uas.Answer(re, 200, "b1"), "Content-Length: 0", "Session-Expires: 2;refresher=uac\r\nContent-Length: 0", 1))
	uac.Expect(200)
	if m := uas.Recv(1500 * time.Millisecond); m != nil && m.MethodKind() == sip.BYE {
		t.Fatal("BYE although the session was refreshed")
	}
	// No further refresh: both sides get a BYE.
	byeA := uac.ExpectRequestWithin("BYE", 3*time.Second)
	byeB := uas.ExpectRequestWithin("BYE", 3*time.Second)
	for _, b := range []*sip.Message{byeA, byeB} {
		if !strings.Contains(string(b.GetByName("Reason")), "cause=408") {
			t.Errorf("BYE without the Reason: %s", b.Bytes())
		}
	}
	if got := string(byeB.RequestURIBytes()); got != "sip:uas@"+uas.Addr.String() {
		t.Errorf("BYE to the callee has Request-URI %q", got)
	}
	if n, _ := byeB.CSeq(); n != 3 {
		t.Errorf("BYE to the callee has CSeq %d, want 3 (after the caller's 2)", n)
	}
	if string(byeA.Get(sip.KindFrom)) != to {
		t.Errorf("BYE to the caller comes from %q, want the callee's To %q", byeA.Get(sip.KindFrom), to)
	}
	uac.Send(px, uac.Answer(byeA, 200, "a1"))
	uas.Send(px, uas.Answer(byeB, 200, "b1"))
	// The media is freed after both BYEs went out (dialogs tells the
	// other features last), on the goroutine that sent them: give it a
	// moment.
	for deadline := time.Now().Add(2 * time.Second); mc.Calls() != 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if mc.Calls() != 0 || relay.Stats().PortsInUse != 0 || dlg.Stats().Ended != 1 || dlg.Active() != 0 {
		t.Fatalf("after the session ended: media calls %d, relay %+v, dialogs ended %d, active %d",
			mc.Calls(), relay.Stats(), dlg.Stats().Ended, dlg.Active())
	}
}

// TestSessionIntervalInserted: with a session interval configured, an
// INVITE that asks for no session timer is forwarded asking for one (RFC
// 4028 §8.1); one that asks keeps its own.
func TestSessionIntervalInserted(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := proxytest.Start(t, proxytest.To(uas.Addr), withDialogs(dialogs.Config{Interval: 1800 * time.Second}))
	uac.Send(px, proxytest.Invite(uac, px, "si1", "z9hG4bKsi1"))
	if got := string(uas.ExpectRequestFor("INVITE", "si1").Get(sip.KindSessionExpires)); got != "1800" {
		t.Errorf("Session-Expires %q, want 1800 inserted", got)
	}
	uac.Send(px, strings.Replace(proxytest.Invite(uac, px, "si2", "z9hG4bKsi2"), "Content-Length: 0", "Session-Expires: 600;refresher=uac\r\nContent-Length: 0", 1))
	if got := string(uas.ExpectRequestFor("INVITE", "si2").Get(sip.KindSessionExpires)); got != "600;refresher=uac" {
		t.Errorf("Session-Expires %q, want the caller's own", got)
	}
}
