package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/media"
	"sipedge/sdp"
	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

func startMediaProxy(t *testing.T, router Router, mode RelayMode) (*Core, *media.Relay, netip.AddrPort) {
	t.Helper()
	relay, err := media.New(media.Config{PortMin: 41000, PortMax: 41099})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() }) // after the core's cleanup (LIFO)
	core, addr := startCore(t, Config{Router: router, Txn: txn.Config{T1: 500 * time.Millisecond}, Media: relay, MediaMode: mode})
	return core, relay, addr
}

func offerSDP(rtp netip.AddrPort) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
		rtp.Addr(), rtp.Addr(), rtp.Port())
}

func withBody(msg, body string) string {
	msg = strings.Replace(msg, "Content-Length: 0\r\n\r\n", fmt.Sprintf("Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n", len(body)), 1)
	return msg + body
}

// relayPort reads the audio address an SDP body names.
func relayPort(t *testing.T, m *sip.Message) netip.AddrPort {
	t.Helper()
	var s sdp.Session
	if err := s.Parse(m.Body()); err != nil {
		t.Fatalf("SDP: %v\n%s", err, m.Body())
	}
	md := s.Media(0)
	if cl, _ := m.ContentLength(), 0; cl != len(m.Body()) {
		t.Fatalf("Content-Length %d for a %d-byte body", cl, len(m.Body()))
	}
	return netip.AddrPortFrom(md.Conn.Addr, uint16(md.Port))
}

func udpSocket(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rtpPacket(seq uint16) []byte {
	p := make([]byte, 172)
	p[0], p[1] = 0x80, 0
	p[2], p[3] = byte(seq>>8), byte(seq)
	p[8], p[11] = 0x12, 0x34
	return p
}

func expectRTP(t *testing.T, c *net.UDPConn, from netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no RTP: %v", err)
	}
	if n != 172 || src != from {
		t.Fatalf("got %d bytes from %s, want 172 from the relay port %s", n, src, from)
	}
}

// TestMediaRelayCall: with the relay always on, the offer and the answer
// are rewritten to the relay's ports, RTP flows both ways through them, and
// BYE frees the call.
func TestMediaRelayCall(t *testing.T) {
	uac, uas := newPeer(t), newPeer(t)
	core, relay, px := startMediaProxy(t, staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}}, RelayAlways)
	rtpA, rtpB := udpSocket(t), udpSocket(t)
	aAddr, bAddr := rtpA.LocalAddr().(*net.UDPAddr).AddrPort(), rtpB.LocalAddr().(*net.UDPAddr).AddrPort()

	uac.send(px, withBody(invite(uac, px, "m1", "z9hG4bKm1"), offerSDP(aAddr)))
	uac.expect(100)
	inv := uas.expectRequest("INVITE")
	relayB := relayPort(t, inv)
	if relayB == aAddr || relayB.Port() < 41000 || relayB.Port() > 41099 {
		t.Fatalf("offer not rewritten to the relay: %s\n%s", relayB, inv.Body())
	}
	if !strings.Contains(string(inv.Body()), "a=rtpmap:101 telephone-event/8000\r\n") {
		t.Fatal("untouched lines changed")
	}
	ok := withBody(uas.answer(inv, 200, "b1"), offerSDP(bAddr))
	uas.send(px, ok)
	r200 := uac.expect(200)
	relayA := relayPort(t, r200)
	if relayA == bAddr || relayA.Port() < 41000 {
		t.Fatalf("answer not rewritten: %s", relayA)
	}
	// RTP both ways through the relay.
	rtpA.WriteToUDPAddrPort(rtpPacket(1), relayA)
	expectRTP(t, rtpB, relayB)
	rtpB.WriteToUDPAddrPort(rtpPacket(1), relayB)
	expectRTP(t, rtpA, relayA)
	if core.MediaCalls() != 1 || relay.Stats().Calls != 1 {
		t.Fatalf("calls: proxy %d, relay %d", core.MediaCalls(), relay.Stats().Calls)
	}
	rr := string(r200.Get(sip.KindRecordRoute))
	bye := fmt.Sprintf("BYE sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKm2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"+
		"Call-ID: m1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", uas.addr, uac.addr, rr)
	uac.send(px, bye)
	b := uas.expectRequest("BYE")
	uas.send(px, uas.answer(b, 200, "b1"))
	uac.expect(200)
	if core.MediaCalls() != 0 || relay.Stats().Calls != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after BYE: proxy %d calls, relay %+v", core.MediaCalls(), relay.Stats())
	}
}

