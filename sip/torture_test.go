package sip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tortureVerdicts is the verdict of every RFC 4475 and RFC 5118 message (see
// testdata/torture/*/INDEX.md). code 0 means the parser must accept it; any
// other code is the status a request is answered with (responses are
// dropped). check verifies typed values: accepting is not enough.
var tortureVerdicts = []struct {
	file  string
	code  int
	check func(t *testing.T, m *Message)
}{
	// RFC 4475 §3.1.1 valid messages
	{"rfc4475/wsinv.dat", 0, checkWsinv},
	{"rfc4475/intmeth.dat", 0, checkIntmeth},
	{"rfc4475/esc01.dat", 0, checkEsc01},
	{"rfc4475/escnull.dat", 0, checkEscnull},
	{"rfc4475/esc02.dat", 0, checkEsc02},
	{"rfc4475/lwsdisp.dat", 0, func(t *testing.T, m *Message) {
		from := mustAddr(t, m.Get(KindFrom))
		eq(t, "display", from.Display, "caller")
		eq(t, "from uri", from.RawURI, "sip:caller@example.com")
		eq(t, "from tag", from.Tag, "323")
	}},
	{"rfc4475/longreq.dat", 0, checkLongreq},
	{"rfc4475/dblreq.dat", 0, func(t *testing.T, m *Message) {
		eq(t, "method", m.Method(), "REGISTER")
		if m.ContentLength() != 0 || len(m.Body()) != 0 {
			t.Errorf("body %q, want none", m.Body())
		}
		if bytes.Contains(m.AppendTo(nil), []byte("INVITE")) {
			t.Error("trailing INVITE bytes would be forwarded")
		}
		eq(t, "to tag", mustAddr(t, m.Get(KindTo)).Tag, "")
	}},
	{"rfc4475/semiuri.dat", 0, func(t *testing.T, m *Message) {
		u := mustURI(t, m)
		eq(t, "user", u.User, "user;par=u%40example.net")
		eq(t, "host", u.Host, "example.com")
		if len(u.Params) != 0 {
			t.Errorf("params %q, want none", u.Params)
		}
		var vals []string
		for it := m.Values(KindOther); ; {
			v, ok := it.Next()
			if !ok {
				break
			}
			vals = append(vals, string(v))
		}
		accept := m.GetByName("accept")
		if n := bytes.Count(accept, []byte(",")); n != 5 {
			t.Errorf("Accept has %d commas, want 5", n)
		}
	}},
	{"rfc4475/transports.dat", 0, func(t *testing.T, m *Message) {
		want := []string{"UDP", "SCTP", "TLS", "UNKNOWN", "TCP"}
		vias := allVias(t, m)
		if len(vias) != len(want) {
			t.Fatalf("%d vias, want %d", len(vias), len(want))
		}
		for i, v := range vias {
			eq(t, "transport", v.Transport, want[i])
		}
		eq(t, "host[3]", vias[3].Host, "t4.example.com")
	}},
	{"rfc4475/mpart01.dat", 0, func(t *testing.T, m *Message) {
		if m.ContentLength() != 553 || len(m.Body()) != 553 {
			t.Errorf("body %d bytes, Content-Length %d, want 553", len(m.Body()), m.ContentLength())
		}
		if !bytes.Contains(m.Body(), []byte{0}) {
			t.Error("binary body lost its NUL bytes")
		}
		if !bytes.HasPrefix(m.Get(KindContentType), []byte("multipart/mixed;boundary=7a9cbec02ceef655")) {
			t.Errorf("Content-Type %q", m.Get(KindContentType))
		}
	}},
	{"rfc4475/unreason.dat", 0, func(t *testing.T, m *Message) {
		if m.StatusCode() != 200 {
			t.Errorf("code %d", m.StatusCode())
		}
		if !strings.HasPrefix(string(m.Reason()), "= 2**3 * 5**2 ") || len(m.Reason()) < 50 {
			t.Errorf("reason %q", m.Reason())
		}
	}},
	{"rfc4475/noreason.dat", 0, func(t *testing.T, m *Message) {
		if m.StatusCode() != 100 || len(m.Reason()) != 0 {
			t.Errorf("code %d reason %q", m.StatusCode(), m.Reason())
		}
		eq(t, "to tag", mustAddr(t, m.Get(KindTo)).Tag, "902jndnke3")
	}},
	// RFC 4475 §3.1.2 invalid messages
	{"rfc4475/badinv01.dat", 400, nil},
	{"rfc4475/clerr.dat", 400, nil},
	{"rfc4475/ncl.dat", 400, nil},
	{"rfc4475/scalar02.dat", 400, nil},
	{"rfc4475/scalarlg.dat", 400, nil}, // a response: dropped
	{"rfc4475/quotbal.dat", 400, nil},
	{"rfc4475/ltgtruri.dat", 400, nil},
	{"rfc4475/lwsruri.dat", 400, nil},
	{"rfc4475/lwsstart.dat", 400, nil},
	{"rfc4475/trws.dat", 400, nil},
	{"rfc4475/escruri.dat", 400, nil},
	{"rfc4475/baddate.dat", 400, nil},
	{"rfc4475/regbadct.dat", 400, nil},
	{"rfc4475/badaspec.dat", 400, nil},
	{"rfc4475/baddn.dat", 400, nil},
	{"rfc4475/badvers.dat", 505, nil},
	{"rfc4475/mismatch01.dat", 400, nil},
	{"rfc4475/mismatch02.dat", 501, nil},
	{"rfc4475/bigcode.dat", 400, nil}, // a response: dropped
	// RFC 4475 §3.2–3.4: well-formed, with behaviour prescribed elsewhere
	{"rfc4475/badbranch.dat", 0, func(t *testing.T, m *Message) {
		v, _ := m.TopVia()
		eq(t, "branch", v.Branch, "z9hG4bK")
		if v.RFC3261Branch() {
			t.Error("bare magic cookie taken as an RFC 3261 branch")
		}
	}},
	{"rfc4475/insuf.dat", 400, nil},
	{"rfc4475/unkscm.dat", 0, func(t *testing.T, m *Message) {
		u := mustURI(t, m)
		eq(t, "scheme", u.Scheme, "nobodyKnowsThisScheme")
		if u.Kind != SchemeOther || u.IsSIP() {
			t.Error("unknown scheme classified as known")
		}
		eq(t, "opaque", u.Opaque, "totallyopaquecontent")
	}},
	{"rfc4475/novelsc.dat", 0, func(t *testing.T, m *Message) {
		u := mustURI(t, m)
		eq(t, "scheme", u.Scheme, "soap.beep")
		if u.Kind != SchemeOther {
			t.Error("soap.beep classified as known")
		}
	}},
	{"rfc4475/unksm2.dat", 0, func(t *testing.T, m *Message) {
		to := mustAddr(t, m.Get(KindTo))
		eq(t, "to scheme", to.URI.Scheme, "isbn")
		from := mustAddr(t, m.Get(KindFrom))
		eq(t, "from scheme", from.URI.Scheme, "http")
		eq(t, "from tag", from.Tag, "3234233")
		c := mustAddr(t, m.Get(KindContact))
		eq(t, "contact", c.RawURI, "name:John_Smith")
	}},
	{"rfc4475/bext01.dat", 0, func(t *testing.T, m *Message) {
		var tags []string
		for it := m.Values(KindProxyRequire); ; {
			v, ok := it.Next()
			if !ok {
				break
			}
			tags = append(tags, string(v))
		}
		if strings.Join(tags, "|") != "noProxiesSupportThis|norDoAnyProxiesSupportThis" {
			t.Errorf("Proxy-Require %q", tags)
		}
		eq(t, "require", m.Get(KindRequire), "nothingSupportsThis, nothingSupportsThisEither")
	}},
	{"rfc4475/invut.dat", 0, func(t *testing.T, m *Message) {
		eq(t, "content-type", m.Get(KindContentType), "application/unknownformat")
	}},
	{"rfc4475/regaut01.dat", 0, func(t *testing.T, m *Message) {
		eq(t, "authorization", m.Get(KindAuthorization), "NoOneKnowsThisScheme opaque-data=here")
		if m.ContentLength() != 0 {
			t.Error("Content-Length:0 not read")
		}
	}},
	{"rfc4475/multi01.dat", 400, nil},
	{"rfc4475/mcl01.dat", 400, nil},
	{"rfc4475/bcast.dat", 0, func(t *testing.T, m *Message) {
		vias := allVias(t, m)
		if len(vias) != 2 {
			t.Fatalf("%d vias", len(vias))
		}
		eq(t, "second via host", vias[1].Host, "255.255.255.255")
	}},
	{"rfc4475/zeromf.dat", 0, func(t *testing.T, m *Message) {
		if n, ok := m.MaxForwards(); !ok || n != 0 {
			t.Errorf("Max-Forwards %d %v", n, ok)
		}
	}},
	{"rfc4475/cparam01.dat", 0, func(t *testing.T, m *Message) {
		c := mustAddr(t, m.Get(KindContact))
		eq(t, "uri", c.RawURI, "sip:+19725552222@gw1.example.net")
		if len(c.URI.Params) != 0 {
			t.Errorf("uri params %q: unknownparam is a contact param", c.URI.Params)
		}
		if _, ok := c.Params.Get("unknownparam"); !ok {
			t.Error("unknownparam missing from contact params")
		}
	}},
	{"rfc4475/cparam02.dat", 0, func(t *testing.T, m *Message) {
		c := mustAddr(t, m.Get(KindContact))
		if _, ok := c.URI.Param("unknownparam"); !ok {
			t.Errorf("unknownparam not a URI param: %q", c.URI.Params)
		}
		if _, ok := c.Params.Get("unknownparam"); ok {
			t.Error("unknownparam taken as a contact param")
		}
	}},
	{"rfc4475/regescrt.dat", 0, func(t *testing.T, m *Message) {
		c := mustAddr(t, m.Get(KindContact))
		eq(t, "uri headers", c.URI.Headers, "Route=%3Csip:sip.example.com%3E")
		eq(t, "host", c.URI.Host, "example.com")
		if m.Count(KindRoute) != 0 {
			t.Error("escaped Route became a header")
		}
	}},
	{"rfc4475/sdp01.dat", 0, func(t *testing.T, m *Message) {
		eq(t, "accept", m.GetByName("Accept"), "text/nobodyKnowsThis")
	}},
	{"rfc4475/inv2543.dat", 0, func(t *testing.T, m *Message) {
		v, _ := m.TopVia()
		if v.HasBranch {
			t.Error("branch invented")
		}
		if _, ok := m.MaxForwards(); ok {
			t.Error("Max-Forwards invented")
		}
		if m.ContentLength() != -1 || len(m.Body()) == 0 {
			t.Errorf("no Content-Length: body should run to the end, got %d bytes", len(m.Body()))
		}
		eq(t, "from tag", mustAddr(t, m.Get(KindFrom)).Tag, "")
		rr := mustAddr(t, m.Get(KindRecordRoute))
		p, _ := rr.URI.Param("maddr")
		eq(t, "rr maddr", p, "ss1.example.com")
	}},

	// RFC 5118
	{"rfc5118/ipv6-good.dat", 0, func(t *testing.T, m *Message) {
		eq(t, "host", mustURI(t, m).Host, "[2001:db8::10]")
		eq(t, "via host", allVias(t, m)[0].Host, "[2001:db8::9:1]")
	}},
	{"rfc5118/ipv6-bad.dat", 400, nil},
	{"rfc5118/port-ambiguous.dat", 0, func(t *testing.T, m *Message) {
		u := mustURI(t, m)
		eq(t, "host", u.Host, "[2001:db8::10:5070]")
		if u.Port != 0 {
			t.Errorf("port %d read from inside the brackets", u.Port)
		}
	}},
	{"rfc5118/port-unambiguous.dat", 0, func(t *testing.T, m *Message) {
		u := mustURI(t, m)
		eq(t, "host", u.Host, "[2001:db8::10]")
		if u.Port != 5070 {
			t.Errorf("port %d", u.Port)
		}
	}},
	{"rfc5118/via-received-param-with-delim.dat", 0, func(t *testing.T, m *Message) {
		v := allVias(t, m)[0]
		eq(t, "received", v.Received, "[2001:db8::9:255]")
		eq(t, "branch", v.Branch, "z9hG4bKas3-111")
	}},
	{"rfc5118/via-received-param-no-delim.dat", 0, func(t *testing.T, m *Message) {
		v := allVias(t, m)[0]
		eq(t, "received", v.Received, "2001:db8::9:255")
		eq(t, "branch", v.Branch, "z9hG4bKas3")
	}},
	{"rfc5118/ipv6-in-sdp.dat", 0, func(t *testing.T, m *Message) {
		if !bytes.Contains(m.Body(), []byte("c=IN IP6 2001:db8::20")) {
			t.Error("IPv6 c= line not in body")
		}
	}},
	{"rfc5118/mult-ip-in-header.dat", 0, func(t *testing.T, m *Message) {
		vias := allVias(t, m)
		if len(vias) != 3 {
			t.Fatalf("%d vias", len(vias))
		}
		eq(t, "via0", vias[0].Host, "[2001:db8::9:1]")
		if vias[0].Port != 6050 {
			t.Errorf("via0 port %d", vias[0].Port)
		}
		eq(t, "via1", vias[1].Host, "192.0.2.1")
		eq(t, "via2", vias[2].Host, "[2001:db8::9:255]")
		eq(t, "via2 received", vias[2].Received, "192.0.2.200")
	}},
	{"rfc5118/mult-ip-in-sdp.dat", 0, func(t *testing.T, m *Message) {
		if !bytes.Contains(m.Body(), []byte("IP6")) || !bytes.Contains(m.Body(), []byte("IP4")) {
			t.Error("mixed SDP lost")
		}
	}},
	{"rfc5118/ipv4-mapped-ipv6.dat", 0, func(t *testing.T, m *Message) {
		eq(t, "via host", allVias(t, m)[0].Host, "[::ffff:192.0.2.10]")
	}},
	{"rfc5118/ipv6-bug-abnf-3-colons.dat", 0, func(t *testing.T, m *Message) {
		eq(t, "host", mustURI(t, m).Host, "[2001:db8:::192.0.2.1]")
	}},
	{"rfc5118/ipv6-correct-abnf-2-colons.dat", 0, func(t *testing.T, m *Message) {
		eq(t, "host", mustURI(t, m).Host, "[2001:db8::192.0.2.1]")
	}},
}

func TestTortureVerdicts(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range tortureVerdicts {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			b := readTorture(t, tc.file)
			var m Message
			err := m.Parse(b, nil)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("rejected a valid message: %v", err)
				}
				// Byte-identical round trip of every valid message.
				out := m.AppendTo(nil)
				if !bytes.Equal(out, m.Bytes()) || !bytes.HasPrefix(b, out) {
					t.Fatalf("round trip changed the message")
				}
				if tc.check != nil {
					tc.check(t, &m)
				}
				return
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("accepted an invalid message (want %d)", tc.code)
			}
			if pe.Code != tc.code {
				t.Fatalf("code %d, want %d: %v", pe.Code, tc.code, err)
			}
			// A request's error must still be answerable: Via, From,
			// Call-ID and CSeq read so far go into the response.
			if m.IsRequest() && m.Find(KindVia) >= 0 {
				resp := AppendResponse(nil, &m, pe.Code, pe.Reason, []byte("x"), nil)
				var r Message
				if err := r.Parse(resp, nil); err != nil && m.Find(KindFrom) >= 0 && m.Find(KindTo) >= 0 {
					t.Logf("response to a broken request does not parse (expected for broken headers): %v", err)
				}
			}
		})
	}
	// Every corpus file has a verdict.
	for _, dir := range []string{"rfc4475", "rfc5118"} {
		files, _ := filepath.Glob(filepath.Join("testdata/torture", dir, "*.dat"))
		for _, f := range files {
			if name := dir + "/" + filepath.Base(f); !seen[name] {
				t.Errorf("%s has no verdict", name)
			}
		}
	}
	if n := len(tortureVerdicts); n != 49+12 {
		t.Errorf("%d verdicts, want 61", n)
	}
}

