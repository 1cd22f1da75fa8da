package transport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/internal/race"
	"sipedge/sip"
)

func TestUDPEcho(t *testing.T) {
	tests := []struct {
		name   string
		listen string
		net    string
		ipv6   bool
	}{
		{"IPv4", "127.0.0.1:0", "udp4", false},
		{"IPv6", "[::1]:0", "udp6", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ipv6 && !haveIPv6() {
				t.Skip("::1 unavailable")
			}
			rec := newRecorder(echo)
			l := startLayer(t, Config{Listen: []ListenSpec{{UDP, tt.listen}}, UDPReaders: 2}, rec)
			srv := addrOf(t, l, UDP)
			c, err := net.DialUDP(tt.net, nil, net.UDPAddrFromAddrPort(srv))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(optionsMsg)); err != nil {
				t.Fatal(err)
			}
			g := rec.next(t)
			me := c.LocalAddr().(*net.UDPAddr).AddrPort()
			if g.data != optionsMsg || g.proto != UDP || g.src != me || g.local != srv || g.conn != nil {
				t.Errorf("got %+v; want data %q src %v local %v", g, optionsMsg, me, srv)
			}
			if tt.ipv6 != g.src.Addr().Is6() {
				t.Errorf("src %v has the wrong family", g.src)
			}
			buf := make([]byte, 2000)
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != optionsMsg {
				t.Fatalf("echo: %q, %v", buf[:n], err)
			}
		})
	}
}

// A lone "[::]" listener is dual-stack: IPv4 clients reach it and show up
// as 4-byte addresses; both families can be sent to from it.
func TestUDPDualStackUnmaps(t *testing.T) {
	if !haveIPv6() {
		t.Skip("IPv6 unavailable")
	}
	rec := newRecorder(echo)
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "[::]:0"}}}, rec)
	port := addrOf(t, l, UDP).Port()
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(optionsMsg)); err != nil {
		t.Fatal(err)
	}
	g := rec.next(t)
	if !g.src.Addr().Is4() || g.src != c.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("Src = %v, want unmapped %v", g.src, c.LocalAddr())
	}
	buf := make([]byte, 2000)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != optionsMsg {
		t.Fatalf("echo: %q, %v", buf[:n], err)
	}
	// Send picks the dual-stack socket for an IPv4 destination.
	if err := l.Send(UDP, g.src, []byte(okMsg)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != okMsg {
		t.Fatalf("send: %q, %v", buf[:n], err)
	}
}

// "0.0.0.0:P" and "[::]:P" coexist: the IPv6 socket is made IPv6-only.
func TestUDPAndTCPWildcardsCoexist(t *testing.T) {
	if !haveIPv6() {
		t.Skip("IPv6 unavailable")
	}
	// Find a port free for both UDP and TCP; retry on the rare collision.
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		cfg := Config{Listen: []ListenSpec{
			{UDP, fmt.Sprintf("0.0.0.0:%d", port)},
			{UDP, fmt.Sprintf("[::]:%d", port)},
			{TCP, fmt.Sprintf("0.0.0.0:%d", port)},
			{TCP, fmt.Sprintf("[::]:%d", port)},
		}}
		rec := newRecorder(echo)
		l, err := New(cfg, rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Start(); err != nil {
			if attempt < 5 && strings.Contains(err.Error(), "in use") {
				continue
			}
			t.Fatalf("Start: %v", err)
		}
		defer l.Close()
		if n := len(l.Addrs()); n != 4 {
			t.Fatalf("Addrs = %v", l.Addrs())
		}
		for _, dst := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port)} {
			c, err := net.Dial("udp", dst)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte(optionsMsg)); err != nil {
				t.Fatal(err)
			}
			g := rec.next(t)
			if g.src != c.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Errorf("%s: Src %v, want %v", dst, g.src, c.LocalAddr())
			}
			wantLocal := "0.0.0.0"
			if strings.HasPrefix(dst, "[") {
				wantLocal = "::"
			}
			if g.local.Addr().String() != wantLocal {
				t.Errorf("%s: arrived on %v, want the %s listener", dst, g.local, wantLocal)
			}
			c.Close()
		}
		return
	}
}

func TestUDPDropsKeepAlivesAndMarksOversize(t *testing.T) {
	rec := newRecorder(nil)
	lim := sip.DefaultLimits
	lim.MaxMessageSize = 200
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}, Limits: &lim, UDPReaders: 1}, rec)
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addrOf(t, l, UDP)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, ka := range []string{"\r\n\r\n", "\r\n", "ab", "", " \r\n \r\n"} {
		if _, err := c.Write([]byte(ka)); err != nil {
			t.Fatal(err)
		}
	}
	big := bodyMsg(strings.Repeat("x", 500))
	if _, err := c.Write([]byte(big)); err != nil {
		t.Fatal(err)
	}
	g := rec.next(t) // the keep-alives were dropped, so this is the big one
	if len(g.data) != 201 || g.data != big[:201] {
		t.Errorf("oversized datagram handed up as %d bytes, want MaxMessageSize+1 = 201", len(g.data))
	}
	rec.none(t, 50*time.Millisecond)
	s := l.Stats()
	if s.DatagramsDropped != 5 || s.DatagramsTooLarge != 1 || s.Received != 1 {
		t.Errorf("stats = %+v", s)
	}
}

