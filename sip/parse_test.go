package sip

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// tblReqHdrs is a minimal valid INVITE header section (RFC 3261 §24.2 F1
// style); tests derive variants with tblWith / tblWithout / tblSet.
var tblReqHdrs = []string{
	"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
	"Max-Forwards: 70",
	"To: Bob <sip:bob@biloxi.com>",
	"From: Alice <sip:alice@atlanta.com>;tag=1928301774",
	"Call-ID: a84b4c76e66710@pc33.atlanta.com",
	"CSeq: 314159 INVITE",
	"Contact: <sip:alice@pc33.atlanta.com>",
	"Content-Length: 0",
}

// tblRespHdrs is the header section of a 200 OK to that INVITE.
var tblRespHdrs = []string{
	"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=192.0.2.1",
	"To: Bob <sip:bob@biloxi.com>;tag=a6c85cf",
	"From: Alice <sip:alice@atlanta.com>;tag=1928301774",
	"Call-ID: a84b4c76e66710@pc33.atlanta.com",
	"CSeq: 314159 INVITE",
	"Content-Length: 0",
}

const tblInviteLine = "INVITE sip:bob@biloxi.com SIP/2.0"

// tblMsg joins a start line, header lines and a body into a message.
func tblMsg(start string, hdrs []string, body string) []byte {
	var b strings.Builder
	b.WriteString(start)
	b.WriteString("\r\n")
	for _, h := range hdrs {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return []byte(b.String())
}

// tblName returns the field name of a header line.
func tblName(line string) string {
	n, _, _ := strings.Cut(line, ":")
	return strings.TrimSpace(n)
}

// tblWith returns hdrs followed by extra.
func tblWith(hdrs []string, extra ...string) []string {
	return append(append([]string(nil), hdrs...), extra...)
}

// tblWithout returns hdrs without the lines named name (any case).
func tblWithout(hdrs []string, name string) []string {
	var out []string
	for _, h := range hdrs {
		if !strings.EqualFold(tblName(h), name) {
			out = append(out, h)
		}
	}
	return out
}

// tblSet replaces the lines named like line's name with line (or appends it).
func tblSet(hdrs []string, line string) []string {
	name := tblName(line)
	out := make([]string, 0, len(hdrs)+1)
	done := false
	for _, h := range hdrs {
		if strings.EqualFold(tblName(h), name) {
			if !done {
				out = append(out, line)
				done = true
			}
			continue
		}
		out = append(out, h)
	}
	if !done {
		out = append(out, line)
	}
	return out
}

// tblCode is 0 for nil, the ParseError code, or -1 for another error type.
func tblCode(err error) int {
	if err == nil {
		return 0
	}
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return -1
}

// tblValues collects every value of kind k through the Values iterator.
func tblValues(m *Message, k HeaderKind) []string {
	var out []string
	for it := m.Values(k); ; {
		v, ok := it.Next()
		if !ok {
			return out
		}
		out = append(out, string(v))
	}
}

func tblParse(t *testing.T, b []byte) *Message {
	t.Helper()
	var m Message
	if err := m.Parse(b, nil); err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	return &m
}

func TestLookupKindTable(t *testing.T) {
	tests := []struct {
		name string
		want HeaderKind
	}{
		{"Via", KindVia}, {"via", KindVia}, {"VIA", KindVia}, {"vIa", KindVia}, {"v", KindVia}, {"V", KindVia},
		{"From", KindFrom}, {"f", KindFrom}, {"FROM", KindFrom},
		{"To", KindTo}, {"t", KindTo}, {"tO", KindTo},
		{"Call-ID", KindCallID}, {"call-id", KindCallID}, {"CALL-ID", KindCallID}, {"i", KindCallID},
		{"CSeq", KindCSeq}, {"cseq", KindCSeq},
		{"Max-Forwards", KindMaxForwards}, {"max-forwards", KindMaxForwards},
		{"Content-Length", KindContentLength}, {"content-LENGTH", KindContentLength}, {"l", KindContentLength}, {"L", KindContentLength},
		{"Content-Type", KindContentType}, {"c", KindContentType},
		{"Content-Encoding", KindContentEncoding}, {"e", KindContentEncoding},
		{"Contact", KindContact}, {"m", KindContact}, {"CONTACT", KindContact},
		{"Subject", KindSubject}, {"s", KindSubject},
		{"Supported", KindSupported}, {"k", KindSupported},
		{"Event", KindEvent}, {"o", KindEvent},
		{"Session-Expires", KindSessionExpires}, {"x", KindSessionExpires},
		{"Route", KindRoute}, {"Record-Route", KindRecordRoute}, {"record-route", KindRecordRoute},
		{"Expires", KindExpires}, {"Min-Expires", KindMinExpires}, {"Require", KindRequire},
		{"Proxy-Require", KindProxyRequire}, {"Unsupported", KindUnsupported},
		{"Authorization", KindAuthorization}, {"Proxy-Authorization", KindProxyAuthorization},
		{"proxy-authorization", KindProxyAuthorization},
		{"WWW-Authenticate", KindWWWAuthenticate}, {"Proxy-Authenticate", KindProxyAuthenticate},
		{"Date", KindDate}, {"Path", KindPath}, {"Allow", KindAllow}, {"User-Agent", KindUserAgent},
		{"Server", KindServer}, {"Min-SE", KindMinSE}, {"min-se", KindMinSE},
		// not (or not yet) indexed kinds
		{"r", KindOther}, {"b", KindOther}, {"a", KindOther}, {"u", KindOther}, {"y", KindOther}, {"1", KindOther},
		{"Accept", KindOther}, {"Vias", KindOther}, {"Fromm", KindOther}, {"C%6Fntact", KindOther},
		{"X-Custom-Header-Of-Some-Length", KindOther}, {"-", KindOther}, {"Content_Length", KindOther},
	}
	for _, tc := range tests {
		if got := LookupKind([]byte(tc.name)); got != tc.want {
			t.Errorf("LookupKind(%q) = %v (%d), want %v (%d)", tc.name, got, got, tc.want, tc.want)
		}
	}
}

func TestParseCompactForms(t *testing.T) {
	msg := tblMsg("INVITE sip:bob@biloxi.com SIP/2.0", []string{
		"v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKc1",
		"f: <sip:alice@atlanta.com>;tag=1",
		"t: <sip:bob@biloxi.com>",
		"i: compact@pc33",
		"CSeq: 1 INVITE",
		"m: <sip:alice@pc33.atlanta.com>",
		"e: gzip",
		"c: application/sdp",
		"s: lunch",
		"k: 100rel",
		"o: presence",
		"x: 1800",
		"r: sip:carol@chicago.com",
		"l: 4",
	}, "v=0\r\n")
	m := tblParse(t, msg)
	wantKinds := []struct {
		name  string
		kind  HeaderKind
		value string
	}{
		{"v", KindVia, "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKc1"},
		{"f", KindFrom, "<sip:alice@atlanta.com>;tag=1"},
		{"t", KindTo, "<sip:bob@biloxi.com>"},
		{"i", KindCallID, "compact@pc33"},
		{"CSeq", KindCSeq, "1 INVITE"},
		{"m", KindContact, "<sip:alice@pc33.atlanta.com>"},
		{"e", KindContentEncoding, "gzip"},
		{"c", KindContentType, "application/sdp"},
		{"s", KindSubject, "lunch"},
		{"k", KindSupported, "100rel"},
		{"o", KindEvent, "presence"},
		{"x", KindSessionExpires, "1800"},
		{"r", KindOther, "sip:carol@chicago.com"}, // Refer-To has no kind
		{"l", KindContentLength, "4"},
	}
	if m.NumHeaders() != len(wantKinds) {
		t.Fatalf("%d headers, want %d", m.NumHeaders(), len(wantKinds))
	}
	for i, w := range wantKinds {
		if m.HeaderKind(i) != w.kind {
			t.Errorf("header %d (%s) kind %v, want %v", i, w.name, m.HeaderKind(i), w.kind)
		}
		eq(t, "name", m.HeaderName(i), w.name)
		eq(t, "value", m.HeaderValue(i), w.value)
		if w.kind != KindOther {
			eq(t, "Get("+w.kind.String()+")", m.Get(w.kind), w.value)
			eq(t, "GetByName("+w.kind.String()+")", m.GetByName(w.kind.String()), w.value)
			eq(t, "GetByName("+w.name+")", m.GetByName(w.name), w.value)
		}
	}
	eq(t, "call-id", m.CallID(), "compact@pc33")
	if m.ContentLength() != 4 {
		t.Errorf("ContentLength %d", m.ContentLength())
	}
	eq(t, "body", m.Body(), "v=0\r")
	from, err := m.From()
	if err != nil || string(from.Tag) != "1" {
		t.Errorf("From() tag %q %v", from.Tag, err)
	}
	to, err := m.To()
	if err != nil || string(to.URI.User) != "bob" {
		t.Errorf("To() user %q %v", to.URI.User, err)
	}
	v, err := m.TopVia()
	if err != nil || string(v.Branch) != "z9hG4bKc1" {
		t.Errorf("TopVia branch %q %v", v.Branch, err)
	}
}

func TestParseHeaderNameCaseAndSpacing(t *testing.T) {
	msg := tblMsg(tblInviteLine, []string{
		"vIA: SIP/2.0/UDP h;branch=z9hG4bK1",
		"TO: <sip:bob@biloxi.com>",
		"from: <sip:alice@atlanta.com>;tag=1",
		"CALL-ID: x@y",
		"cseq: 1 INVITE",
		"max-FORWARDS : 7",
		"Subject\t:\tspaced",
		"CONTENT-LENGTH:0",
	}, "")
	m := tblParse(t, msg)
	for _, tc := range []struct {
		k    HeaderKind
		want string
	}{
		{KindVia, "SIP/2.0/UDP h;branch=z9hG4bK1"}, {KindTo, "<sip:bob@biloxi.com>"},
		{KindFrom, "<sip:alice@atlanta.com>;tag=1"}, {KindCallID, "x@y"}, {KindCSeq, "1 INVITE"},
		{KindMaxForwards, "7"}, {KindSubject, "spaced"}, {KindContentLength, "0"},
	} {
		eq(t, tc.k.String(), m.Get(tc.k), tc.want)
	}
	eq(t, "name as written", m.HeaderName(5), "max-FORWARDS")
	if n, ok := m.MaxForwards(); !ok || n != 7 {
		t.Errorf("MaxForwards %d %v", n, ok)
	}
	if n, meth := m.CSeq(); n != 1 || string(meth) != "INVITE" {
		t.Errorf("CSeq %d %q", n, meth)
	}
}

func TestParseFolding(t *testing.T) {
	msg := tblMsg(tblInviteLine, tblWith(tblReqHdrs,
		"Subject: I know you're there,\r\n pick up the phone\r\n\tand talk to me!",
		"NewFangledHeader:   newfangled value\r\n continued newfangled value",
		"Via: SIP/2.0/UDP second.example.com;branch=z9hG4bK2,\r\n  SIP/2.0/TCP third.example.com\r\n  ;branch=z9hG4bK3",
		"Require:\r\n 100rel",
	), "")
	m := tblParse(t, msg)
	eq(t, "subject", m.Get(KindSubject), "I know you're there,\r\n pick up the phone\r\n\tand talk to me!")
	eq(t, "unknown folded", m.GetByName("newfangledheader"), "newfangled value\r\n continued newfangled value")
	eq(t, "value starting on a continuation line", m.Get(KindRequire), "100rel")
	vias := allVias(t, m)
	if len(vias) != 3 || m.NumVias() != 3 {
		t.Fatalf("%d vias (NumVias %d), want 3", len(vias), m.NumVias())
	}
	eq(t, "folded via host", vias[2].Host, "third.example.com")
	eq(t, "folded via branch", vias[2].Branch, "z9hG4bK3")
	eq(t, "folded via transport", vias[2].Transport, "TCP")
}

func TestParseViaValuesOrder(t *testing.T) {
	hdrs := []string{
		"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP b.example.com;branch=z9hG4bKb",
		"To: <sip:bob@biloxi.com>",
		"v: SIP/2.0/TCP c.example.com;branch=z9hG4bKc",
		"From: <sip:alice@atlanta.com>;tag=1",
		"Via: SIP/2.0/UDP d.example.com;branch=z9hG4bKd ,SIP/2.0/UDP e.example.com;branch=z9hG4bKe,\r\n SIP/2.0/UDP f.example.com;branch=z9hG4bKf",
		"Call-ID: v@x",
		"CSeq: 1 INVITE",
	}
	msg := tblMsg(tblInviteLine, hdrs, "")
	m := tblParse(t, msg)
	if m.NumVias() != 6 {
		t.Errorf("NumVias = %d, want 6", m.NumVias())
	}
	if m.Count(KindVia) != 3 {
		t.Errorf("Count(Via) = %d header lines, want 3", m.Count(KindVia))
	}
	var hosts []string
	for _, v := range allVias(t, m) {
		hosts = append(hosts, string(v.Host))
	}
	if got := strings.Join(hosts, ","); got != "a.example.com,b.example.com,c.example.com,d.example.com,e.example.com,f.example.com" {
		t.Errorf("via order %s", got)
	}
	vals := tblValues(m, KindVia)
	eq(t, "value 1 trimmed", vals[1], "SIP/2.0/UDP b.example.com;branch=z9hG4bKb")
	eq(t, "value 3 trimmed", vals[3], "SIP/2.0/UDP d.example.com;branch=z9hG4bKd")
	eq(t, "value 5 after fold", vals[5], "SIP/2.0/UDP f.example.com;branch=z9hG4bKf")
	top, err := m.TopVia()
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "top via", top.Branch, "z9hG4bKa")
	s, e, ok := m.TopViaSpan()
	if !ok {
		t.Fatal("TopViaSpan not found")
	}
	eq(t, "TopViaSpan", msg[s:e], "SIP/2.0/UDP a.example.com;branch=z9hG4bKa")
	// Offset recovers the position of a view's field.
	if off := m.Offset(top.Branch); off < 0 || string(msg[off:off+len(top.Branch)]) != "z9hG4bKa" {
		t.Errorf("Offset(branch) = %d", off)
	}
	if m.Offset([]byte("z9hG4bKa")) != -1 {
		t.Error("Offset of a foreign slice not -1")
	}
}

