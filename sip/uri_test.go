package sip

import (
	"errors"
	"strings"
	"testing"
)

// uriWant is what ParseURI must return. params lists lookups through
// URI.Param: "name=value" (present with that value), "name" (present without
// a value) or "!name" (absent).
type uriWant struct {
	scheme   string
	kind     SchemeKind
	user     string
	password string
	hasUser  bool
	host     string
	port     int
	port0    bool // an explicit ":0": HasPort with Port 0
	params   string
	headers  string
	opaque   string
	lookups  []string
}

func TestParseURITable(t *testing.T) {
	const intmethUser = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
	const intmethPass = "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
	tests := []struct {
		name string
		in   string
		err  error // nil: must parse
		want uriWant
	}{
		// schemes
		{"sip basic", "sip:alice@atlanta.com", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", hasUser: true, host: "atlanta.com"}},
		{"sips with port and transport", "sips:bob@biloxi.com:5061;transport=tcp", nil, uriWant{
			scheme: "sips", kind: SchemeSIPS, user: "bob", hasUser: true, host: "biloxi.com", port: 5061,
			params: "transport=tcp", lookups: []string{"transport=tcp", "TRANSPORT=tcp", "!lr"}}},
		{"scheme case kept as written", "SIP:Alice@AtLanTa.CoM", nil, uriWant{
			scheme: "SIP", kind: SchemeSIP, user: "Alice", hasUser: true, host: "AtLanTa.CoM"}},
		{"sIpS mixed case", "sIpS:x@y", nil, uriWant{
			scheme: "sIpS", kind: SchemeSIPS, user: "x", hasUser: true, host: "y"}},
		{"tel global", "tel:+1-201-555-0123", nil, uriWant{
			scheme: "tel", kind: SchemeTel, opaque: "+1-201-555-0123"}},
		{"tel local with context", "tel:7042;phone-context=example.com", nil, uriWant{
			scheme: "tel", kind: SchemeTel, opaque: "7042;phone-context=example.com"}},
		{"unknown scheme opaque", "nobodyKnowsThisScheme:totallyopaquecontent", nil, uriWant{
			scheme: "nobodyKnowsThisScheme", kind: SchemeOther, opaque: "totallyopaquecontent"}},
		{"novel scheme with dot", "soap.beep://192.0.2.103:3002", nil, uriWant{
			scheme: "soap.beep", kind: SchemeOther, opaque: "//192.0.2.103:3002"}},
		{"isbn", "isbn:2983792873", nil, uriWant{
			scheme: "isbn", kind: SchemeOther, opaque: "2983792873"}},
		{"sip prefix is not sip", "sipx:alice@atlanta.com", nil, uriWant{
			scheme: "sipx", kind: SchemeOther, opaque: "alice@atlanta.com"}},

		// userinfo
		{"no user", "sip:atlanta.com", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, host: "atlanta.com"}},
		{"password", "sip:alice:secretword@atlanta.com;transport=tcp", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", password: "secretword", hasUser: true,
			host: "atlanta.com", params: "transport=tcp"}},
		{"empty password", "sip:alice:@atlanta.com", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", hasUser: true, host: "atlanta.com"}},
		{"intmeth weird user and password", "sip:" + intmethUser + ":" + intmethPass + "@example.com", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: intmethUser, password: intmethPass, hasUser: true, host: "example.com"}},
		{"escaped user kept as written", "sip:%61lice@atlanta.com", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "%61lice", hasUser: true, host: "atlanta.com"}},
		{"user with semicolon (semiuri)", "sip:user;par=u%40example.net@example.com", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "user;par=u%40example.net", hasUser: true, host: "example.com",
			lookups: []string{"!par"}}},
		{"telephone-subscriber user", "sip:+1-212-555-1212:1234@gateway.com;user=phone", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "+1-212-555-1212", password: "1234", hasUser: true,
			host: "gateway.com", params: "user=phone", lookups: []string{"user=phone"}}},

		// hosts
		{"IPv4 host", "sip:alice@192.0.2.4", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", hasUser: true, host: "192.0.2.4"}},
		{"IPv6 host", "sip:alice@[2001:db8::10]", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", hasUser: true, host: "[2001:db8::10]"}},
		{"IPv6 host with port", "sip:[2001:db8::10]:5070", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, host: "[2001:db8::10]", port: 5070}},
		{"RFC 5118 ambiguous: port inside brackets is address", "sip:[2001:db8::10:5070]", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, host: "[2001:db8::10:5070]"}},
		{"IPv4-mapped IPv6", "sip:[::ffff:192.0.2.10]", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, host: "[::ffff:192.0.2.10]"}},
		{"hostname with dash and trailing dot", "sip:a@chair-dnrc.example.com.", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "a", hasUser: true, host: "chair-dnrc.example.com."}},

		// ports
		{"port 5060", "sip:alice@atlanta.com:5060", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", hasUser: true, host: "atlanta.com", port: 5060}},
		{"port 65535", "sip:alice@atlanta.com:65535", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", hasUser: true, host: "atlanta.com", port: 65535}},
		{"port 0 explicit", "sip:alice@atlanta.com:0", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", hasUser: true, host: "atlanta.com", port0: true}},
		{"port 65536", "sip:alice@atlanta.com:65536", ErrURIPort, uriWant{}},
		{"port huge", "sip:alice@atlanta.com:99999999999999999999", ErrURIPort, uriWant{}},
		{"port empty", "sip:alice@atlanta.com:", ErrURIPort, uriWant{}},
		{"port empty before params", "sip:alice@atlanta.com:;lr", ErrURIPort, uriWant{}},
		{"port not numeric", "sip:alice@atlanta.com:50a", ErrURIChar, uriWant{}},

		// parameters
		{"lr valueless", "sip:p1.example.com;lr", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, host: "p1.example.com", params: "lr", lookups: []string{"lr", "LR", "!transport"}}},
		{"several params", "sip:bob@biloxi.com;transport=tcp;lr;maddr=239.255.255.1;ttl=15;method=REGISTER", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "bob", hasUser: true, host: "biloxi.com",
			params:  "transport=tcp;lr;maddr=239.255.255.1;ttl=15;method=REGISTER",
			lookups: []string{"transport=tcp", "lr", "maddr=239.255.255.1", "ttl=15", "method=REGISTER", "!user"}}},
		{"IPv6 maddr", "sip:h;maddr=[2001:db8::1]", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, host: "h", params: "maddr=[2001:db8::1]", lookups: []string{"maddr=[2001:db8::1]"}}},
		{"escaped param", "sip:h;n%61me=value%25%34%31", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, host: "h", params: "n%61me=value%25%34%31", lookups: []string{"n%61me=value%25%34%31"}}},
		{"empty param name ;;", "sip:alice@atlanta.com;;lr", ErrURIParams, uriWant{}},
		{"empty param in the middle", "sip:alice@atlanta.com;lr;;transport=tcp", ErrURIParams, uriWant{}},
		{"trailing semicolon", "sip:alice@atlanta.com;lr;", ErrURIParams, uriWant{}},
		{"lone semicolon", "sip:alice@atlanta.com;", ErrURIParams, uriWant{}},
		{"param without name", "sip:alice@atlanta.com;=x", ErrURIParams, uriWant{}},
		{"second param without name", "sip:alice@atlanta.com;lr;=x", ErrURIParams, uriWant{}},

		// headers
		{"headers", "sip:alice@atlanta.com?subject=project%20x&priority=urgent", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "alice", hasUser: true, host: "atlanta.com",
			headers: "subject=project%20x&priority=urgent"}},
		{"params then headers", "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, host: "biloxi.com", params: "transport=tcp;method=REGISTER",
			headers: "to=sip:bob%40biloxi.com", lookups: []string{"method=REGISTER"}}},
		{"escaped Route header (regescrt)", "sip:user@example.com?Route=%3Csip:sip.example.com%3E", nil, uriWant{
			scheme: "sip", kind: SchemeSIP, user: "user", hasUser: true, host: "example.com",
			headers: "Route=%3Csip:sip.example.com%3E"}},
		{"empty headers", "sip:alice@atlanta.com?", ErrURIHeaders, uriWant{}},

		// bad escapes
		{"user %4", "sip:%4@atlanta.com", ErrURIUser, uriWant{}},
		{"user %zz", "sip:%zz@atlanta.com", ErrURIUser, uriWant{}},
		{"password %4", "sip:alice:%4@atlanta.com", ErrURIUser, uriWant{}},
		{"password %g0", "sip:alice:%g0@atlanta.com", ErrURIUser, uriWant{}},
		{"param %4 at end", "sip:alice@atlanta.com;p=%4", ErrURIParams, uriWant{}},
		{"param %zz", "sip:alice@atlanta.com;p=%zz", ErrURIParams, uriWant{}},
		{"header %zz", "sip:alice@atlanta.com?h=%zz", ErrURIHeaders, uriWant{}},
		{"header %4", "sip:alice@atlanta.com?h=%4", ErrURIHeaders, uriWant{}},

		// characters outside the grammar
		{"space in user", "sip:al ice@atlanta.com", ErrURIUser, uriWant{}},
		{"space in host", "sip:alice@atl anta.com", ErrURIChar, uriWant{}},
		{"trailing space", "sip:alice@atlanta.com ", ErrURIChar, uriWant{}},
		{"leading space", " sip:alice@atlanta.com", ErrURIScheme, uriWant{}},
		{"space in params", "sip:alice@atlanta.com;lr x", ErrURIParams, uriWant{}},
		{"space in headers", "sip:alice@atlanta.com?a=b c", ErrURIHeaders, uriWant{}},
		{"< in user", "sip:<alice>@atlanta.com", ErrURIUser, uriWant{}},
		{"> after host", "sip:alice@atlanta.com>", ErrURIChar, uriWant{}},
		{"< in param", "sip:alice@atlanta.com;a=<b>", ErrURIParams, uriWant{}},
		{"space in tel", "tel:+1 555", ErrURIChar, uriWant{}},
		{"< in opaque", "foo:<x>", ErrURIChar, uriWant{}},
		{"quote in opaque", `foo:a"b`, ErrURIChar, uriWant{}},
		{"empty opaque", "foo:", ErrURIChar, uriWant{}},

		// scheme and host errors
		{"empty", "", ErrURIScheme, uriWant{}},
		{"no colon", "sip", ErrURIScheme, uriWant{}},
		{"empty scheme", ":alice@atlanta.com", ErrURIScheme, uriWant{}},
		{"scheme starts with digit", "1sip:alice@atlanta.com", ErrURIScheme, uriWant{}},
		{"space in scheme", "si p:alice@atlanta.com", ErrURIScheme, uriWant{}},
		{"sip without host", "sip:", ErrURIHost, uriWant{}},
		{"user without host", "sip:alice@", ErrURIHost, uriWant{}},
		{"params without host", "sip:alice@;lr", ErrURIHost, uriWant{}},
		{"unterminated IPv6", "sip:[2001:db8::1", ErrURIHost, uriWant{}},
		{"non-hex IPv6", "sip:[2001:zz8::1]", ErrURIHost, uriWant{}},
		{"IPv6 with one colon", "sip:[2001:db8]", ErrURIHost, uriWant{}},
		{"empty brackets", "sip:[]", ErrURIHost, uriWant{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI([]byte(tc.in))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseURI(%q) error = %v, want %v", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tc.in, err)
			}
			w := tc.want
			eq(t, "scheme", u.Scheme, w.scheme)
			if u.Kind != w.kind {
				t.Errorf("kind = %d, want %d", u.Kind, w.kind)
			}
			if u.IsSIP() != (w.kind == SchemeSIP || w.kind == SchemeSIPS) {
				t.Errorf("IsSIP = %v", u.IsSIP())
			}
			eq(t, "user", u.User, w.user)
			eq(t, "password", u.Password, w.password)
			if u.HasUser != w.hasUser {
				t.Errorf("HasUser = %v, want %v", u.HasUser, w.hasUser)
			}
			eq(t, "host", u.Host, w.host)
			if u.Port != w.port {
				t.Errorf("port = %d, want %d", u.Port, w.port)
			}
			if u.HasPort != (w.port != 0 || w.port0) {
				t.Errorf("HasPort = %v with port %d", u.HasPort, u.Port)
			}
			eq(t, "params", u.Params, w.params)
			eq(t, "headers", u.Headers, w.headers)
			eq(t, "opaque", u.Opaque, w.opaque)
			for _, l := range w.lookups {
				tblLookup(t, l, u.Param)
			}
		})
	}
}

