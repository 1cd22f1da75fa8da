package callmedia_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/features/callmedia"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
)

// rtp is a PCMU packet of 20 ms with sequence number seq.
func rtp(seq uint16) []byte {
	p := make([]byte, 172)
	p[0] = 0x80
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(p[8:], 0xcafe)
	return p
}

// TestCallMediaOneWay: through a real relay on loopback, the caller sends
// RTP and the callee, whose SDP names an address it does not signal from,
// sends none. The call's media says one-way and why, while it runs and
// after the BYE; the ended stream is counted in the metrics.
func TestCallMediaOneWay(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	mc, relay, px := startMedia(t, proxytest.To(uas.Addr), callmedia.Config{Mode: callmedia.Always})
	mc.SetGrace(100 * time.Millisecond)
	rtpA := proxytest.UDPSocket(t)
	aAddr := addrOf(rtpA)
	// Nobody listens there: a loopback address other than the callee's
	// signalling one, as a phone on another network would advertise.
	calleeSDP := netip.MustParseAddrPort("127.0.0.5:4000")

	if _, ok := mc.CallMedia("ow1"); ok {
		t.Fatal("media of a call that does not exist")
	}
	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "ow1", "z9hG4bKow1"), proxytest.OfferSDP(aAddr)))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	answer := "v=0\r\no=- 2 2 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	uas.Send(px, proxytest.WithBody(uas.Answer(inv, 200, "b1"), answer))
	r200 := uac.Expect(200)
	relayA := proxytest.RelayPort(t, r200)
	for seq := uint16(1); seq <= 20; seq++ {
		rtpA.WriteToUDPAddrPort(rtp(seq), relayA)
		time.Sleep(20 * time.Millisecond)
	}

	var m callmedia.Media
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		m, ok = mc.CallMedia("ow1")
		if !ok {
			t.Fatal("no media for the call in progress")
		}
		if len(m.Streams) == 1 && m.Streams[0].Legs[0].Forwarded == 20 && len(m.Diagnosis) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	check := func(when string, m callmedia.Media) {
		t.Helper()
		if m.Audio != "one-way" || len(m.Streams) != 1 || m.Streams[0].Type != "audio" || len(m.Streams[0].Legs) != 2 {
			t.Fatalf("%s: %+v", when, m)
		}
		a, b := m.Streams[0].Legs[0], m.Streams[0].Legs[1]
		if a.Side != "caller" || a.Packets != 20 || a.Forwarded != 20 || !a.Latched || a.Source != aAddr || a.SDP != aAddr ||
			a.Signalling != uac.Addr || a.Relay != relayA || a.Codec != "PCMU" || a.Lost != 0 || a.MOS == nil || *a.MOS < 4 || a.First == nil {
			t.Errorf("%s: caller leg %+v", when, a)
		}
		if b.Side != "callee" || b.Packets != 0 || b.SDP != calleeSDP || !b.SDPPrivate || b.Signalling != uas.Addr ||
			b.Codec != "PCMU" || b.MOS != nil || b.First != nil || b.Relay.Port() < 41000 {
			t.Errorf("%s: callee leg %+v", when, b)
		}
		found := false
		for _, d := range m.Diagnosis {
			found = found || strings.HasPrefix(d, "No packets from the callee since the call was answered at ") &&
				strings.Contains(d, "; its SDP advertised 127.0.0.5:4000, a private address other than its signalling address 127.0.0.1, and nothing arrived at sipedge's "+b.Relay.String())
		}
		if !found || len(m.Diagnosis) != 1 {
			t.Errorf("%s: diagnosis %q", when, m.Diagnosis)
		}
	}
	check("in progress", m)

	rr := string(r200.Get(sip.KindRecordRoute))
	uac.Send(px, fmt.Sprintf("BYE sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKow2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"+
		"Call-ID: ow1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", uas.Addr, uac.Addr, rr))
	b := uas.ExpectRequest("BYE")
	uas.Send(px, uas.Answer(b, 200, "b1"))
	uac.Expect(200)
	if relay.Stats().Calls != 0 {
		t.Fatalf("relay call not closed: %+v", relay.Stats())
	}
	ended, ok := mc.CallMedia("ow1")
	if !ok {
		t.Fatal("the media of the ended call is gone")
	}
	check("ended", ended)
	st := mc.Stats()
	if st.StreamsEnded != 1 || st.OneWayStreams != 1 || st.ZeroPacketStreams != 0 ||
		st.StreamMOS.Count() != 1 || st.StreamLossPercent.Count() != 1 || st.StreamJitter.Count() != 1 {
		t.Errorf("stats %+v", st)
	}
	if st.StreamLossPercent.Counts[0] != 1 { // 0 % lost: the first bucket
		t.Errorf("loss distribution %+v", st.StreamLossPercent)
	}
}
