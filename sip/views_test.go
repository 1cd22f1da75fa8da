package sip

import (
	"errors"
	"testing"
)

func TestCredentials(t *testing.T) {
	c, err := ParseCredentials([]byte(`Digest username="alice", realm="atlanta.example.com",
  nonce="84a4cc6f3082121f32b42a2187831a9e", uri="sip:bob@biloxi.example.com",
  response="7587245234b3434cc3412213e5f113a5432", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="0a4f113b"`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want string }{
		{"username", `"alice"`}, {"REALM", `"atlanta.example.com"`}, {"algorithm", "SHA-256"},
		{"qop", "auth"}, {"nc", "00000001"}, {"uri", `"sip:bob@biloxi.example.com"`},
	} {
		v, ok := c.Param(tc.name)
		if !ok || string(v) != tc.want {
			t.Errorf("%s = %q %v, want %q", tc.name, v, ok, tc.want)
		}
	}
	eqStr(t, "scheme", c.Scheme, "Digest")
	if _, ok := c.Param("opaque"); ok {
		t.Error("absent param found")
	}
	// RFC 4475 §3.3.7: an unknown scheme parses.
	u, err := ParseCredentials([]byte("NoOneKnowsThisScheme opaque-data=here"))
	if err != nil || string(u.Scheme) != "NoOneKnowsThisScheme" {
		t.Fatalf("%q %v", u.Scheme, err)
	}
	for _, bad := range []string{"", `Digest username="unterminated`, "Digest a=b c=d", "Digest =x"} {
		if _, err := ParseCredentials([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestURIEqualRFC3261 uses the examples of RFC 3261 §19.1.4.
func TestURIEqualRFC3261(t *testing.T) {
	equal := [][2]string{
		{"sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"},
		{"sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"},
		{"sip:carol@chicago.com", "sip:carol@chicago.com;security=on"},
		{"sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"},
		{"sip:alice@atlanta.com", "sip:alice@atlanta.com;lr"},
	}
	unequal := [][2]string{
		{"SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"},
		{"sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"},
		{"sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"},
		{"sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"},
		{"sip:carol@chicago.com", "sip:carol@chicago.com;maddr=239.255.255.1"},
		{"sip:alice@atlanta.com", "sips:alice@atlanta.com"},
		{"sip:alice:secretword@atlanta.com", "sip:alice@atlanta.com"},
	}
	for _, p := range equal {
		a, _ := ParseURI([]byte(p[0]))
		b, _ := ParseURI([]byte(p[1]))
		if !URIEqual(&a, &b) || !URIEqual(&b, &a) {
			t.Errorf("%s should equal %s", p[0], p[1])
		}
	}
	for _, p := range unequal {
		a, _ := ParseURI([]byte(p[0]))
		b, _ := ParseURI([]byte(p[1]))
		if URIEqual(&a, &b) {
			t.Errorf("%s should differ from %s", p[0], p[1])
		}
	}
}

func TestFrameStream(t *testing.T) {
	msg := "OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhello"
	for i := 0; i < len(msg); i++ {
		if n, _, err := Frame([]byte(msg[:i]), nil); n != 0 || err != nil {
			t.Fatalf("prefix %d: n=%d err=%v", i, n, err)
		}
	}
	two := msg + msg
	if n, k, err := Frame([]byte(two), nil); n != len(msg) || k != FrameMessage || err != nil {
		t.Fatalf("two messages: n=%d", n)
	}
	for _, tc := range []struct {
		in   string
		n    int
		kind FrameKind
		code int
	}{
		{"\r\n\r\n", 4, FramePing, 0},
		{"\r\nOPT", 2, FramePong, 0},
		{"\r\n", 0, FramePong, 0},
		{"OPTIONS sip:a@b SIP/2.0\r\n\r\n", len("OPTIONS sip:a@b SIP/2.0\r\n\r\n"), FrameMessage, 0},
		{"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\nx", 0, FrameMessage, 400},
		{"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", 0, FrameMessage, 400},
		{"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999\r\n\r\n", 0, FrameMessage, 413},
	} {
		n, k, err := Frame([]byte(tc.in), nil)
		code := 0
		var pe *ParseError
		if errors.As(err, &pe) {
			code = pe.Code
		}
		if n != tc.n || k != tc.kind || code != tc.code {
			t.Errorf("%q: n=%d kind=%d code=%d, want %d %d %d", tc.in, n, k, code, tc.n, tc.kind, tc.code)
		}
	}
}

func TestEditsAndResponse(t *testing.T) {
	var m Message
	in := "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK0\r\n" +
		"From: <sip:a@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: x\r\nCSeq: 5 INVITE\r\nMax-Forwards: 10\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
	if err := m.Parse([]byte(in), nil); err != nil {
		t.Fatal(err)
	}
	if e, ok := m.Expires(); !ok || e != 300 {
		t.Fatalf("Expires %d %v", e, ok)
	}
	if string(m.AppendTo(nil)) != in {
		t.Fatal("no-edit write changed the message")
	}
	s, e := m.RequestURISpan()
	_ = m.SetMaxForwards(9)
	_ = m.InsertHeader(m.Find(KindVia), "Via", []byte("SIP/2.0/TCP 203.0.113.1;branch=z9hG4bKp"))
	_ = m.Replace(s, e, []byte("sip:bob@192.0.2.50:5062"))
	_ = m.DeleteHeader(m.Find(KindExpires))
	if err := m.Replace(s+1, e-1, []byte("x")); !errors.Is(err, ErrEditOverlap) {
		t.Fatalf("overlapping edit accepted: %v", err)
	}
	out := m.AppendTo(nil)
	want := "INVITE sip:bob@192.0.2.50:5062 SIP/2.0\r\nVia: SIP/2.0/TCP 203.0.113.1;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK0\r\n" +
		"From: <sip:a@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: x\r\nCSeq: 5 INVITE\r\nMax-Forwards: 9\r\nContent-Length: 0\r\n\r\n"
	if string(out) != want || m.Len() != len(out) {
		t.Fatalf("edited:\n%s\nwant:\n%s", out, want)
	}
	var r Message
	if err := r.Parse(out, nil); err != nil || r.NumVias() != 3 {
		t.Fatalf("edited message: %v, %d vias", err, r.NumVias())
	}
	resp := AppendResponse(nil, &m, 486, "Busy Here", []byte("t9"), []byte("Retry-After: 60\r\n"))
	var p Message
	if err := p.Parse(resp, nil); err != nil {
		t.Fatalf("response does not parse: %v\n%s", err, resp)
	}
	to, _ := p.To()
	if p.StatusCode() != 486 || p.NumVias() != 2 || string(to.Tag) != "t9" || string(p.GetByName("Retry-After")) != "60" {
		t.Fatalf("response:\n%s", resp)
	}
	if n, meth := p.CSeq(); n != 5 || string(meth) != "INVITE" {
		t.Fatal("CSeq not copied")
	}
	// 100 Trying gets no To tag (RFC 3261 §8.2.6.1).
	trying := AppendResponse(nil, &m, 100, "Trying", []byte("t9"), nil)
	if err := p.Parse(trying, nil); err != nil {
		t.Fatal(err)
	}
	if to, _ := p.To(); to.Tag != nil {
		t.Fatal("100 Trying with a To tag")
	}
}

func eqStr(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}
