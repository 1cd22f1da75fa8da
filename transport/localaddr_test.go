package transport

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"sipedge/internal/race"
)

// LocalFor's choice, with the kernel's routes given (put in the cache
// RouteSource reads) rather than asked for.
func TestLocalForChoice(t *testing.T) {
	ap := netip.MustParseAddrPort
	a := netip.MustParseAddr
	u := func(s string) Listener { return Listener{UDP, ap(s)} }
	gateway := []Listener{u("10.0.0.1:5060"), u("203.0.113.1:5060"), {TCP, ap("0.0.0.0:5060")}}
	tests := []struct {
		name      string
		listeners []Listener
		proto     Proto
		dst, via  string // via: the kernel's source address towards dst
		want      string // "" means none
	}{
		{"gateway outside", gateway, UDP, "198.51.100.7", "203.0.113.1", "203.0.113.1:5060"},
		{"gateway inside", gateway, UDP, "10.0.0.9", "10.0.0.1", "10.0.0.1:5060"},
		{"v4-mapped destination", gateway, UDP, "::ffff:198.51.100.7", "203.0.113.1", "203.0.113.1:5060"},
		{"wildcard gets the route's source", gateway, TCP, "198.51.100.7", "203.0.113.1", "203.0.113.1:5060"},
		{"no listener of the protocol", gateway, TLS, "198.51.100.7", "203.0.113.1", ""},
		{"specific of the same scope before wildcard",
			[]Listener{u("0.0.0.0:5060"), u("192.0.2.5:5070")}, UDP, "198.51.100.7", "192.0.2.1", "192.0.2.5:5070"},
		{"wildcard before loopback for the outside",
			[]Listener{u("127.0.0.1:5080"), u("0.0.0.0:5060")}, UDP, "198.51.100.7", "192.0.2.1", "192.0.2.1:5060"},
		{"public before loopback for the outside",
			[]Listener{u("127.0.0.1:5080"), u("192.0.2.5:5060")}, UDP, "198.51.100.7", "192.0.2.1", "192.0.2.5:5060"},
		{"loopback for loopback",
			[]Listener{u("0.0.0.0:5060"), u("127.0.0.1:5080")}, UDP, "127.0.0.1", "127.0.0.1", "127.0.0.1:5080"},
		{"first of equals",
			[]Listener{u("192.0.2.5:5060"), u("192.0.2.6:5060")}, UDP, "198.51.100.7", "192.0.2.1", "192.0.2.5:5060"},
		{"dual-stack wildcard serves IPv4",
			[]Listener{u("[::]:5060")}, UDP, "198.51.100.7", "192.0.2.1", "192.0.2.1:5060"},
		{"IPv6",
			[]Listener{u("10.0.0.1:5060"), u("[2001:db8::1]:5060"), u("[2001:db8:1::1]:5060")}, UDP, "2001:db8:1::9", "2001:db8:1::1", "[2001:db8:1::1]:5060"},
		{"no listener of the family",
			[]Listener{u("[2001:db8::1]:5060")}, UDP, "198.51.100.7", "192.0.2.1", ""},
		{"none", nil, UDP, "198.51.100.7", "192.0.2.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(Config{}, newRecorder(nil))
			if err != nil {
				t.Fatal(err)
			}
			dst := a(tt.dst)
			l.dests.listeners = tt.listeners
			l.dests.m = map[netip.Addr]destEntry{dst.Unmap(): {src: a(tt.via)}}
			got, ok := l.LocalFor(tt.proto, dst)
			if tt.want == "" {
				if ok {
					t.Fatalf("LocalFor = %v, want none", got)
				}
				return
			}
			if !ok || got != ap(tt.want) {
				t.Fatalf("LocalFor = %v %v, want %v", got, ok, tt.want)
			}
			if src := l.RouteSource(dst); src != a(tt.via) {
				t.Errorf("RouteSource = %v", src)
			}
		})
	}
}

