package transport

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	cert := newTestCert(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"hostname", Config{Listen: []ListenSpec{{UDP, "localhost:5060"}}}, `"localhost:5060"`},
		{"no port", Config{Listen: []ListenSpec{{TCP, "127.0.0.1"}}}, `"127.0.0.1"`},
		{"bad proto", Config{Listen: []ListenSpec{{0, "127.0.0.1:0"}}}, "invalid protocol"},
		{"TLS without cert", Config{Listen: []ListenSpec{{TLS, "127.0.0.1:0"}}}, "TLSCertFile"},
		{"missing cert file", Config{Listen: []ListenSpec{{TLS, "127.0.0.1:0"}}, TLSCertFile: "/nonexistent", TLSKeyFile: cert.keyFile}, "certificate"},
		{"key without cert", Config{TLSKeyFile: cert.keyFile}, "TLSCertFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, newRecorder(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %s", err, tt.want)
			}
		})
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New accepted a nil Handler")
	}
}

func TestStartAddressInUse(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busyUDP, busyTCP := pc.LocalAddr().String(), ln.Addr().String()
	tests := []struct {
		name string
		spec ListenSpec
	}{
		{"UDP", ListenSpec{UDP, busyUDP}},
		{"TCP", ListenSpec{TCP, busyTCP}},
		{"TLS", ListenSpec{TLS, busyTCP}},
	}
	cert := newTestCert(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			cfg := Config{
				// A good listener first: it must be released on failure.
				Listen:      []ListenSpec{{UDP, "127.0.0.1:0"}, {TCP, "127.0.0.1:0"}, tt.spec},
				TLSCertFile: cert.certFile, TLSKeyFile: cert.keyFile,
			}
			l, err := New(cfg, newRecorder(nil))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			err = l.Start()
			if err == nil || !strings.Contains(err.Error(), tt.spec.Addr) || !strings.Contains(err.Error(), tt.spec.Proto.String()) {
				t.Fatalf("Start: %v; want an error naming %s %s", err, tt.spec.Proto, tt.spec.Addr)
			}
			if len(l.Addrs()) != 0 {
				t.Errorf("Addrs after failed Start: %v", l.Addrs())
			}
			if n := runtime.NumGoroutine(); n > base {
				t.Errorf("failed Start left %d goroutines running", n-base)
			}
		})
	}
}

// Close stops everything the layer started, whatever state its
// connections are in, and waits for it.
func TestCloseNoGoroutineLeak(t *testing.T) {
	cert := newTestCert(t)
	base := runtime.NumGoroutine()

	rec := newRecorder(echo)
	l, err := New(Config{
		Listen: []ListenSpec{
			{UDP, "127.0.0.1:0"}, {TCP, "127.0.0.1:0"}, {TLS, "127.0.0.1:0"},
		},
		TLSCertFile: cert.certFile, TLSKeyFile: cert.keyFile, TLS: TLSPolicy{CAs: cert.pool},
		UDPReaders: 3,
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	// (No check that the count went up: goroutines of other tests that end
	// meanwhile make it unreliable; what matters is the count after Close.)

	// UDP traffic.
	u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addrOf(t, l, UDP)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_, _ = u.Write([]byte(optionsMsg))
	rec.next(t)
	// An idle TCP connection, one with half a message, a TLS one, and a
	// TCP connection to the TLS port that never handshakes.
	idle := dialStream(t, TCP, addrOf(t, l, TCP), nil)
	half := dialStream(t, TCP, addrOf(t, l, TCP), nil)
	writeAll(t, half, "OPTIONS sip:a@b SIP/2.0\r\nContent-Len")
	tlsc := dialStream(t, TLS, addrOf(t, l, TLS), cert.pool)
	writeAll(t, tlsc, optionsMsg)
	rec.next(t)
	dialStream(t, TCP, addrOf(t, l, TLS), nil)
	// And a dialed connection.
	peer, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if err := l.Send(TCP, peer.Addr().(*net.TCPAddr).AddrPort(), []byte(optionsMsg)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return l.Stats().ConnsOpen == 5 })

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited for every goroutine: no polling should be needed,
	// but allow the runtime a moment to reap exited ones.
	if n, ok := waitGoroutines(base, 2*time.Second); !ok {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
	for _, c := range []net.Conn{idle, half, tlsc} {
		expectClosed(t, c, time.Second)
	}
	if s := l.Stats(); s.ConnsOpen != 0 {
		t.Errorf("ConnsOpen = %d after Close", s.ConnsOpen)
	}

	// Closed for good.
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := l.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	if err := l.Send(TCP, netip.MustParseAddrPort("127.0.0.1:9"), []byte(optionsMsg)); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
}

// Concurrent Sends to a new destination share one dial.
func TestConcurrentSendsShareDial(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := startLayer(t, Config{}, newRecorder(nil))
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() { errs <- l.Send(TCP, dst, []byte(optionsMsg)) }()
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Whole messages, never interleaved.
	if got := readExactly(t, peer, n*len(optionsMsg)); got != strings.Repeat(optionsMsg, n) {
		t.Errorf("peer read %q", trunc(got))
	}
	if s := l.Stats(); s.ConnsDialed != 1 {
		t.Errorf("ConnsDialed = %d", s.ConnsDialed)
	}
}
