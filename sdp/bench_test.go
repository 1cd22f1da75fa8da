package sdp

import (
	"net/netip"
	"testing"
)

// benchOffer is a typical audio offer from a desk phone or softphone behind
// NAT: five codecs, DTMF, an explicit a=rtcp, about 400 bytes.
var benchOffer = []byte("v=0\r\n" +
	"o=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\n" +
	"s=Talk\r\n" +
	"c=IN IP4 192.168.1.20\r\n" +
	"t=0 0\r\n" +
	"m=audio 11780 RTP/AVP 96 9 0 8 101\r\n" +
	"a=rtpmap:96 opus/48000/2\r\n" +
	"a=fmtp:96 useinbandfec=1; stereo=0; sprop-stereo=0\r\n" +
	"a=rtpmap:9 G722/8000\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-15\r\n" +
	"a=ptime:20\r\n" +
	"a=maxptime:60\r\n" +
	"a=sendrecv\r\n" +
	"a=rtcp:11781 IN IP4 192.168.1.20\r\n" +
	"a=rtcp-fb:* trr-int 1000\r\n" +
	"a=rtcp-fb:* ccm tmmbr\r\n")

var benchPlan = Plan{
	Media:  []MediaPlan{{Relay: true, Addr: netip.MustParseAddr("203.0.113.5"), RTPPort: 30000}},
	Origin: netip.MustParseAddr("203.0.113.5"),
}

// BenchmarkParse is indexing and validating the offer, then reading the
// media view the relay decides on.
func BenchmarkParse(b *testing.B) {
	var s Session
	b.SetBytes(int64(len(benchOffer)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Parse(benchOffer); err != nil {
			b.Fatal(err)
		}
		if m := s.Media(0); m.Port != 11780 {
			b.Fatal(m.Port)
		}
	}
}

// BenchmarkRewrite is writing the relayed offer from a parsed Session:
// origin, c=, m= port and a=rtcp port and address.
func BenchmarkRewrite(b *testing.B) {
	var s Session
	if err := s.Parse(benchOffer); err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, 1024)
	b.SetBytes(int64(len(benchOffer)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if out, err = s.AppendRewrite(out[:0], &benchPlan); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRewrite is the proxy's whole per-offer work on the body.
func BenchmarkParseRewrite(b *testing.B) {
	var s Session
	out := make([]byte, 0, 1024)
	b.SetBytes(int64(len(benchOffer)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Parse(benchOffer); err != nil {
			b.Fatal(err)
		}
		var err error
		if out, err = s.AppendRewrite(out[:0], &benchPlan); err != nil {
			b.Fatal(err)
		}
	}
}