func checkWsinv(t *testing.T, m *Message) {
	eq(t, "method", m.Method(), "INVITE")
	u := mustURI(t, m)
	eq(t, "ruri user", u.User, "vivekg")
	eq(t, "ruri host", u.Host, "chair-dnrc.example.com")
	eq(t, "ruri params", u.Params, "unknownparam")
	to := mustAddr(t, m.Get(KindTo))
	eq(t, "to tag", to.Tag, "1918181833n")
	eq(t, "to uri", to.RawURI, "sip:vivekg@chair-dnrc.example.com")
	from := mustAddr(t, m.Get(KindFrom))
	eq(t, "from display", from.Display, `"J Rosenberg \\\""`)
	eq(t, "from tag", from.Tag, "98asjd8")
	if n, _ := m.MaxForwards(); n != 68 {
		t.Errorf("Max-Forwards %d, want 68", n)
	}
	if n, meth := m.CSeq(); n != 9 || string(meth) != "INVITE" {
		t.Errorf("CSeq %d %s", n, meth)
	}
	eq(t, "call-id", m.CallID(), "wsinv.ndaksdj@192.0.2.1")
	vias := allVias(t, m)
	if len(vias) != 3 {
		t.Fatalf("%d vias, want 3", len(vias))
	}
	for i, w := range []struct{ tr, host, branch string }{
		{"UDP", "192.0.2.2", "390skdjuw"},
		{"TCP", "spindle.example.com", "z9hG4bK9ikj8"},
		{"UDP", "192.168.255.111", "z9hG4bK30239"},
	} {
		eq(t, "via transport", vias[i].Transport, w.tr)
		eq(t, "via host", vias[i].Host, w.host)
		eq(t, "via branch", vias[i].Branch, w.branch)
	}
	c := mustAddr(t, m.Get(KindContact))
	eq(t, "contact display", c.Display, `"Quoted string \"\""`)
	if c.Q() != 330 {
		t.Errorf("contact q %d, want 330", c.Q())
	}
	v, _ := c.Params.Get("newparam")
	eq(t, "newparam", v, "newvalue")
	if _, ok := c.Params.Get("secondparam"); !ok {
		t.Error("secondparam missing")
	}
	r := mustAddr(t, m.Get(KindRoute))
	if _, ok := r.URI.Param("lr"); !ok {
		t.Error("route lr missing")
	}
	eq(t, "subject", m.Get(KindSubject), "")
	eq(t, "unknown header", m.GetByName("NewFangledHeader"), "newfangled value\r\n continued newfangled value")
	eq(t, "unusual header", m.GetByName("UnknownHeaderWithUnusualValue"), ";;,,;;,;")
	if len(m.Body()) != 150 {
		t.Errorf("body %d bytes", len(m.Body()))
	}
}