func TestParseMultipleContacts(t *testing.T) {
	msg := tblMsg("REGISTER sip:registrar.biloxi.com SIP/2.0", tblWith(tblWithout(tblSet(tblReqHdrs, "CSeq: 2 REGISTER"), "Contact"),
		"Contact: <sip:bob@192.0.2.4>;q=0.7;expires=3600, \"Mobile\" <sip:bob@192.0.2.5>;q=0.1",
		"m: <sip:bob@[2001:db8::1]>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1",
	), "")
	m := tblParse(t, msg)
	if m.Count(KindContact) != 2 {
		t.Fatalf("Count(Contact) = %d, want 2", m.Count(KindContact))
	}
	i := m.Find(KindContact)
	j := m.FindNext(KindContact, i)
	if i < 0 || j <= i || m.FindNext(KindContact, j) != -1 {
		t.Fatalf("Find/FindNext = %d %d", i, j)
	}
	eq(t, "second contact line name", m.HeaderName(j), "m")
	vals := tblValues(m, KindContact)
	if len(vals) != 3 {
		t.Fatalf("contacts %q", vals)
	}
	wantQ := []int{700, 100, 1000}
	wantHost := []string{"192.0.2.4", "192.0.2.5", "[2001:db8::1]"}
	for k, v := range vals {
		a := mustAddr(t, []byte(v))
		if a.Q() != wantQ[k] {
			t.Errorf("contact %d q %d, want %d", k, a.Q(), wantQ[k])
		}
		eq(t, "contact host", a.URI.Host, wantHost[k])
	}
	a := mustAddr(t, []byte(vals[2]))
	if r, _ := a.Params.Get("reg-id"); string(r) != "1" {
		t.Errorf("reg-id %q", r)
	}
}

