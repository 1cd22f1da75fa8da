package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCA issues certificates for the tests of the TLS policy.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
	file   string // the CA certificate, PEM
	serial atomic.Int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sipedge test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool(), file: filepath.Join(t.TempDir(), "ca.pem")}
	ca.pool.AddCert(cert)
	ca.serial.Store(1)
	if err := os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes a leaf for 127.0.0.1, ::1 and dnsNames, valid for server
// and client authentication, and writes it as a testCert.
func (ca *testCA) issue(t *testing.T, dnsNames ...string) (testCert, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: "sipedge test leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tc := testCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: ca.pool}
	if err := os.WriteFile(tc.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return tc, pair
}

// logLines is an slog handler keeping the Warn lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (h *logLines) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }

func (h *logLines) Handle(_ context.Context, r slog.Record) error {
	var sb strings.Builder
	sb.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		sb.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, sb.String())
	h.mu.Unlock()
	return nil
}

func (h *logLines) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logLines) WithGroup(string) slog.Handler      { return h }

func (h *logLines) warns(sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, l := range h.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// tlsClient dials addr with cfg and does one SIP round trip on the echo
// layer; it reports the error of the first step that failed. With TLS 1.3
// the client's handshake ends before the server has checked the client's
// certificate: a refusal then shows on the first read.
func tlsClient(addr netip.AddrPort, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr.String(), cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(optionsMsg)); err != nil {
		return err
	}
	b := make([]byte, len(optionsMsg))
	if _, err := c.Read(b); err != nil {
		return err
	}
	if !bytes.Equal(b, []byte(optionsMsg)) {
		return errors.New("echo: " + string(b))
	}
	return nil
}