func checkIntmeth(t *testing.T, m *Message) {
	eq(t, "method", m.Method(), "!interesting-Method0123456789_*+`.%indeed'~")
	if m.MethodKind() != MethodOther {
		t.Error("method classified as known")
	}
	u := mustURI(t, m)
	eq(t, "user", u.User, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
	eq(t, "password", u.Password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
	eq(t, "host", u.Host, "example.com")
	to := mustAddr(t, m.Get(KindTo))
	eq(t, "to display", to.Display, "\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\"")
	eq(t, "to user", to.URI.User, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
	from := mustAddr(t, m.Get(KindFrom))
	eq(t, "from display", from.Display, "token1~` token2'+_ token3*%!.-")
	eq(t, "from tag", from.Tag, "_token~1'+`*%!-.")
	fp, _ := from.Params.Get("fromParam''~+*_!.-%")
	eq(t, "fromParam", fp, "\"работающий\"")
	v := allVias(t, m)[0]
	eq(t, "branch", v.Branch, "z9hG4bK-.!%66*_+`'~")
	eq(t, "call-id", m.CallID(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
	if n, meth := m.CSeq(); n != 139122385 || string(meth) != string(m.Method()) {
		t.Errorf("CSeq %d %q", n, meth)
	}
	if n, _ := m.MaxForwards(); n != 255 {
		t.Errorf("Max-Forwards %d", n)
	}
}

func checkEsc01(t *testing.T, m *Message) {
	u := mustURI(t, m)
	eq(t, "ruri user (escaped as written)", u.User, "sips%3Auser%40example.com")
	eq(t, "ruri user decoded", Unescape(nil, u.User), "sips:user@example.com")
	eq(t, "ruri host", u.Host, "example.net")
	to := mustAddr(t, m.Get(KindTo))
	eq(t, "to user decoded", Unescape(nil, to.URI.User), "user")
	from := mustAddr(t, m.Get(KindFrom))
	eq(t, "from user decoded", Unescape(nil, from.URI.User), "I have spaces")
	c := mustAddr(t, m.Get(KindContact))
	eq(t, "contact user decoded", Unescape(nil, c.URI.User), "caller")
	// %6C%72 is the parameter "lr", escaped; name=value%25%34%31 decodes
	// once to "value%41", never to "valueA".
	v, ok := c.URI.Param("n%61me")
	if !ok {
		t.Fatal("escaped parameter name not found as written")
	}
	eq(t, "param decoded once", Unescape(nil, v), "value%41")
	eq(t, "call-id (compact i)", m.CallID(), "esc01.239409asdfakjkn23onasd0-3234")
	eq(t, "content-type (compact c)", m.Get(KindContentType), "application/sdp")
	// §19.1.4: escaped and unescaped forms of the same URI are equal.
	a, _ := ParseURI([]byte("sip:%75se%72@example.com"))
	b, _ := ParseURI([]byte("sip:user@EXAMPLE.com"))
	if !URIEqual(&a, &b) {
		t.Error("sip:%75se%72@example.com != sip:user@EXAMPLE.com")
	}
}

func checkEscnull(t *testing.T, m *Message) {
	to := mustAddr(t, m.Get(KindTo))
	eq(t, "to user", to.URI.User, "null-%00-null")
	eq(t, "to user decoded (NUL kept, not truncated)", Unescape(nil, to.URI.User), "null-\x00-null")
	var users []string
	for it := m.Values(KindContact); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		users = append(users, string(Unescape(nil, mustAddr(t, v).URI.User)))
	}
	if len(users) != 2 || users[0] != "\x00" || users[1] != "\x00\x00" {
		t.Errorf("contacts %q, want two distinct NUL users", users)
	}
	a, _ := ParseURI([]byte("sip:%00@host5.example.com"))
	b, _ := ParseURI([]byte("sip:%00%00@host5.example.com"))
	if URIEqual(&a, &b) {
		t.Error("the two escaped-NUL contacts compare equal")
	}
}

func checkEsc02(t *testing.T, m *Message) {
	eq(t, "method", m.Method(), "RE%47IST%45R")
	if m.MethodKind() == REGISTER {
		t.Error("RE%47IST%45R taken as REGISTER")
	}
	if m.Count(KindContact) != 2 {
		t.Errorf("%d Contact headers, want 2 (C%%6Fntact is another header)", m.Count(KindContact))
	}
	eq(t, "C%6Fntact kept as unknown", m.GetByName("C%6Fntact"), "<sip:alias2@host2.example.com>")
	to := mustAddr(t, m.Get(KindTo))
	eq(t, "to display", to.Display, `"%Z%45"`)
	eq(t, "branch", allVias(t, m)[0].Branch, "z9hG4bK209%fzsnel234")
}

func checkLongreq(t *testing.T, m *Message) {
	to := mustAddr(t, m.Get(KindTo))
	if len(to.Display) < 100 || to.URI.Port != 6000 {
		t.Errorf("long display %d bytes / port %d", len(to.Display), to.URI.Port)
	}
	if _, ok := to.URI.Param("verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue"); !ok {
		t.Error("long valueless URI parameter lost")
	}
	from := mustAddr(t, m.Get(KindFrom))
	if len(from.Tag) < 150 || len(from.URI.User) < 100 {
		t.Errorf("long tag %d / user %d lost", len(from.Tag), len(from.URI.User))
	}
	if m.NumVias() != 34 {
		t.Errorf("%d vias, want 34", m.NumVias())
	}
	if len(m.CallID()) < 100 {
		t.Errorf("call-id %d bytes", len(m.CallID()))
	}
}

func readTorture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/torture", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustURI(t *testing.T, m *Message) URI {
	t.Helper()
	u, err := m.RequestURI()
	if err != nil {
		t.Fatalf("Request-URI %q: %v", m.RequestURIBytes(), err)
	}
	return u
}

func mustAddr(t *testing.T, b []byte) Address {
	t.Helper()
	a, err := ParseAddress(b)
	if err != nil {
		t.Fatalf("address %q: %v", b, err)
	}
	return a
}

func allVias(t *testing.T, m *Message) []Via {
	t.Helper()
	var out []Via
	for it := m.Values(KindVia); ; {
		v, ok := it.Next()
		if !ok {
			return out
		}
		via, err := ParseVia(v)
		if err != nil {
			t.Fatalf("via %q: %v", v, err)
		}
		out = append(out, via)
	}
}

func eq[T ~[]byte | ~string](t *testing.T, what string, got T, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}