func TestParseValuesEmptyElements(t *testing.T) {
	tests := []struct {
		name string
		hdr  string
		kind HeaderKind
		want []string
		code int // Parse verdict
	}{
		{"double comma", "Require: foo,,bar", KindRequire, []string{"foo", "", "bar"}, 0},
		{"trailing comma", "Require: foo,", KindRequire, []string{"foo", ""}, 0},
		{"leading comma", "Require: ,foo", KindRequire, []string{"", "foo"}, 0},
		{"only comma", "Supported: ,", KindSupported, []string{"", ""}, 0},
		{"empty value", "Supported:", KindSupported, []string{""}, 0},
		{"spaces between commas", "Require: a , , b", KindRequire, []string{"a", "", "b"}, 0},
		{"comma in quotes not split", `Proxy-Require: "a,b", c`, KindProxyRequire, []string{`"a,b"`, "c"}, 0},
		{"comma in quoted display not split", `Record-Route: "P, One" <sip:p1;lr>, <sip:p2;lr>`, KindRecordRoute, []string{`"P, One" <sip:p1;lr>`, "<sip:p2;lr>"}, 0},
		{"comma in <> not split", "X-List: <a,b>, c", KindOther, []string{"<a,b>", "c"}, 0},
		{"via double comma rejected", "Via: SIP/2.0/UDP h2;branch=z9hG4bK2,,SIP/2.0/UDP h3;branch=z9hG4bK3", KindVia,
			[]string{"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds", "SIP/2.0/UDP h2;branch=z9hG4bK2", "", "SIP/2.0/UDP h3;branch=z9hG4bK3"}, 400},
		{"via trailing comma rejected", "Via: SIP/2.0/UDP h2;branch=z9hG4bK2,", KindVia,
			[]string{"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds", "SIP/2.0/UDP h2;branch=z9hG4bK2", ""}, 400},
		{"contact double comma rejected", "Contact: <sip:a@b>,,<sip:c@d>", KindContact,
			[]string{"<sip:alice@pc33.atlanta.com>", "<sip:a@b>", "", "<sip:c@d>"}, 400},
		{"route double comma rejected", "Route: <sip:a@b;lr>,,<sip:c@d;lr>", KindRoute, []string{"<sip:a@b;lr>", "", "<sip:c@d;lr>"}, 400},
		{"route trailing comma rejected", "Route: <sip:a@b;lr>,", KindRoute, []string{"<sip:a@b;lr>", ""}, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			err := m.Parse(tblMsg(tblInviteLine, tblWith(tblReqHdrs, tc.hdr), ""), nil)
			if c := tblCode(err); c != tc.code {
				t.Fatalf("Parse code %d (%v), want %d", c, err, tc.code)
			}
			got := tblValues(&m, tc.kind)
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
				t.Errorf("values %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseAccessors(t *testing.T) {
	msg := tblMsg(tblInviteLine, tblWith(tblReqHdrs,
		"X-Custom: one",
		"Route: <sip:p1.example.com;lr>",
		"x-custom: two",
		"Route: <sip:p2.example.com;lr>",
		"Accept: application/sdp",
	), "")
	m := tblParse(t, msg)
	for _, tc := range []struct {
		name string
		want string
		nil  bool
	}{
		{"Call-ID", "a84b4c76e66710@pc33.atlanta.com", false},
		{"call-id", "a84b4c76e66710@pc33.atlanta.com", false},
		{"i", "a84b4c76e66710@pc33.atlanta.com", false},
		{"X-Custom", "one", false},
		{"X-CUSTOM", "one", false},
		{"accept", "application/sdp", false},
		{"Route", "<sip:p1.example.com;lr>", false},
		{"Subject", "", true},
		{"X-Absent", "", true},
	} {
		got := m.GetByName(tc.name)
		eq(t, "GetByName("+tc.name+")", got, tc.want)
		if (got == nil) != tc.nil {
			t.Errorf("GetByName(%q) nil = %v, want %v", tc.name, got == nil, tc.nil)
		}
	}
	if m.Get(KindSubject) != nil || m.Find(KindSubject) != -1 || m.Count(KindSubject) != 0 {
		t.Error("absent Subject found")
	}
	if m.Count(KindRoute) != 2 || m.Count(KindOther) != 3 || m.Count(KindVia) != 1 {
		t.Errorf("Count route %d other %d via %d", m.Count(KindRoute), m.Count(KindOther), m.Count(KindVia))
	}
	r1 := m.Find(KindRoute)
	r2 := m.FindNext(KindRoute, r1)
	if r1 != 9 || r2 != 11 || m.FindNext(KindRoute, r2) != -1 {
		t.Errorf("Route at %d, %d", r1, r2)
	}
	eq(t, "second route", m.HeaderValue(r2), "<sip:p2.example.com;lr>")
	if m.Find(KindVia) != 0 || m.FindNext(KindVia, 0) != -1 {
		t.Errorf("Via at %d, next %d", m.Find(KindVia), m.FindNext(KindVia, 0))
	}
	if m.NumHeaders() != len(tblReqHdrs)+5 {
		t.Errorf("NumHeaders %d", m.NumHeaders())
	}
	s, e := m.HeaderLine(r1)
	eq(t, "HeaderLine", msg[s:e], "Route: <sip:p1.example.com;lr>\r\n")
	s, e = m.HeaderValueSpan(r1)
	eq(t, "HeaderValueSpan", msg[s:e], "<sip:p1.example.com;lr>")
	eq(t, "Method", m.Method(), "INVITE")
	if m.MethodKind() != INVITE || !m.IsRequest() {
		t.Error("not an INVITE request")
	}
	eq(t, "Request-URI", m.RequestURIBytes(), "sip:bob@biloxi.com")
	s, e = m.RequestURISpan()
	eq(t, "RequestURISpan", msg[s:e], "sip:bob@biloxi.com")
	u, err := m.RequestURI()
	if err != nil || string(u.User) != "bob" {
		t.Errorf("RequestURI %q %v", u.User, err)
	}
	if n, meth := m.CSeq(); n != 314159 || string(meth) != "INVITE" {
		t.Errorf("CSeq %d %q", n, meth)
	}
	if n, ok := m.MaxForwards(); n != 70 || !ok {
		t.Errorf("MaxForwards %d %v", n, ok)
	}
	if m.BodyOffset() != len(msg) || len(m.Body()) != 0 || m.ContentLength() != 0 {
		t.Errorf("body offset %d len %d CL %d", m.BodyOffset(), len(m.Body()), m.ContentLength())
	}
}

func TestGetByNameEmpty(t *testing.T) {
	m := tblParse(t, tblMsg(tblInviteLine, tblReqHdrs, ""))
	var got []byte
	panicked := func() (p bool) {
		defer func() { p = recover() != nil }()
		got = m.GetByName("")
		return false
	}()
	if panicked {
		t.Skip(`BUG: GetByName("") panics (index out of range in LookupKind on an empty name); it should return nil`)
	}
	if got != nil {
		t.Errorf("GetByName(\"\") = %q, want nil", got)
	}
}

func TestParseDatagramBody(t *testing.T) {
	hdrs := tblWithout(tblReqHdrs, "Content-Length")
	tests := []struct {
		name   string
		cl     string // Content-Length line, "" for none
		body   string // bytes after the empty line
		code   int
		want   string // Body()
		wantCL int
	}{
		{"exact", "Content-Length: 5", "hello", 0, "hello", 5},
		{"trailing bytes cut", "Content-Length: 5", "hello, and more bytes", 0, "hello", 5},
		{"zero with trailing bytes", "Content-Length: 0", "INVITE sip:x SIP/2.0\r\n", 0, "", 0},
		{"absent: rest is body", "", "v=0\r\nrest", 0, "v=0\r\nrest", -1},
		{"absent, empty body", "", "", 0, "", -1},
		{"compact l", "l: 3", "abcdef", 0, "abc", 3},
		{"LWS around value", "Content-Length:   4  ", "abcdefg", 0, "abcd", 4},
		{"folded value", "Content-Length:\r\n 4", "abcdefg", 0, "abcd", 4},
		{"binary body with NUL and CRLF", "Content-Length: 6", "\x00\r\n\r\n\xff!", 0, "\x00\r\n\r\n\xff", 6},
		{"larger than message", "Content-Length: 50", "short", 400, "", 0},
		{"negative", "Content-Length: -1", "x", 400, "", 0},
		{"non-numeric", "Content-Length: five", "hello", 400, "", 0},
		{"empty", "Content-Length: ", "", 400, "", 0},
		{"two numbers", "Content-Length: 1 2", "ab", 400, "", 0},
		{"overflow", "Content-Length: 99999999999999999999999", "x", 400, "", 0},
		{"duplicate", "Content-Length: 1\r\nl: 1", "x", 400, "", 0},
		{"over default MaxBodySize", "Content-Length: 60001", "x", 413, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := hdrs
			if tc.cl != "" {
				h = tblWith(hdrs, tc.cl)
			}
			msg := tblMsg(tblInviteLine, h, tc.body)
			var m Message
			err := m.Parse(msg, nil)
			if c := tblCode(err); c != tc.code {
				t.Fatalf("code %d (%v), want %d", c, err, tc.code)
			}
			if tc.code != 0 {
				return
			}
			eq(t, "body", m.Body(), tc.want)
			if m.ContentLength() != tc.wantCL {
				t.Errorf("ContentLength %d, want %d", m.ContentLength(), tc.wantCL)
			}
			hdrLen := len(msg) - len(tc.body)
			if m.BodyOffset() != hdrLen || len(m.Bytes()) != hdrLen+len(tc.want) {
				t.Errorf("BodyOffset %d, len(Bytes) %d; want %d, %d", m.BodyOffset(), len(m.Bytes()), hdrLen, hdrLen+len(tc.want))
			}
			eq(t, "AppendTo", m.AppendTo(nil), string(msg[:hdrLen])+tc.want)
		})
	}
}

func TestParseLeadingCRLF(t *testing.T) {
	for _, lead := range []string{"\r\n", "\r\n\r\n", "\r\n\r\n\r\n\r\n"} {
		msg := append([]byte(lead), tblMsg(tblInviteLine, tblReqHdrs, "")...)
		m := tblParse(t, msg)
		eq(t, "method", m.Method(), "INVITE")
		eq(t, "ruri", m.RequestURIBytes(), "sip:bob@biloxi.com")
		eq(t, "call-id", m.CallID(), "a84b4c76e66710@pc33.atlanta.com")
	}
	// A lone LF, or SP, before the start line is not an empty line.
	for _, lead := range []string{"\n", " ", "\r\n \r\n"} {
		var m Message
		if err := m.Parse(append([]byte(lead), tblMsg(tblInviteLine, tblReqHdrs, "")...), nil); tblCode(err) != 400 {
			t.Errorf("lead %q: %v, want 400", lead, err)
		}
	}
}

func TestParseLimits(t *testing.T) {
	noCL := tblWithout(tblReqHdrs, "Content-Length")
	body := strings.Repeat("b", 200)
	bodyNoCL := tblMsg(tblInviteLine, noCL, body)
	bodyCL := tblMsg(tblInviteLine, tblWith(noCL, "Content-Length: 200"), body)
	hdrOnly := tblMsg(tblInviteLine, tblReqHdrs, "")
	longSubject := tblMsg(tblInviteLine, tblWith(tblReqHdrs, "Subject: "+strings.Repeat("s", 200)), "")
	longRURI := tblMsg("INVITE sip:"+strings.Repeat("u", 200)+"@biloxi.com SIP/2.0", tblReqHdrs, "")
	threeVias := tblMsg(tblInviteLine, tblWith(tblReqHdrs, "Via: SIP/2.0/UDP h2;branch=z9hG4bK2, SIP/2.0/UDP h3;branch=z9hG4bK3"), "")
	var manyVias []string
	for i := 0; i < 65; i++ {
		manyVias = append(manyVias, fmt.Sprintf("Via: SIP/2.0/UDP h%d;branch=z9hG4bK%d", i, i))
	}
	vias65 := tblMsg(tblInviteLine, tblWith(tblWithout(tblReqHdrs, "Via"), manyVias...), "")
	body11 := tblMsg(tblInviteLine, tblSet(tblReqHdrs, "Content-Length: 11"), "hello world")

	tests := []struct {
		name string
		msg  []byte
		lim  *Limits
		code int // negative: that code, and no header is indexed
		bug  string
	}{
		{"message at MaxMessageSize", bodyNoCL, &Limits{MaxMessageSize: len(bodyNoCL)}, 0, ""},
		{"message over MaxMessageSize, no Content-Length", bodyNoCL, &Limits{MaxMessageSize: len(bodyNoCL) - 50}, 513, ""},
		{"message over MaxMessageSize, one byte", bodyNoCL, &Limits{MaxMessageSize: len(bodyNoCL) - 1}, 513, ""},
		{"message with Content-Length at MaxMessageSize", bodyCL, &Limits{MaxMessageSize: len(bodyCL)}, 0, ""},
		{"message with Content-Length over MaxMessageSize", bodyCL, &Limits{MaxMessageSize: len(bodyCL) - 50}, 513, ""},
		{"message with Content-Length over MaxMessageSize by one byte", bodyCL, &Limits{MaxMessageSize: len(bodyCL) - 1}, 513, ""},
		{"header section over MaxMessageSize", hdrOnly, &Limits{MaxMessageSize: 100}, 513, ""},
		{"header section over MaxMessageSize, cut after a CRLF", hdrOnly, &Limits{MaxMessageSize: len(tblInviteLine) + 2 + len(tblReqHdrs[0]) + 2}, 513, ""},
		{"header section over MaxMessageSize, cut inside a value", hdrOnly, &Limits{MaxMessageSize: len(hdrOnly) - 30}, 513, ""},
		{"start line over MaxMessageSize", hdrOnly, &Limits{MaxMessageSize: 10}, -513, ""},
		// RFC 3261 §18.3: bytes after the Content-Length body are not part
		// of the message; they do not make it too large.
		{"datagram over MaxMessageSize, message within it", append(body11[:len(body11):len(body11)], strings.Repeat("x", 100)...), &Limits{MaxMessageSize: len(body11) + 10}, 0, ""},
		{"MaxHeaders reached exactly", hdrOnly, &Limits{MaxHeaders: len(tblReqHdrs)}, 0, ""},
		{"MaxHeaders exceeded", hdrOnly, &Limits{MaxHeaders: len(tblReqHdrs) - 1}, 513, ""},
		{"MaxLineLength exceeded by a header", longSubject, &Limits{MaxLineLength: 100}, 513, ""},
		{"MaxLineLength large enough", longSubject, &Limits{MaxLineLength: 300}, 0, ""},
		// The start line is read before any header: nothing is indexed.
		{"MaxLineLength exceeded by the start line", longRURI, &Limits{MaxLineLength: 100}, -513, ""},
		{"MaxVias exceeded", threeVias, &Limits{MaxVias: 2}, 513, ""},
		{"MaxVias reached exactly", threeVias, &Limits{MaxVias: 3}, 0, ""},
		{"default MaxVias (64) exceeded", vias65, nil, 513, ""},
		{"MaxBodySize exceeded", body11, &Limits{MaxBodySize: 10}, 413, ""},
		{"MaxBodySize reached exactly", body11, &Limits{MaxBodySize: 11}, 0, ""},
		{"zero Limits means defaults", body11, &Limits{}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			err := m.Parse(tc.msg, tc.lim)
			c := tblCode(err)
			want, indexed := tc.code, true
			if want < 0 {
				want, indexed = -want, false
			}
			if c != want && tc.bug != "" {
				t.Skipf("BUG: %s: observed %v", tc.bug, err)
			}
			if c != want {
				t.Fatalf("code %d (%v), want %d", c, err, want)
			}
			if indexed && (c == 513 || c == 413) {
				// The request is still answerable.
				if m.Find(KindVia) < 0 || !m.IsRequest() {
					t.Errorf("index not built before the %d", c)
				}
			}
		})
	}
}

func TestParseStatusLine(t *testing.T) {
	tests := []struct {
		line   string
		code   int // expected ParseError code (0 = accepted)
		status int
		reason string
	}{
		{"SIP/2.0 200 OK", 0, 200, "OK"},
		{"SIP/2.0 180 Ringing", 0, 180, "Ringing"},
		{"SIP/2.0 100 ", 0, 100, ""},
		{"SIP/2.0 699 Whatever", 0, 699, "Whatever"},
		{"SIP/2.0 486 Busy  Here ", 0, 486, "Busy  Here "},
		{"SIP/2.0 200 Très bien", 0, 200, "Très bien"},
		{"sip/2.0 200 OK", 0, 200, "OK"},
		{"SIP/2.0 099 Low", 400, 0, ""},
		{"SIP/2.0 000 Zero", 400, 0, ""},
		{"SIP/2.0 700 High", 400, 0, ""},
		{"SIP/2.0 1000 Big", 400, 0, ""},
		{"SIP/2.0 20 OK", 400, 0, ""},
		{"SIP/2.0 2x0 OK", 400, 0, ""},
		{"SIP/2.0 200OK", 400, 0, ""},
		{"SIP/2.0  200 OK", 400, 0, ""},
		{"SIP/2.0", 400, 0, ""},
		{"SIP/2.1 200 OK", 505, 0, ""},
		{"SIP/3.0 200 OK", 505, 0, ""},
		{"SIP/2 200 OK", 400, 0, ""},
		{"SIP/2.0x 200 OK", 400, 0, ""},
		{"SIP/.0 200 OK", 400, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			var m Message
			err := m.Parse(tblMsg(tc.line, tblRespHdrs, ""), nil)
			if c := tblCode(err); c != tc.code {
				t.Fatalf("code %d (%v), want %d", c, err, tc.code)
			}
			if m.IsRequest() {
				t.Error("response taken as a request")
			}
			if tc.code != 0 {
				return
			}
			if m.StatusCode() != tc.status {
				t.Errorf("status %d, want %d", m.StatusCode(), tc.status)
			}
			eq(t, "reason", m.Reason(), tc.reason)
			eq(t, "to tag", mustAddr(t, m.Get(KindTo)).Tag, "a6c85cf")
		})
	}
}

