package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newNamedCert writes a self-signed certificate valid for the DNS names
// given only (no IP address).
func newNamedCert(t *testing.T, names ...string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tc := testCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(tc.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	tc.pool = x509.NewCertPool()
	tc.pool.AddCert(cert)
	return tc
}

// SendDest verifies the server for the name given; a connection verified
// for one name is not used for another, nor for Send (verified for the
// address), and one name has one connection however it is spelled.
func TestSendDestServerName(t *testing.T) {
	cert := newNamedCert(t, "sip.example.test", "alt.example.test")
	rec := newRecorder(nil)
	srv := startLayer(t, streamConfig(TLS, cert), rec)
	at := addrOf(t, srv, TLS)
	cfg := streamConfig(TLS, cert)
	cfg.Listen = nil
	cli := startLayer(t, cfg, newRecorder(nil))

	// The certificate names no IP address: verified for the address, the
	// handshake fails.
	if err := cli.Send(TLS, at, []byte(optionsMsg)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Send by address: %v, want a certificate error", err)
	}
	tests := []struct {
		name   string
		ok     bool
		dialed uint64 // ConnsDialed after
	}{
		{"sip.example.test", true, 1},
		{"SIP.Example.Test.", true, 1}, // same name: same connection
		{"other.example.test", false, 1},
		{"alt.example.test", true, 2}, // valid too, but its own connection
		{"sip.example.test", true, 2},
	}
	for _, tt := range tests {
		err := cli.SendDest(Dest{Proto: TLS, Addr: at, Name: tt.name}, []byte(optionsMsg))
		if tt.ok != (err == nil) {
			t.Fatalf("SendDest %q: %v, want ok %v", tt.name, err, tt.ok)
		}
		if tt.ok {
			if g := rec.next(t); g.data != optionsMsg {
				t.Fatalf("got %q", g.data)
			}
		} else if !strings.Contains(err.Error(), "other.example.test") {
			t.Errorf("SendDest %q: error %v does not name the name", tt.name, err)
		}
		if n := cli.Stats().ConnsDialed; n != tt.dialed {
			t.Errorf("after %q: %d connections dialed, want %d", tt.name, n, tt.dialed)
		}
	}
	// TCP ignores the name.
	if err := cli.SendDest(Dest{Proto: TCP, Addr: addrOf(t, startLayer(t, streamConfig(TCP, cert), rec), TCP), Name: "x.test"}, []byte(optionsMsg)); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
}