// TestMediaRelayFailures: a refused call and a malformed offer leave no
// call and no port behind; the malformed offer is answered 400 and never
// forwarded (RFC 3261 §21.4.1 for 400; 488 for SDP sipedge cannot relay).
func TestMediaRelayFailures(t *testing.T) {
	uac, uas := newPeer(t), newPeer(t)
	core, relay, px := startMediaProxy(t, staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}}, RelayAlways)
	aAddr := udpSocket(t).LocalAddr().(*net.UDPAddr).AddrPort()

	uac.send(px, withBody(invite(uac, px, "f1", "z9hG4bKf1"), offerSDP(aAddr)))
	uac.expect(100)
	inv := uas.expectRequest("INVITE")
	uas.send(px, uas.answer(inv, 486, "b1"))
	uac.expect(486)
	if core.MediaCalls() != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after 486: proxy %d calls, relay %+v", core.MediaCalls(), relay.Stats())
	}

	uac.send(px, withBody(invite(uac, px, "f2", "z9hG4bKf2"), "v=0\r\nthis is not SDP\r\n"))
	uac.expect(100)
	uac.expect(400)
	for m := uas.recv(300 * time.Millisecond); m != nil; m = uas.recv(300 * time.Millisecond) {
		if m.MethodKind() == sip.INVITE {
			t.Fatalf("malformed offer forwarded: %s", firstLine(m))
		}
	}
	noConn := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	uac.send(px, withBody(invite(uac, px, "f3", "z9hG4bKf3"), noConn))
	uac.expect(100)
	uac.expect(488)
	if core.MediaCalls() != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after refused offers: proxy %d calls, relay %+v", core.MediaCalls(), relay.Stats())
	}
}

// TestMediaRelayAutoSkipsLocalCall: in auto mode a call between two UAs on
// the same network, not behind NAT, keeps its SDP as it was.
func TestMediaRelayAutoSkipsLocalCall(t *testing.T) {
	uac, uas := newPeer(t), newPeer(t)
	core, _, px := startMediaProxy(t, staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}}, RelayAuto)
	aAddr := netip.MustParseAddrPort("127.0.0.1:7000")
	body := offerSDP(aAddr)
	uac.send(px, withBody(invite(uac, px, "l1", "z9hG4bKl1"), body))
	uac.expect(100)
	inv := uas.expectRequest("INVITE")
	if string(inv.Body()) != body || core.MediaCalls() != 0 {
		t.Fatalf("SDP changed in auto mode for a local call:\n%s", inv.Body())
	}
}

// TestMediaRelayLimits: when the relay has no port pair left the INVITE
// is answered 503 and nothing stays allocated; a caller over its
// concurrent-call limit gets 403; ending a call frees the caller's slot.
func TestMediaRelayLimits(t *testing.T) {
	relay, err := media.New(media.Config{PortMin: 44000, PortMax: 44007}) // 4 pairs: two streams on one address
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	uac, uas := newPeer(t), newPeer(t)
	core, px := startCore(t, Config{Router: staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}},
		Txn: txn.Config{T1: 500 * time.Millisecond}, Media: relay, MediaMode: RelayAlways, MaxCallsPerUser: 2})
	aAddr := udpSocket(t).LocalAddr().(*net.UDPAddr).AddrPort()
	from := func(user, msg string) string {
		return strings.Replace(msg, "<sip:alice@example.com>", "<sip:"+user+"@example.com>", 1)
	}

	// Two ringing calls from alice use both port pairs.
	invs := map[string]*sip.Message{}
	for _, id := range []string{"l1", "l2"} {
		uac.send(px, withBody(invite(uac, px, id, "z9hG4bK"+id), offerSDP(aAddr)))
		uac.expectFor(100, id)
		inv := uas.expectRequestFor("INVITE", id)
		invs[id] = inv
		uas.send(px, uas.answer(inv, 180, "b"+id))
		uac.expectFor(180, id)
	}
	// A third from alice: over her limit.
	uac.send(px, withBody(invite(uac, px, "l3", "z9hG4bKl3"), offerSDP(aAddr)))
	uac.expectFor(403, "l3")
	// One from carol: within her limit, but no port is left.
	uac.send(px, withBody(from("carol", invite(uac, px, "l4", "z9hG4bKl4")), offerSDP(aAddr)))
	uac.expectFor(503, "l4")
	if st := relay.Stats(); st.Calls != 2 || st.PortsInUse != 8 || core.MediaCalls() != 2 {
		t.Fatalf("after the refusals: relay %+v, media calls %d; want only the two ringing calls", st, core.MediaCalls())
	}
	// alice cancels the first: its ports and her slot come back.
	uac.send(px, cancelFor("l1", "z9hG4bKl1", uac, px))
	uac.expectFor(200, "l1")
	c := uas.expectRequestFor("CANCEL", "l1")
	uas.send(px, uas.answer(c, 200, "x"))
	uas.send(px, uas.answer(invs["l1"], 487, "bl1"))
	uac.expectFor(487, "l1")
	if st := relay.Stats(); st.Calls != 1 || st.PortsInUse != 4 || core.MediaCalls() != 1 {
		t.Fatalf("after CANCEL: relay %+v, media calls %d", st, core.MediaCalls())
	}
	uac.send(px, withBody(invite(uac, px, "l5", "z9hG4bKl5"), offerSDP(aAddr)))
	uac.expectFor(100, "l5")
	uas.expectRequestFor("INVITE", "l5")
}

func cancelFor(callID, branch string, from *peer, px netip.AddrPort) string {
	return fmt.Sprintf("CANCEL sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: %s\r\nCSeq: 1 CANCEL\r\n"+
		"Content-Length: 0\r\n\r\n", from.addr, branch, callID)
}