func TestParseRequestLine(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		cseq   string // CSeq method when not INVITE
		code   int
		method string
		kind   Method
		ruri   string
	}{
		{"INVITE", "INVITE sip:bob@biloxi.com SIP/2.0", "", 0, "INVITE", INVITE, "sip:bob@biloxi.com"},
		{"OPTIONS", "OPTIONS sip:bob@biloxi.com SIP/2.0", "OPTIONS", 0, "OPTIONS", OPTIONS, "sip:bob@biloxi.com"},
		{"REGISTER", "REGISTER sip:registrar.biloxi.com SIP/2.0", "REGISTER", 0, "REGISTER", REGISTER, "sip:registrar.biloxi.com"},
		{"lowercase method is an extension", "invite sip:bob@biloxi.com SIP/2.0", "invite", 0, "invite", MethodOther, "sip:bob@biloxi.com"},
		{"extension method", "FOO sip:bob@biloxi.com SIP/2.0", "FOO", 0, "FOO", MethodOther, "sip:bob@biloxi.com"},
		{"intmeth method", "!interesting-Method0123456789_*+`.%indeed'~ sip:bob@biloxi.com SIP/2.0", "!interesting-Method0123456789_*+`.%indeed'~",
			0, "!interesting-Method0123456789_*+`.%indeed'~", MethodOther, "sip:bob@biloxi.com"},
		{"lowercase version", "INVITE sip:bob@biloxi.com sip/2.0", "", 0, "INVITE", INVITE, "sip:bob@biloxi.com"},
		{"sips", "INVITE sips:bob@biloxi.com;transport=tcp SIP/2.0", "", 0, "INVITE", INVITE, "sips:bob@biloxi.com;transport=tcp"},
		{"unknown scheme accepted (416 is the proxy's)", "INVITE nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0", "", 0, "INVITE", INVITE, "nobodyKnowsThisScheme:totallyopaquecontent"},
		{"tel", "INVITE tel:+1-201-555-0123 SIP/2.0", "", 0, "INVITE", INVITE, "tel:+1-201-555-0123"},
		{"IPv6 ruri", "INVITE sip:[2001:db8::10]:5070 SIP/2.0", "", 0, "INVITE", INVITE, "sip:[2001:db8::10]:5070"},
		{"extra SP after method", "INVITE  sip:bob@biloxi.com SIP/2.0", "", 400, "", 0, ""},
		{"extra SP before version", "INVITE sip:bob@biloxi.com  SIP/2.0", "", 400, "", 0, ""},
		{"trailing SP", "INVITE sip:bob@biloxi.com SIP/2.0 ", "", 400, "", 0, ""},
		{"leading SP", " INVITE sip:bob@biloxi.com SIP/2.0", "", 400, "", 0, ""},
		{"tab separator", "INVITE\tsip:bob@biloxi.com SIP/2.0", "", 400, "", 0, ""},
		{"SIP/2.1", "INVITE sip:bob@biloxi.com SIP/2.1", "", 505, "", 0, ""},
		{"SIP/7.0", "INVITE sip:bob@biloxi.com SIP/7.0", "", 505, "", 0, ""},
		{"SIP/2.00", "INVITE sip:bob@biloxi.com SIP/2.00", "", 505, "", 0, ""},
		{"SIP/2", "INVITE sip:bob@biloxi.com SIP/2", "", 400, "", 0, ""},
		{"SIP/20", "INVITE sip:bob@biloxi.com SIP/20", "", 400, "", 0, ""},
		{"SIP/2.", "INVITE sip:bob@biloxi.com SIP/2.", "", 400, "", 0, ""},
		{"SIP/2.0.1", "INVITE sip:bob@biloxi.com SIP/2.0.1", "", 400, "", 0, ""},
		{"HTTP/1.1", "INVITE sip:bob@biloxi.com HTTP/1.1", "", 400, "", 0, ""},
		{"no version", "INVITE sip:bob@biloxi.com", "", 400, "", 0, ""},
		{"method only", "INVITE", "", 400, "", 0, ""},
		{"empty start line", "", "", 400, "", 0, ""},
		{"<> around Request-URI", "INVITE <sip:bob@biloxi.com> SIP/2.0", "", 400, "", 0, ""},
		{"headers in Request-URI", "INVITE sip:bob@biloxi.com?Subject=x SIP/2.0", "", 400, "", 0, ""},
		{"bad port in Request-URI", "INVITE sip:bob@biloxi.com:99999 SIP/2.0", "", 400, "", 0, ""},
		{"bad escape in Request-URI", "INVITE sip:%zz@biloxi.com SIP/2.0", "", 400, "", 0, ""},
		{"control char in method", "INV\x01TE sip:bob@biloxi.com SIP/2.0", "", 400, "", 0, ""},
		{"control char in Request-URI", "INVITE sip:bob\x7f@biloxi.com SIP/2.0", "", 400, "", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdrs := tblReqHdrs
			if tc.cseq != "" {
				hdrs = tblSet(hdrs, "CSeq: 314159 "+tc.cseq)
			}
			var m Message
			err := m.Parse(tblMsg(tc.line, hdrs, ""), nil)
			if c := tblCode(err); c != tc.code {
				t.Fatalf("code %d (%v), want %d", c, err, tc.code)
			}
			if !m.IsRequest() {
				t.Error("request taken as a response")
			}
			if tc.code != 0 {
				// A bad start line still lets the headers be indexed for the answer.
				if tc.line != "" && m.Find(KindVia) < 0 {
					t.Error("headers not indexed after a start-line error")
				}
				if tc.line != "" {
					eq(t, "call-id of a refused request", m.CallID(), "a84b4c76e66710@pc33.atlanta.com")
				}
				return
			}
			eq(t, "method", m.Method(), tc.method)
			if m.MethodKind() != tc.kind {
				t.Errorf("MethodKind %v, want %v", m.MethodKind(), tc.kind)
			}
			eq(t, "ruri", m.RequestURIBytes(), tc.ruri)
		})
	}
}

