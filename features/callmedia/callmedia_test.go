package callmedia_test

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
	"sipedge/transport"
)

// startMedia runs a core with the media feature relaying through a relay
// on ports 41000-41099, and the dialog feature (the old core followed
// dialogs always; sipedge runs both together).
func startMedia(t *testing.T, router proxy.Router, cfg callmedia.Config) (*callmedia.Feature, *media.Relay, netip.AddrPort) {
	t.Helper()
	relay, err := media.New(media.Config{PortMin: 41000, PortMax: 41099})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() }) // after the core's cleanup (LIFO)
	f, px := startWith(t, router, relay, cfg)
	return f, relay, px
}

// startWith runs a core with the media feature over relay and the dialog
// feature.
func startWith(t *testing.T, router proxy.Router, relay *media.Relay, cfg callmedia.Config) (*callmedia.Feature, netip.AddrPort) {
	t.Helper()
	var f *callmedia.Feature
	_, px := proxytest.Start(t, router, func(c *proxy.Core) []proxy.Feature {
		f = callmedia.New(c, relay, cfg)
		return []proxy.Feature{f, dialogs.New(c, dialogs.Config{})}
	})
	return f, px
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestMediaRelayCall: with the relay always on, the offer and the answer
// are rewritten to the relay's ports, RTP flows both ways through them, and
// BYE frees the call.
func TestMediaRelayCall(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	mc, relay, px := startMedia(t, proxytest.To(uas.Addr), callmedia.Config{Mode: callmedia.Always})
	rtpA, rtpB := proxytest.UDPSocket(t), proxytest.UDPSocket(t)
	aAddr, bAddr := addrOf(rtpA), addrOf(rtpB)

	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "m1", "z9hG4bKm1"), proxytest.OfferSDP(aAddr)))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	relayB := proxytest.RelayPort(t, inv)
	if relayB == aAddr || relayB.Port() < 41000 || relayB.Port() > 41099 {
		t.Fatalf("offer not rewritten to the relay: %s\n%s", relayB, inv.Body())
	}
	if !strings.Contains(string(inv.Body()), "a=rtpmap:101 telephone-event/8000\r\n") {
		t.Fatal("untouched lines changed")
	}
	ok := proxytest.WithBody(uas.Answer(inv, 200, "b1"), proxytest.OfferSDP(bAddr))
	uas.Send(px, ok)
	r200 := uac.Expect(200)
	relayA := proxytest.RelayPort(t, r200)
	if relayA == bAddr || relayA.Port() < 41000 {
		t.Fatalf("answer not rewritten: %s", relayA)
	}
	// RTP both ways through the relay.
	rtpA.WriteToUDPAddrPort(proxytest.RTPPacket(1), relayA)
	proxytest.ExpectRTP(t, rtpB, relayB)
	rtpB.WriteToUDPAddrPort(proxytest.RTPPacket(1), relayB)
	proxytest.ExpectRTP(t, rtpA, relayA)
	if mc.Calls() != 1 || relay.Stats().Calls != 1 {
		t.Fatalf("calls: proxy %d, relay %d", mc.Calls(), relay.Stats().Calls)
	}
	rr := string(r200.Get(sip.KindRecordRoute))
	bye := fmt.Sprintf("BYE sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKm2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"+
		"Call-ID: m1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", uas.Addr, uac.Addr, rr)
	uac.Send(px, bye)
	b := uas.ExpectRequest("BYE")
	uas.Send(px, uas.Answer(b, 200, "b1"))
	uac.Expect(200)
	if mc.Calls() != 0 || relay.Stats().Calls != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after BYE: proxy %d calls, relay %+v", mc.Calls(), relay.Stats())
	}
}

// TestMediaRelayFailures: a refused call and a malformed offer leave no
// call and no port behind; the malformed offer is answered 400 and never
// forwarded (RFC 3261 §21.4.1 for 400; 488 for SDP sipedge cannot relay).
func TestMediaRelayFailures(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	mc, relay, px := startMedia(t, proxytest.To(uas.Addr), callmedia.Config{Mode: callmedia.Always})
	aAddr := addrOf(proxytest.UDPSocket(t))

	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "f1", "z9hG4bKf1"), proxytest.OfferSDP(aAddr)))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	uas.Send(px, uas.Answer(inv, 486, "b1"))
	uac.Expect(486)
	if mc.Calls() != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after 486: proxy %d calls, relay %+v", mc.Calls(), relay.Stats())
	}

	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "f2", "z9hG4bKf2"), "v=0\r\nthis is not SDP\r\n"))
	uac.Expect(100)
	uac.Expect(400)
	for m := uas.Recv(300 * time.Millisecond); m != nil; m = uas.Recv(300 * time.Millisecond) {
		if m.MethodKind() == sip.INVITE {
			t.Fatalf("malformed offer forwarded: %s", proxytest.FirstLine(m))
		}
	}
	noConn := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "f3", "z9hG4bKf3"), noConn))
	uac.Expect(100)
	uac.Expect(488)
	if mc.Calls() != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after refused offers: proxy %d calls, relay %+v", mc.Calls(), relay.Stats())
	}
}

