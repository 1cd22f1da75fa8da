package sip

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// addTortureSeeds seeds a fuzz target with every torture message.
func addTortureSeeds(f *testing.F) {
	for _, dir := range []string{"rfc4475", "rfc5118"} {
		files, _ := filepath.Glob(filepath.Join("testdata/torture", dir, "*.dat"))
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add(benchInvite)
}

// FuzzParse: any input parses or fails with a ParseError carrying a status,
// never panics; an accepted message is written back byte-identical, its
// views never panic, and a response can be built from any request index.
func FuzzParse(f *testing.F) {
	addTortureSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		err := m.Parse(b, nil)
		if err != nil {
			pe, ok := err.(*ParseError)
			if !ok || pe.Code < 400 || pe.Code > 599 {
				t.Fatalf("error %v is not a ParseError with a 4xx/5xx code", err)
			}
			if m.IsRequest() {
				_ = AppendResponse(nil, &m, pe.Code, pe.Reason, []byte("tag"), nil)
			}
			return
		}
		out := m.AppendTo(nil)
		if !bytes.Equal(out, m.Bytes()) || !bytes.HasPrefix(b[leadingCRLF(b):], out[leadingCRLF(out):]) {
			t.Fatalf("round trip changed the message:\n%q\n%q", b, out)
		}
		touchViews(&m)
		if m.IsRequest() {
			resp := AppendResponse(nil, &m, 400, "Bad Request", []byte("tag"), nil)
			var r Message
			_ = r.Parse(resp, nil)
		}
	})
}

func leadingCRLF(b []byte) int {
	n := 0
	for n+1 < len(b) && b[n] == '\r' && b[n+1] == '\n' {
		n += 2
	}
	return n
}

// touchViews calls every typed view on an accepted message.
func touchViews(m *Message) {
	_, _ = m.RequestURI()
	_, _ = m.TopVia()
	_, _ = m.From()
	_, _ = m.To()
	_, _, _ = m.TopViaSpan()
	for _, k := range []HeaderKind{KindVia, KindContact, KindRoute, KindRecordRoute, KindRequire, KindProxyRequire, KindOther} {
		for it := m.Values(k); ; {
			v, ok := it.Next()
			if !ok {
				break
			}
			if k == KindVia {
				_, _ = ParseVia(v)
			} else {
				a, _ := ParseAddress(v)
				_ = a.Q()
				_, _ = a.Expires()
				_, _ = a.URI.Param("transport")
			}
		}
	}
	for i := 0; i < m.NumHeaders(); i++ {
		_ = m.HeaderName(i)
		_ = m.HeaderValue(i)
	}
}

// FuzzEdit: edits on an accepted message produce a message that parses and
// carries the edits.
func FuzzEdit(f *testing.F) {
	addTortureSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if m.Parse(b, nil) != nil || !m.IsRequest() {
			return
		}
		via := []byte("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz")
		if err := m.InsertHeader(m.Find(KindVia), "Via", via); err != nil {
			t.Fatal(err)
		}
		mf, ok := m.MaxForwards()
		if !ok {
			mf = 70
		}
		if mf == 0 {
			return // a proxy answers 483 instead of forwarding
		}
		if err := m.SetMaxForwards(mf - 1); err != nil {
			t.Fatal(err)
		}
		out := m.AppendTo(nil)
		if len(out) != m.Len() {
			t.Fatalf("Len %d, wrote %d", m.Len(), len(out))
		}
		var r Message
		if err := r.Parse(out, nil); err != nil {
			// Only the added Via may push a message over a limit.
			if pe := err.(*ParseError); pe.Code != 513 {
				t.Fatalf("edited message does not parse: %v\n%q", err, out)
			}
			return
		}
		v, err := r.TopVia()
		if err != nil || !bytes.Equal(v.Branch, []byte("z9hG4bKfuzz")) {
			t.Fatalf("top Via %q %v", v.Branch, err)
		}
		if n, _ := r.MaxForwards(); n != mf-1 {
			t.Fatalf("Max-Forwards %d, want %d", n, mf-1)
		}
	})
}

// FuzzFrame: stream framing never panics, never claims more bytes than
// given, and whatever it frames can be parsed without panicking.
func FuzzFrame(f *testing.F) {
	addTortureSeeds(f)
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, kind, err := Frame(b, nil)
		if n < 0 || n > len(b) {
			t.Fatalf("n=%d of %d", n, len(b))
		}
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T", err)
			}
			return
		}
		if kind == FrameMessage && n > 0 {
			var m Message
			_ = m.Parse(b[:n], nil)
		}
	})
}

// FuzzViews: the view parsers on raw header values.
func FuzzViews(f *testing.F) {
	for _, s := range []string{
		`"J Rosenberg \\\"" <sip:jdrosen@example.com> ; tag = 98asjd8`,
		"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw",
		"SIP/2.0/UDP [2001:db8::9:1]:6050;received=2001:db8::9:255;rport=5060;branch=z9hG4bK1",
		"sip:user;par=u%40example.net@example.com;lr?X=%20y",
		"<sip:+1@gw;user=phone>;+sip.instance=\"<urn:uuid:1>\";reg-id=1;q=0.5;expires=60",
		"*",
		"tel:+1-201-555-0123;ext=1",
		`Digest username="alice", realm="a.example", nonce="n", uri="sip:b@a.example", response="r", qop=auth, nc=00000001`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, err := ParseURI(b); err == nil {
			_ = URIEqual(&u, &u)
			_ = Unescape(nil, u.User)
		}
		if a, err := ParseAddress(b); err == nil {
			_ = a.Q()
			_, _ = a.Expires()
			if !a.Wildcard && !URIEqual(&a.URI, &a.URI) && a.URI.IsSIP() {
				t.Fatalf("URI %q not equal to itself", a.RawURI)
			}
		}
		_, _ = ParseVia(b)
		_ = Params(b).Valid()
		if c, err := ParseCredentials(b); err == nil {
			_, _ = c.Param("nonce")
		}
	})
}