func TestParseLineEndings(t *testing.T) {
	good := string(tblMsg(tblInviteLine, tblReqHdrs, ""))
	tests := []struct {
		name string
		msg  string
		code int
	}{
		{"LF only everywhere", strings.ReplaceAll(good, "\r\n", "\n"), 400},
		{"LF only on the start line", strings.Replace(good, "\r\n", "\n", 1), 400},
		{"LF only on a header", strings.Replace(good, "Max-Forwards: 70\r\n", "Max-Forwards: 70\n", 1), 400},
		{"header section not terminated", strings.TrimSuffix(good, "\r\n"), 400},
		{"start line not terminated", tblInviteLine, 400},
		{"header without colon", strings.Replace(good, "Max-Forwards: 70", "Max-Forwards 70", 1), 400},
		{"bad character in name", strings.Replace(good, "Max-Forwards: 70", "Max[Forwards]: 70", 1), 400},
		{"first header line folded", strings.Replace(good, "\r\nVia:", "\r\n Via:", 1), 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			if err := m.Parse([]byte(tc.msg), nil); tblCode(err) != tc.code {
				t.Errorf("code %d (%v), want %d", tblCode(err), err, tc.code)
			}
		})
	}
}

func TestParseMandatoryHeaders(t *testing.T) {
	tests := []struct {
		name   string
		start  string
		hdrs   []string
		code   int
		reason string
	}{
		{"request complete", tblInviteLine, tblReqHdrs, 0, ""},
		{"request without Max-Forwards (RFC 2543)", tblInviteLine, tblWithout(tblReqHdrs, "Max-Forwards"), 0, ""},
		{"request without Contact", tblInviteLine, tblWithout(tblReqHdrs, "Contact"), 0, ""},
		{"request without Content-Length", tblInviteLine, tblWithout(tblReqHdrs, "Content-Length"), 0, ""},
		{"request without Via", tblInviteLine, tblWithout(tblReqHdrs, "Via"), 400, "Missing Via"},
		{"request without From", tblInviteLine, tblWithout(tblReqHdrs, "From"), 400, "Missing From"},
		{"request without To", tblInviteLine, tblWithout(tblReqHdrs, "To"), 400, "Missing To"},
		{"request without Call-ID", tblInviteLine, tblWithout(tblReqHdrs, "Call-ID"), 400, "Missing Call-ID"},
		{"request without CSeq", tblInviteLine, tblWithout(tblReqHdrs, "CSeq"), 400, "Missing CSeq"},
		{"request with no header at all", tblInviteLine, nil, 400, "Missing Via"},
		{"compact forms satisfy", tblInviteLine, []string{
			"v: SIP/2.0/UDP h;branch=z9hG4bK1", "f: <sip:a@b>;tag=1", "t: <sip:c@d>", "i: x@y", "CSeq: 1 INVITE"}, 0, ""},
		{"response without Via", "SIP/2.0 200 OK", tblWithout(tblRespHdrs, "Via"), 400, "Missing Via"},
		{"response without From", "SIP/2.0 200 OK", tblWithout(tblRespHdrs, "From"), 400, "Missing From"},
		{"response without To", "SIP/2.0 200 OK", tblWithout(tblRespHdrs, "To"), 400, "Missing To"},
		{"response without Call-ID", "SIP/2.0 200 OK", tblWithout(tblRespHdrs, "Call-ID"), 400, "Missing Call-ID"},
		{"response without CSeq", "SIP/2.0 200 OK", tblWithout(tblRespHdrs, "CSeq"), 400, "Missing CSeq"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			err := m.Parse(tblMsg(tc.start, tc.hdrs, ""), nil)
			if c := tblCode(err); c != tc.code {
				t.Fatalf("code %d (%v), want %d", c, err, tc.code)
			}
			if err != nil {
				pe := err.(*ParseError)
				if pe.Reason != tc.reason {
					t.Errorf("reason %q, want %q", pe.Reason, tc.reason)
				}
			}
		})
	}
}

