package guard

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
)

// The stage on requests made from bytes (proxy.TestRequest), and a core
// on loopback with a real socket.

func options(n int) string {
	return fmt.Sprintf("OPTIONS sip:198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:198.51.100.1>\r\n"+
		"Call-ID: %d@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", n, n)
}

func TestStage(t *testing.T) {
	trusted := netip.MustParsePrefix("192.0.2.0/24")
	for _, tc := range []struct {
		name         string
		src          string
		limitTrusted bool
		dropped      int // of 20 requests, with 10 allowed
	}{
		{"untrusted source over the rate", "203.0.113.7:5060", false, 10},
		{"trusted source exempt", "192.0.2.5:5060", false, 0},
		{"trusted source limited with limit_trusted", "192.0.2.5:5060", true, 10},
		{"IPv4-mapped source is the IPv4 source", "[::ffff:203.0.113.7]:5060", false, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, rateConfig(10))
			cfg := rateConfig(10)
			cfg.LimitTrusted = tc.limitTrusted
			f.g.SetConfig(cfg)
			core := proxytest.Harness(t, proxy.Config{Policy: proxy.Policy{AllowSources: []netip.Prefix{trusted}}},
				func(*proxy.Core) []proxy.Feature { return []proxy.Feature{f.g} })
			src := netip.MustParseAddrPort(tc.src)
			dropped := 0
			for i := range 20 {
				r, ans := proxytest.Request(t, core, options(i), src)
				if f.g.stage(r) {
					dropped++
				}
				if ans.Code() != 0 {
					t.Fatalf("the guard answered %d", ans.Code())
				}
			}
			if dropped != tc.dropped {
				t.Errorf("%d of 20 dropped, want %d", dropped, tc.dropped)
			}
			if tc.dropped > 0 && !f.g.Banned(src.Addr()) {
				t.Errorf("Banned(%s) false", src.Addr())
			}
		})
	}
}

// The stage is the first of the pipeline.
func TestStageFirst(t *testing.T) {
	g := New(Defaults(), nil)
	core := proxytest.Harness(t, proxy.Config{}, func(*proxy.Core) []proxy.Feature { return []proxy.Feature{g} })
	if stages, _, _, _ := core.Names(); len(stages) == 0 || stages[0] != "guard" {
		t.Errorf("stages %q: guard is not first", stages)
	}
}

// A flood from one address on a real socket: its first requests are
// answered, then nothing comes back, while another address is served.
func TestLoopback(t *testing.T) {
	log := &syncBuffer{}
	g := New(rateConfig(5), slog.New(slog.NewTextHandler(log, nil)))
	// Loopback is not trusted here (a core without AllowSources trusts
	// every source): the strangers' OPTIONS get 403, until the ban.
	core, addr := proxytest.StartCore(t, proxy.Config{Policy: proxy.Policy{AllowSources: []netip.Prefix{}}},
		func(*proxy.Core) []proxy.Feature { return []proxy.Feature{g} })
	udp := func(ip string) *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Skipf("no %s on loopback: %v", ip, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	msg := func(c *net.UDPConn, n int) []byte {
		return fmt.Appendf(nil, "OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:%s>\r\n"+
			"Call-ID: %d@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", addr, c.LocalAddr(), n, addr, n)
	}
	answered := func(c *net.UDPConn, n int, wait time.Duration) bool {
		if _, err := c.WriteToUDPAddrPort(msg(c, n), addr); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(wait))
		_, _, err := c.ReadFromUDPAddrPort(buf)
		return err == nil
	}
	flooder, other := udp("127.0.0.2"), udp("127.0.0.3")
	for i := range 5 {
		if !answered(flooder, i, 5*time.Second) {
			t.Fatalf("request %d of 5 not answered", i+1)
		}
	}
	for i := 5; i < 8; i++ {
		if answered(flooder, i, 300*time.Millisecond) {
			t.Fatalf("request %d answered: the source should be banned", i+1)
		}
	}
	if !answered(other, 100, 5*time.Second) {
		t.Error("another address was not served")
	}
	if log.count("ban 127.0.0.2 reason=rate requests=5 window=2s for=5m0s") != 1 {
		t.Errorf("no ban line:\n%s", log)
	}
	if n := core.Stats().Stages["guard"]; n != 3 {
		t.Errorf("guard stage dealt with %d requests, want 3", n)
	}
	if st := g.Stats(); st.Dropped != 3 {
		t.Errorf("Stats = %+v, want 3 dropped", st)
	}
	// Attach started the sweeper (proxy.Starter); Close stops it, and
	// the core's Close calling it again is harmless.
	if g.stop == nil {
		t.Fatal("the sweeper was not started")
	}
	g.Close()
	select {
	case <-g.done:
	default:
		t.Error("the sweeper still runs after Close")
	}
}

func BenchmarkStage(b *testing.B) {
	g := New(rateConfig(1<<30), nil)
	core := proxytest.Harness(b, proxy.Config{}, func(*proxy.Core) []proxy.Feature { return []proxy.Feature{g} })
	r, _ := proxytest.Request(b, core, options(1), netip.MustParseAddrPort("203.0.113.7:5060"))
	b.ReportAllocs()
	for b.Loop() {
		g.stage(r)
	}
}
