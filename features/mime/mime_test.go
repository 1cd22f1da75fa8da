package mime

import (
	"fmt"
	"strings"
	"testing"

	"sipedge/sip"
)

// message is a request with the given header lines (Content-Type among
// them) and body.
func message(method, headers, body string) string {
	return fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n"+
		"CSeq: 1 %s\r\nContact: <sip:alice@192.0.2.10>\r\n%sContent-Length: %d\r\n\r\n%s",
		method, method, headers, len(body), body)
}

// defaults is the configuration's default list (config.DefaultMIME).
var defaults = []string{
	"application/sdp", "multipart/mixed", "multipart/alternative", "multipart/related",
	"application/dtmf-relay", "application/dtmf", "message/sipfrag", "text/plain",
	"application/pidf+xml", "application/simple-message-summary", "application/isup",
	"application/media_control+xml",
}

const sdpBody = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

// multipart builds a multipart body with boundary b from parts (each its
// headers, an empty line and its content) and a close delimiter.
func multipart(b string, parts ...string) string {
	var s strings.Builder
	for _, p := range parts {
		s.WriteString("--" + b + "\r\n" + p + "\r\n")
	}
	s.WriteString("--" + b + "--\r\n")
	return s.String()
}

func part(ct, content string) string { return "Content-Type: " + ct + "\r\n\r\n" + content }

func mustCompile(t testing.TB, types ...string) *list {
	t.Helper()
	l, err := compile(types)
	if err != nil {
		t.Fatal(err)
	}
	return &l
}

