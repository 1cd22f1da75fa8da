package proxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"sipedge/media"
	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// TestSessionTooSmall: an INVITE asking for a session interval below
// sipedge's Min-SE gets 422 with Min-SE (RFC 4028 §8.1) and goes nowhere.
func TestSessionTooSmall(t *testing.T) {
	uac, uas := newPeer(t), newPeer(t)
	_, px := startCore(t, Config{Router: staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}}, MinSE: 90 * time.Second})
	inv := strings.Replace(invite(uac, px, "se1", "z9hG4bKse1"), "Content-Length: 0", "Session-Expires: 30\r\nContent-Length: 0", 1)
	uac.send(px, inv)
	uac.expect(100)
	r := uac.expect(422)
	if got := string(r.GetByName("Min-SE")); got != "90" {
		t.Fatalf("Min-SE %q, want 90", got)
	}
	if m := uas.recv(200 * time.Millisecond); m != nil {
		t.Fatalf("the INVITE was forwarded: %s", firstLine(m))
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
	uac, uas := newPeer(t), newPeer(t)
	core, px := startCore(t, Config{Router: staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}},
		Txn: txn.Config{T1: 50 * time.Millisecond}, Media: relay, MediaMode: RelayAlways})
	aAddr := udpSocket(t).LocalAddr().(*net.UDPAddr).AddrPort()

	uac.send(px, withBody(invite(uac, px, "st1", "z9hG4bKst1"), offerSDP(aAddr)))
	uac.expect(100)
	inv := uas.expectRequest("INVITE")
	ok := strings.Replace(uas.answer(inv, 200, "b1"), "Content-Length: 0", "Session-Expires: 2;refresher=uac\r\nContent-Length: 0", 1)
	uas.send(px, withBody(ok, offerSDP(udpSocket(t).LocalAddr().(*net.UDPAddr).AddrPort())))
	r200 := uac.expect(200)
	rr := string(r200.Get(sip.KindRecordRoute))
	to := string(r200.Get(sip.KindTo))

	// One refresh after 1 s: the call must still be up at 2.5 s.
	time.Sleep(time.Second)
	reinv := fmt.Sprintf("INVITE sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKst2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: st1\r\nCSeq: 2 INVITE\r\n"+
		"Contact: <sip:alice@%s>\r\nSession-Expires: 2;refresher=uac\r\nContent-Length: 0\r\n\r\n", uas.addr, uac.addr, rr, to, uac.addr)
	uac.send(px, reinv)
	uac.expect(100)
	re := uas.expectRequest("INVITE")
	uas.send(px, strings.Replace(uas.answer(re, 200, "b1"), "Content-Length: 0", "Session-Expires: 2;refresher=uac\r\nContent-Length: 0", 1))
	uac.expect(200)
	if m := uas.recv(1500 * time.Millisecond); m != nil && m.MethodKind() == sip.BYE {
		t.Fatal("BYE although the session was refreshed")
	}
	// No further refresh: both sides get a BYE.
	byeA := uac.expectRequestWithin("BYE", 3*time.Second)
	byeB := uas.expectRequestWithin("BYE", 3*time.Second)
	for _, b := range []*sip.Message{byeA, byeB} {
		if !strings.Contains(string(b.GetByName("Reason")), "cause=408") {
			t.Errorf("BYE without the Reason: %s", b.Bytes())
		}
	}
	if got := string(byeB.RequestURIBytes()); got != "sip:uas@"+uas.addr.String() {
		t.Errorf("BYE to the callee has Request-URI %q", got)
	}
	if n, _ := byeB.CSeq(); n != 3 {
		t.Errorf("BYE to the callee has CSeq %d, want 3 (after the caller's 2)", n)
	}
	if string(byeA.Get(sip.KindFrom)) != to {
		t.Errorf("BYE to the caller comes from %q, want the callee's To %q", byeA.Get(sip.KindFrom), to)
	}
	uac.send(px, uac.answer(byeA, 200, "a1"))
	uas.send(px, uas.answer(byeB, 200, "b1"))
	if core.MediaCalls() != 0 || relay.Stats().PortsInUse != 0 || core.Stats().DialogsEnded.Load() != 1 {
		t.Fatalf("after the session ended: media calls %d, relay %+v, dialogs ended %d", core.MediaCalls(), relay.Stats(), core.Stats().DialogsEnded.Load())
	}
}

// TestSessionIntervalInserted: with a session interval configured, an
// INVITE that asks for no session timer is forwarded asking for one (RFC
// 4028 §8.1); one that asks keeps its own.
func TestSessionIntervalInserted(t *testing.T) {
	uac, uas := newPeer(t), newPeer(t)
	_, px := startCore(t, Config{Router: staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}}, SessionInterval: 1800 * time.Second})
	uac.send(px, invite(uac, px, "si1", "z9hG4bKsi1"))
	if got := string(uas.expectRequestFor("INVITE", "si1").Get(sip.KindSessionExpires)); got != "1800" {
		t.Errorf("Session-Expires %q, want 1800 inserted", got)
	}
	uac.send(px, strings.Replace(invite(uac, px, "si2", "z9hG4bKsi2"), "Content-Length: 0", "Session-Expires: 600;refresher=uac\r\nContent-Length: 0", 1))
	if got := string(uas.expectRequestFor("INVITE", "si2").Get(sip.KindSessionExpires)); got != "600;refresher=uac" {
		t.Errorf("Session-Expires %q, want the caller's own", got)
	}
}