func TestParseDuplicateHeaders(t *testing.T) {
	tests := []struct {
		name   string
		extra  string
		code   int
		reason string
	}{
		{"From twice", "From: <sip:eve@evil.example.com>;tag=2", 400, "Multiple From"},
		{"From twice, compact", "f: <sip:eve@evil.example.com>;tag=2", 400, "Multiple From"},
		{"To twice", "To: <sip:carol@chicago.com>", 400, "Multiple To"},
		{"To twice, compact", "t: <sip:carol@chicago.com>", 400, "Multiple To"},
		{"Call-ID twice", "Call-ID: other@x", 400, "Multiple Call-ID"},
		{"Call-ID twice, compact", "i: other@x", 400, "Multiple Call-ID"},
		{"CSeq twice", "CSeq: 314160 INVITE", 400, "Multiple CSeq"},
		{"Max-Forwards twice", "Max-Forwards: 69", 400, "Multiple Max-Forwards"},
		{"Content-Length twice", "l: 0", 400, "Multiple Content-Length"},
		{"Via twice is fine", "Via: SIP/2.0/UDP h2;branch=z9hG4bK2", 0, ""},
		{"Contact twice is fine", "Contact: <sip:alice@192.0.2.9>", 0, ""},
		{"unknown header twice is fine", "Tmp: a\r\nTmp: b", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			err := m.Parse(tblMsg(tblInviteLine, tblWith(tblReqHdrs, tc.extra), ""), nil)
			if c := tblCode(err); c != tc.code {
				t.Fatalf("code %d (%v), want %d", c, err, tc.code)
			}
			if err != nil && err.(*ParseError).Reason != tc.reason {
				t.Errorf("reason %q, want %q", err.(*ParseError).Reason, tc.reason)
			}
		})
	}
}

