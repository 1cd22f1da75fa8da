package digest

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAppendChallenge(t *testing.T) {
	for _, tc := range []struct {
		a     Algorithm
		realm string
		stale bool
		want  string
	}{
		{MD5, "sip.example.com", false, `Digest realm="sip.example.com", nonce="N0", algorithm=MD5, qop="auth"`},
		{SHA256, "sip.example.com", true, `Digest realm="sip.example.com", nonce="N0", algorithm=SHA-256, qop="auth", stale=true`},
		{SHA512_256, `a"b\c`, false, `Digest realm="a\"b\\c", nonce="N0", algorithm=SHA-512-256, qop="auth"`},
	} {
		got := string(AppendChallenge([]byte("x"), tc.a, tc.realm, []byte("N0"), tc.stale))
		if got != "x"+tc.want {
			t.Errorf("AppendChallenge = %s\nwant x%s", got, tc.want)
		}
		ch, err := ParseChallenge([]byte(tc.want))
		if err != nil {
			t.Fatal(err)
		}
		if string(Unquote(nil, ch.Realm)) != tc.realm || string(ch.Nonce) != "N0" || ch.Algorithm != tc.a || !ch.QOPAuth || ch.Stale != tc.stale {
			t.Errorf("ParseChallenge(%s) = %+v", tc.want, ch)
		}
	}
}

