package sdp

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"sipedge/sip"
)

// tblHead is the session part every table case starts from.
var tblHead = []string{"v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"}

// tblBody joins lines with CRLF, each terminated.
func tblBody(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// tblWith returns tblHead followed by extra lines.
func tblWith(extra ...string) []byte {
	return tblBody(append(append([]string(nil), tblHead...), extra...)...)
}

// tblSet returns tblHead with line i replaced (or removed when repl is "").
func tblSet(i int, repl string, extra ...string) []byte {
	h := append([]string(nil), tblHead...)
	if repl == "" {
		h = append(h[:i], h[i+1:]...)
	} else {
		h[i] = repl
	}
	return tblBody(append(h, extra...)...)
}

// TestParseStatus is the status table: every rule of Parse, the RFC section
// it comes from, and whether it refuses (400: not SDP or broken syntax; 488:
// well-formed but not relayable or over a limit) or accepts (0).
func TestParseStatus(t *testing.T) {
	many := func(n int, line string) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = line
		}
		return l
	}
	for _, tc := range []struct {
		name   string
		rfc    string
		body   []byte
		status int
		offset int // checked when > 0
	}{
		// Accepted.
		{"minimal offer", "RFC 8866 §5", tblWith("m=audio 4000 RTP/AVP 0"), 0, 0},
		{"no media at all", "RFC 8866 §5", tblWith(), 0, 0},
		{"bare LF line ends", "RFC 8866 §5", []byte("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"), 0, 0},
		{"mixed CRLF and LF", "RFC 8866 §5", []byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\ns=-\r\nc=IN IP4 192.0.2.1\nt=0 0\r\n"), 0, 0},
		{"no terminator on the last line", "RFC 8866 §5", bytes.TrimSuffix(tblWith("m=audio 4000 RTP/AVP 0"), []byte("\r\n")), 0, 0},
		{"trailing empty line", "RFC 8866 §5", append(tblWith("m=audio 4000 RTP/AVP 0"), "\r\n"...), 0, 0},
		{"several trailing empty lines", "RFC 8866 §5", append(tblWith(), "\n\r\n\n"...), 0, 0},
		{"s= single space", "RFC 4566 §5.3", tblSet(2, "s= "), 0, 0},
		{"unknown type letter (GB28181 y=)", "RFC 8866 §5", tblWith("m=video 4000 RTP/AVP 96", "y=0100000001"), 0, 0},
		{"upper-case type letter", "RFC 8866 §5", tblWith("X=vendor"), 0, 0},
		{"t= absent", "RFC 8866 §5.9", tblSet(4, "", "m=audio 4000 RTP/AVP 0"), 0, 0},
		{"host name under IP4", "RFC 8866 §9 FQDN", tblSet(3, "c=IN IP4 pc33.atlanta.example.com"), 0, 0},
		{"host name under IP6", "RFC 8866 §9 FQDN", tblSet(3, "c=IN IP6 host6.example.com."), 0, 0},
		{"IPv6 compressed, upper case", "RFC 4291 §2.2", tblSet(3, "c=IN IP6 2001:DB8::1"), 0, 0},
		{"IPv6 unspecified", "RFC 3264 §8.4", tblSet(3, "c=IN IP6 ::"), 0, 0},
		{"IPv6 with dotted quad", "RFC 4291 §2.2", tblSet(3, "c=IN IP6 ::ffff:192.0.2.1"), 0, 0},
		{"IPv4 multicast with TTL", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 224.2.1.1/127"), 0, 0},
		{"IPv4 multicast with TTL and /1", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 224.2.1.1/127/1"), 0, 0},
		{"IPv6 multicast /1", "RFC 8866 §5.7", tblSet(3, "c=IN IP6 ff15::101/1"), 0, 0},
		{"trailing white space after c=", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 192.0.2.1 \t"), 0, 0},
		{"lower-case IN ip4", "RFC 8866 §5.7", tblSet(3, "c=in ip4 192.0.2.1"), 0, 0},
		{"port with leading zeros", "RFC 8866 §5.14", tblWith("m=audio 04000 RTP/AVP 0"), 0, 0},
		{"port 65535", "RFC 8866 §5.14", tblWith("m=audio 65535 RTP/AVP 0"), 0, 0},
		{"rejected stream with a port count", "RFC 3264 §6", tblWith("m=audio 0/2 RTP/AVP 0"), 0, 0},
		{"port count on a stream sipedge does not relay", "RFC 8866 §5.14", tblWith("m=message 2855/2 TCP/MSRP *"), 0, 0},
		{"explicit port count 1", "RFC 8866 §5.14", tblWith("m=audio 4000/1 RTP/AVP 0"), 0, 0},
		{"rejected stream without any c=", "RFC 3264 §6", tblSet(3, "", "m=audio 0 RTP/AVP 0"), 0, 0},
		{"media c= only", "RFC 8866 §5.7", tblSet(3, "", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.2"), 0, 0},
		{"a=rtcp with address", "RFC 3605 §2.1", tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp:4001 IN IP4 192.0.2.1"), 0, 0},
		{"a=rtcp at session level is not interpreted", "RFC 3605 §2.1", tblWith("a=rtcp:junk", "m=audio 4000 RTP/AVP 0"), 0, 0},
		{"two direction attributes", "RFC 3264 §5.1", tblWith("m=audio 4000 RTP/AVP 0", "a=sendonly", "a=inactive"), 0, 0},
		{"UTF-8 session name", "RFC 8866 §5.3", tblSet(2, "s=Gespräch"), 0, 0},

		// 400: not SDP, or broken syntax.
		{"empty body", "RFC 8866 §5", nil, 400, 0},
		{"not SDP", "RFC 8866 §5", []byte("hello\r\n"), 400, 0},
		{"leading empty line", "RFC 8866 §5", append([]byte("\r\n"), tblWith()...), 400, 0},
		{"v=1", "RFC 8866 §5.1", tblSet(0, "v=1"), 400, 2},
		{"v= repeated", "RFC 8866 §5.1", tblWith("v=0"), 400, 0},
		{"line without =", "RFC 8866 §5", tblWith("m=audio 4000 RTP/AVP 0", "a"), 400, 0},
		{"space before =", "RFC 8866 §5", tblWith("a =sendrecv"), 400, 0},
		{"type is not a letter", "RFC 8866 §5", tblWith("1=x"), 400, 0},
		{"empty line in the middle", "RFC 8866 §5", tblBody("v=0", "o=- 1 1 IN IP4 192.0.2.1", "", "s=-"), 400, 0},
		{"lone CR inside a line", "RFC 8866 §5", tblWith("a=tool:x\ry"), 400, 0},
		{"lone CR as terminator", "RFC 8866 §5", []byte("v=0\ro=- 1 1 IN IP4 192.0.2.1\rs=-\r"), 400, 3},
		{"NUL byte", "RFC 8866 §9 byte-string", tblWith("s=a\x00b"), 400, 0},
		{"o= missing before m=", "RFC 8866 §5.2", tblSet(1, "", "m=audio 4000 RTP/AVP 0"), 400, 0},
		{"s= missing before m=", "RFC 8866 §5.3", tblSet(2, "", "m=audio 4000 RTP/AVP 0"), 400, 0},
		{"o= missing, no media", "RFC 8866 §5.2", tblSet(1, ""), 400, 0},
		{"o= repeated", "RFC 8866 §5.2", tblWith("o=- 1 1 IN IP4 192.0.2.1"), 400, 0},
		{"s= repeated", "RFC 8866 §5.3", tblWith("s=again"), 400, 0},
		{"o= in a media description", "RFC 8866 §5", tblWith("m=audio 4000 RTP/AVP 0", "o=- 1 1 IN IP4 192.0.2.1"), 400, 0},
		{"s= in a media description", "RFC 8866 §5", tblWith("m=audio 4000 RTP/AVP 0", "s=x"), 400, 0},
		{"o= with five fields", "RFC 8866 §5.2", tblSet(1, "o=- 1 IN IP4 192.0.2.1"), 400, 0},
		{"o= with seven fields", "RFC 8866 §5.2", tblSet(1, "o=a b 1 1 IN IP4 192.0.2.1"), 400, 0},
		{"c= repeated at session level", "RFC 8866 §5.7", tblWith("c=IN IP4 192.0.2.2"), 400, 0},
		{"c= without address", "RFC 8866 §5.7", tblSet(3, "c=IN IP4"), 400, 0},
		{"c= with an extra field", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 192.0.2.1 x"), 400, 0},
		{"c= bad IPv4 literal", "RFC 8866 §9 IP4-address", tblSet(3, "c=IN IP4 192.0.2.300"), 400, 0},
		{"c= IPv4 literal with leading zero", "RFC 8866 §9 decimal-uchar", tblSet(3, "c=IN IP4 192.0.2.01"), 400, 0},
		{"c= IPv6 literal under IP4", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 2001:db8::1"), 400, 0},
		{"c= IPv4 literal under IP6", "RFC 8866 §5.7", tblSet(3, "c=IN IP6 192.0.2.1"), 400, 0},
		{"c= IPv6 with zone", "RFC 8866 §9 IP6-address", tblSet(3, "c=IN IP6 fe80::1%eth0"), 400, 0},
		{"c= bad IPv6", "RFC 4291 §2.2", tblSet(3, "c=IN IP6 2001:db8:::1"), 400, 0},
		{"c= host name with a bad label", "RFC 1123 §2.1", tblSet(3, "c=IN IP4 -bad-.example.com"), 400, 0},
		{"c= host name with underscore", "RFC 1123 §2.1", tblSet(3, "c=IN IP4 my_host.example.com"), 400, 0},
		{"c= suffix on a unicast address", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 192.0.2.1/127"), 400, 0},
		{"c= suffix on a host name", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 host.example.com/127"), 400, 0},
		{"c= TTL above 255", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 224.2.1.1/300"), 400, 0},
		{"c= empty TTL", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 224.2.1.1/"), 400, 0},
		{"c= address count 0", "RFC 8866 §5.7", tblSet(3, "c=IN IP6 ff15::101/0"), 400, 0},
		{"m= port above 65535", "RFC 8866 §5.14", tblWith("m=audio 65536 RTP/AVP 0"), 400, 0},
		{"m= port not a number", "RFC 8866 §5.14", tblWith("m=audio $ RTP/AVP 0"), 400, 0},
		{"m= port count 0", "RFC 8866 §5.14", tblWith("m=audio 4000/0 RTP/AVP 0"), 400, 0},
		{"m= port count empty", "RFC 8866 §5.14", tblWith("m=audio 4000/ RTP/AVP 0"), 400, 0},
		{"m= without format", "RFC 8866 §5.14", tblWith("m=audio 4000 RTP/AVP"), 400, 0},
		{"m= bad proto", "RFC 8866 §9 proto", tblWith("m=audio 4000 RTP//AVP 0"), 400, 0},
		{"m= bad media type", "RFC 8866 §9 media", tblWith("m=au:dio 4000 RTP/AVP 0"), 400, 0},
		{"m= bad format", "RFC 8866 §9 fmt", tblWith("m=audio 4000 RTP/AVP 0 (8)"), 400, 0},
		{"m= with only a type", "RFC 8866 §5.14", tblWith("m=audio"), 400, 0},
		{"a=rtcp without port", "RFC 3605 §2.1", tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp"), 400, 0},
		{"a=rtcp port not a number", "RFC 3605 §2.1", tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp:abc"), 400, 0},
		{"a=rtcp port above 65535", "RFC 3605 §2.1", tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp:70000"), 400, 0},
		{"a=rtcp port glued to text", "RFC 3605 §2.1", tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp:4001x"), 400, 0},
		{"a=rtcp with half an address", "RFC 3605 §2.1", tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp:4001 IN IP4"), 400, 0},
		{"a=rtcp repeated", "RFC 3605 §2.1", tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp:4001", "a=rtcp:4003"), 400, 0},
		{"syntax error wins over an earlier 488", "RFC 8866 §5", tblWith("m=audio 4000/2 RTP/AVP 0", "m=video x RTP/AVP 96"), 400, 0},

		// 488: well-formed, not relayable, or over a limit.
		{"active stream without connection address", "RFC 8866 §5.7", tblSet(3, "", "m=audio 4000 RTP/AVP 0"), 488, 0},
		{"second active stream without connection address", "RFC 8866 §5.7", tblSet(3, "", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "m=video 5000 RTP/AVP 96"), 488, 0},
		{"unknown network type", "RFC 8866 §5.7", tblSet(3, "c=ATM NSAP 47.0091.8100.0000.0060.3e64.fd01.0060.3e64.fd01.00"), 488, 0},
		{"unknown address type", "RFC 8866 §5.7", tblSet(3, "c=IN IP7 x"), 488, 0},
		{"a=rtcp unknown address type", "RFC 3605 §2.1", tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp:4001 IN E164 +15555551234"), 488, 0},
		{"IPv4 multicast range", "RFC 8866 §5.7", tblSet(3, "c=IN IP4 224.2.1.1/127/3"), 488, 0},
		{"IPv6 multicast range", "RFC 8866 §5.7", tblSet(3, "c=IN IP6 ff15::101/3"), 488, 0},
		{"several c= in one media description", "RFC 8866 §5.7", tblWith("m=video 4000 RTP/AVP 96", "c=IN IP4 224.2.1.1/127", "c=IN IP4 224.2.1.2/127"), 488, 0},
		{"RTP port count 2", "RFC 8866 §5.14", tblWith("m=video 4000/2 RTP/AVP 96"), 488, 0},
		{"udptl port count 2", "RFC 8866 §5.14", tblWith("m=image 4000/2 udptl t38"), 488, 0},
		{"33 media descriptions", "Limits.MaxMedia", tblWith(many(33, "m=audio 0 RTP/AVP 0")...), 488, 0},
		{"513 lines", "Limits.MaxLines", tblWith(many(513-len(tblHead), "a=x")...), 488, 0},
		{"larger than 64 KiB", "Limits.MaxSize", tblWith("a=tool:" + strings.Repeat("x", 64<<10)), 488, 0},
	} {
		var s Session
		err := s.Parse(tc.body)
		if tc.status == 0 {
			if err != nil {
				t.Errorf("%s (%s): %v", tc.name, tc.rfc, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s (%s): got %v, want status %d", tc.name, tc.rfc, err, tc.status)
			continue
		}
		if e.Status() != tc.status {
			t.Errorf("%s (%s): status %d, want %d: %v", tc.name, tc.rfc, e.Status(), tc.status, e)
		}
		if tc.offset > 0 && e.Offset != tc.offset {
			t.Errorf("%s (%s): offset %d, want %d", tc.name, tc.rfc, e.Offset, tc.offset)
		}
		if e.Offset < 0 || e.Offset > len(tc.body) || e.Snippet == "" || e.Msg == "" {
			t.Errorf("%s: bad error fields %+v", tc.name, e)
		}
	}
}

func TestLimits(t *testing.T) {
	body := tblWith("m=audio 4000 RTP/AVP 0", "m=video 5000 RTP/AVP 96")
	for _, tc := range []struct {
		lim Limits
		ok  bool
	}{
		{Limits{}, true},
		{Limits{MaxSize: len(body)}, true},
		{Limits{MaxSize: len(body) - 1}, false},
		{Limits{MaxLines: len(tblHead) + 2}, true},
		{Limits{MaxLines: len(tblHead) + 1}, false},
		{Limits{MaxMedia: 2}, true},
		{Limits{MaxMedia: 1}, false},
	} {
		s := Session{Limits: tc.lim}
		err := s.Parse(body)
		if (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.lim, err)
		}
		if err != nil && err.(*Error).Status() != 488 {
			t.Errorf("%+v: %v, want 488", tc.lim, err)
		}
	}
}

func TestErrorText(t *testing.T) {
	body := tblWith("m=audio 99999 RTP/AVP 0")
	var s Session
	err := s.Parse(body)
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("%v", err)
	}
	if want := bytes.Index(body, []byte("99999")); e.Offset != want {
		t.Errorf("offset %d, want %d", e.Offset, want)
	}
	if e.Snippet != `"m=audio 99999 RTP/AVP 0"` {
		t.Errorf("snippet %s", e.Snippet)
	}
	if got := e.Error(); !strings.Contains(got, "400") || !strings.Contains(got, "m=audio 99999") {
		t.Errorf("Error() = %q", got)
	}
}

// TestViews checks every typed view on one description with both levels.
func TestViews(t *testing.T) {
	body := tblBody(
		"v=0",
		"o=alice 2890844526 2890844527 IN IP4 192.0.2.1",
		"s=-",
		"c=IN IP4 192.0.2.1",
		"t=0 0",
		"a=ice-ufrag:F7gI",
		"a=ice-pwd:x9cml/YzichV2+XlhiMu8g",
		"a=ice-lite",
		"a=ice-options:trickle",
		"a=fingerprint:sha-256 AA:BB",
		"a=setup:actpass",
		"a=sendonly",
		"m=audio 49170/1 RTP/SAVPF 0 8 101",
		"c=IN IP6 2001:db8::2",
		"a=rtcp:49171 IN IP6 2001:db8::3",
		"a=rtcp-mux",
		"a=candidate:1 1 UDP 2130706431 2001:db8::2 49170 typ host",
		"a=candidate:1 2 UDP 2130706430 2001:db8::2 49171 typ host",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32",
		"a=fingerprint:sha-256 AA:BB",
		"a=recvonly",
		"m=video 0 RTP/AVP 96",
		"m=image 4000 udptl t38",
		"c=IN IP4 0.0.0.0",
		"m=message 2855 TCP/MSRP *",
		"a=inactive",
		"m=application 5000 udp wb",
	)
	var s Session
	if err := s.Parse(body); err != nil {
		t.Fatal(err)
	}
	o := s.Origin()
	for _, f := range []struct{ got, want string }{
		{string(o.Username), "alice"}, {string(o.SessID), "2890844526"}, {string(o.SessVersion), "2890844527"},
		{string(o.NetType), "IN"}, {string(o.AddrType), "IP4"}, {string(o.Address), "192.0.2.1"},
	} {
		if f.got != f.want {
			t.Errorf("origin field %q, want %q", f.got, f.want)
		}
	}
	if v, ok := s.Version(); !ok || v != 2890844527 {
		t.Errorf("Version %d %v", v, ok)
	}
	if c := s.Conn(); string(c.Raw) != "192.0.2.1" || c.Addr != netip.MustParseAddr("192.0.2.1") || c.IP6 || c.Hostname || c.IsHold() {
		t.Errorf("session conn %+v", c)
	}
	if s.Direction() != SendOnly {
		t.Errorf("session direction %v", s.Direction())
	}
	want := AttrICEUfrag | AttrICEPwd | AttrICELite | AttrICEOptions | AttrFingerprint | AttrSetup
	if s.Attrs() != want || !s.Has(AttrICELite) || s.Has(AttrCrypto) {
		t.Errorf("session attrs %b, want %b", s.Attrs(), want)
	}
	if s.NumMedia() != 5 {
		t.Fatalf("%d media", s.NumMedia())
	}

	m := s.Media(0)
	if string(m.Type) != "audio" || m.Port != 49170 || m.PortCount != 1 || string(m.Proto) != "RTP/SAVPF" ||
		m.Transport != TransportRTP || string(m.Formats) != "0 8 101" {
		t.Errorf("media 0 m= %+v", m)
	}
	if !m.ConnMediaLevel || !m.Conn.IP6 || m.Conn.Addr != netip.MustParseAddr("2001:db8::2") {
		t.Errorf("media 0 conn %+v", m.Conn)
	}
	if !m.RTCP.Present || m.RTCP.Port != 49171 || m.RTCP.Conn.Addr != netip.MustParseAddr("2001:db8::3") {
		t.Errorf("media 0 rtcp %+v", m.RTCP)
	}
	if m.Direction != RecvOnly || m.Hold {
		t.Errorf("media 0 direction %v hold %v: the media attribute overrides the session", m.Direction, m.Hold)
	}
	if m.Candidates != 2 || !m.Has(AttrCandidate) || !m.Has(AttrCrypto) || !m.Has(AttrFingerprint) || !m.Has(AttrRTCPMux) || m.Has(AttrSetup) {
		t.Errorf("media 0 candidates %d attrs %b", m.Candidates, m.Attrs)
	}

	m = s.Media(1)
	if !m.Rejected() || m.ConnMediaLevel || string(m.Conn.Raw) != "192.0.2.1" || m.RTCP.Present {
		t.Errorf("media 1 %+v", m)
	}
	if m.Direction != SendOnly || !m.Hold {
		t.Errorf("media 1 inherits the session direction: %v hold %v", m.Direction, m.Hold)
	}

	m = s.Media(2)
	if m.Transport != TransportUDPTL || !m.Transport.Relayable() || m.Transport.RTP() || !m.Hold || !m.Conn.IsHold() {
		t.Errorf("media 2 %+v", m)
	}
	m = s.Media(3)
	if m.Transport != TransportOther || m.Transport.Relayable() || m.Direction != Inactive || !m.Hold {
		t.Errorf("media 3 %+v", m)
	}
	m = s.Media(4)
	if m.Transport != TransportUDP || !m.Transport.Relayable() {
		t.Errorf("media 4 %+v", m)
	}

	if s.NumLines() != 27 {
		t.Errorf("%d lines", s.NumLines())
	}
	typ, val := s.Line(12)
	st, en := s.LineSpan(12)
	if typ != 'm' || string(val) != "audio 49170/1 RTP/SAVPF 0 8 101" || string(body[st:en]) != "m=audio 49170/1 RTP/SAVPF 0 8 101\r\n" {
		t.Errorf("line 12: %c %q %q", typ, val, body[st:en])
	}
	if !bytes.Equal(s.Bytes(), body) {
		t.Error("Bytes")
	}
}

func TestViewsDefaults(t *testing.T) {
	var s Session
	if err := s.Parse(tblWith("m=audio 4000 RTP/AVP 0", "a=rtcp:4001")); err != nil {
		t.Fatal(err)
	}
	m := s.Media(0)
	if s.Direction() != SendRecv || m.Direction != SendRecv || m.Hold || m.ConnMediaLevel || m.RTCP.Conn.Present() ||
		m.Conn.TTL != -1 || m.Conn.NumAddr != 1 || m.Conn.Multicast() {
		t.Errorf("%+v", m)
	}
	for _, d := range []Direction{SendRecv, SendOnly, RecvOnly, Inactive} {
		if d.String() == "" {
			t.Error(d)
		}
	}
	if err := s.Parse(tblSet(3, "c=IN IP4 224.2.1.1/127", "m=audio 4000 RTP/AVP 0")); err != nil {
		t.Fatal(err)
	}
	if c := s.Media(0).Conn; !c.Multicast() || c.TTL != 127 || c.NumAddr != 1 || string(c.Raw) != "224.2.1.1" {
		t.Errorf("multicast %+v", c)
	}
	if err := s.Parse(tblSet(3, "c=IN IP4 media.example.com", "m=audio 4000 RTP/AVP 0")); err != nil {
		t.Fatal(err)
	}
	if c := s.Media(0).Conn; !c.Hostname || c.Addr.IsValid() || c.IsHold() {
		t.Errorf("host name %+v", c)
	}
	for _, o := range []string{"o=- 1 x IN IP4 192.0.2.1", "o=- 1 18446744073709551616 IN IP4 192.0.2.1"} {
		if err := s.Parse(tblSet(1, o)); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Version(); ok {
			t.Errorf("%s: version accepted", o)
		}
	}
	if err := s.Parse(tblSet(1, "o=- 1 18446744073709551615 IN IP4 192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Version(); !ok || v != 1<<64-1 {
		t.Errorf("max version %d %v", v, ok)
	}
}

// TestSessionReuse: a Session parsed twice forgets the first description.
func TestSessionReuse(t *testing.T) {
	var s Session
	if err := s.Parse(tblWith("a=sendonly", "m=audio 4000 RTP/AVP 0", "a=candidate:1 1 UDP 1 192.0.2.1 4000 typ host", "m=video 5000 RTP/AVP 96")); err != nil {
		t.Fatal(err)
	}
	if err := s.Parse(tblSet(3, "", "m=audio 6000 RTP/AVP 8", "c=IN IP4 192.0.2.9")); err != nil {
		t.Fatal(err)
	}
	m := s.Media(0)
	if s.NumMedia() != 1 || s.Conn().Present() || m.Candidates != 0 || m.Direction != SendRecv || m.Port != 6000 {
		t.Errorf("stale state: %d media %+v", s.NumMedia(), m)
	}
}

func TestParseIP(t *testing.T) {
	for _, a := range []string{
		"0.0.0.0", "255.255.255.255", "192.0.2.1", "10.0.0.1",
		"::", "::1", "1::", "2001:db8::1", "2001:DB8:0:0:8:800:200C:417A", "1:2:3:4:5:6:7:8",
		"1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "::ffff:192.0.2.1", "64:ff9b::192.0.2.33", "fe80::1:2:3:4",
		"1:2:3:4:5:6:1.2.3.4",
	} {
		want := netip.MustParseAddr(a)
		var got netip.Addr
		var ok bool
		if want.Is4() {
			got, ok = sip.ParseIPv4([]byte(a))
		} else {
			got, ok = sip.ParseIPv6([]byte(a))
		}
		if !ok || got != want {
			t.Errorf("%s: got %v %v", a, got, ok)
		}
	}
	for _, a := range []string{
		"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.1.1.1", "1..1.1", "1.2.3.4 ", "1.2.3.-4",
		":", ":::", "1:::2", ":1::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "1:",
		"::ffff:1.2.3", "::1.2.3.4:5", "1:2:3:4:5:6:7:1.2.3.4", "fe80::1%eth0", "g::1", "::1:2:3:4:5:6:7:8",
	} {
		if _, ok := sip.ParseIPv4([]byte(a)); ok {
			t.Errorf("IPv4 %q accepted", a)
		}
		if _, ok := sip.ParseIPv6([]byte(a)); ok {
			t.Errorf("IPv6 %q accepted", a)
		}
	}
}

func TestHostname(t *testing.T) {
	for _, h := range []string{"a", "example.com", "example.com.", "pc33.atlanta.example.com", "a-b.c1", "1.example", "xn--bcher-kva.example"} {
		if !isHostname([]byte(h)) {
			t.Errorf("%q refused", h)
		}
	}
	for _, h := range []string{"", ".", "a..b", "-a.com", "a-.com", "a_b.com", "192.0.2.300", "1.2", "a.b/c",
		strings.Repeat("a", 64) + ".com", strings.Repeat("abcdefghi.", 26) + "com"} {
		if isHostname([]byte(h)) {
			t.Errorf("%q accepted", h)
		}
	}
}

// FuzzAddr cross-checks the byte parsers with net/netip.
func FuzzAddr(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "::ffff:1.2.3.4", "2001:db8::1", "1:2:3:4:5:6:7:8", "::", "01.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := netip.ParseAddr(s)
		v4, ok4 := sip.ParseIPv4([]byte(s))
		v6, ok6 := sip.ParseIPv6([]byte(s))
		if ok4 && (err != nil || v4 != want) {
			t.Fatalf("IPv4 %q: %v, netip %v %v", s, v4, want, err)
		}
		if ok6 && (err != nil || v6 != want) {
			t.Fatalf("IPv6 %q: %v, netip %v %v", s, v6, want, err)
		}
		if err == nil && want.Zone() == "" && !ok4 && !ok6 {
			t.Fatalf("%q refused, netip reads %v", s, want)
		}
	})
}
