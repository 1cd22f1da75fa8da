package trunk

import (
	"testing"

	"sipedge/digest"
	"sipedge/sip"
)

// FuzzAnswer: whatever challenge a provider sends, answering it does not
// panic, and credentials written are ones the server side can parse.
func FuzzAnswer(f *testing.F) {
	f.Add(`Digest realm="prov.example", nonce="abc", algorithm=MD5, qop="auth"`)
	f.Add(`Digest realm="p", nonce="n", algorithm=SHA-256, qop="auth,auth-int", opaque="o", stale=TRUE`)
	f.Add(`Digest realm="a\"b", nonce="n\\"`)
	f.Add(`Basic realm="x"`)
	f.Add(`Digest realm=prov, nonce=n, algorithm=SHA-512-256`)
	tr := &trunk{cfg: Trunk{Username: "acme", Password: "pw"}}
	f.Fuzz(func(t *testing.T, ch string) {
		for _, c := range ch {
			if c == '\r' || c == '\n' {
				return // one header line
			}
		}
		msg := "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n" +
			"To: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: " + ch + "\r\nContent-Length: 0\r\n\r\n"
		var m sip.Message
		if m.Parse([]byte(msg), nil) != nil {
			return
		}
		v, ok := tr.answer([]byte("REGISTER"), []byte("sip:prov.example"), &m)
		if !ok {
			return
		}
		if _, err := digest.ParseCredentials(v); err != nil {
			t.Fatalf("credentials %q for challenge %q: %v", v, ch, err)
		}
	})
}