func TestParseCSeqTable(t *testing.T) {
	tests := []struct {
		name   string
		line   string // request line
		cseq   string
		code   int
		num    uint32
		method string
	}{
		{"plain", tblInviteLine, "1 INVITE", 0, 1, "INVITE"},
		{"zero", tblInviteLine, "0 INVITE", 0, 0, "INVITE"},
		{"2^32-1", tblInviteLine, "4294967295 INVITE", 0, 4294967295, "INVITE"},
		{"leading zeros", tblInviteLine, "000042 INVITE", 0, 42, "INVITE"},
		{"LWS between", tblInviteLine, "7 \t  INVITE", 0, 7, "INVITE"},
		{"folded between", tblInviteLine, "7\r\n INVITE", 0, 7, "INVITE"},
		{"2^32 overflows", tblInviteLine, "4294967296 INVITE", 400, 0, ""},
		{"far over 2^32", tblInviteLine, "36893488147419103232 INVITE", 400, 0, ""},
		{"negative", tblInviteLine, "-1 INVITE", 400, 0, ""},
		{"no space", tblInviteLine, "1INVITE", 400, 0, ""},
		{"no method", tblInviteLine, "1", 400, 0, ""},
		{"no number", tblInviteLine, "INVITE", 400, 0, ""},
		{"extra token", tblInviteLine, "1 INVITE extra", 400, 0, ""},
		{"hex number", tblInviteLine, "0x1 INVITE", 400, 0, ""},
		{"known method mismatch", tblInviteLine, "1 BYE", 400, 0, ""},
		{"method case mismatch", tblInviteLine, "1 invite", 400, 0, ""},
		{"unknown method mismatch", "FOO sip:bob@biloxi.com SIP/2.0", "1 BAR", 501, 0, ""},
		{"unknown method, known CSeq method", "FOO sip:bob@biloxi.com SIP/2.0", "1 INVITE", 501, 0, ""},
		{"unknown method matching", "FOO sip:bob@biloxi.com SIP/2.0", "1 FOO", 0, 1, "FOO"},
		{"ACK", "ACK sip:bob@biloxi.com SIP/2.0", "314159 ACK", 0, 314159, "ACK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			err := m.Parse(tblMsg(tc.line, tblSet(tblReqHdrs, "CSeq: "+tc.cseq), ""), nil)
			if c := tblCode(err); c != tc.code {
				t.Fatalf("code %d (%v), want %d", c, err, tc.code)
			}
			if tc.code != 0 {
				return
			}
			if n, meth := m.CSeq(); n != tc.num || string(meth) != tc.method {
				t.Errorf("CSeq = %d %q, want %d %q", n, meth, tc.num, tc.method)
			}
		})
	}
	// In a response the CSeq method need not match anything.
	var m Message
	if err := m.Parse(tblMsg("SIP/2.0 200 OK", tblSet(tblRespHdrs, "CSeq: 4294967295 SUBSCRIBE"), ""), nil); err != nil {
		t.Fatal(err)
	}
	if n, meth := m.CSeq(); n != 4294967295 || string(meth) != "SUBSCRIBE" {
		t.Errorf("response CSeq %d %q", n, meth)
	}
}

func TestParseDateTable(t *testing.T) {
	tests := []struct {
		date string
		code int
		bug  string
	}{
		{"Sat, 13 Nov 2010 23:29:00 GMT", 0, ""},
		{"Thu, 21 Feb 2002 13:02:03 GMT", 0, ""},
		{"Thu, 21 Feb 2002 13:02:03 EST", 400, ""},
		{"Thu, 21 Feb 2002 13:02:03", 400, ""},
		{"21 Feb 2002 13:02:03 GMT", 400, ""},
		{"Thu,21 Feb 2002 13:02:03 GMT", 400, ""},
		{"Thu, 1 Feb 2002 13:02:03 GMT", 400, ""},
		{"Thu, 21 Feb 02 13:02:03 GMT", 400, ""},
		{"Thu, 21 Feb 2002 13:02 GMT", 400, ""},
		{"Thu, 21 Feb 2002 13:02:03 gmt", 400, ""},
		{"Thursday, 21-Feb-02 13:02:03 GMT", 400, ""},
		{"", 400, ""},
		{"Xyz, 21 Abc 2002 13:02:03 GMT", 400, ""},
		{"Xyz, 21 Feb 2002 13:02:03 GMT", 400, ""},
		{"Thu, 21 Abc 2002 13:02:03 GMT", 400, ""},
		{"thu, 21 feb 2002 13:02:03 GMT", 400, ""},
		{"Mon, 01 Jan 2024 00:00:00 GMT", 0, ""},
		{"Sun, 31 Dec 1999 23:59:59 GMT", 0, ""},
		{"Wed, 15 May 2024 12:00:00 GMT", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.date, func(t *testing.T) {
			var m Message
			err := m.Parse(tblMsg(tblInviteLine, tblWith(tblReqHdrs, "Date: "+tc.date), ""), nil)
			c := tblCode(err)
			if c != tc.code && tc.bug != "" {
				t.Skipf("BUG: %s: observed code %d", tc.bug, c)
			}
			if c != tc.code {
				t.Fatalf("code %d (%v), want %d", c, err, tc.code)
			}
			if c != 0 && err.(*ParseError).Reason != "Bad Date" {
				t.Errorf("reason %q", err.(*ParseError).Reason)
			}
		})
	}
}

func TestParseHeaderValidation(t *testing.T) {
	tests := []struct {
		name string
		set  string // header line replacing (or adding) the one of that name
		code int
		bug  string
	}{
		{"Call-ID with @", "Call-ID: f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com", 0, ""},
		{"Call-ID word chars", "Call-ID: a~b`c'd(e)f<g>h:i\\j\"k/l[m]n?o{p}q", 0, ""},
		{"Call-ID with space", "Call-ID: a b", 400, ""},
		{"Call-ID empty", "Call-ID:", 400, ""},
		{"Call-ID starting with @", "Call-ID: @host", 400, ""},
		{"Call-ID ending with @", "Call-ID: id@", 400, ""},
		{"Call-ID with two @", "Call-ID: a@b@c", 400, ""},
		{"Call-ID with comma", "Call-ID: a,b", 400, ""},
		{"Max-Forwards 0", "Max-Forwards: 0", 0, ""},
		{"Max-Forwards above 255 tolerated", "Max-Forwards: 300", 0, ""},
		{"Max-Forwards not numeric", "Max-Forwards: ten", 400, ""},
		{"Max-Forwards negative", "Max-Forwards: -1", 400, ""},
		{"Max-Forwards empty", "Max-Forwards:", 400, ""},
		{"Expires delta", "Expires: 3600", 0, ""},
		{"Expires date form", "Expires: Thu, 01 Dec 1994 16:00:00 GMT", 400, ""},
		{"Min-Expires not numeric", "Min-Expires: x", 400, ""},
		{"From addr-spec", "From: sip:alice@atlanta.com;tag=1", 0, ""},
		{"From with ? outside <>", "From: sip:alice@atlanta.com?x=y;tag=1", 400, ""},
		{"From bad quote", `From: "Alice <sip:alice@atlanta.com>;tag=1`, 400, ""},
		{"From empty tag", "From: <sip:alice@atlanta.com>;tag", 400, ""},
		{"To unterminated <", "To: <sip:bob@biloxi.com", 400, ""},
		{"To wildcard", "To: *", 0, ""},
		{"Contact wildcard", "Contact: *", 0, ""},
		{"Contact list", "Contact: <sip:a@192.0.2.1>;q=0.5, sip:b@192.0.2.2;expires=60", 0, ""},
		{"Contact bad URI", "Contact: <sip:a@192.0.2.1:99999>", 400, ""},
		{"Route name-addr list", "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>", 0, ""},
		{"Route addr-spec refused", "Route: sip:p1.example.com;lr", 400, ""},
		{"Route wildcard refused", "Route: *", 400, ""},
		{"Record-Route addr-spec refused", "Record-Route: sip:p1.example.com;lr", 400, ""},
		{"Path name-addr", "Path: <sip:p1.example.com;lr>", 0, ""},
		{"Path addr-spec refused", "Path: sip:p1.example.com;lr", 400, ""},
		{"Via bad port", "Via: SIP/2.0/UDP h:70000;branch=z9hG4bK1", 400, ""},
		{"Via empty", "Via:", 400, ""},
		{"Via empty besides a valid one", "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\nVia:", 400, ""},
		{"Via empty before a valid one", "Via:\r\nVia: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds", 400, ""},
		{"Via blank", "Via:  \t", 400, ""},
		{"Via empty element", "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, , SIP/2.0/UDP b.example.com;branch=z9hG4bK2", 400, ""},
		{"Via trailing comma", "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,", 400, ""},
		{"Via two values", "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2", 0, ""},
		{"From empty", "From:", 400, ""},
		{"To empty", "To:", 400, ""},
		{"CSeq empty", "CSeq:", 400, ""},
		{"unknown header with odd value kept", "UnknownHeaderWithUnusualValue: ;;,,;;,;", 0, ""},
		{"unknown header empty", "X-Empty:", 0, ""},
		{"Require not validated", "Require: ,,", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			err := m.Parse(tblMsg(tblInviteLine, tblSet(tblReqHdrs, tc.set), ""), nil)
			c := tblCode(err)
			if c != tc.code && tc.bug != "" {
				t.Skipf("BUG: %s: observed code %d, NumVias %d", tc.bug, c, m.NumVias())
			}
			if c != tc.code {
				t.Fatalf("code %d (%v), want %d", c, err, tc.code)
			}
		})
	}
	// Max-Forwards read back.
	m := tblParse(t, tblMsg(tblInviteLine, tblSet(tblReqHdrs, "Max-Forwards: 300"), ""))
	if n, ok := m.MaxForwards(); n != 300 || !ok {
		t.Errorf("MaxForwards %d %v", n, ok)
	}
	m = tblParse(t, tblMsg(tblInviteLine, tblWithout(tblReqHdrs, "Max-Forwards"), ""))
	if n, ok := m.MaxForwards(); ok || n != -1 {
		t.Errorf("absent MaxForwards %d %v", n, ok)
	}
}

