package transport

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"sipedge/internal/race"
)

// SendBatch delivers every datagram of a mixed batch, from the listener's
// socket, and counts the one it cannot send without losing the others.
func TestSendBatch(t *testing.T) {
	tests := []struct {
		name   string
		listen string
		peer   string // receiver address family
		ipv6   bool
	}{
		{"IPv4", "127.0.0.1:0", "127.0.0.1", false},
		{"IPv6", "[::1]:0", "::1", true},
		{"dual-stack to IPv4", "[::]:0", "127.0.0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ipv6 && !haveIPv6() {
				t.Skip("IPv6 unavailable")
			}
			l := startLayer(t, Config{Listen: []ListenSpec{{UDP, tt.listen}}}, newRecorder(nil))
			srv := addrOf(t, l, UDP)
			const peers, each = 3, 400 // 1 200 datagrams: several sendmmsg calls
			var conns []*net.UDPConn
			for range peers {
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(tt.peer)})
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadBuffer(4 << 20)
				defer c.Close()
				conns = append(conns, c)
			}
			var out []Outgoing
			for i := range peers * each {
				dst := conns[i%peers].LocalAddr().(*net.UDPAddr).AddrPort()
				out = append(out, Outgoing{Proto: UDP, Dst: dst, Data: fmt.Appendf(nil, "m%d", i)})
				if i == 500 {
					// No port: refused by itself, the rest still goes.
					out = append(out, Outgoing{Proto: UDP, Dst: netip.AddrPortFrom(dst.Addr(), 0), Data: []byte("bad")})
				}
			}
			if failed := l.SendBatch(out); failed != 1 {
				t.Errorf("failed = %d, want 1", failed)
			}
			for p, c := range conns {
				buf := make([]byte, 100)
				for k := range each {
					_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
					n, from, err := c.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("peer %d: datagram %d: %v", p, k, err)
					}
					if want := fmt.Sprintf("m%d", k*peers+p); string(buf[:n]) != want {
						t.Fatalf("peer %d got %q, want %q (in order)", p, buf[:n], want)
					}
					if from.Port() != srv.Port() {
						t.Fatalf("peer %d: datagram from %v, want the listener's port %d", p, from, srv.Port())
					}
				}
			}
		})
	}
}

// A batch with stream messages sends those through their connections.
func TestSendBatchStream(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}, {TCP, "127.0.0.1:0"}}}, newRecorder(nil))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			acc <- c
		}
	}()
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	if failed := l.SendBatch([]Outgoing{{Proto: TCP, Dst: dst, Data: []byte(optionsMsg)}}); failed != 0 {
		t.Fatalf("failed = %d", failed)
	}
	select {
	case c := <-acc:
		defer c.Close()
		if got := readExactly(t, c, len(optionsMsg)); got != optionsMsg {
			t.Errorf("got %q", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no connection")
	}
}

// A batch of datagrams costs no allocation.
func TestSendBatchNoAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}}, newRecorder(nil))
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	out := make([]Outgoing, 64)
	for i := range out {
		out[i] = Outgoing{Proto: UDP, Dst: dst, Data: []byte("x")}
	}
	go func() {
		buf := make([]byte, 10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	if a := testing.AllocsPerRun(50, func() { l.SendBatch(out) }); a > 0 {
		t.Errorf("%.1f allocations per batch of 64", a)
	}
}
