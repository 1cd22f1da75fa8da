package sip

import (
	"testing"
)

// benchInvite is a typical INVITE from a desk phone: 11 headers, SDP with
// four codecs, 900 bytes.
var benchInvite = []byte("INVITE sip:bob@biloxi.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK776asdhds;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: \"Bob\" <sip:bob@biloxi.example.com>\r\n" +
	"From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@192.168.1.20:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"\r\n" +
	"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER\r\n" +
	"Supported: replaces, timer, 100rel\r\n" +
	"User-Agent: Yealink T46S 66.86\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 289\r\n" +
	"\r\n" +
	"v=0\r\n" +
	"o=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\n" +
	"s=Talk\r\n" +
	"c=IN IP4 192.168.1.20\r\n" +
	"t=0 0\r\n" +
	"m=audio 11780 RTP/AVP 0 8 9 101\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:9 G722/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-15\r\n" +
	"a=sendrecv\r\n" +
	"a=rtcp:11781\r\n" +
	"a=rtcp-fb:* nack\r\n")

var benchVia = []byte("SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK.sipedge.0a1b2c3d4e5f")

// BenchmarkForwardInvite is the proxy's per-message work on the message
// layer: parse and validate an INVITE, add a Via, decrement Max-Forwards,
// write it out.
func BenchmarkForwardInvite(b *testing.B) {
	var m Message
	out := make([]byte, 0, 2048)
	b.SetBytes(int64(len(benchInvite)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := m.Parse(benchInvite, nil); err != nil {
			b.Fatal(err)
		}
		if err := m.InsertHeader(m.Find(KindVia), "Via", benchVia); err != nil {
			b.Fatal(err)
		}
		mf, _ := m.MaxForwards()
		if err := m.SetMaxForwards(mf - 1); err != nil {
			b.Fatal(err)
		}
		out = m.AppendTo(out[:0])
	}
	if len(out) != len(benchInvite)+len("Via: \r\n")+len(benchVia) {
		b.Fatalf("output %d bytes", len(out))
	}
}

// BenchmarkParseInvite is parsing and validation alone.
func BenchmarkParseInvite(b *testing.B) {
	var m Message
	b.SetBytes(int64(len(benchInvite)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := m.Parse(benchInvite, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTopVia is the typed view a proxy reads on every message.
func BenchmarkTopVia(b *testing.B) {
	var m Message
	if err := m.Parse(benchInvite, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		v, err := m.TopVia()
		if err != nil || len(v.Branch) == 0 {
			b.Fatal(err)
		}
	}
}
