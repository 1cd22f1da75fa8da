package transport

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// certDER returns the DER of tc's certificate.
func certDER(t *testing.T, tc testCert) []byte {
	t.Helper()
	b, err := os.ReadFile(tc.certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	return blk.Bytes
}

// A reloaded certificate is presented from the next handshake on;
// connections already up go on; a pair that cannot be loaded is refused
// and the one in use stays.
func TestReloadTLS(t *testing.T) {
	a, b := newTestCert(t), newTestCert(t)
	pool := x509.NewCertPool()
	for _, c := range []testCert{a, b} {
		cert, err := x509.ParseCertificate(certDER(t, c))
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(cert)
	}
	l := startLayer(t, streamConfig(TLS, a), newRecorder(echo))
	srv := addrOf(t, l, TLS)
	// presents dials a new connection and reports the certificate the
	// layer presented, and that a message makes the round trip.
	presents := func(want testCert) net.Conn {
		t.Helper()
		c := dialStream(t, TLS, srv, pool)
		if got := c.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw; !bytes.Equal(got, certDER(t, want)) {
			t.Fatalf("peer certificate is not the expected one")
		}
		roundTrip(t, c)
		return c
	}
	first := presents(a)

	if err := l.ReloadTLS(b.certFile, b.keyFile); err != nil {
		t.Fatal(err)
	}
	presents(b)
	roundTrip(t, first) // still up, still certificate A
	if got := first.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw; !bytes.Equal(got, certDER(t, a)) {
		t.Fatal("first connection's certificate changed")
	}

	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := []struct{ name, cert, key string }{
		{"missing certificate", filepath.Join(t.TempDir(), "none.pem"), b.keyFile},
		{"missing key", a.certFile, filepath.Join(t.TempDir(), "none.pem")},
		{"garbage certificate", garbage, a.keyFile},
		{"key of another certificate", a.certFile, b.keyFile},
		{"certificate as key", a.certFile, a.certFile},
	}
	for _, tt := range bad {
		if err := l.ReloadTLS(tt.cert, tt.key); err == nil {
			t.Errorf("%s: ReloadTLS succeeded", tt.name)
		}
	}
	presents(b)
	// And back to A, after the refusals.
	if err := l.ReloadTLS(a.certFile, a.keyFile); err != nil {
		t.Fatal(err)
	}
	presents(a)
}

// roundTrip sends a message on c and reads the layer's echo.
func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	writeAll(t, c, optionsMsg)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got := readExactly(t, c, len(optionsMsg)); got != optionsMsg {
		t.Fatalf("echo %q", got)
	}
}

// Outgoing connections present the reloaded certificate as client
// certificate from their next handshake on.
func TestReloadTLSClientCertificate(t *testing.T) {
	a, b := newTestCert(t), newTestCert(t)
	srvCert, err := tls.LoadX509KeyPair(a.certFile, a.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAnyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := streamConfig(TLS, a)
	cfg.Listen = nil
	l := startLayer(t, cfg, newRecorder(nil))
	dst := ln.Addr().(*net.TCPAddr).AddrPort()

	// clientCert has the layer send a message on a new connection and
	// returns the certificate it presented.
	clientCert := func() []byte {
		t.Helper()
		errc := make(chan error, 1)
		go func() { errc <- l.Send(TLS, dst, []byte(optionsMsg)) }()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		readExactly(t, c, len(optionsMsg)) // the handshake is done
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(clientCert(), certDER(t, a)) {
		t.Fatal("first connection: not certificate A")
	}
	if err := l.ReloadTLS(b.certFile, b.keyFile); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for l.HasConn(TLS, dst) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // until the layer sees the close
	}
	if !bytes.Equal(clientCert(), certDER(t, b)) {
		t.Fatal("after reload: not certificate B")
	}
}
