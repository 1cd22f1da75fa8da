package proxy

import (
	"net/netip"
	"testing"

	"sipedge/sip"
)

// The Vias a response of a hiding branch gets back are the request's as
// forwarded: the top one with received and the filled rport (RFC 3261
// §18.2.1, RFC 3581 §4), the others as received, whatever the response
// carried below sipedge's Via.
func TestRestoreVias(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name, vias, want string
	}{
		{"rport filled, received added", "Via: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK1\r\n",
			"Via: SIP/2.0/UDP 10.0.0.5:5060;rport=40000;branch=z9hG4bK1;received=192.0.2.1\r\n"},
		{"two values in one field, two fields", "Via: SIP/2.0/UDP 192.0.2.1:40000;branch=z9hG4bK1 , SIP/2.0/TCP 10.0.0.5;branch=z9hG4bK0\r\nv: SIP/2.0/UDP 10.0.0.6;branch=z9hG4bKx\r\n",
			"Via: SIP/2.0/UDP 192.0.2.1:40000;branch=z9hG4bK1, SIP/2.0/TCP 10.0.0.5;branch=z9hG4bK0\r\nVia: SIP/2.0/UDP 10.0.0.6;branch=z9hG4bKx\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req sip.Message
			if err := req.Parse([]byte("INVITE sip:b@example.com SIP/2.0\r\n"+tc.vias+"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\n"+
				"To: <sip:b@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"), nil); err != nil {
				t.Fatal(err)
			}
			via, _ := req.TopVia()
			vias := appendRequestVias(nil, &req, &via, netip.MustParseAddrPort("192.0.2.1:40000"))
			if string(vias) != tc.want {
				t.Fatalf("vias\n%q\nwant\n%q", vias, tc.want)
			}
			var resp sip.Message
			if err := resp.Parse([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKSe1\r\nVia: SIP/2.0/UDP 203.0.113.66;branch=z9hG4bKforged\r\n"+
				"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"), nil); err != nil {
				t.Fatal(err)
			}
			got := string(c.replaceVias(nil, &resp, vias))
			want := "SIP/2.0 200 OK\r\n" + tc.want + "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
			if got != want {
				t.Errorf("response\n%q\nwant\n%q", got, want)
			}
		})
	}
}
