package sip

import (
	"errors"
	"testing"
)

func TestParseAddressTable(t *testing.T) {
	const instance = `"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"`
	type want struct {
		display  string
		hasDisp  bool // Display non-nil
		rawURI   string
		uriUser  string
		uriHost  string
		uriPort  int
		uriParam string // URI.Params
		angle    bool
		params   string // header Params as written
		tag      string
		hasTag   bool
		wildcard bool
		lookups  []string // header param lookups, see tblLookup
	}
	tests := []struct {
		name string
		in   string
		err  error
		w    want
	}{
		{"quoted display with escapes (wsinv)", `"J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8`, nil, want{
			display: `"J Rosenberg \\\""`, hasDisp: true, rawURI: "sip:jdrosen@example.com", uriUser: "jdrosen",
			uriHost: "example.com", angle: true, params: ";tag=98asjd8", tag: "98asjd8", hasTag: true}},
		{"quoted display with escaped quotes", `"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33`, nil, want{
			display: `"Quoted string \"\""`, hasDisp: true, rawURI: "sip:jdrosen@example.com", uriUser: "jdrosen",
			uriHost: "example.com", angle: true, params: " ; newparam = newvalue ; secondparam ; q = 0.33",
			lookups: []string{"newparam=newvalue", "secondparam", "q=0.33", "!tag"}}},
		{"quoted display, comma inside", `"Smith, Bob" <sip:bob@biloxi.com>`, nil, want{
			display: `"Smith, Bob"`, hasDisp: true, rawURI: "sip:bob@biloxi.com", uriUser: "bob", uriHost: "biloxi.com", angle: true}},
		{"empty quoted display", `"" <sip:a@b>`, nil, want{
			display: `""`, hasDisp: true, rawURI: "sip:a@b", uriUser: "a", uriHost: "b", angle: true}},
		{"quoted display no LWS", `"Bob"<sip:bob@biloxi.com>`, nil, want{
			display: `"Bob"`, hasDisp: true, rawURI: "sip:bob@biloxi.com", uriUser: "bob", uriHost: "biloxi.com", angle: true}},
		{"token display", "Bob Smith <sip:bob@biloxi.com>", nil, want{
			display: "Bob Smith", hasDisp: true, rawURI: "sip:bob@biloxi.com", uriUser: "bob", uriHost: "biloxi.com", angle: true}},
		{"token display with tabs", "Bob \t Smith \t<sip:bob@biloxi.com>;tag=x", nil, want{
			display: "Bob \t Smith", hasDisp: true, rawURI: "sip:bob@biloxi.com", uriUser: "bob", uriHost: "biloxi.com",
			angle: true, params: ";tag=x", tag: "x", hasTag: true}},
		{"token display odd chars (intmeth)", "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.", nil, want{
			display: "token1~` token2'+_ token3*%!.-", hasDisp: true, rawURI: "sip:mundane@example.com", uriUser: "mundane",
			uriHost: "example.com", angle: true, params: ";tag=_token~1'+`*%!-.", tag: "_token~1'+`*%!-.", hasTag: true}},
		{"lwsdisp: no LWS before <", "caller<sip:caller@example.com>;tag=323", nil, want{
			display: "caller", hasDisp: true, rawURI: "sip:caller@example.com", uriUser: "caller", uriHost: "example.com",
			angle: true, params: ";tag=323", tag: "323", hasTag: true}},
		{"name-addr without display", "<sip:carol@chicago.com>", nil, want{
			rawURI: "sip:carol@chicago.com", uriUser: "carol", uriHost: "chicago.com", angle: true}},
		{"surrounding LWS trimmed", "  <sip:carol@chicago.com>  ", nil, want{
			rawURI: "sip:carol@chicago.com", uriUser: "carol", uriHost: "chicago.com", angle: true, params: ""}},
		{"uri params inside brackets, tag outside", "<sip:alice@atlanta.com;transport=tcp>;tag=1", nil, want{
			rawURI: "sip:alice@atlanta.com;transport=tcp", uriUser: "alice", uriHost: "atlanta.com", uriParam: "transport=tcp",
			angle: true, params: ";tag=1", tag: "1", hasTag: true}},
		{"addr-spec: params belong to the header", "sip:alice@atlanta.com;tag=88sja8x;transport=tcp", nil, want{
			rawURI: "sip:alice@atlanta.com", uriUser: "alice", uriHost: "atlanta.com",
			params: ";tag=88sja8x;transport=tcp", tag: "88sja8x", hasTag: true, lookups: []string{"transport=tcp"}}},
		{"addr-spec with port and LWS before params", "sip:alice@192.0.2.1:5070 ;tag=a", nil, want{
			rawURI: "sip:alice@192.0.2.1:5070", uriUser: "alice", uriHost: "192.0.2.1", uriPort: 5070,
			params: " ;tag=a", tag: "a", hasTag: true}},
		{"addr-spec tel", "tel:+1-201-555-0123;tag=9", nil, want{
			rawURI: "tel:+1-201-555-0123", params: ";tag=9", tag: "9", hasTag: true}},
		{"angle with URI headers", "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>", nil, want{
			rawURI: "sip:user@example.com?Route=%3Csip:sip.example.com%3E", uriUser: "user", uriHost: "example.com", angle: true}},
		{"IPv6 with port", "<sip:[2001:db8::10]:5070>", nil, want{
			rawURI: "sip:[2001:db8::10]:5070", uriHost: "[2001:db8::10]", uriPort: 5070, angle: true}},
		{"wildcard", "*", nil, want{wildcard: true}},
		{"wildcard with LWS", " * ", nil, want{wildcard: true}},
		{"RFC 5626 instance and reg-id", "<sip:line1@192.0.2.2;transport=tcp>;reg-id=1;+sip.instance=" + instance, nil, want{
			rawURI: "sip:line1@192.0.2.2;transport=tcp", uriUser: "line1", uriHost: "192.0.2.2", uriParam: "transport=tcp",
			angle: true, params: ";reg-id=1;+sip.instance=" + instance, lookups: []string{"reg-id=1", "+sip.instance=" + instance, "+SIP.INSTANCE=" + instance}}},
		{"quoted param with ; and ,", `<sip:a@b>;x="a;b,c";tag=t`, nil, want{
			rawURI: "sip:a@b", uriUser: "a", uriHost: "b", angle: true, params: `;x="a;b,c";tag=t`, tag: "t", hasTag: true,
			lookups: []string{`x="a;b,c"`}}},
		{"uppercase TAG", "<sip:a@b>;TAG=Zx", nil, want{
			rawURI: "sip:a@b", uriUser: "a", uriHost: "b", angle: true, params: ";TAG=Zx", tag: "Zx", hasTag: true}},

		// errors
		{"empty", "", ErrAddress, want{}},
		{"LWS only", " \t ", ErrAddress, want{}},
		{"unterminated quote", `"Bob <sip:bob@biloxi.com>`, ErrQuote, want{}},
		{"unterminated quote after escape", `"Bob \" <sip:bob@biloxi.com>`, ErrQuote, want{}},
		{"quoted display without <", `"Bob" sip:bob@biloxi.com`, ErrDisplayName, want{}},
		{"space after <", "< sip:bob@biloxi.com>", ErrURIScheme, want{}},
		{"space before >", "<sip:bob@biloxi.com >", ErrURIChar, want{}},
		{"spaces both sides", "Bob < sip:bob@biloxi.com >", ErrURIScheme, want{}},
		{"unterminated <", "<sip:bob@biloxi.com", ErrAngle, want{}},
		{"unquoted display with comma", "Bob, Smith <sip:bob@biloxi.com>", ErrDisplayName, want{}},
		{"unquoted display with @", "Bob@home <sip:bob@biloxi.com>", ErrDisplayName, want{}},
		{"token display without <", "Bob Smith", ErrDisplayName, want{}},
		{"token display then bare URI", "Bob sip:bob@biloxi.com", ErrDisplayName, want{}},
		{"addr-spec with ?", "sip:bob@biloxi.com?subject=hi", ErrAddrSpec, want{}},
		{"addr-spec with ,", "sip:bob@biloxi.com,sip:carol@chicago.com", ErrAddrSpec, want{}},
		{"bad URI inside <>", "<sip:bob@biloxi.com:99999>", ErrURIPort, want{}},
		{"empty tag", "<sip:a@b>;tag", ErrParams, want{}},
		{"empty param", "<sip:a@b>;;x", ErrParams, want{}},
		{"junk after >", "<sip:a@b> junk", ErrParams, want{}},
		{"junk after addr-spec", "sip:a@b junk", ErrParams, want{}},
		{"unterminated quoted param", `<sip:a@b>;x="abc`, ErrQuote, want{}},
		{"wildcard with params", "*;q=1", ErrDisplayName, want{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAddress([]byte(tc.in))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseAddress(%q) error = %v, want %v", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", tc.in, err)
			}
			w := tc.w
			eq(t, "display", a.Display, w.display)
			if (a.Display != nil) != w.hasDisp {
				t.Errorf("Display nil = %v, want %v", a.Display == nil, !w.hasDisp)
			}
			eq(t, "raw uri", a.RawURI, w.rawURI)
			eq(t, "uri user", a.URI.User, w.uriUser)
			if w.uriHost != "" || a.URI.IsSIP() {
				eq(t, "uri host", a.URI.Host, w.uriHost)
			}
			if a.URI.Port != w.uriPort {
				t.Errorf("uri port = %d, want %d", a.URI.Port, w.uriPort)
			}
			eq(t, "uri params", a.URI.Params, w.uriParam)
			if a.Angle != w.angle {
				t.Errorf("Angle = %v, want %v", a.Angle, w.angle)
			}
			eq(t, "params", a.Params, w.params)
			eq(t, "tag", a.Tag, w.tag)
			if (a.Tag != nil) != w.hasTag {
				t.Errorf("Tag nil = %v, want %v", a.Tag == nil, !w.hasTag)
			}
			if a.Wildcard != w.wildcard {
				t.Errorf("Wildcard = %v, want %v", a.Wildcard, w.wildcard)
			}
			if !a.Params.Valid() {
				t.Errorf("Params %q not Valid", a.Params)
			}
			for _, l := range w.lookups {
				tblLookup(t, l, a.Params.Get)
			}
		})
	}
}