// TestMediaRelayAutoSkipsLocalCall: in auto mode a call between two UAs on
// the same network, not behind NAT, keeps its SDP as it was.
func TestMediaRelayAutoSkipsLocalCall(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	mc, _, px := startMedia(t, proxytest.To(uas.Addr), callmedia.Config{Mode: callmedia.Auto})
	aAddr := netip.MustParseAddrPort("127.0.0.1:7000")
	body := proxytest.OfferSDP(aAddr)
	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "l1", "z9hG4bKl1"), body))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	if string(inv.Body()) != body || mc.Calls() != 0 {
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
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	mc, px := startWith(t, proxytest.To(uas.Addr), relay, callmedia.Config{Mode: callmedia.Always, MaxCallsPerUser: 2})
	aAddr := addrOf(proxytest.UDPSocket(t))
	from := func(user, msg string) string {
		return strings.Replace(msg, "<sip:alice@example.com>", "<sip:"+user+"@example.com>", 1)
	}

	// Two ringing calls from alice use both port pairs.
	invs := map[string]*sip.Message{}
	for _, id := range []string{"l1", "l2"} {
		uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, id, "z9hG4bK"+id), proxytest.OfferSDP(aAddr)))
		uac.ExpectFor(100, id)
		inv := uas.ExpectRequestFor("INVITE", id)
		invs[id] = inv
		uas.Send(px, uas.Answer(inv, 180, "b"+id))
		uac.ExpectFor(180, id)
	}
	// A third from alice: over her limit.
	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "l3", "z9hG4bKl3"), proxytest.OfferSDP(aAddr)))
	uac.ExpectFor(403, "l3")
	// One from carol: within her limit, but no port is left.
	uac.Send(px, proxytest.WithBody(from("carol", proxytest.Invite(uac, px, "l4", "z9hG4bKl4")), proxytest.OfferSDP(aAddr)))
	uac.ExpectFor(503, "l4")
	if st := relay.Stats(); st.Calls != 2 || st.PortsInUse != 8 || mc.Calls() != 2 {
		t.Fatalf("after the refusals: relay %+v, media calls %d; want only the two ringing calls", st, mc.Calls())
	}
	// alice cancels the first: its ports and her slot come back.
	uac.Send(px, proxytest.CancelFor("l1", "z9hG4bKl1", uac, px))
	uac.ExpectFor(200, "l1")
	c := uas.ExpectRequestFor("CANCEL", "l1")
	uas.Send(px, uas.Answer(c, 200, "x"))
	uas.Send(px, uas.Answer(invs["l1"], 487, "bl1"))
	uac.ExpectFor(487, "l1")
	if st := relay.Stats(); st.Calls != 1 || st.PortsInUse != 4 || mc.Calls() != 1 {
		t.Fatalf("after CANCEL: relay %+v, media calls %d", st, mc.Calls())
	}
	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "l5", "z9hG4bKl5"), proxytest.OfferSDP(aAddr)))
	uac.ExpectFor(100, "l5")
	uas.ExpectRequestFor("INVITE", "l5")
}

