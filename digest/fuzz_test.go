package digest

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParseCredentials: no panic; what parses has its required fields,
// views inside the value, and a response the round trip through
// Authorize would produce is verified.
func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte(`Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`))
	f.Add([]byte(`Digest username="a\"b", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-512-256`))
	f.Add([]byte(`Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==`))
	f.Fuzz(func(t *testing.T, v []byte) {
		c, err := ParseCredentials(v)
		if err != nil {
			return
		}
		if c.Username == nil || c.Realm == nil || c.Nonce == nil || c.URI == nil || c.Response == nil {
			t.Fatalf("%q: parsed without a required field: %+v", v, c)
		}
		for _, b := range [][]byte{c.Username, c.Realm, c.Nonce, c.URI, c.Response, c.CNonce, c.QOP, c.Opaque} {
			if len(b) > 0 && !inside(v, b) {
				t.Fatalf("%q: field %q is not a view of the value", v, b)
			}
		}
		if (c.QOP != nil) != (c.CNonce != nil && c.ncText != nil) {
			t.Fatalf("%q: qop without cnonce and nc", v)
		}
		ha1 := []byte(HA1(c.Algorithm, "u", "r", "p"))
		c.Verify(ha1, []byte("INVITE"))
	})
}

func inside(v, b []byte) bool {
	if len(v) == 0 {
		return false
	}
	for i := range v {
		if &v[i] == &b[0] {
			return i+len(b) <= len(v)
		}
	}
	return false
}

// FuzzParseChallenge: no panic; a challenge that parses can be answered,
// and the answer parses back with the same realm and nonce.
func FuzzParseChallenge(f *testing.F) {
	f.Add([]byte(`Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`))
	f.Add([]byte(`Digest realm="r\\x", nonce="n", algorithm=SHA-256, stale=true`))
	f.Add([]byte(`Digest realm="r", nonce="n", qop="auth-int"`))
	f.Fuzz(func(t *testing.T, v []byte) {
		ch, err := ParseChallenge(v)
		if err != nil {
			return
		}
		a := ch.Authorize(nil, "alice", "pw", []byte("REGISTER"), []byte("sip:example.com"), []byte("c"), 1)
		if len(a) > MaxValue {
			return
		}
		c, err := ParseCredentials(a)
		if err != nil {
			t.Fatalf("challenge %q: answer %q does not parse: %v", v, a, err)
		}
		if !bytes.Equal(c.Realm, ch.Realm) || !bytes.Equal(c.Nonce, ch.Nonce) || c.Algorithm != ch.Algorithm {
			t.Fatalf("challenge %q: answer %q changed realm, nonce or algorithm", v, a)
		}
		if !c.Verify([]byte(HA1(ch.Algorithm, "alice", string(Unquote(nil, ch.Realm)), "pw")), []byte("REGISTER")) {
			t.Fatalf("challenge %q: own answer %q refused", v, a)
		}
	})
}

// FuzzLoadUsers: no panic; what parses has every user findable, with HA1s
// of the right length in lower case.
func FuzzLoadUsers(f *testing.F) {
	f.Add([]byte("# users\nalice sip.example.com md5:939e7578ed9e3c518a452acee763bce9\n"))
	f.Add([]byte(UserLine("bob", "r", "pw") + "\n\nbob other md5:939E7578ED9E3C518A452ACEE763BCE9"))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUsers(b, "F")
		if err != nil {
			return
		}
		for _, e := range u.All() {
			got, ok := u.Lookup([]byte(e.Name), []byte(e.Realm))
			if !ok || got != e {
				t.Fatalf("%q: %s@%s not found", b, e.Name, e.Realm)
			}
			for a := MD5; a < numAlgorithms; a++ {
				if h, ok := e.HA1(a); ok && (len(h) != 2*a.size() || !bytes.Equal(h, bytes.ToLower(h))) {
					t.Fatalf("%q: HA1 %q", b, h)
				}
			}
		}
	})
}

// FuzzNonceCheck: a nonce that was not made by Nonces is never valid.
func FuzzNonceCheck(f *testing.F) {
	n := NewNonces(testKey, time.Hour)
	now := time.Unix(1_800_000_000, 0)
	f.Add(n.Append(nil, "r", now))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		valid, stale := n.Check(b, "r", now)
		own := bytes.Equal(b, n.Append(nil, "r", now))
		if (valid || stale) && !own {
			// Only a nonce of another instant could be valid; it must
			// carry a MAC the fuzzer cannot find.
			ts, _, _ := decodeNonce(b)
			if !bytes.Equal(b, n.Append(nil, "r", time.Unix(0, ts))) {
				t.Fatalf("forged nonce %q accepted", b)
			}
		}
	})
}