func TestAddressInstanceUnquote(t *testing.T) {
	a := mustAddr(t, []byte(`<sip:line1@192.0.2.2;transport=tcp>;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"`))
	v, ok := a.Params.Get("+sip.instance")
	if !ok {
		t.Fatal("+sip.instance missing")
	}
	eq(t, "unquoted instance", Unquote(v), "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
	// The instance is a URN inside a quoted string, not a URI parameter.
	if _, ok := a.URI.Param("+sip.instance"); ok {
		t.Error("+sip.instance taken as a URI parameter")
	}
	r, ok := a.Params.Get("reg-id")
	eq(t, "reg-id", r, "1")
	if !ok {
		t.Error("reg-id missing")
	}
}

func TestAddressQ(t *testing.T) {
	tests := []struct {
		name   string
		params string
		q      int
		valid  bool // ParseQ result for the raw value
	}{
		{"absent", "", 1000, false},
		{"0", ";q=0", 0, true},
		{"0.", ";q=0.", 0, true},
		{"0.5", ";q=0.5", 500, true},
		{"0.33", ";q=0.33", 330, true},
		{"0.001", ";q=0.001", 1, true},
		{"0.999", ";q=0.999", 999, true},
		{"1", ";q=1", 1000, true},
		{"1.0", ";q=1.0", 1000, true},
		{"1.000", ";q=1.000", 1000, true},
		{"LWS around =", " ; q = 0.7", 700, true},
		{"uppercase name", ";Q=0.2", 200, true},
		{"1.5 invalid, default", ";q=1.5", 1000, false},
		{"1.001 invalid", ";q=1.001", 1000, false},
		{"0.3333 too many digits", ";q=0.3333", 1000, false},
		{"2 invalid", ";q=2", 1000, false},
		{"0x5 invalid", ";q=0x5", 1000, false},
		{"negative", ";q=-0.5", 1000, false},
		{"letters", ";q=abc", 1000, false},
		{"valueless", ";q", 1000, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAddr(t, []byte("<sip:alice@192.0.2.4>"+tc.params))
			if got := a.Q(); got != tc.q {
				t.Errorf("Q() = %d, want %d", got, tc.q)
			}
			v, _ := a.Params.Get("q")
			got, ok := ParseQ(v)
			if ok != tc.valid {
				t.Errorf("ParseQ(%q) ok = %v, want %v", v, ok, tc.valid)
			}
			if ok && got != tc.q {
				t.Errorf("ParseQ(%q) = %d, want %d", v, got, tc.q)
			}
		})
	}
}

func TestAddressExpires(t *testing.T) {
	tests := []struct {
		name   string
		params string
		want   uint32
		ok     bool
	}{
		{"absent", ";q=0.5", 0, false},
		{"3600", ";expires=3600", 3600, true},
		{"0", ";expires=0", 0, true},
		{"case-insensitive name", ";EXPIRES=60", 60, true},
		{"max uint32", ";expires=4294967295", 4294967295, true},
		{"saturates", ";expires=99999999999999999999", 4294967295, true},
		{"non-numeric", ";expires=soon", 0, false},
		{"negative", ";expires=-1", 0, false},
		{"valueless", ";expires", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAddr(t, []byte("<sip:alice@192.0.2.4>"+tc.params))
			got, ok := a.Expires()
			if got != tc.want || ok != tc.ok {
				t.Errorf("Expires() = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestUnquoteTable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"abc"`, "abc"},
		{`""`, ""},
		{`"a\"b"`, `a\"b`}, // escapes kept
		{`abc`, "abc"},
		{`"abc`, `"abc`},
		{`"`, `"`},
		{``, ``},
	} {
		eq(t, "Unquote("+tc.in+")", Unquote([]byte(tc.in)), tc.want)
	}
}