func TestParseErrorFormat(t *testing.T) {
	badCallID := string(tblMsg(tblInviteLine, tblSet(tblReqHdrs, "Call-ID: a b"), ""))
	noCSeq := string(tblMsg(tblInviteLine, tblWithout(tblReqHdrs, "CSeq"), ""))
	badVers := string(tblMsg("INVITE sip:bob@biloxi.com SIP/2.1", tblReqHdrs, ""))
	dupFrom := string(tblMsg(tblInviteLine, tblWith(tblReqHdrs, "From: <sip:x@y>;tag=9"), ""))
	tests := []struct {
		name   string
		msg    string
		code   int
		reason string
		offset int
	}{
		{"bad Call-ID points at the value", badCallID, 400, "Bad Call-ID", strings.Index(badCallID, "a b")},
		{"missing header points after the start line", noCSeq, 400, "Missing CSeq", len(tblInviteLine) + 2},
		{"505 points at the version", badVers, 505, "Version Not Supported", strings.Index(badVers, "SIP/2.1")},
		{"duplicate points at the second line", dupFrom, 400, "Multiple From", strings.Index(dupFrom, "From: <sip:x@y>")},
		{"unterminated start line", "INVITE sip:bob@biloxi.com SIP/2.0", 400, "Start Line Not Terminated", 0},
		{"snippet shorter at the end", "INVITE sip:bob@biloxi.com SIP/2.0\r\nVia: x\r\n", 400, "Header Section Not Terminated", len("INVITE sip:bob@biloxi.com SIP/2.0\r\nVia: x\r\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			err := m.Parse([]byte(tc.msg), nil)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Code != tc.code || pe.Reason != tc.reason || pe.Offset != tc.offset {
				t.Fatalf("got %d %q @%d, want %d %q @%d", pe.Code, pe.Reason, pe.Offset, tc.code, tc.reason, tc.offset)
			}
			end := min(tc.offset+32, len(tc.msg))
			wantSnippet := strconv.Quote(tc.msg[tc.offset:end])
			if pe.Snippet != wantSnippet {
				t.Errorf("snippet %s, want %s", pe.Snippet, wantSnippet)
			}
			want := "sip: " + strconv.Itoa(tc.code) + " " + tc.reason + " at offset " + strconv.Itoa(tc.offset) + " near " + wantSnippet
			if pe.Error() != want {
				t.Errorf("Error() = %q, want %q", pe.Error(), want)
			}
			if !strings.Contains(err.Error(), "offset "+strconv.Itoa(tc.offset)) || !strings.Contains(err.Error(), `"`) {
				t.Errorf("Error() %q lacks offset or quoted snippet", err.Error())
			}
		})
	}
}

// tblDump renders everything Parse produced, to compare a reused Message with
// a fresh one.
func tblDump(m *Message, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "err=%v req=%v", err, m.IsRequest())
	if m.IsRequest() {
		fmt.Fprintf(&b, " method=%q kind=%d ruri=%q", m.Method(), m.MethodKind(), m.RequestURIBytes())
	} else {
		fmt.Fprintf(&b, " code=%d reason=%q", m.StatusCode(), m.Reason())
	}
	n, meth := m.CSeq()
	mf, mfok := m.MaxForwards()
	fmt.Fprintf(&b, " cseq=%d %q mf=%d %v cl=%d vias=%d body=%q bodyoff=%d edited=%v\n",
		n, meth, mf, mfok, m.ContentLength(), m.NumVias(), m.Body(), m.BodyOffset(), m.Edited())
	for i := 0; i < m.NumHeaders(); i++ {
		s, e := m.HeaderLine(i)
		fmt.Fprintf(&b, "%d %q=%q [%d,%d)\n", m.HeaderKind(i), m.HeaderName(i), m.HeaderValue(i), s, e)
	}
	for k := HeaderKind(0); k < kindCount; k++ {
		fmt.Fprintf(&b, "%d:%d/%d ", k, m.Find(k), m.Count(k))
	}
	fmt.Fprintf(&b, "\nvias=%q out=%q", tblValues(m, KindVia), m.AppendTo(nil))
	return b.String()
}

func TestParseReuse(t *testing.T) {
	msgs := [][]byte{
		tblMsg(tblInviteLine, tblWith(tblReqHdrs[:7], "Via: SIP/2.0/UDP h2;branch=z9hG4bK2, SIP/2.0/UDP h3;branch=z9hG4bK3",
			"Subject: first", "Route: <sip:p1;lr>", "Content-Type: application/sdp", "Content-Length: 4"), "v=0\r"),
		tblMsg("SIP/2.0 180 Ringing", tblRespHdrs, ""),
		tblMsg(tblInviteLine, tblSet(tblReqHdrs, "Call-ID: bad value"), ""),
		tblMsg("REGISTER sip:registrar.biloxi.com SIP/2.0", []string{
			"v: SIP/2.0/TCP 192.0.2.4;branch=z9hG4bKr", "t: <sip:bob@biloxi.com>", "f: <sip:bob@biloxi.com>;tag=r",
			"i: reg@192.0.2.4", "CSeq: 2 REGISTER", "m: *", "Expires: 0"}, "trailing body without length"),
		tblMsg("INVITE sip:bob@biloxi.com SIP/2.1", tblReqHdrs, ""),
		[]byte("garbage"),
		tblMsg("OPTIONS sip:bob@biloxi.com SIP/2.0", tblSet(tblWithout(tblReqHdrs, "Max-Forwards"), "CSeq: 9 OPTIONS"), ""),
	}
	fresh := make([]string, len(msgs))
	for i, b := range msgs {
		var m Message
		err := m.Parse(b, nil)
		fresh[i] = tblDump(&m, err)
	}
	var reused Message
	order := []int{0, 1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1, 0, 3, 0, 2, 0}
	for _, i := range order {
		err := reused.Parse(msgs[i], nil)
		if got := tblDump(&reused, err); got != fresh[i] {
			t.Fatalf("message %d parsed into a reused Message differs from a fresh parse:\n%s\nwant:\n%s", i, got, fresh[i])
		}
		// Edits from one use must not survive into the next.
		if err == nil && reused.IsRequest() {
			if err := reused.SetMaxForwards(1); err != nil {
				t.Fatal(err)
			}
			if err := reused.InsertHeader(0, "X-Leak", []byte("yes")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Spot checks of the distinct results.
	if !strings.Contains(fresh[0], `vias=["SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds" "SIP/2.0/UDP h2;branch=z9hG4bK2" "SIP/2.0/UDP h3;branch=z9hG4bK3"]`) {
		t.Errorf("message 0 dump: %s", fresh[0])
	}
	if !strings.Contains(fresh[6], "mf=-1 false") || !strings.HasPrefix(fresh[6], "err=<nil>") {
		t.Errorf("message 6 dump: %s", fresh[6])
	}
	if !strings.HasPrefix(fresh[3], "err=<nil>") || !strings.Contains(fresh[3], `body="trailing body without length"`) {
		t.Errorf("message 3 dump: %s", fresh[3])
	}
}