// TestMediaRelayForked: an INVITE forked to three callees gets streams
// per branch. Each callee is offered relay ports of its own; the two that
// send early media (183 with SDP) reach the caller at once, each from the
// relay port its own 183 named, and the caller's media to either port
// reaches that callee only. The branch that fails frees its ports at once;
// the 2xx keeps its branch's streams and frees the rest.
func TestMediaRelayForked(t *testing.T) {
	uac := proxytest.NewPeer(t)
	uas := []*proxytest.Peer{proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)}
	var group []proxy.Target
	for _, p := range uas {
		group = append(group, proxy.Target{Proto: transport.UDP, Addr: p.Addr})
	}
	mc, relay, px := startMedia(t, proxytest.Static{Groups: [][]proxy.Target{group}}, callmedia.Config{Mode: callmedia.Always})
	rtpA := proxytest.UDPSocket(t)
	rtpB := []*net.UDPConn{proxytest.UDPSocket(t), proxytest.UDPSocket(t), proxytest.UDPSocket(t)}

	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "fk1", "z9hG4bKfk1"), proxytest.OfferSDP(addrOf(rtpA))))
	uac.Expect(100)
	invs := make([]*sip.Message, 3)
	relayB := make([]netip.AddrPort, 3)
	seen := map[netip.AddrPort]bool{}
	for i, p := range uas {
		invs[i] = p.ExpectRequest("INVITE")
		relayB[i] = proxytest.RelayPort(t, invs[i])
		if relayB[i].Port() < 41000 || relayB[i].Port() > 41099 || seen[relayB[i]] {
			t.Fatalf("branch %d offered %v (others %v)", i, relayB[i], relayB[:i])
		}
		seen[relayB[i]] = true
	}
	if st := relay.Stats(); st.Calls != 1 || st.Streams != 3 {
		t.Fatalf("relay %+v, want one call with a stream per branch", st)
	}
	// Callee 3 is busy: its branch's ports go at once.
	uas[2].Send(px, uas[2].Answer(invs[2], 486, "t3"))
	uas[2].ExpectRequest("ACK")
	waitStreams(t, relay, 2)

	// Early media from callees 1 and 2.
	relayA := make([]netip.AddrPort, 2)
	for i := range relayA {
		uas[i].Send(px, proxytest.WithBody(uas[i].Answer(invs[i], 183, fmt.Sprintf("t%d", i+1)), proxytest.OfferSDP(addrOf(rtpB[i]))))
		relayA[i] = proxytest.RelayPort(t, uac.Expect(183))
	}
	if relayA[0] == relayA[1] || seen[relayA[0]] || seen[relayA[1]] {
		t.Fatalf("the 183s name %v, the offers %v: want a caller port per fork", relayA, relayB)
	}
	for i := range relayA {
		rtpB[i].WriteToUDPAddrPort(proxytest.RTPPacket(uint16(i+1)), relayB[i])
		proxytest.ExpectRTP(t, rtpA, relayA[i])
	}
	for i := range relayA {
		rtpA.WriteToUDPAddrPort(proxytest.RTPPacket(uint16(10+i)), relayA[i])
		proxytest.ExpectRTP(t, rtpB[i], relayB[i])
	}

	// Callee 2 answers: the call keeps fork 2, callee 1's branch is
	// cancelled and its streams freed.
	uas[1].Send(px, proxytest.WithBody(uas[1].Answer(invs[1], 200, "t2"), proxytest.OfferSDP(addrOf(rtpB[1]))))
	r200 := uac.Expect(200)
	if got := proxytest.RelayPort(t, r200); got != relayA[1] {
		t.Fatalf("200 names %v, its 183 named %v", got, relayA[1])
	}
	cancel := uas[0].ExpectRequest("CANCEL")
	uas[0].Send(px, uas[0].Answer(cancel, 200, "t1"))
	uas[0].Send(px, uas[0].Answer(invs[0], 487, "t1"))
	waitStreams(t, relay, 1)
	if st := relay.Stats(); st.PortsInUse != 4 {
		t.Errorf("relay %+v after the 2xx", st)
	}
	rtpA.WriteToUDPAddrPort(proxytest.RTPPacket(20), relayA[1])
	proxytest.ExpectRTP(t, rtpB[1], relayB[1])
	rtpB[1].WriteToUDPAddrPort(proxytest.RTPPacket(21), relayB[1])
	proxytest.ExpectRTP(t, rtpA, relayA[1])

	// The call's media is the answered fork's.
	m, ok := mc.CallMedia("fk1")
	if !ok || len(m.Streams) != 1 {
		t.Fatalf("CallMedia %+v, %v", m, ok)
	}
	if l := m.Streams[0].Legs; l[0].Relay != relayA[1] || l[1].Relay != relayB[1] || l[1].Source != addrOf(rtpB[1]) {
		t.Errorf("legs %+v, want the answered fork's ports", l)
	}

	rr := string(r200.Get(sip.KindRecordRoute))
	bye := fmt.Sprintf("BYE sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfk2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=t2\r\n"+
		"Call-ID: fk1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", uas[1].Addr, uac.Addr, rr)
	uac.Send(px, bye)
	b := uas[1].ExpectRequest("BYE")
	uas[1].Send(px, uas[1].Answer(b, 200, "t2"))
	uac.Expect(200)
	if mc.Calls() != 0 || relay.Stats().Calls != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after BYE: proxy %d calls, relay %+v", mc.Calls(), relay.Stats())
	}
}

// waitStreams waits until the relay has n streams.
func waitStreams(t *testing.T, relay *media.Relay, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for relay.Stats().Streams != n {
		if time.Now().After(deadline) {
			t.Fatalf("relay %+v, want %d streams", relay.Stats(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
