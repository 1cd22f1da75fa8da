package mime

import (
	"net/netip"
	"testing"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
)

// The check of the common bodies allocates nothing: an SDP offer, and SDP
// with ISUP in a multipart/mixed.
func BenchmarkCheck(b *testing.B) {
	l := mustCompile(b, defaults...)
	for _, bc := range []struct{ name, headers, body string }{
		{"sdp", "Content-Type: application/sdp\r\n", sdpBody},
		{"multipart", "Content-Type: multipart/mixed;boundary=unique-boundary-1\r\n",
			multipart("unique-boundary-1", part("application/sdp", sdpBody), part("application/isup;version=nxv3", "\x01\x00\x49\x00"))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var m sip.Message
			if err := m.Parse([]byte(message("INVITE", bc.headers, bc.body)), nil); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if code, why := l.check(&m); code != 0 {
					b.Fatal(code, why)
				}
			}
		})
	}
}

// The stage as the core runs it on an SDP offer from an untrusted source.
func BenchmarkStage(b *testing.B) {
	f, err := New(Config{Inbound: defaults, Outbound: defaults})
	if err != nil {
		b.Fatal(err)
	}
	core := proxytest.Harness(b, proxy.Config{Policy: proxy.Policy{AllowSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}},
		func(*proxy.Core) []proxy.Feature { return []proxy.Feature{f} })
	r, _ := proxytest.Request(b, core, message("INVITE", "Content-Type: application/sdp\r\n", sdpBody), untrusted)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if f.stage(r) {
			b.Fatal("SDP refused")
		}
	}
}

// Zero allocations are part of the contract, not only of the benchmark.
func TestCheckDoesNotAllocate(t *testing.T) {
	l := mustCompile(t, defaults...)
	var m sip.Message
	body := multipart("b", part("application/sdp", sdpBody), part("application/isup", "\x01"))
	if err := m.Parse([]byte(message("INVITE", "Content-Type: multipart/mixed;boundary=b\r\n", body)), nil); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { l.check(&m) }); n != 0 {
		t.Errorf("%v allocations per check", n)
	}
}
