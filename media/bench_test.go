//go:build linux

package media

import (
	"testing"
	"time"
)

// BenchmarkForward relays packets of one stream through real loopback
// sockets, 32 in flight at a time, and reports the time per packet as
// seen end to end (sender, relay and receiver all on this host; the relay
// polls every Tick, so small batches measure the tick, not the CPU). Its
// use is to show that the data path allocates nothing: allocs/op counts
// the benchmark's own endpoint too, so it is the endpoint's, not the
// relay's. CPU per packet under load is what bench/relay.sh measures.
func BenchmarkForward(b *testing.B) {
	x := newSetup(b, Config{PortMin: 45000, PortMax: 45099, Workers: 1})
	aRTP, _ := x.local(SideA)
	p := rtpPacket(0, 0, 0, 1, 160)
	buf := make([]byte, 2048)
	const window = 32
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	seq := uint16(0)
	for b.Loop() {
		// One op is one packet; the window keeps the socket buffers
		// from overflowing.
		seq++
		p[3] = byte(seq)
		if _, err := x.a.conn.WriteToUDPAddrPort(p, aRTP); err != nil {
			b.Fatal(err)
		}
		if seq%window == 0 {
			x.b.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := 0; i < window; i++ {
				if _, _, err := x.b.conn.ReadFromUDPAddrPort(buf); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkForwardMuxTranslated is BenchmarkForward with A muxing and B
// not (RFC 5761 §5.1.3): one packet in eight is RTCP, which the relay
// sends out of B's RTCP port, so most batches leave in two sendmmsg
// calls. allocs/op shows the translation allocates nothing.
func BenchmarkForwardMuxTranslated(b *testing.B) {
	x := newSetup(b, Config{PortMin: 45100, PortMax: 45199, Workers: 1})
	x.s.SetPeer(SideA, x.a.addr, x.a.addr)
	aRTP, _ := x.local(SideA)
	p := rtpPacket(0, 0, 0, 1, 160)
	rtcp := rtcpPacket(200, 1)
	buf := make([]byte, 2048)
	const window, every = 32, 8
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	seq := uint16(0)
	for b.Loop() {
		seq++
		out := p
		if seq%every == 0 {
			out = rtcp
		} else {
			p[3] = byte(seq)
		}
		if _, err := x.a.conn.WriteToUDPAddrPort(out, aRTP); err != nil {
			b.Fatal(err)
		}
		if seq%window == 0 {
			deadline := time.Now().Add(5 * time.Second)
			x.b.conn.SetReadDeadline(deadline)
			x.bRTCP.conn.SetReadDeadline(deadline)
			for i := 0; i < window; i++ {
				c := x.b.conn
				if (i+1)%every == 0 {
					c = x.bRTCP.conn
				}
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