// verify_clients: with require, a client without a certificate or with one
// from another CA is refused at the handshake, counted, and logged once per
// source; one with a certificate from the CA is served. With request, a
// client may send none, but not an untrusted one.
func TestVerifyClients(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	srvCert, _ := ca.issue(t, "localhost")
	_, good := ca.issue(t)
	_, stranger := other.issue(t)
	for _, tt := range []struct {
		auth                     ClientAuth
		none, untrusted, trusted bool // served?
	}{
		{ClientCertNone, true, true, true},
		{ClientCertRequest, true, false, true},
		{ClientCertRequire, false, false, true},
	} {
		t.Run(tt.auth.String(), func(t *testing.T) {
			logs := &logLines{}
			cfg := streamConfig(TLS, srvCert)
			cfg.TLS = TLSPolicy{CAs: ca.pool, VerifyClients: tt.auth}
			cfg.Logger = slog.New(logs)
			l := startLayer(t, cfg, newRecorder(echo))
			srv := addrOf(t, l, TLS)
			client := func(certs ...tls.Certificate) error {
				return tlsClient(srv, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", Certificates: certs})
			}
			refused := 0
			for i, c := range []struct {
				name   string
				certs  []tls.Certificate
				served bool
			}{
				{"no certificate", nil, tt.none},
				{"no certificate again", nil, tt.none},
				{"certificate of another CA", []tls.Certificate{stranger}, tt.untrusted},
				{"certificate of the CA", []tls.Certificate{good}, tt.trusted},
			} {
				err := client(c.certs...)
				if (err == nil) != c.served {
					t.Errorf("%d %s: served %v (err %v), want %v", i, c.name, err == nil, err, c.served)
				}
				if !c.served {
					refused++
				}
			}
			waitFor(t, func() bool { return l.Stats().TLSClientCertsRefused == uint64(refused) })
			s := l.Stats()
			if s.TLSHandshakeErrorsIn != uint64(refused) || s.TLSHandshakesIn != uint64(4-refused) {
				t.Errorf("stats %+v, want %d refused of 4", s, refused)
			}
			// Every refusal came from 127.0.0.1: one line.
			if n := logs.warns("TLS client refused"); n != min(refused, 1) {
				t.Errorf("%d warnings for %d refusals from one source, want %d", n, refused, min(refused, 1))
			}
		})
	}
}

// The verifying policy is replaced under a running listener: a client of a
// CA that was not trusted is served once SetTLSPolicy trusts it.
func TestSetTLSPolicyClientCAs(t *testing.T) {
	ca, next := newTestCA(t), newTestCA(t)
	srvCert, _ := ca.issue(t, "localhost")
	_, newClient := next.issue(t)
	cfg := streamConfig(TLS, srvCert)
	cfg.TLS = TLSPolicy{CAs: ca.pool, VerifyClients: ClientCertRequire}
	l := startLayer(t, cfg, newRecorder(echo))
	srv := addrOf(t, l, TLS)
	dial := func() error {
		return tlsClient(srv, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", Certificates: []tls.Certificate{newClient}})
	}
	if err := dial(); err == nil {
		t.Fatal("client of an untrusted CA served")
	}
	both := ca.pool.Clone()
	both.AddCert(next.cert)
	if err := l.SetTLSPolicy(TLSPolicy{CAs: both, VerifyClients: ClientCertRequire}); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Fatalf("after SetTLSPolicy: %v", err)
	}
}

// Outgoing TLS: the next hop's certificate must chain to CAs and be valid
// for the name asked (SendDest) or the address (Send); SkipServerVerify
// accepts anything.
func TestVerifyServer(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	srvCert, _ := ca.issue(t, "sip.example.test")
	b := startLayer(t, streamConfig(TLS, srvCert), newRecorder(func(l *Layer, p *Packet) {
		_ = l.Reply(p, []byte(okMsg))
	}))
	dst := addrOf(t, b, TLS)
	for _, tt := range []struct {
		name   string
		policy TLSPolicy
		server string // Dest.Name
		ok     bool
	}{
		{"trusted, address", TLSPolicy{CAs: ca.pool}, "", true},
		{"trusted, name", TLSPolicy{CAs: ca.pool}, "sip.example.test", true},
		{"trusted, name in another case", TLSPolicy{CAs: ca.pool}, "SIP.Example.Test.", true},
		{"trusted, wrong name", TLSPolicy{CAs: ca.pool}, "other.example.test", false},
		{"another CA", TLSPolicy{CAs: other.pool}, "sip.example.test", false},
		{"system roots", TLSPolicy{}, "", false},
		{"not verified, another CA", TLSPolicy{CAs: other.pool, SkipServerVerify: true}, "other.example.test", true},
		{"TLS 1.3 only", TLSPolicy{CAs: ca.pool, MinVersion: tls.VersionTLS13}, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(nil)
			a := startLayer(t, Config{TLS: tt.policy, Logger: testLogger()}, rec)
			err := a.SendDest(Dest{Proto: TLS, Addr: dst, Name: tt.server}, []byte(optionsMsg))
			if (err == nil) != tt.ok {
				t.Fatalf("SendDest: %v, want success %v", err, tt.ok)
			}
			s := a.Stats()
			if tt.ok {
				if g := rec.next(t); g.data != okMsg {
					t.Fatalf("got %+v", g)
				}
				if s.TLSHandshakesOut != 1 || s.TLSHandshakeErrorsOut != 0 {
					t.Errorf("stats %+v", s)
				}
				return
			}
			if s.TLSHandshakesOut != 0 || s.TLSHandshakeErrorsOut != 1 || s.ConnsOpen != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// min_version 1.3 refuses a TLS 1.2 client.
func TestTLSMinVersion(t *testing.T) {
	ca := newTestCA(t)
	srvCert, _ := ca.issue(t, "localhost")
	cfg := streamConfig(TLS, srvCert)
	cfg.TLS = TLSPolicy{MinVersion: tls.VersionTLS13}
	l := startLayer(t, cfg, newRecorder(echo))
	srv := addrOf(t, l, TLS)
	if err := tlsClient(srv, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS 1.2 client served with MinVersion 1.3")
	}
	if err := tlsClient(srv, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}); err != nil {
		t.Errorf("TLS 1.3 client: %v", err)
	}
	waitFor(t, func() bool { s := l.Stats(); return s.TLSHandshakeErrorsIn == 1 && s.TLSHandshakesIn == 1 })
	if s := l.Stats(); s.TLSClientCertsRefused != 0 {
		t.Errorf("a version mismatch counted as a client certificate refusal: %+v", s)
	}
}

func TestTLSPolicyErrors(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := LoadCAFile(ca.file); err != nil || !p.Equal(ca.pool) {
		t.Errorf("LoadCAFile(CA): %v", err)
	}
	for _, f := range []string{filepath.Join(dir, "missing.pem"), notPEM} {
		if _, err := LoadCAFile(f); err == nil {
			t.Errorf("LoadCAFile(%s) succeeded", f)
		}
	}
	for _, p := range []TLSPolicy{
		{VerifyClients: ClientCertRequire},
		{VerifyClients: ClientCertRequest},
		{VerifyClients: 7, CAs: ca.pool},
		{MinVersion: tls.VersionTLS11},
	} {
		if _, err := New(Config{TLS: p}, newRecorder(nil)); err == nil {
			t.Errorf("New accepted %+v", p)
		}
		l, err := New(Config{}, newRecorder(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetTLSPolicy(p); err == nil {
			t.Errorf("SetTLSPolicy accepted %+v", p)
		}
		l.Close()
	}
}