// RouteSource asks the kernel once per destination, and the cache is
// bounded.
func TestRouteSourceCache(t *testing.T) {
	l, err := New(Config{}, newRecorder(nil))
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if got := l.RouteSource(lo); got != lo {
		t.Fatalf("RouteSource(%v) = %v", lo, got)
	}
	if got := l.RouteSource(netip.MustParseAddr("::ffff:127.0.0.1")); got != lo {
		t.Fatalf("RouteSource(v4-mapped) = %v", got)
	}
	l.dests.m = make(map[netip.Addr]destEntry)
	for i := range maxRouteCache {
		l.dests.m[netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})] = destEntry{src: lo}
	}
	l.RouteSource(lo)
	if n := len(l.dests.m); n != 1 {
		t.Fatalf("%d entries after overflow, want 1", n)
	}
}

// With two UDP listeners a datagram leaves from the one LocalFor names for
// its destination, Send and SendBatch alike, and is tapped with that
// address. (On loopback the kernel routes all of 127/8 from 127.0.0.1, so
// this checks only that sending agrees with LocalFor;
// TestUDPSourcePerDestinationNetns checks the choice on two interfaces.)
func TestUDPSendFromRoutedListener(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.2:0"}, {UDP, "127.0.0.1:0"}}}, newRecorder(nil))
	taps, _ := recordTaps(t, l)
	for _, at := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.1"} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(at)})
		if err != nil {
			t.Fatal(err)
		}
		dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
		want, ok := l.LocalFor(UDP, dst.Addr())
		// The second listener: the first used to be taken for anything.
		if lo := l.Addrs()[1].Addr; !ok || want != lo {
			t.Fatalf("LocalFor(%v) = %v %v, want %v", dst.Addr(), want, ok, lo)
		}
		for _, batch := range []bool{false, true} {
			if batch {
				l.SendBatch([]Outgoing{{UDP, dst, []byte(optionsMsg)}, {UDP, dst, []byte(optionsMsg)}})
			} else if err := l.Send(UDP, dst, []byte(optionsMsg)); err != nil {
				t.Fatal(err)
			}
			for range 1 + btoi(batch) {
				buf := make([]byte, 2000)
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil || from != want || string(buf[:n]) != optionsMsg {
					t.Fatalf("batch %v: got %q from %v (%v), want from %v", batch, buf[:n], from, err, want)
				}
				checkTap(t, nextTap(t, taps), TapOut, UDP, want, dst, optionsMsg)
			}
		}
		c.Close()
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A datagram from a wildcard socket is tapped with the source address the
// kernel gives it.
func TestTapLocalOfWildcard(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "0.0.0.0:0"}}}, newRecorder(nil))
	port := addrOf(t, l, UDP).Port()
	taps, _ := recordTaps(t, l)
	dst := udpSink(t)
	if err := l.Send(UDP, dst, []byte(okMsg)); err != nil {
		t.Fatal(err)
	}
	checkTap(t, nextTap(t, taps), TapOut, UDP, netip.AddrPortFrom(dst.Addr(), port), dst, okMsg)
	if got, ok := l.LocalFor(UDP, dst.Addr()); !ok || got != netip.AddrPortFrom(dst.Addr(), port) {
		t.Errorf("LocalFor = %v %v", got, ok)
	}
}

// Choosing among several UDP listeners allocates nothing once the
// destination is known.
func TestUDPRoutedSendNoAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.2:0"}, {UDP, "127.0.0.1:0"}}}, newRecorder(nil))
	if st := l.udpSend.Load(); !st.route[0] {
		t.Fatal("two IPv4 listeners, yet no per-destination choice")
	}
	dst := udpSink(t)
	msg := []byte(optionsMsg)
	out := []Outgoing{{UDP, dst, msg}, {UDP, dst, msg}}
	_ = l.Send(UDP, dst, msg)
	if a := testing.AllocsPerRun(200, func() { _ = l.Send(UDP, dst, msg) }); a != 0 {
		t.Errorf("Send: %.1f allocations", a)
	}
	if a := testing.AllocsPerRun(200, func() { l.SendBatch(out) }); a != 0 {
		t.Errorf("SendBatch: %.1f allocations", a)
	}
}
