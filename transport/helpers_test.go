package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if any goroutine outlives the tests: every Layer
// is closed by its test's cleanup, so whatever is left is a leak.
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	// Fuzzing leaves its own goroutines (signal handling) running.
	if fz := flag.Lookup("test.fuzz"); code == 0 && (fz == nil || fz.Value.String() == "") {
		t0 := time.Now()
		n, ok := waitGoroutines(base, 3*time.Second)
		if os.Getenv("TRANSPORT_LEAKDEBUG") != "" {
			fmt.Fprintf(os.Stderr, "leak wait %v, %d goroutines (base %d)\n", time.Since(t0), n, base)
		}
		if !ok {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines left, %d at start\n%s", n, base, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines polls until at most n goroutines run.
func waitGoroutines(n int, within time.Duration) (int, bool) {
	deadline := time.Now().Add(within)
	for {
		g := runtime.NumGoroutine()
		if g <= n {
			return g, true
		}
		if time.Now().After(deadline) {
			return g, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	optionsMsg = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
	okMsg      = "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
	badReqMsg  = "SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
)

// bodyMsg is a MESSAGE request carrying body.
func bodyMsg(body string) string {
	return "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: " +
		fmt.Sprint(len(body)) + "\r\n\r\n" + body
}

// got is what a recorder saw of one Packet.
type got struct {
	data     string
	proto    Proto
	src      netip.AddrPort
	local    netip.AddrPort
	conn     *Conn
	frameErr error
	pkt      Packet // a copy, Data copied too, usable for Reply later
}

// recorder records every packet and optionally answers it.
type recorder struct {
	ch    chan got
	reply func(l *Layer, p *Packet)
}

func newRecorder(reply func(l *Layer, p *Packet)) *recorder {
	return &recorder{ch: make(chan got, 1024), reply: reply}
}

func (r *recorder) HandleMessage(l *Layer, p *Packet) {
	cp := *p
	cp.Data = append([]byte(nil), p.Data...)
	r.ch <- got{data: string(p.Data), proto: p.Proto, src: p.Src, local: p.Local, conn: p.Conn, frameErr: p.FrameErr, pkt: cp}
	if r.reply != nil {
		r.reply(l, p)
	}
}

func (r *recorder) next(t *testing.T) got {
	t.Helper()
	select {
	case g := <-r.ch:
		return g
	case <-time.After(3 * time.Second):
		t.Fatal("timed out waiting for a message")
		return got{}
	}
}

func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case g := <-r.ch:
		t.Fatalf("unexpected message %q (frameErr %v)", g.data, g.frameErr)
	case <-time.After(d):
	}
}

// echo answers every message with itself.
func echo(l *Layer, p *Packet) { _ = l.Reply(p, p.Data) }

// startLayer creates and starts a layer closed at the end of the test.
func startLayer(t *testing.T, cfg Config, h Handler) *Layer {
	t.Helper()
	l, err := New(cfg, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := l.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// addrOf returns the bound address of l's first listener of proto.
func addrOf(t *testing.T, l *Layer, proto Proto) netip.AddrPort {
	t.Helper()
	for _, a := range l.Addrs() {
		if a.Proto == proto {
			return a.Addr
		}
	}
	t.Fatalf("no %s listener in %v", proto, l.Addrs())
	return netip.AddrPort{}
}

// testCert writes a self-signed certificate for 127.0.0.1, ::1 and
// localhost into a temporary directory.
type testCert struct {
	certFile, keyFile string
	pool              *x509.CertPool
}

func newTestCert(t *testing.T) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sipedge test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
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

// dialStream connects a test client to addr over proto (TLS verified
// against pool) and closes it at the end of the test.
func dialStream(t *testing.T, proto Proto, addr netip.AddrPort, pool *x509.CertPool) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 3 * time.Second}
	if proto == TLS {
		c, err = tls.DialWithDialer(d, "tcp", addr.String(), &tls.Config{RootCAs: pool, ServerName: addr.Addr().String()})
	} else {
		c, err = d.Dial("tcp", addr.String())
	}
	if err != nil {
		t.Fatalf("dial %s %s: %v", proto, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readExactly reads n bytes from c within 3 s.
func readExactly(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v (got %q)", n, err, b)
	}
	return string(b)
}

// expectClosed waits for the peer to close c: a read fails with something
// other than our own deadline. Bytes read meanwhile are returned.
func expectClosed(t *testing.T, c net.Conn, within time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after %v (read %q)", within, sb.String())
			}
			return sb.String()
		}
	}
}

// writeAll writes s, failing the test on error.
func writeAll(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// haveIPv6 reports whether ::1 can be bound.
func haveIPv6() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// streamProtos runs f as a subtest for TCP and TLS, with a certificate.
func streamProtos(t *testing.T, f func(t *testing.T, proto Proto, cert testCert)) {
	cert := newTestCert(t)
	for _, proto := range []Proto{TCP, TLS} {
		t.Run(proto.String(), func(t *testing.T) { f(t, proto, cert) })
	}
}

// streamConfig is a single-listener config for proto on 127.0.0.1.
func streamConfig(proto Proto, cert testCert) Config {
	return Config{
		Listen:      []ListenSpec{{Proto: proto, Addr: "127.0.0.1:0"}},
		TLSCertFile: cert.certFile,
		TLSKeyFile:  cert.keyFile,
		TLS:         TLSPolicy{CAs: cert.pool},
		IdleTimeout: 300 * time.Millisecond,
		Logger:      testLogger(),
	}
}

// testLogger logs to stderr when TRANSPORT_TESTLOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("TRANSPORT_TESTLOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
