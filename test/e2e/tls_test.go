package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate with the given common name
// and its key to certFile and keyFile. A name that is an IP address goes
// in the certificate's IP addresses (clients check those for an IP).
func writeCert(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		IPAddresses:  ipSAN(cn),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// peerName connects over TLS and returns the common name of the
// certificate sipedge presents.
func peerName(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestReloadTLSCertificate: a certificate replaced on disk is presented to
// the next TLS client after SIGHUP; a connection already up stays up; a
// broken pair is refused and the running one stays.
func TestReloadTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, "old.sipedge.test")
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	file := filepath.Join(dir, "sipedge.yaml")
	cfg := "dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: " + filepath.Join(dir, "data") + "\ntls:\n  cert: " + certFile + "\n  key: " + keyFile + "\n"
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file, "--listen", "udp:127.0.0.1:"+strconv.Itoa(freePort(t)), "--listen", "tls:"+addr)
	if got := peerName(t, addr); got != "old.sipedge.test" {
		t.Fatalf("first certificate: %s", got)
	}
	held, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	writeCert(t, certFile, keyFile, "new.sipedge.test")
	s.reload(t, file, cfg, "configuration reloaded")
	if got := peerName(t, addr); got != "new.sipedge.test" {
		t.Fatalf("after SIGHUP the next client got %s, want the new certificate", got)
	}
	// The connection made before the reload still works: a CRLF ping is
	// answered (RFC 5626 §3.5.1).
	held.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := held.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatalf("old connection: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := held.Read(buf); err != nil || string(buf) != "\r\n" {
		t.Fatalf("old connection after the reload: %q %v", buf, err)
	}

	// A key that is not the certificate's: refused, the running pair stays.
	writeCert(t, filepath.Join(dir, "other.pem"), keyFile, "other.sipedge.test")
	s.reload(t, file, cfg, "configuration not reloaded")
	if got := peerName(t, addr); got != "new.sipedge.test" {
		t.Fatalf("after a refused reload: %s", got)
	}
}

// ipSAN is name as an IP address SAN, or none.
func ipSAN(name string) []net.IP {
	if ip := net.ParseIP(name); ip != nil {
		return []net.IP{ip}
	}
	return nil
}