func TestCheck(t *testing.T) {
	std := mustCompile(t, defaults...)
	sdpOnly := mustCompile(t, "application/sdp", "multipart/mixed")
	wild := mustCompile(t, "application/*", "multipart/*")
	isup := "Content-Type: application/isup;version=nxv3\r\nContent-Disposition: signal;handling=optional\r\n\r\n\x01\x00\x49\x00\x00\x03\x02\x00\x07"
	nested := func(depth int) string {
		body := part("application/sdp", sdpBody)
		for i := 0; i < depth; i++ {
			b := fmt.Sprintf("n%d", i)
			body = "Content-Type: multipart/mixed;boundary=" + b + "\r\n\r\n" + multipart(b, body)
		}
		_, after, _ := strings.Cut(body, "\r\n\r\n")
		ct, _, _ := strings.Cut(strings.TrimPrefix(body, "Content-Type: "), "\r\n")
		return "Content-Type: " + ct + "\r\n|" + after
	}
	for _, tc := range []struct {
		name    string
		l       *list
		headers string // header lines; "|" separates them from the body
		want    int
		why     string
	}{
		{"sdp", std, "Content-Type: application/sdp\r\n|" + sdpBody, 0, ""},
		{"case does not matter", std, "Content-Type: Application/SDP\r\n|" + sdpBody, 0, ""},
		{"parameters are not compared", std, "Content-Type: text/plain;charset=UTF-8\r\n|hello", 0, ""},
		{"white space around the slash", std, "Content-Type: application / sdp ; x=1\r\n|" + sdpBody, 0, ""},
		{"compact form c", std, "c: application/sdp\r\n|" + sdpBody, 0, ""},
		{"type not allowed", std, "Content-Type: application/x-evil\r\n|boom", 415, ""},
		{"subtype prefix is not a match", std, "Content-Type: application/sdpx\r\n|" + sdpBody, 415, ""},
		{"wildcard allows the subtype", wild, "Content-Type: application/x-anything\r\n|x", 0, ""},
		{"wildcard does not allow another type", wild, "Content-Type: text/plain\r\n|x", 415, ""},
		{"no body, any type", sdpOnly, "Content-Type: application/x-evil\r\n|", 0, ""},
		{"body without Content-Type", std, "|" + sdpBody, 400, whyMissingType},
		{"two Content-Type", std, "Content-Type: application/sdp\r\nContent-Type: application/sdp\r\n|" + sdpBody, 400, whyTwoTypes},
		{"Content-Type without subtype", std, "Content-Type: application\r\n|" + sdpBody, 400, whyBadType},
		{"Content-Type with junk", std, "Content-Type: application/sdp junk\r\n|" + sdpBody, 400, whyBadType},
		{"multipart with allowed parts", std,
			"Content-Type: multipart/mixed;boundary=unique-boundary-1\r\n|" +
				multipart("unique-boundary-1", part("application/sdp", sdpBody), isup), 0, ""},
		{"multipart with quoted boundary and preamble", std,
			"Content-Type: multipart/mixed; boundary=\"b 1:2\"\r\n|preamble\r\n" +
				multipart("b 1:2", part("application/sdp", sdpBody)) + "epilogue", 0, ""},
		{"multipart part not allowed", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" +
				multipart("xx", part("application/sdp", sdpBody), part("application/x-evil", "boom")), 415, ""},
		{"multipart part not allowed by a narrower list", sdpOnly,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", part("application/sdp", sdpBody), isup), 415, ""},
		{"multipart subtype not allowed", sdpOnly,
			"Content-Type: multipart/related;boundary=xx\r\n|" + multipart("xx", part("application/sdp", sdpBody)), 415, ""},
		{"part without Content-Type is text/plain: allowed", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", "\r\nhello"), 0, ""},
		{"part without Content-Type is text/plain: refused", sdpOnly,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", "Content-ID: <a@b>\r\n\r\nhello"), 415, ""},
		{"part Content-Type folded", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", "content-type:\r\n application/sdp\r\n\r\n"+sdpBody), 0, ""},
		{"part with binary content", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", part("application/isup", "\x00\r\n--x\x00--xx-\r\n")), 0, ""},
		{"bare LF line endings", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|--xx\nContent-Type: application/sdp\n\nv=0\n--xx--\n", 0, ""},
		{"transport padding after the delimiter", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|--xx \t\r\nContent-Type: text/plain\r\n\r\nhi\r\n--xx--", 0, ""},
		{"nested multipart allowed", std, nested(2), 0, ""},
		{"nested to the limit", std, nested(3), 0, ""},
		{"nested too deep", std, nested(4), 400, whyTooDeep},
		{"nested part not allowed", std,
			"Content-Type: multipart/mixed;boundary=o\r\n|" + multipart("o",
				"Content-Type: multipart/alternative;boundary=i\r\n\r\n"+multipart("i", part("application/sdp", sdpBody), part("application/x-evil", "x"))), 415, ""},
		{"too many parts", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", strings.Split(strings.Repeat(part("text/plain", "a")+"|", maxParts+1), "|")[:maxParts+1]...), 400, whyTooManyParts},
		{"as many parts as allowed", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", strings.Split(strings.Repeat(part("text/plain", "a")+"|", maxParts), "|")[:maxParts]...), 0, ""},
		{"multipart without boundary", std, "Content-Type: multipart/mixed\r\n|" + multipart("xx", part("application/sdp", sdpBody)), 400, whyNoBoundary},
		{"multipart with empty boundary", std, "Content-Type: multipart/mixed;boundary=\"\"\r\n|--\r\n\r\n----", 400, whyBadBoundary},
		{"multipart with bad parameters", std, "Content-Type: multipart/mixed;boundary\r\n|x", 400, whyBadParam},
		{"multipart with unterminated quote", std, "Content-Type: multipart/mixed;boundary=\"xx\r\n|x", 400, whyBadParam},
		{"multipart boundary too long", std, "Content-Type: multipart/mixed;boundary=" + strings.Repeat("b", 71) + "\r\n|x", 400, whyBadBoundary},
		{"multipart unterminated", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|--xx\r\n" + part("application/sdp", sdpBody), 400, whyUnterminated},
		{"multipart boundary not found", std, "Content-Type: multipart/mixed;boundary=xx\r\n|" + sdpBody, 400, whyNoDelimiter},
		{"multipart boundary not at a line start", std, "Content-Type: multipart/mixed;boundary=xx\r\n|a--xx\r\n\r\nb\r\n-- xx--", 400, whyNoDelimiter},
		{"a longer boundary is content", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|--xx\r\n\r\n--xxy\r\n--xx-\r\n", 400, whyUnterminated},
		{"multipart with no part", std, "Content-Type: multipart/mixed;boundary=xx\r\n|--xx--\r\n", 400, whyEmpty},
		{"part header without colon", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", "Content-Type application/sdp\r\n\r\nv=0"), 400, whyPartHeader},
		{"part with two Content-Type", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", "Content-Type: text/plain\r\nContent-Type: text/plain\r\n\r\nx"), 400, whyPartTwoTypes},
		{"part Content-Type unreadable", std,
			"Content-Type: multipart/mixed;boundary=xx\r\n|" + multipart("xx", part("text", "x")), 400, whyBadType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers, body, _ := strings.Cut(tc.headers, "|")
			var m sip.Message
			raw := message("INVITE", headers, body)
			if err := m.Parse([]byte(raw), nil); err != nil {
				t.Fatalf("parse: %v\n%s", err, raw)
			}
			if len(m.Body()) == 0 {
				if tc.want != 0 {
					t.Fatal("test has no body")
				}
				return // the stage does not look at an empty body
			}
			code, why := tc.l.check(&m)
			if code != tc.want || why != tc.why {
				t.Errorf("got %d %q, want %d %q", code, why, tc.want, tc.why)
			}
		})
	}
}

func TestCompile(t *testing.T) {
	for _, tc := range []struct {
		types  []string
		err    string // substring; "" for none
		all    bool
		accept string
	}{
		{[]string{"application/sdp", "Text/*"}, "", false, "Accept: application/sdp, text/*\r\n"},
		{[]string{"*/*"}, "", true, "Accept: */*\r\n"},
		{nil, `["*/*"]`, false, ""},
		{[]string{}, "empty list", false, ""},
		{[]string{"application"}, "want a media type", false, ""},
		{[]string{"*/sdp"}, "want a media type", false, ""},
		{[]string{"application/s*"}, "want a media type", false, ""},
		{[]string{"app*/*"}, "want a media type", false, ""},
		{[]string{"application/sdp;charset=x"}, "no parameters", false, ""},
		{[]string{"application/sdp x"}, "want a media type", false, ""},
		{[]string{""}, "want a media type", false, ""},
	} {
		l, err := compile(tc.types)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.types, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one with %q", tc.types, err, tc.err)
		case tc.err == "" && (l.all != tc.all || string(l.accept) != tc.accept):
			t.Errorf("%q: all %v accept %q, want %v %q", tc.types, l.all, l.accept, tc.all, tc.accept)
		}
	}
	if _, err := New(Config{Inbound: defaults, Outbound: []string{"bad"}}); err == nil || !strings.Contains(err.Error(), "mime.outbound") {
		t.Errorf("New with a bad outbound list: %v", err)
	}
}

func TestParam(t *testing.T) {
	for _, tc := range []struct {
		params, val string
		found, ok   bool
	}{
		{"boundary=abc", "abc", true, true},
		{" charset=x ; BOUNDARY = \"a b;c\" ", "a b;c", true, true},
		{"boundary=a;boundary=b", "a", true, true},
		{"charset=x", "", false, true},
		{"boundary=", "", false, false},
		{"boundary=a b", "", false, false},
		{"boundary=\"a", "", false, false},
		{"=a", "", false, false},
		{"boundary=\"a\\\"b\"", "a\\\"b", true, true},
		{"a=b;", "", false, false},
	} {
		v, found, ok := param([]byte(tc.params), "boundary")
		if string(v) != tc.val || found != tc.found || ok != tc.ok {
			t.Errorf("%q: %q %v %v, want %q %v %v", tc.params, v, found, ok, tc.val, tc.found, tc.ok)
		}
	}
}

// The parts a splitter finds, and what separates them.
func TestSplitter(t *testing.T) {
	body := "preamble\r\n--b\r\nA\r\n--b\r\n\r\n--b\r\nC\r\nC2\r\n--b--\r\nepilogue\r\n--b\r\nnot a part"
	s := newSplitter([]byte(body), []byte("--b"))
	var got []string
	for {
		p, more, why := s.next()
		if why != "" {
			t.Fatal(why)
		}
		if !more {
			break
		}
		got = append(got, string(p))
	}
	if want := []string{"A", "", "C\r\nC2"}; fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("parts %q, want %q", got, want)
	}
}