func TestParseChallenge(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Challenge
		err  string
		is   error
	}{
		{name: "RFC 2617 §3.5", in: `Digest
                 realm="testrealm@host.com",
                 qop="auth,auth-int",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
			want: Challenge{Realm: []byte("testrealm@host.com"), Nonce: []byte("dcd98b7102dd2f0e8b11d0f600bfb0c093"), Opaque: []byte("5ccc069c403ebaf9f0171e9517f40e41"), QOPAuth: true}},
		{name: "RFC 2069: no qop", in: `Digest realm="r", nonce="n", domain="sip:example.com"`,
			want: Challenge{Realm: []byte("r"), Nonce: []byte("n"), Domain: []byte("sip:example.com")}},
		{name: "qop list with spaces", in: `Digest realm="r", nonce="n", qop=" auth-int , auth ", algorithm=sha-256, stale=TRUE`,
			want: Challenge{Realm: []byte("r"), Nonce: []byte("n"), QOPAuth: true, Algorithm: SHA256, Stale: true}},
		{name: "stale other than true", in: `Digest realm="r", nonce="n", stale=no`, want: Challenge{Realm: []byte("r"), Nonce: []byte("n")}},
		{name: "qop auth-int only", in: `Digest realm="r", nonce="n", qop="auth-int"`, is: ErrUnsupported},
		{name: "qop authx", in: `Digest realm="r", nonce="n", qop="authx"`, is: ErrUnsupported},
		{name: "MD5-sess", in: `Digest realm="r", nonce="n", algorithm=MD5-sess`, is: ErrUnsupported},
		{name: "Basic", in: `Basic realm="r"`, is: ErrNotDigest},
		{name: "no nonce", in: `Digest realm="r"`, err: "missing parameter nonce"},
		{name: "no realm", in: `Digest nonce="n"`, err: "missing parameter realm"},
		{name: "duplicate stale", in: `Digest realm="r", nonce="n", stale=true, stale=false`, err: "duplicate parameter stale"},
		{name: "two challenges in one value", in: `Digest realm="r", nonce="n", Basic realm="r"`, err: "expected '=' after parameter Basic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := ParseChallenge([]byte(tc.in))
			switch {
			case tc.is != nil:
				if !errors.Is(err, tc.is) {
					t.Fatalf("error %v, want %v", err, tc.is)
				}
				return
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if string(ch.Realm) != string(tc.want.Realm) || string(ch.Nonce) != string(tc.want.Nonce) || string(ch.Opaque) != string(tc.want.Opaque) ||
				string(ch.Domain) != string(tc.want.Domain) || ch.Algorithm != tc.want.Algorithm || ch.QOPAuth != tc.want.QOPAuth || ch.Stale != tc.want.Stale {
				t.Errorf("got %+v\nwant %+v", ch, tc.want)
			}
		})
	}
}

func TestChooseChallenge(t *testing.T) {
	md5 := []byte(`Digest realm="r", nonce="1", algorithm=MD5, qop="auth"`)
	sha := []byte(`Digest realm="r", nonce="2", algorithm=SHA-256, qop="auth"`)
	sha512 := []byte(`Digest realm="r", nonce="3", algorithm=SHA-512-256, qop="auth"`)
	sess := []byte(`Digest realm="r", nonce="4", algorithm=SHA-512-256-sess, qop="auth"`)
	basic := []byte(`Basic realm="r"`)
	for _, tc := range []struct {
		name   string
		values [][]byte
		nonce  string
		index  int
	}{
		{"strongest last", [][]byte{md5, sha, sha512}, "3", 2},
		{"strongest first", [][]byte{sha512, sha, md5}, "3", 0},
		{"unsupported skipped", [][]byte{basic, sess, md5, sha}, "2", 3},
		{"first of equals", [][]byte{md5, []byte(`Digest realm="r", nonce="5"`)}, "1", 0},
		{"none", [][]byte{basic, sess, []byte("garbage")}, "", -1},
		{"empty", nil, "", -1},
	} {
		ch, i, ok := ChooseChallenge(tc.values...)
		if i != tc.index || ok != (tc.index >= 0) || string(ch.Nonce) != tc.nonce {
			t.Errorf("%s: ChooseChallenge = nonce %q, %d, %v; want %q, %d", tc.name, ch.Nonce, i, ok, tc.nonce, tc.index)
		}
	}
}

// The client answers what the server side asks, for every algorithm, and
// the server side refuses it for any other password, method or uri.
func TestRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	nonces := NewNonces([]byte("0123456789abcdef"), time.Minute)
	users, err := ParseUsers([]byte(UserLine("alice", "sip.example.com", "s3cret")+"\n"), "users")
	if err != nil {
		t.Fatal(err)
	}
	for a := MD5; a < numAlgorithms; a++ {
		for _, qop := range []bool{true, false} {
			nonce := nonces.Append(nil, "sip.example.com", now)
			challenge := string(AppendChallenge(nil, a, "sip.example.com", nonce, false))
			if !qop {
				challenge = strings.Replace(challenge, `, qop="auth"`, "", 1)
			}
			ch, err := ParseChallenge([]byte(challenge))
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				password, method, uri, verifyMethod string
				want                                bool
			}{
				{"s3cret", "REGISTER", "sip:example.com", "REGISTER", true},
				{"s3cret ", "REGISTER", "sip:example.com", "REGISTER", false},
				{"s3cret", "INVITE", "sip:bob@example.com", "REGISTER", false},
			} {
				v := ch.Authorize(nil, "alice", tc.password, []byte(tc.method), []byte(tc.uri), []byte("c-1"), 1)
				c, err := ParseCredentials(v)
				if err != nil {
					t.Fatalf("%s: %v", v, err)
				}
				if (c.QOP != nil) != qop {
					t.Errorf("%s: qop %q, offered %v", v, c.QOP, qop)
				}
				u, ok := users.Lookup(c.Username, c.Realm)
				if !ok {
					t.Fatalf("%s: user not found", v)
				}
				ha1, _ := u.HA1(c.Algorithm)
				if valid, _ := nonces.Check(c.Nonce, "sip.example.com", now); !valid {
					t.Errorf("%s: nonce refused", v)
				}
				if got := c.Verify(ha1, []byte(tc.verifyMethod)); got != tc.want {
					t.Errorf("%s %s qop=%v: Verify = %v, want %v", a, v, qop, got, tc.want)
				}
			}
		}
	}
}

func TestAuthorizeFormat(t *testing.T) {
	ch, err := ParseChallenge([]byte(`Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`))
	if err != nil {
		t.Fatal(err)
	}
	got := string(ch.Authorize(nil, "Mufasa", "Circle Of Life", []byte("GET"), []byte("/dir/index.html"), []byte("0a4f113b"), 1))
	want := `Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", ` +
		`response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41"`
	if got != want {
		t.Errorf("Authorize =\n%s\nwant\n%s", got, want)
	}
	ch.QOPAuth, ch.Opaque = false, nil
	got = string(ch.Authorize(nil, "Mufasa", "Circle Of Life", []byte("GET"), []byte("/dir/index.html"), []byte("0a4f113b"), 1))
	if strings.Contains(got, "qop") || strings.Contains(got, "cnonce") || strings.Contains(got, "nc=") || strings.Contains(got, "opaque") {
		t.Errorf("RFC 2069 form %s", got)
	}
}

// The client side against the examples of RFC 7616 §3.9.1 (MD5 and
// SHA-256, qop=auth), SHA-512-256 (RFC 8760) checked against an
// independent computation, and the RFC 2069 form without qop.
func TestAuthorizeRFC7616(t *testing.T) {
	const chal = `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, ` +
		`nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`
	const nonce, cnonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
	for _, tc := range []struct {
		alg      string
		a        Algorithm
		noQOP    bool
		response string // "" = the independent computation
	}{
		{alg: "MD5", a: MD5, response: "8ca523f5e9506fed4657c9700eebdbec"},
		{alg: "SHA-256", a: SHA256, response: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
		{alg: "SHA-512-256", a: SHA512_256},
		{alg: "MD5", a: MD5, noQOP: true},
		{alg: "SHA-256", a: SHA256, noQOP: true},
	} {
		name := tc.alg
		if tc.noQOP {
			name += " without qop"
		}
		t.Run(name, func(t *testing.T) {
			v := strings.ReplaceAll(chal, "{alg}", tc.alg)
			if tc.noQOP {
				v = strings.Replace(v, `qop="auth, auth-int", `, "", 1)
			}
			ch, err := ParseChallenge([]byte(v))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.response
			if want == "" {
				qop := "auth"
				if tc.noQOP {
					qop = ""
				}
				want = ref(tc.a, "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html", nonce, "00000001", cnonce, qop)
			}
			got := string(ch.Authorize(nil, "Mufasa", "Circle of Life", []byte("GET"), []byte("/dir/index.html"), []byte(cnonce), 1))
			if !strings.Contains(got, `response="`+want+`"`) || !strings.Contains(got, "algorithm="+tc.alg) {
				t.Fatalf("Authorize = %s\nwant response %s", got, want)
			}
			if tc.noQOP == strings.Contains(got, "qop=auth") {
				t.Fatalf("qop in %s", got)
			}
			// The server side accepts what the client side wrote.
			c, err := ParseCredentials([]byte(got))
			if err != nil {
				t.Fatal(err)
			}
			if !c.Verify([]byte(HA1(tc.a, "Mufasa", "http-auth@example.org", "Circle of Life")), []byte("GET")) {
				t.Fatal("Verify refused the credentials Authorize wrote")
			}
		})
	}
}