// tblLookup verifies one "name=value" / "name" / "!name" lookup.
func tblLookup(t *testing.T, l string, get func(string) ([]byte, bool)) {
	t.Helper()
	if name, ok := strings.CutPrefix(l, "!"); ok {
		if v, found := get(name); found {
			t.Errorf("param %q present (%q), want absent", name, v)
		}
		return
	}
	name, val, hasVal := strings.Cut(l, "=")
	v, found := get(name)
	if !found {
		t.Errorf("param %q absent", name)
		return
	}
	if !hasVal {
		if v != nil {
			t.Errorf("param %q = %q, want no value", name, v)
		}
		return
	}
	eq(t, "param "+name, v, val)
}

func TestURIEqualTable(t *testing.T) {
	tests := []struct {
		name  string
		a, b  string
		equal bool
		bug   string // non-empty: known defect; the case is skipped while it shows
	}{
		// RFC 3261 §19.1.4: equivalent URIs
		{"rfc equal: escaped user, host and param case", "sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp", true, ""},
		{"rfc equal: carol vs newparam", "sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5", true, ""},
		{"rfc equal: carol vs security=on", "sip:carol@chicago.com", "sip:carol@chicago.com;security=on", true, ""},
		{"rfc equal: security=on vs newparam", "sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5", true, ""},
		{"rfc equal: params and headers reordered", "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
			"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com", true, ""},
		{"rfc equal: headers reordered", "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
			"sip:alice@atlanta.com?priority=urgent&subject=project%20x", true, ""},
		// RFC 3261 §19.1.4: non-equivalent URIs
		{"rfc unequal: different usernames", "SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP", false, ""},
		{"rfc unequal: port present in one", "sip:bob@biloxi.com", "sip:bob@biloxi.com:5060", false, ""},
		{"rfc unequal: transport present in one", "sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp", false, ""},
		{"rfc unequal: port and transport", "sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp", false, ""},
		{"rfc unequal: header component", "sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting", false, ""},
		{"rfc unequal: host name vs address", "sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4", false, ""},
		// RFC 3261 §19.1.4 note on transitivity
		{"rfc: carol vs security=off", "sip:carol@chicago.com", "sip:carol@chicago.com;security=off", true, ""},
		{"rfc: security=on vs security=off", "sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off", false, ""},
		// the rules of §19.1.4
		{"user case-sensitive", "sip:alice@atlanta.com", "sip:ALICE@atlanta.com", false, ""},
		{"password case-sensitive", "sip:alice:pw@atlanta.com", "sip:alice:PW@atlanta.com", false, ""},
		{"password present in one", "sip:alice:secretword@atlanta.com", "sip:alice@atlanta.com", false, ""},
		{"user present in one", "sip:atlanta.com", "sip:alice@atlanta.com", false, ""},
		{"sip vs sips", "sip:alice@atlanta.com", "sips:alice@atlanta.com", false, ""},
		{"scheme case-insensitive", "SIPS:alice@atlanta.com", "sips:alice@atlanta.com", true, ""},
		{"host case-insensitive", "sip:alice@ATLANTA.com", "sip:alice@atlanta.COM", true, ""},
		{"IPv6 host case-insensitive", "sip:[2001:DB8::1]", "sip:[2001:db8::1]", true, ""},
		{"different ports", "sip:bob@biloxi.com:5060", "sip:bob@biloxi.com:5061", false, ""},
		{"same ports", "sip:bob@biloxi.com:5060", "sip:bob@biloxi.com:5060", true, ""},
		{"maddr present in one", "sip:carol@chicago.com", "sip:carol@chicago.com;maddr=239.255.255.1", false, ""},
		{"user param present in one", "sip:+1234@gw.com;user=phone", "sip:+1234@gw.com", false, ""},
		{"ttl present in one", "sip:a@b;ttl=1", "sip:a@b", false, ""},
		{"method present in one", "sip:a@b", "sip:a@b;method=INVITE", false, ""},
		{"transport values differ", "sip:a@b;transport=udp", "sip:a@b;transport=tcp", false, ""},
		{"other param differs in both", "sip:a@b;foo=1", "sip:a@b;foo=2", false, ""},
		{"lr in one only", "sip:alice@atlanta.com", "sip:alice@atlanta.com;lr", true, ""},
		{"param order", "sip:a@b;transport=tcp;lr;foo=x", "sip:a@b;foo=X;lr;transport=TCP", true, ""},
		{"escaped unreserved in user", "sip:%75se%72@example.com", "sip:user@EXAMPLE.com", true, ""},
		{"escaped NULs differ", "sip:%00@host5.example.com", "sip:%00%00@host5.example.com", false, ""},
		{"escaped param value", "sip:a@b;transport=%74cp", "sip:a@b;transport=tcp", true, ""},
		{"escaped reserved char in user", "sip:alice%3Bx@atlanta.com", "sip:alice;x@atlanta.com", false, ""},
		{"escaped reserved char, hex case", "sip:alice%3bx@atlanta.com", "sip:alice%3Bx@atlanta.com", true, ""},
		{"escaped reserved char in password", "sip:alice:a%2Bb@atlanta.com", "sip:alice:a+b@atlanta.com", false, ""},
		{"escaped reserved char in param value", "sip:a@b;foo=x%3Ay", "sip:a@b;foo=x:y", false, ""},
		{"escaped unreserved in param value", "sip:a@b;foo=%7Ex", "sip:a@b;foo=~x", true, ""},
		{"explicit port 0 vs absent", "sip:a@b:0", "sip:a@b", false, ""},
		{"explicit port 0 on both", "sip:a@b:0", "sip:a@b:0", true, ""},
		// RFC 3261 §19.1.4: headers are never ignored
		{"header present in both, values differ", "sip:a@b?Subject=x", "sip:a@b?Subject=y", false, ""},
		{"header value case-sensitive", "sip:a@b?Subject=x", "sip:a@b?Subject=X", false, ""},
		{"header name case-insensitive", "sip:a@b?subject=x", "sip:a@b?SUBJECT=x", true, ""},
		{"header value unescaped", "sip:a@b?Subject=%61%3Ab", "sip:a@b?Subject=a:b", true, ""},
		{"header name unescaped", "sip:a@b?%53ubject=x", "sip:a@b?subject=x", true, ""},
		{"extra header in one", "sip:a@b?Subject=x", "sip:a@b?Subject=x&Priority=urgent", false, ""},
		{"different headers", "sip:a@b?Subject=x", "sip:a@b?Priority=x", false, ""},
		{"repeated header counted", "sip:a@b?X=1&X=1&X=2", "sip:a@b?X=1&X=2&X=2", false, ""},
		{"repeated header reordered", "sip:a@b?X=1&Y=2&X=1", "sip:a@b?X=1&X=1&Y=2", true, ""},
		{"header without = is an empty value", "sip:a@b?X", "sip:a@b?X=", true, ""},
		{"empty header elements ignored", "sip:a@b?X=1&&Y=2&", "sip:a@b?Y=2&X=1", true, ""},
		// non-SIP schemes
		{"tel equal", "tel:+1-201-555-0123", "tel:+1-201-555-0123", true, ""},
		{"tel different", "tel:+1-201-555-0123", "tel:+1-201-555-0124", false, ""},
		{"tel vs sip", "tel:+1-201-555-0123", "sip:+1-201-555-0123@gw", false, ""},
		{"unknown scheme escaped equal", "foo:%61bc", "FOO:abc", true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseURI([]byte(tc.a))
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tc.a, err)
			}
			b, err := ParseURI([]byte(tc.b))
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tc.b, err)
			}
			got := URIEqual(&a, &b)
			if got != tc.equal && tc.bug != "" {
				t.Skipf("BUG: %s: URIEqual(%s, %s) = %v, want %v", tc.bug, tc.a, tc.b, got, tc.equal)
			}
			if got != tc.equal {
				t.Errorf("URIEqual(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.equal)
			}
			if got := URIEqual(&b, &a); got != tc.equal {
				t.Errorf("URIEqual(%s, %s) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.equal)
			}
		})
	}
}

func TestUnescapeTable(t *testing.T) {
	tests := []struct {
		name, dst, in, want string
	}{
		{"plain", "", "alice", "alice"},
		{"empty", "", "", ""},
		{"lower hex", "", "%61lice", "alice"},
		{"upper hex", "", "sips%3Auser%40example.com", "sips:user@example.com"},
		{"spaces", "", "I%20have%20spaces", "I have spaces"},
		{"decoded once", "", "value%25%34%31", "value%41"},
		{"NUL kept", "", "null-%00-null", "null-\x00-null"},
		{"UTF-8 bytes", "", "%C3%A9t%C3%A9", "été"},
		{"truncated escape at end", "", "a%4", "a%4"},
		{"lone percent", "", "100%", "100%"},
		{"non-hex escape", "", "%zz", "%zz"},
		{"half hex escape", "", "%4g", "%4g"},
		{"percent before escape", "", "%%41", "%A"},
		{"appends to dst", "prefix:", "%62ob", "prefix:bob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var dst []byte
			if tc.dst != "" {
				dst = []byte(tc.dst)
			}
			eq(t, "Unescape", Unescape(dst, []byte(tc.in)), tc.want)
		})
	}
}