// Several readers per address: 800 datagrams from 16 clients are all
// answered, and handlers really run concurrently (the flows spread over
// the SO_REUSEPORT group's sockets; 16 flows all landing on one of 4
// sockets has a chance of 4^-15).
func TestUDPConcurrentReaders(t *testing.T) {
	var active, maxActive atomic.Int32
	h := HandlerFunc(func(l *Layer, p *Packet) {
		n := active.Add(1)
		for {
			m := maxActive.Load()
			if n <= m || maxActive.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		active.Add(-1)
		_ = l.Reply(p, p.Data)
	})
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}, UDPReaders: 4}, h)
	srv := net.UDPAddrFromAddrPort(addrOf(t, l, UDP))
	const clients, each = 16, 50
	var wg sync.WaitGroup
	var answered atomic.Int32
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialUDP("udp4", nil, srv)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			want := map[string]bool{}
			for j := range each {
				m := fmt.Sprintf("OPTIONS sip:%d-%d@b SIP/2.0\r\nContent-Length: 0\r\n\r\n", i, j)
				want[m] = true
				if _, err := c.Write([]byte(m)); err != nil {
					t.Error(err)
					return
				}
			}
			buf := make([]byte, 2000)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for len(want) > 0 {
				n, err := c.Read(buf)
				if err != nil {
					t.Errorf("client %d: %d answers missing: %v", i, len(want), err)
					return
				}
				if want[string(buf[:n])] {
					delete(want, string(buf[:n]))
					answered.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if answered.Load() != clients*each {
		t.Errorf("answered %d of %d", answered.Load(), clients*each)
	}
	if maxActive.Load() < 2 {
		t.Errorf("handlers never ran concurrently (max %d)", maxActive.Load())
	}
}

// Send over UDP leaves from the listener's socket, so the peer sees the
// well-known port.
func TestUDPSendFromListener(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}}, newRecorder(nil))
	srv := addrOf(t, l, UDP)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Destinations given as v4-mapped addresses work too.
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
	for _, d := range []netip.AddrPort{dst, mapped} {
		if err := l.Send(UDP, d, []byte(optionsMsg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2000)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != optionsMsg || from != srv {
			t.Fatalf("got %q from %v (%v), want from %v", buf[:n], from, err, srv)
		}
	}
	if err := l.Send(UDP, netip.MustParseAddrPort("[::1]:5060"), []byte(optionsMsg)); err == nil {
		t.Error("Send to IPv6 without an IPv6 listener succeeded")
	}
}

// The UDP receive path allocates nothing per datagram.
func TestUDPReadPathNoAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	done := make(chan struct{}, 1)
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}, UDPReaders: 1},
		HandlerFunc(func(*Layer, *Packet) { done <- struct{}{} }))
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addrOf(t, l, UDP)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte(optionsMsg)
	allocs := testing.AllocsPerRun(200, func() {
		_, _ = c.Write(msg)
		<-done
	})
	if allocs >= 1 {
		t.Errorf("%.1f allocations per datagram", allocs)
	}
}

// One flow's datagrams are handled one after the other in the order they
// came, however many readers there are: each client's numbered messages
// reach the handler in order even though the handler takes a random time.
// With several goroutines reading one socket this fails at once.
func TestUDPFlowOrder(t *testing.T) {
	if !reusePortGroups {
		t.Skip("per-flow order needs SO_REUSEPORT groups (Linux)")
	}
	var mu sync.Mutex
	seen := map[string][]int{}
	var total atomic.Int32
	h := HandlerFunc(func(l *Layer, p *Packet) {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		var n int
		fmt.Sscanf(string(p.Data[len("OPTIONS sip:"):]), "%d", &n)
		mu.Lock()
		seen[p.Src.String()] = append(seen[p.Src.String()], n)
		mu.Unlock()
		total.Add(1)
	})
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}, UDPReaders: 4, UDPReadBuffer: 4 << 20}, h)
	srv := net.UDPAddrFromAddrPort(addrOf(t, l, UDP))
	const clients, each = 8, 100
	for range clients {
		c, err := net.DialUDP("udp4", nil, srv)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for j := range each {
			if _, err := fmt.Fprintf(c, "OPTIONS sip:%d@b SIP/2.0\r\nContent-Length: 0\r\n\r\n", j); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for total.Load() < clients*each && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != clients {
		t.Fatalf("%d flows seen, want %d", len(seen), clients)
	}
	for src, got := range seen {
		if len(got) != each {
			t.Errorf("%s: %d of %d messages", src, len(got), each)
		}
		for i, n := range got {
			if n != i {
				t.Errorf("%s: message %d handled at position %d: out of order", src, n, i)
				break
			}
		}
	}
}

// A UDP port held by another socket (another process, even one with an
// SO_REUSEPORT group of its own) is refused, not shared; the group's
// sockets are not listed as addresses of their own.
func TestUDPPortInUse(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}, UDPReaders: 3}, newRecorder(nil))
	if a := l.Addrs(); len(a) != 1 {
		t.Fatalf("Addrs = %v, want one UDP listener", a)
	}
	busy := addrOf(t, l, UDP)
	l2, err := New(Config{Listen: []ListenSpec{{UDP, busy.String()}}, UDPReaders: 3}, newRecorder(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Start(); err == nil {
		l2.Close()
		t.Fatalf("a second layer bound %v, which is in use", busy)
	} else if !strings.Contains(err.Error(), busy.String()) {
		t.Errorf("error %q does not name the address", err)
	}
}
