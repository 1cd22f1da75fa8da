//go:build linux

package media

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain fails the run if any goroutine outlives the tests: every Relay
// is closed by its test's cleanup, so whatever is left is a leak.
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 && !fuzzing() {
		if n, ok := waitCount(runtime.NumGoroutine, base, 5*time.Second); !ok {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines left, %d at start\n%s", n, base, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// fuzzing reports whether this process runs a fuzz target, whose engine
// keeps goroutines of its own (a signal handler) until exit.
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// waitCount polls f until it is at most n, or within has passed.
func waitCount(f func() int, n int, within time.Duration) (int, bool) {
	deadline := time.Now().Add(within)
	for {
		v := f()
		if v <= n {
			return v, true
		}
		if time.Now().After(deadline) {
			return v, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline: the host is noisy, so nothing here asserts a duration.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// countDir counts the entries of a /proc directory (fds, threads).
func countDir(t testing.TB, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func openFDs(t testing.TB) int { return countDir(t, "/proc/self/fd") }

var lo4 = netip.MustParseAddr("127.0.0.1")

// newRelay starts a relay on its own port range and closes it at cleanup.
func newRelay(t testing.TB, cfg Config) *Relay {
	t.Helper()
	if cfg.PortMin == 0 {
		cfg.PortMin, cfg.PortMax = 41000, 41999
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// endpoint is a phone's media socket.
type endpoint struct {
	t    testing.TB
	conn *net.UDPConn
	addr netip.AddrPort
}

func newEndpoint(t testing.TB, network string, ip netip.Addr) *endpoint {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &endpoint{t: t, conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
}

func (e *endpoint) send(to netip.AddrPort, b []byte) {
	e.t.Helper()
	if _, err := e.conn.WriteToUDPAddrPort(b, to); err != nil {
		e.t.Fatal(err)
	}
}

// recv returns the next datagram and its source, failing after a deadline.
func (e *endpoint) recv() ([]byte, netip.AddrPort) {
	e.t.Helper()
	buf := make([]byte, 2048)
	e.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, src, err := e.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		e.t.Fatalf("endpoint %v: %v", e.addr, err)
	}
	return buf[:n], src
}

// expect receives one datagram and checks its content and source.
func (e *endpoint) expect(want []byte, from netip.AddrPort) {
	e.t.Helper()
	got, src := e.recv()
	if string(got) != string(want) {
		e.t.Fatalf("endpoint %v got % x, want % x", e.addr, got, want)
	}
	if src != from {
		e.t.Fatalf("endpoint %v got packet from %v, want %v", e.addr, src, from)
	}
}

// quiet reports whether nothing arrives within d (used only after a
// marker packet proved the relay already passed the point of interest).
func (e *endpoint) quiet(d time.Duration) bool {
	buf := make([]byte, 2048)
	e.conn.SetReadDeadline(time.Now().Add(d))
	_, _, err := e.conn.ReadFromUDPAddrPort(buf)
	return err != nil
}

// setup is one stream with an RTP and RTCP endpoint on each side, all
// on loopback, the SDP addresses set.
type setup struct {
	r                  *Relay
	c                  *Call
	s                  *Stream
	a, b, aRTCP, bRTCP *endpoint
}

func newSetup(t testing.TB, cfg Config) *setup {
	t.Helper()
	r := newRelay(t, cfg)
	c, err := r.Call("call-1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Stream(0, lo4, lo4)
	if err != nil {
		t.Fatal(err)
	}
	x := &setup{r: r, c: c, s: s,
		a: newEndpoint(t, "udp4", lo4), b: newEndpoint(t, "udp4", lo4),
		aRTCP: newEndpoint(t, "udp4", lo4), bRTCP: newEndpoint(t, "udp4", lo4)}
	if err := s.SetPeer(SideA, x.a.addr, x.aRTCP.addr); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPeer(SideB, x.b.addr, x.bRTCP.addr); err != nil {
		t.Fatal(err)
	}
	return x
}

func (x *setup) local(side Side) (rtp, rtcp netip.AddrPort) { return x.s.Local(side) }
