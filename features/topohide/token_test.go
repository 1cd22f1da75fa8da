package topohide

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	c, err := newCodec(testKey)
	if err != nil {
		t.Fatal(err)
	}
	v := []byte("abc123@10.0.0.5")
	tok := c.appendToken(nil, kindCallID, v)
	if got, ok := c.decode(kindCallID, tok); !ok || !bytes.Equal(got, v) {
		t.Fatalf("decode = %q, %v", got, ok)
	}
	if bytes.Contains(tok, []byte("10.0.0.5")) {
		t.Error("token shows the value")
	}
	if _, ok := c.decode(kindContact, tok); ok {
		t.Error("a Call-ID token decoded as a Contact token")
	}
	for i := range tok {
		bad := bytes.Clone(tok)
		bad[i] ^= 1
		if got, ok := c.decode(kindCallID, bad); ok && !bytes.Equal(got, v) {
			t.Errorf("altered token (byte %d) decoded to %q", i, got)
		}
	}
	other, _ := newCodec(bytes.Repeat([]byte{2}, keyLen))
	if _, ok := other.decode(kindCallID, tok); ok {
		t.Error("decoded under another key")
	}
}

func TestLoadKeyKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := LoadKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKey(dir)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second start: %v, same key %v", err, bytes.Equal(k1, k2))
	}
	if st, _ := os.Stat(filepath.Join(dir, KeyFile)); st.Mode().Perm()&0o077 != 0 {
		t.Errorf("key file mode %v: readable by others", st.Mode())
	}
	os.WriteFile(filepath.Join(dir, KeyFile), []byte("short"), 0o600)
	if _, err := LoadKey(dir); err == nil {
		t.Error("a truncated key was accepted")
	}
}

// FuzzDecode: no token, however made, panics the decoders; what decodes
// is what was encoded.
func FuzzDecode(f *testing.F) {
	c, _ := newCodec(testKey)
	f.Add(c.appendToken(nil, kindRoutes, appendRouteSet(nil, [][]byte{[]byte("<sip:10.0.0.9;lr>")})), []byte("x"))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAA"), []byte{})
	f.Add([]byte("!!"), []byte("<sip:a>"))
	f.Fuzz(func(t *testing.T, tok, v []byte) {
		for _, k := range []byte{kindContact, kindCallID, kindRoutes} {
			if b, ok := c.decode(k, tok); ok && k == kindRoutes {
				parseRouteSet(b)
			}
		}
		parseRouteSet(v)
		enc := c.appendToken(nil, kindContact, v)
		if got, ok := c.decode(kindContact, enc); len(enc) <= maxToken && (!ok || !bytes.Equal(got, v)) {
			t.Fatalf("round trip of %q: %q %v", v, got, ok)
		}
	})
}
