package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"sipedge/internal/race"
)

// ref computes a response the long way, with the standard library's hash
// functions and string concatenation, independently of Verify.
func ref(a Algorithm, user, realm, password, method, uri, nonce, nc, cnonce, qop string) string {
	h := func(s string) string {
		switch a {
		case MD5:
			sum := md5.Sum([]byte(s))
			return hex.EncodeToString(sum[:])
		case SHA256:
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		}
		sum := sha512.Sum512_256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	ha1 := h(user + ":" + realm + ":" + password)
	ha2 := h(method + ":" + uri)
	if qop == "" {
		return h(ha1 + ":" + nonce + ":" + ha2)
	}
	return h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
}

// The examples of the RFCs, with the responses printed there.
func TestRFCVectors(t *testing.T) {
	const rfc7616 = `Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", ` +
		`algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, ` +
		`cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="{resp}", ` +
		`opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`
	for _, tc := range []struct {
		name      string
		a         Algorithm
		value     string
		realm     string
		password  string
		nonce     string
		cnonce    string
		response  string // as printed in the RFC; "" = only the independent computation
		algorithm string
	}{
		{
			name: "RFC 2617 §3.5", a: MD5, realm: "testrealm@host.com", password: "Circle Of Life",
			nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", cnonce: "0a4f113b",
			response: "6629fae49393a05397450978507c4ef1",
			value: `Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
		},
		{name: "RFC 7616 §3.9.1 MD5", a: MD5, algorithm: "MD5", response: "8ca523f5e9506fed4657c9700eebdbec"},
		{name: "RFC 7616 §3.9.1 SHA-256", a: SHA256, algorithm: "SHA-256", response: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
		{name: "RFC 7616 example with SHA-512-256", a: SHA512_256, algorithm: "SHA-512-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.value == "" {
				tc.realm, tc.password = "http-auth@example.org", "Circle of Life"
				tc.nonce, tc.cnonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
			}
			want := ref(tc.a, "Mufasa", tc.realm, tc.password, "GET", "/dir/index.html", tc.nonce, "00000001", tc.cnonce, "auth")
			if tc.response != "" && want != tc.response {
				t.Fatalf("independent computation %s differs from the RFC's %s", want, tc.response)
			}
			if tc.value == "" {
				tc.value = strings.NewReplacer("{alg}", tc.algorithm, "{resp}", want).Replace(rfc7616)
			}
			c, err := ParseCredentials([]byte(tc.value))
			if err != nil {
				t.Fatal(err)
			}
			if c.Algorithm != tc.a || string(c.Response) != want || c.NC != 1 || string(c.Realm) != tc.realm {
				t.Fatalf("parsed %+v", c)
			}
			ha1 := HA1(tc.a, "Mufasa", tc.realm, tc.password)
			if !c.Verify([]byte(ha1), []byte("GET")) {
				t.Errorf("Verify refused the RFC's credentials")
			}
			if c.Verify([]byte(HA1(tc.a, "Mufasa", tc.realm, "Circle of life")), []byte("GET")) {
				t.Errorf("Verify accepted a wrong password")
			}
		})
	}
}

func TestRFC7616Value(t *testing.T) {
	// The fixture above is assembled from a template; check it once
	// against the text of RFC 7616 §3.9.1 for SHA-256.
	c, err := ParseCredentials([]byte(`Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Verify([]byte(HA1(SHA256, "Mufasa", "http-auth@example.org", "Circle of Life")), []byte("GET")) {
		t.Error("RFC 7616 SHA-256 example refused")
	}
}

func TestHA1(t *testing.T) {
	for a := MD5; a < numAlgorithms; a++ {
		var sum []byte
		in := []byte("alice:sip.example.com:s3cret")
		switch a {
		case MD5:
			s := md5.Sum(in)
			sum = s[:]
		case SHA256:
			s := sha256.Sum256(in)
			sum = s[:]
		case SHA512_256:
			s := sha512.Sum512_256(in)
			sum = s[:]
		}
		if got := HA1(a, "alice", "sip.example.com", "s3cret"); got != hex.EncodeToString(sum) {
			t.Errorf("HA1(%s) = %s, want %x", a, got, sum)
		}
	}
}

func TestAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Algorithm
		ok   bool
	}{
		{"", MD5, true}, {"MD5", MD5, true}, {"md5", MD5, true}, {"SHA-256", SHA256, true}, {"sha-256", SHA256, true},
		{"SHA-512-256", SHA512_256, true}, {"Sha-512-256", SHA512_256, true},
		{"MD5-sess", 0, false}, {"SHA-256-sess", 0, false}, {"SHA-512-256-sess", 0, false}, {"SHA256", 0, false}, {"SHA-1", 0, false},
	} {
		a, ok := ParseAlgorithm([]byte(tc.in))
		if a != tc.want || ok != tc.ok {
			t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v, %v", tc.in, a, ok, tc.want, tc.ok)
		}
		if ok && tc.in != "" && !strings.EqualFold(a.String(), tc.in) {
			t.Errorf("%v.String() = %q", a, a.String())
		}
	}
	if Algorithm(9).String() != "unknown" {
		t.Error("String of an unknown algorithm")
	}
}

func TestParseCredentials(t *testing.T) {
	const base = `username="alice", realm="sip.example.com", nonce="n1", uri="sip:bob@example.com", response="0123456789abcdef0123456789abcdef"`
	type want struct {
		user, realm, nonce, uri, cnonce, qop, opaque string
		nc                                           uint32
		alg                                          Algorithm
	}
	basic := want{user: "alice", realm: "sip.example.com", nonce: "n1", uri: "sip:bob@example.com"}
	with := func(f func(*want)) want { w := basic; f(&w); return w }
	for _, tc := range []struct {
		name string
		in   string
		want want
		err  string // substring of the error; "" = no error
		is   error
	}{
		{name: "RFC 2069 form", in: "Digest " + base, want: basic},
		{name: "scheme in any case, tabs", in: "dIgEsT\t" + base, want: basic},
		{name: "qop, nc, cnonce, algorithm, opaque", in: "Digest " + base + `, algorithm=SHA-256, qop=auth, nc=0000002A, cnonce="c0", opaque="op"`,
			want: with(func(w *want) { w.qop, w.nc, w.cnonce, w.opaque, w.alg = "auth", 42, "c0", "op", SHA256 })},
		{name: "quoted qop and algorithm", in: "Digest " + base + `, algorithm="sha-512-256", qop="auth", nc=00000001, cnonce="c"`,
			want: with(func(w *want) { w.qop, w.nc, w.cnonce, w.alg = "auth", 1, "c", SHA512_256 })},
		{name: "spaces around = and commas, empty elements", in: "Digest  ,username = \"alice\" ,, realm= \"sip.example.com\",nonce =\"n1\", uri=\"sip:bob@example.com\" , response=\"0123456789abcdef0123456789abcdef\",",
			want: basic},
		{name: "folded lines", in: "Digest username=\"alice\",\r\n realm=\"sip.example.com\",\r\n\tnonce=\"n1\", uri=\"sip:bob@example.com\", response=\"0123456789abcdef0123456789abcdef\"", want: basic},
		{name: "unknown parameters ignored, even twice", in: "Digest " + base + `, userhash=false, foo="bar", foo=baz`, want: basic},
		{name: "escapes kept as written", in: `Digest username="al\"ice", realm="sip.example.com", nonce="n1", uri="sip:bob@example.com", response="0123456789abcdef0123456789abcdef"`,
			want: with(func(w *want) { w.user = `al\"ice` })},
		{name: "empty quoted string", in: `Digest username="", realm="sip.example.com", nonce="n1", uri="sip:bob@example.com", response="0123456789abcdef0123456789abcdef"`,
			want: with(func(w *want) { w.user = "" })},
		{name: "UTF-8 in quoted string", in: `Digest username="zoë", realm="sip.example.com", nonce="n1", uri="sip:bob@example.com", response="0123456789abcdef0123456789abcdef"`,
			want: with(func(w *want) { w.user = "zoë" })},

		{name: "Basic", in: "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", is: ErrNotDigest},
		{name: "Bearer", in: "Bearer abc", is: ErrNotDigest},
		{name: "DigestX", in: "DigestX " + base, is: ErrNotDigest},
		{name: "empty", in: "", err: "expected an authentication scheme at offset 0"},
		{name: "no parameters", in: "Digest ", err: "no parameters after Digest"},
		{name: "no space after scheme", in: `Digest,username="a"`, err: "expected a space after Digest at offset 6"},
		{name: "missing response", in: `Digest username="alice", realm="r", nonce="n", uri="u"`, err: "missing parameter response"},
		{name: "missing username", in: `Digest realm="r", nonce="n", uri="u", response="x"`, err: "missing parameter username"},
		{name: "missing nonce", in: `Digest username="a", realm="r", uri="u", response="x"`, err: "missing parameter nonce"},
		{name: "duplicate nonce", in: "Digest " + base + `, nonce="n2"`, err: "duplicate parameter nonce at offset 134"},
		{name: "duplicate in other case", in: "Digest " + base + `, Realm="x"`, err: "duplicate parameter Realm"},
		{name: "duplicate qop", in: "Digest " + base + `, qop=auth, nc=00000001, cnonce="c", qop=auth`, err: "duplicate parameter qop"},
		{name: "nc 7 digits", in: "Digest " + base + `, qop=auth, nc=0000001, cnonce="c"`, err: "nc must be 8 hex digits"},
		{name: "nc 9 digits", in: "Digest " + base + `, qop=auth, nc=000000001, cnonce="c"`, err: "nc must be 8 hex digits"},
		{name: "nc not hex", in: "Digest " + base + `, qop=auth, nc=0000000g, cnonce="c"`, err: "nc must be 8 hex digits"},
		{name: "qop without nc", in: "Digest " + base + `, qop=auth, cnonce="c"`, err: "qop=auth without nc"},
		{name: "qop without cnonce", in: "Digest " + base + `, qop=auth, nc=00000001`, err: "qop=auth without cnonce"},
		{name: "nc without qop", in: "Digest " + base + `, nc=00000001`, err: "nc without qop"},
		{name: "auth-int", in: "Digest " + base + `, qop=auth-int, nc=00000001, cnonce="c"`, is: ErrUnsupported},
		{name: "MD5-sess", in: "Digest " + base + `, algorithm=MD5-sess`, is: ErrUnsupported},
		{name: "empty algorithm", in: "Digest " + base + `, algorithm=""`, is: ErrUnsupported},
		{name: "unterminated quote", in: `Digest username="alice`, err: "unterminated quoted string at offset 16"},
		{name: "escape at the end", in: `Digest username="alice\`, err: "bad escape in quoted string"},
		{name: "escaped CR", in: "Digest username=\"a\\\r\"", err: "bad escape in quoted string"},
		{name: "control character", in: "Digest username=\"a\x01\"", err: "control character in quoted string"},
		{name: "no =", in: "Digest " + base + ", stale", err: "expected '=' after parameter stale"},
		{name: "second scheme", in: "Digest " + base + ", Digest username=\"b\"", err: "expected '=' after parameter Digest"},
		{name: "no value", in: `Digest username=, realm="r"`, err: "expected a value for parameter username"},
		{name: "junk after value", in: `Digest username="a" realm="r"`, err: "expected ',' after parameter username at offset 20"},
		{name: "junk after token", in: `Digest qop=auth;x`, err: "expected ',' after parameter qop"},
		{name: "too long", in: "Digest " + base + ", x=\"" + strings.Repeat("a", MaxValue) + `"`, err: "value longer than 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCredentials([]byte(tc.in))
			switch {
			case tc.is != nil:
				if !errors.Is(err, tc.is) {
					t.Fatalf("error %v, want %v", err, tc.is)
				}
				return
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				var e *Error
				if !errors.As(err, &e) || !strings.Contains(err.Error(), "near") {
					t.Errorf("error %v is not an *Error quoting the text", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			got := want{user: string(c.Username), realm: string(c.Realm), nonce: string(c.Nonce), uri: string(c.URI),
				cnonce: string(c.CNonce), qop: string(c.QOP), opaque: string(c.Opaque), nc: c.NC, alg: c.Algorithm}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// Fields are views into the value: no copy is made.
func TestCredentialsAreViews(t *testing.T) {
	v := []byte(`Digest username="alice", realm="r", nonce="n", uri="u", response="x"`)
	c, err := ParseCredentials(v)
	if err != nil {
		t.Fatal(err)
	}
	v[17] = 'A'
	if string(c.Username) != "Alice" {
		t.Errorf("Username %q is a copy", c.Username)
	}
}

func TestVerify(t *testing.T) {
	const (
		user, realm, pass = "alice", "sip.example.com", "s3cret"
		method, uri       = "INVITE", "sip:bob@example.com"
		nonce, cnonce     = "abc/def", "0a4f113b"
	)
	for a := MD5; a < numAlgorithms; a++ {
		ha1 := []byte(HA1(a, user, realm, pass))
		good := ref(a, user, realm, pass, method, uri, nonce, "00000005", cnonce, "auth")
		make := func(edit func(*Credentials)) Credentials {
			c := Credentials{Username: []byte(user), Realm: []byte(realm), Nonce: []byte(nonce), URI: []byte(uri),
				Response: []byte(good), Algorithm: a, CNonce: []byte(cnonce), QOP: []byte("auth"), NC: 5}
			if edit != nil {
				edit(&c)
			}
			return c
		}
		for _, tc := range []struct {
			name   string
			c      Credentials
			ha1    []byte
			method string
			want   bool
		}{
			{"right", make(nil), ha1, method, true},
			{"response in upper case", make(func(c *Credentials) { c.Response = []byte(strings.ToUpper(good)) }), ha1, method, true},
			{"wrong password", make(nil), []byte(HA1(a, user, realm, "s3creT")), method, false},
			{"wrong method", make(nil), ha1, "BYE", false},
			{"wrong uri", make(func(c *Credentials) { c.URI = []byte("sip:carol@example.com") }), ha1, method, false},
			{"wrong nonce", make(func(c *Credentials) { c.Nonce = []byte("abc/deg") }), ha1, method, false},
			{"wrong nc", make(func(c *Credentials) { c.NC = 6 }), ha1, method, false},
			{"wrong cnonce", make(func(c *Credentials) { c.CNonce = []byte("0a4f113c") }), ha1, method, false},
			{"qop dropped", make(func(c *Credentials) { c.QOP = nil }), ha1, method, false},
			{"last digit altered", make(func(c *Credentials) {
				r := []byte(good)
				r[len(r)-1] ^= 1
				c.Response = r
			}), ha1, method, false},
			{"short response", make(func(c *Credentials) { c.Response = c.Response[:len(c.Response)-1] }), ha1, method, false},
			{"empty HA1", make(nil), nil, method, false},
			{"HA1 of another algorithm", make(nil), []byte(HA1((a+1)%numAlgorithms, user, realm, pass)), method, false},
			{"unknown algorithm", make(func(c *Credentials) { c.Algorithm = numAlgorithms }), ha1, method, false},
			{"RFC 2069", make(func(c *Credentials) {
				c.QOP, c.NC, c.CNonce = nil, 0, nil
				c.Response = []byte(ref(a, user, realm, pass, method, uri, nonce, "", "", ""))
			}), ha1, method, true},
			{"escaped nonce", make(func(c *Credentials) { c.Nonce = []byte(`abc\/def`) }), ha1, method, true},
		} {
			if got := tc.c.Verify(tc.ha1, []byte(tc.method)); got != tc.want {
				t.Errorf("%s %s: Verify = %v, want %v", a, tc.name, got, tc.want)
			}
		}
	}
}

func TestUnquote(t *testing.T) {
	for in, want := range map[string]string{``: ``, `abc`: `abc`, `a\"b`: `a"b`, `a\\b`: `a\b`, `\a\b`: `ab`} {
		if got := string(Unquote(nil, []byte(in))); got != want {
			t.Errorf("Unquote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVerifyAllocatesNothing(t *testing.T) {
	if testing.CoverMode() != "" || race.Enabled {
		t.Skip("coverage counters and the race detector allocate")
	}
	for a := MD5; a < numAlgorithms; a++ {
		ch := Challenge{Realm: []byte("sip.example.com"), Nonce: []byte("n"), Algorithm: a, QOPAuth: true}
		v := ch.Authorize(nil, "alice", "pw", []byte("REGISTER"), []byte("sip:example.com"), []byte("c"), 1)
		ha1 := []byte(HA1(a, "alice", "sip.example.com", "pw"))
		method := []byte("REGISTER")
		n := testing.AllocsPerRun(100, func() {
			c, err := ParseCredentials(v)
			if err != nil || !c.Verify(ha1, method) {
				t.Fatal("refused")
			}
		})
		if n != 0 {
			t.Errorf("%s: parse and verify allocate %v times", a, n)
		}
	}
}

func benchmarkVerify(b *testing.B, a Algorithm) {
	ch := Challenge{Realm: []byte("sip.example.com"), Nonce: []byte("2bOW3DcmSBfMLAjCWHW0rzM6fZJaHPMUSm4Y_pqzr2U"), Algorithm: a, QOPAuth: true}
	v := ch.Authorize(nil, "alice", "pw", []byte("INVITE"), []byte("sip:bob@example.com"), []byte("0a4f113b"), 1)
	ha1 := []byte(HA1(a, "alice", "sip.example.com", "pw"))
	method := []byte("INVITE")
	b.ReportAllocs()
	for b.Loop() {
		c, err := ParseCredentials(v)
		if err != nil || !c.Verify(ha1, method) {
			b.Fatal("refused")
		}
	}
}

func BenchmarkVerifyMD5(b *testing.B)        { benchmarkVerify(b, MD5) }
func BenchmarkVerifySHA256(b *testing.B)     { benchmarkVerify(b, SHA256) }
func BenchmarkVerifySHA512_256(b *testing.B) { benchmarkVerify(b, SHA512_256) }
