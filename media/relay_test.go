//go:build linux

package media

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestForwardBothWays(t *testing.T) {
	x := newSetup(t, Config{})
	aRTP, aRTCP := x.local(SideA)
	bRTP, bRTCP := x.local(SideB)
	if aRTP.Port()%2 != 0 || aRTCP.Port() != aRTP.Port()+1 || bRTCP.Port() != bRTP.Port()+1 {
		t.Fatalf("ports A %v/%v B %v/%v: want even RTP, RTCP = RTP+1", aRTP, aRTCP, bRTP, bRTCP)
	}

	p1 := rtpPacket(0, 1, 160, 0xa, 160)
	x.a.send(aRTP, p1)
	x.b.expect(p1, bRTP) // arrives from B's relay port: B answers there

	p2 := rtpPacket(8, 9, 320, 0xb, 160)
	x.b.send(bRTP, p2)
	x.a.expect(p2, aRTP)

	sr := rtcpPacket(200, 0xa)
	x.aRTCP.send(aRTCP, sr)
	x.bRTCP.expect(sr, bRTCP)
	rr := rtcpPacket(201, 0xb)
	x.bRTCP.send(bRTCP, rr)
	x.aRTCP.expect(rr, aRTCP)

	st := x.s.Stats()
	for _, c := range []struct {
		name string
		d    DirStats
		ssrc uint32
		src  netip.AddrPort
		rsrc netip.AddrPort
	}{{"A->B", st.AtoB, 0xa, x.a.addr, x.aRTCP.addr}, {"B->A", st.BtoA, 0xb, x.b.addr, x.bRTCP.addr}} {
		d := c.d
		if d.Packets != 2 || d.RTCPPackets != 1 || d.Forwarded != 2 || d.Dropped != 0 || d.Bytes != 172+8 {
			t.Errorf("%s: %+v", c.name, d)
		}
		if d.SSRC != c.ssrc || d.Source != c.src || d.RTCPSource != c.rsrc || d.Last.IsZero() {
			t.Errorf("%s: ssrc %x source %v rtcp source %v last %v", c.name, d.SSRC, d.Source, d.RTCPSource, d.Last)
		}
	}
	rs := x.r.Stats()
	if rs.Calls != 1 || rs.Streams != 1 || rs.Relayed != 4 || rs.Received != 4 || rs.PortsInUse != 4 {
		t.Errorf("relay stats %+v", rs)
	}
}

func TestForwardIPv6(t *testing.T) {
	lo6 := netip.IPv6Loopback()
	probe, err := bindUDP(netip.AddrPortFrom(lo6, 0))
	if err != nil {
		t.Skipf("no ::1: %v", err)
	}
	closeFD(probe)
	r := newRelay(t, Config{})
	c, _ := r.Call("v6")
	// Gateway style: A on IPv4, B on IPv6.
	s, err := c.Stream(0, lo4, lo6)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newEndpoint(t, "udp4", lo4), newEndpoint(t, "udp6", lo6)
	if err := s.SetPeer(SideB, a.addr, netip.AddrPort{}); !errors.Is(err, ErrFamily) {
		t.Errorf("IPv4 peer on an IPv6 side: %v, want ErrFamily", err)
	}
	if err := s.SetPeer(SideA, a.addr, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPeer(SideB, b.addr, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	aRTP, _ := s.Local(SideA)
	bRTP, _ := s.Local(SideB)
	if !bRTP.Addr().Is6() {
		t.Fatalf("B local %v", bRTP)
	}
	p := rtpPacket(0, 1, 1, 1, 20)
	a.send(aRTP, p)
	b.expect(p, bRTP)
	q := rtpPacket(0, 2, 2, 2, 20)
	b.send(bRTP, q)
	a.expect(q, aRTP)
}

// With rtcp-mux (RFC 5761) both sides send RTCP to the RTP port; it must
// come out of the other RTP port and be counted as RTCP.
func TestRTCPMux(t *testing.T) {
	x := newSetup(t, Config{})
	aRTP, _ := x.local(SideA)
	bRTP, _ := x.local(SideB)
	// Both SDPs said a=rtcp-mux: RTCP goes to the RTP address.
	x.s.SetPeer(SideA, x.a.addr, x.a.addr)
	x.s.SetPeer(SideB, x.b.addr, x.b.addr)
	seq := []([]byte){rtpPacket(0, 1, 0, 5, 160), rtcpPacket(200, 5), rtcpPacket(206, 5), rtpPacket(0, 2, 160, 5, 160)}
	for _, p := range seq {
		x.a.send(aRTP, p)
		x.b.expect(p, bRTP)
	}
	fb := rtcpPacket(205, 6) // a NACK back from B
	x.b.send(bRTP, fb)
	x.a.expect(fb, aRTP)
	st := x.s.Stats()
	if st.AtoB.Packets != 4 || st.AtoB.RTCPPackets != 2 || st.BtoA.RTCPPackets != 1 || st.AtoB.Lost != 0 {
		t.Errorf("stats %+v", st)
	}
}

// STUN and DTLS share the port in WebRTC-style endpoints (RFC 7983): they
// pass untouched and are counted apart.
func TestNonRTPForwarded(t *testing.T) {
	x := newSetup(t, Config{})
	aRTP, _ := x.local(SideA)
	bRTP, _ := x.local(SideB)
	stun := append([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...)
	dtls := append([]byte{22, 0xfe, 0xfd}, make([]byte, 40)...)
	for _, p := range [][]byte{stun, dtls, {}, {0x80}} {
		x.a.send(aRTP, p)
		x.b.expect(p, bRTP)
	}
	if st := x.s.Stats().AtoB; st.OtherPackets != 4 || st.Packets != 4 || st.Lost != 0 {
		t.Errorf("stats %+v", st)
	}
}

// An endpoint behind NAT puts its private address in SDP; its packets come
// from the NAT's. LatchFirst sends the reverse direction there.
func TestLatchNAT(t *testing.T) {
	x := newSetup(t, Config{Latch: LatchFirst})
	aRTP, aRTCP := x.local(SideA)
	bRTP, _ := x.local(SideB)
	nat := newEndpoint(t, "udp4", lo4)
	natRTCP := newEndpoint(t, "udp4", lo4)
	// x.a holds the SDP address; the packets come from nat.
	p := rtpPacket(0, 1, 0, 0x77, 160)
	nat.send(aRTP, p)
	x.b.expect(p, bRTP)
	q := rtpPacket(0, 1, 0, 0x88, 160)
	x.b.send(bRTP, q)
	nat.expect(q, aRTP)
	// RTCP latches on its own port, independently.
	sr := rtcpPacket(201, 0x88)
	x.bRTCP.send(x.s.socksLocal(SideB, true), sr)
	x.aRTCP.expect(sr, aRTCP) // not latched yet: SDP address
	natRTCP.send(aRTCP, rtcpPacket(200, 0x77))
	x.bRTCP.recv()
	x.bRTCP.send(x.s.socksLocal(SideB, true), sr)
	natRTCP.expect(sr, aRTCP)
	if st := x.s.Stats().AtoB; st.Source != nat.addr || st.RTCPSource != natRTCP.addr {
		t.Errorf("latched %v / %v, want %v / %v", st.Source, st.RTCPSource, nat.addr, natRTCP.addr)
	}
	// A re-INVITE with the same SDP address keeps the latch; a new one
	// releases it.
	if err := x.s.SetPeer(SideA, x.a.addr, x.aRTCP.addr); err != nil {
		t.Fatal(err)
	}
	x.b.send(bRTP, q)
	nat.expect(q, aRTP)
	moved := newEndpoint(t, "udp4", lo4)
	if err := x.s.SetPeer(SideA, moved.addr, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	x.b.send(bRTP, q)
	moved.expect(q, aRTP)
	// ...and the next packet latches again, from wherever it comes.
	p2 := rtpPacket(0, 2, 160, 0x77, 160)
	nat2 := newEndpoint(t, "udp4", lo4)
	nat2.send(aRTP, p2)
	x.b.expect(p2, bRTP)
	x.b.send(bRTP, q)
	nat2.expect(q, aRTP)
}

// socksLocal is the local address of one of the stream's ports.
func (s *Stream) socksLocal(side Side, rtcp bool) netip.AddrPort {
	rtp, rtcpAddr := s.Local(side)
	if rtcp {
		return rtcpAddr
	}
	return rtp
}

func TestLatchFirstRefusesOthers(t *testing.T) {
	x := newSetup(t, Config{Latch: LatchFirst})
	aRTP, _ := x.local(SideA)
	bRTP, _ := x.local(SideB)
	x.a.send(aRTP, rtpPacket(0, 1, 0, 0x1111, 160))
	x.b.recv()
	intruder := newEndpoint(t, "udp4", lo4)
	intruder.send(aRTP, rtpPacket(0, 2, 160, 0x1111, 160)) // even with the right SSRC
	marker := rtpPacket(0, 3, 320, 0x1111, 160)
	x.a.send(aRTP, marker)
	x.b.expect(marker, bRTP) // the intruder's packet was not forwarded before it
	// The latched socket is connected: the kernel itself refuses the
	// intruder, so no relay counter sees it.
	st := x.s.Stats().AtoB
	if st.Packets != 2 || st.Source != x.a.addr {
		t.Errorf("stats %+v, relay %+v", st, x.r.Stats())
	}
}

func TestLatchSSRC(t *testing.T) {
	x := newSetup(t, Config{Latch: LatchSSRC})
	aRTP, _ := x.local(SideA)
	bRTP, _ := x.local(SideB)
	x.a.send(aRTP, rtpPacket(0, 1, 0, 0x1111, 160))
	x.b.recv()

	// A hijack from another source with another SSRC is refused.
	intruder := newEndpoint(t, "udp4", lo4)
	intruder.send(aRTP, rtpPacket(0, 500, 0, 0x2222, 160))
	marker := rtpPacket(0, 2, 160, 0x1111, 160)
	x.a.send(aRTP, marker)
	x.b.expect(marker, bRTP)
	x.b.send(bRTP, rtpPacket(0, 1, 0, 0x3333, 160))
	x.a.recv() // B's media still goes to A, not the intruder

	// A's NAT binding changes: same SSRC from a new source moves the latch.
	rebound := newEndpoint(t, "udp4", lo4)
	p := rtpPacket(0, 3, 320, 0x1111, 160)
	rebound.send(aRTP, p)
	x.b.expect(p, bRTP)
	q := rtpPacket(0, 2, 160, 0x3333, 160)
	x.b.send(bRTP, q)
	rebound.expect(q, aRTP)
	if !x.a.quiet(20 * time.Millisecond) {
		t.Error("old source still receives after the latch moved")
	}
	st := x.s.Stats().AtoB
	if st.Source != rebound.addr || st.Dropped != 1 || st.Lost != 0 {
		t.Errorf("stats %+v", st)
	}
	if rs := x.r.Stats(); rs.Relatched != 1 || rs.Drops.Foreign != 1 {
		t.Errorf("relay stats %+v", rs)
	}
}

func TestLatchOff(t *testing.T) {
	x := newSetup(t, Config{Latch: LatchOff})
	aRTP, _ := x.local(SideA)
	bRTP, _ := x.local(SideB)
	other := newEndpoint(t, "udp4", lo4)
	p := rtpPacket(0, 1, 0, 1, 160)
	other.send(aRTP, p) // any source is accepted...
	x.b.expect(p, bRTP)
	q := rtpPacket(0, 1, 0, 2, 160)
	x.b.send(bRTP, q)
	x.a.expect(q, aRTP) // ...but media goes only to the SDP address
}

// Before SDP or a packet tells the relay where a side is, packets towards
// it are counted and dropped; once the side sends, it is latched.
func TestNoPeerYet(t *testing.T) {
	r := newRelay(t, Config{})
	c, _ := r.Call("early")
	s, err := c.Stream(0, lo4, lo4)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newEndpoint(t, "udp4", lo4), newEndpoint(t, "udp4", lo4)
	aRTP, _ := s.Local(SideA)
	bRTP, _ := s.Local(SideB)
	a.send(aRTP, rtpPacket(0, 1, 0, 1, 160))
	waitFor(t, "the drop", func() bool { return r.Stats().Drops.NoPeer == 1 })
	// B sends without any SDP address for A's side known... A latched.
	q := rtpPacket(0, 1, 0, 2, 160)
	b.send(bRTP, q)
	a.expect(q, aRTP)
	p := rtpPacket(0, 2, 160, 1, 160)
	a.send(aRTP, p)
	b.expect(p, bRTP)
	if st := s.Stats().AtoB; st.Packets != 2 || st.Dropped != 1 || st.Forwarded != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestLossAndJitterThroughRelay(t *testing.T) {
	x := newSetup(t, Config{})
	aRTP, _ := x.local(SideA)
	bRTP, _ := x.local(SideB)
	x.s.SetClockRate(111, 48000)
	// PT 0 across the sequence wrap, 5 lost (65533..65535, 0, 1).
	var sent int
	for seq := 65520; seq < 65536+20; seq++ {
		if seq >= 65533 && seq <= 65537 {
			continue
		}
		x.a.send(aRTP, rtpPacket(0, uint16(seq), uint32(seq*160), 0xabc, 160))
		sent++
	}
	// B sends a burst whose timestamps advance 20 ms per packet: the
	// arrival spacing is far shorter, so jitter rises towards 160 units.
	for i := 0; i < 40; i++ {
		x.b.send(bRTP, rtpPacket(0, uint16(i), uint32(i*160), 0xdef, 160))
	}
	waitFor(t, "all packets", func() bool {
		st := x.s.Stats()
		return st.AtoB.Packets == uint64(sent) && st.BtoA.Packets == 40
	})
	st := x.s.Stats()
	if st.AtoB.Lost != 5 {
		t.Errorf("A->B lost = %d, want 5", st.AtoB.Lost)
	}
	if st.BtoA.Lost != 0 {
		t.Errorf("B->A lost = %d", st.BtoA.Lost)
	}
	if j := st.BtoA.JitterUnits; j < 50 || j > 20000 || st.BtoA.Jitter < 6*time.Millisecond {
		t.Errorf("B->A jitter %d units (%v), want clearly above 0", j, st.BtoA.Jitter)
	}
	// An unknown dynamic type has no clock: no jitter. A known one does.
	for i := 0; i < 3; i++ {
		x.a.send(aRTP, rtpPacket(96, uint16(i), uint32(i*960), 0x96, 100))
	}
	waitFor(t, "PT 96", func() bool { return x.s.Stats().AtoB.SSRC == 0x96 && x.s.Stats().AtoB.Packets == uint64(sent)+3 })
	if st := x.s.Stats().AtoB; st.JitterUnits != 0 || st.Jitter != 0 {
		t.Errorf("PT 96 jitter %d", st.JitterUnits)
	}
	for i := 0; i < 20; i++ {
		x.a.send(aRTP, rtpPacket(111, uint16(i), uint32(i*960*50), 0x111, 100))
	}
	waitFor(t, "PT 111", func() bool { return x.s.Stats().AtoB.Packets == uint64(sent)+23 })
	if st := x.s.Stats().AtoB; st.JitterUnits == 0 {
		t.Errorf("PT 111 at 48 kHz: no jitter measured")
	}
}

func TestInactivity(t *testing.T) {
	var mu sync.Mutex
	var reports []string
	x := newSetup(t, Config{Inactivity: 50 * time.Millisecond, OnInactive: func(id string) {
		mu.Lock()
		reports = append(reports, id)
		mu.Unlock()
	}})
	n := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(reports)
	}
	waitFor(t, "first report", func() bool { return n() == 1 })
	mu.Lock()
	if reports[0] != "call-1" {
		t.Errorf("reported %q", reports[0])
	}
	mu.Unlock()
	// Reported once per silence...
	time.Sleep(150 * time.Millisecond)
	if n() != 1 {
		t.Fatalf("%d reports of one silence", n())
	}
	// ...and again after media came back and stopped again.
	aRTP, _ := x.local(SideA)
	p := rtpPacket(0, 1, 0, 1, 160)
	x.a.send(aRTP, p)
	x.b.recv()
	waitFor(t, "second report", func() bool { return n() == 2 })
}

// The janitor's decision, without the clock: a call is silent when every
// stream has been quiet for Inactivity, measured from its last packet or,
// if none, from its creation.
func TestSilentDecision(t *testing.T) {
	r := newRelay(t, Config{Inactivity: time.Second})
	c, _ := r.Call("x")
	s1, _ := c.Stream(0, lo4, lo4)
	s2, _ := c.Stream(1, lo4, lo4)
	s1.created, s2.created = 0, 0
	s1.last.Store(int64(5 * time.Second))
	quiet := func(now time.Duration) bool {
		last, q := c.quiet(int64(now), int64(time.Second))
		if last != int64(5*time.Second) {
			t.Errorf("last activity %v", time.Duration(last))
		}
		return q
	}
	empty, _ := r.Call("empty")
	if _, q := empty.quiet(int64(time.Hour), int64(time.Second)); q {
		t.Error("a call without streams is quiet")
	}
	if quiet(5500 * time.Millisecond) {
		t.Error("quiet 0.5 s after a packet")
	}
	if !quiet(6 * time.Second) {
		t.Error("not quiet 1 s after the last packet of any stream")
	}
}

func TestPortExhaustion(t *testing.T) {
	// Three pairs; another socket holds the first pair's RTP port.
	blocker, err := bindUDP(netip.AddrPortFrom(lo4, 42000))
	if err != nil {
		t.Skipf("port 42000 busy: %v", err)
	}
	defer closeFD(blocker)
	fds := openFDs(t)
	r := newRelay(t, Config{PortMin: 42000, PortMax: 42005})
	base := openFDs(t)
	c, _ := r.Call("x")
	s, err := c.Stream(0, lo4, lo4)
	if err != nil {
		t.Fatalf("first stream: %v", err)
	}
	for _, side := range []Side{SideA, SideB} {
		if rtp, _ := s.Local(side); rtp.Port() == 42000 {
			t.Errorf("got the taken port for side %v", side)
		}
	}
	if _, err := c.Stream(1, lo4, lo4); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("second stream: %v, want ErrNoPorts", err)
	}
	if got := openFDs(t); got != base+4 {
		t.Errorf("fds %d, want %d: the failed stream leaked", got, base+4)
	}
	if rs := r.Stats(); rs.PortsInUse != 4 || rs.PortsFree != 2 || rs.Streams != 1 {
		t.Errorf("stats %+v", rs)
	}
	// Another local address has a pool of its own.
	lo2 := netip.MustParseAddr("127.0.0.2")
	if s2, err := c.Stream(1, lo2, lo2); err != nil {
		t.Errorf("stream on 127.0.0.2: %v", err)
	} else if rtp, _ := s2.Local(SideA); rtp.Addr() != lo2 {
		t.Errorf("local %v", rtp)
	}
	c.Close()
	c.Close() // idempotent
	if got := openFDs(t); got != base {
		t.Errorf("fds after Close %d, want %d", got, base)
	}
	if rs := r.Stats(); rs.PortsInUse != 0 || rs.Calls != 0 || rs.Streams != 0 {
		t.Errorf("stats after Close %+v", rs)
	}
	if _, err := c.Stream(2, lo4, lo4); !errors.Is(err, ErrClosed) {
		t.Errorf("stream on closed call: %v", err)
	}
	c2, _ := r.Call("y")
	if _, err := c2.Stream(0, lo4, lo4); err != nil {
		t.Errorf("ports not reusable after Close: %v", err)
	}
	r.Close()
	if got := openFDs(t); got != fds {
		t.Errorf("fds after relay Close %d, want %d", got, fds)
	}
}

func TestLimits(t *testing.T) {
	r := newRelay(t, Config{MaxCalls: 1, MaxStreamsPerCall: 2})
	c, err := r.Call("a")
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := r.Call("a"); err != nil || c2 != c {
		t.Errorf("same ID: %p %v, want the same call", c2, err)
	}
	if _, err := r.Call("b"); !errors.Is(err, ErrTooManyCalls) {
		t.Errorf("second call: %v", err)
	}
	s0, err := c.Stream(0, lo4, lo4)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Stream(0, lo4, lo4); err != nil || again != s0 {
		t.Errorf("same index: %p %v", again, err)
	}
	if _, err := c.Stream(0, lo4, netip.MustParseAddr("127.0.0.2")); err == nil {
		t.Error("same index on other addresses accepted")
	}
	if _, err := c.Stream(1, lo4, lo4); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stream(2, lo4, lo4); !errors.Is(err, ErrTooManyStreams) {
		t.Errorf("third stream: %v", err)
	}
	if _, err := c.Stream(-1, lo4, lo4); err == nil {
		t.Error("negative index accepted")
	}
	c.Close()
	if err := s0.SetPeer(SideA, netip.MustParseAddrPort("127.0.0.1:4000"), netip.AddrPort{}); !errors.Is(err, ErrClosed) {
		t.Errorf("SetPeer after Close: %v", err)
	}
	_ = s0.Stats() // still readable
	r.Close()
	if _, err := r.Call("c"); !errors.Is(err, ErrClosed) {
		t.Errorf("Call after Close: %v", err)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{PortMin: 30000, PortMax: 39999}, true},
		{"one pair", Config{PortMin: 30000, PortMax: 30001}, true},
		{"odd start", Config{PortMin: 30001, PortMax: 39999}, false},
		{"no range", Config{}, false},
		{"privileged", Config{PortMin: 1000, PortMax: 2000}, false},
		{"beyond 65535", Config{PortMin: 65534, PortMax: 65536}, false},
		{"empty", Config{PortMin: 30000, PortMax: 30000}, false},
		{"bad latch", Config{PortMin: 30000, PortMax: 30001, Latch: 9}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.cfg.withDefaults()
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err == nil && (c.Workers < 1 || c.Tick != time.Millisecond || c.MaxStreamsPerCall != 8 || c.Inactivity != time.Minute) {
				t.Errorf("defaults %+v", c)
			}
		})
	}
	for _, s := range []string{"first", "ssrc", "off"} {
		if m, err := ParseLatchMode(s); err != nil || m.String() != s {
			t.Errorf("ParseLatchMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseLatchMode("always"); err == nil {
		t.Error("ParseLatchMode accepted junk")
	}
}

// Close must leave no fd, goroutine or thread behind, with calls still
// open and traffic flowing.
func TestCloseLeaksNothing(t *testing.T) {
	fds, gs := openFDs(t), runtime.NumGoroutine()
	r, err := New(Config{PortMin: 43000, PortMax: 43999, Workers: 3,
		Inactivity: time.Hour, OnInactive: func(string) {}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := newEndpoint(t, "udp4", lo4), newEndpoint(t, "udp4", lo4)
	for i := 0; i < 20; i++ {
		c, _ := r.Call(string(rune('a' + i)))
		s, err := c.Stream(0, lo4, lo4)
		if err != nil {
			t.Fatal(err)
		}
		s.SetPeer(SideA, a.addr, netip.AddrPort{})
		s.SetPeer(SideB, b.addr, netip.AddrPort{})
		aRTP, _ := s.Local(SideA)
		a.send(aRTP, rtpPacket(0, 1, 0, uint32(i), 160))
	}
	waitFor(t, "traffic", func() bool { return r.Stats().Relayed == 20 })
	if got := openFDs(t); got != fds+2+20*4+3*2 {
		t.Errorf("fds while running %d, want %d", got, fds+2+80+6)
	}
	var tids []string
	for _, w := range r.workers {
		tids = append(tids, fmt.Sprintf("/proc/self/task/%d", w.tid.Load()))
		if _, err := os.Stat(tids[len(tids)-1]); err != nil {
			t.Fatalf("worker thread: %v", err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); got != fds+2 { // the two endpoints
		t.Errorf("fds after Close %d, want %d", got, fds+2)
	}
	if n, ok := waitCount(runtime.NumGoroutine, gs, 3*time.Second); !ok {
		t.Errorf("goroutines after Close %d, want %d", n, gs)
	}
	// The relay threads exit with their goroutines.
	alive := func() int {
		n := 0
		for _, p := range tids {
			if _, err := os.Stat(p); err == nil {
				n++
			}
		}
		return n
	}
	if n, ok := waitCount(alive, 0, 3*time.Second); !ok {
		t.Errorf("%d relay threads still alive after Close", n)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Calls come and go while packets flow: run with -race.
func TestConcurrentCalls(t *testing.T) {
	r := newRelay(t, Config{PortMin: 44000, PortMax: 44999})
	sink := newEndpoint(t, "udp4", lo4)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			src := newEndpoint(t, "udp4", lo4)
			for i := 0; i < 30; i++ {
				c, err := r.Call(string(rune('A'+g)) + string(rune('a'+i)))
				if err != nil {
					t.Error(err)
					return
				}
				s, err := c.Stream(0, lo4, lo4)
				if err != nil {
					t.Error(err)
					return
				}
				s.SetPeer(SideB, sink.addr, netip.AddrPort{})
				aRTP, _ := s.Local(SideA)
				for k := 0; k < 5; k++ {
					src.conn.WriteToUDPAddrPort(rtpPacket(0, uint16(k), 0, 1, 160), aRTP)
				}
				_ = s.Stats()
				_ = r.Stats()
				c.Close()
			}
		}(g)
	}
	wg.Wait()
	if rs := r.Stats(); rs.Calls != 0 || rs.PortsInUse != 0 {
		t.Errorf("stats %+v", rs)
	}
}

// Running out of file descriptors is ErrNoPorts too (the proxy answers
// 503), and the half-built stream leaks nothing.
func TestOutOfFDs(t *testing.T) {
	r := newRelay(t, Config{PortMin: 42100, PortMax: 42199})
	c, _ := r.Call("x")
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	base := openFDs(t)
	// New fds take the lowest free numbers: allow those below the third
	// free one seen (side A's pair, plus perhaps the number ReadDir just
	// freed), never room for side B's pair as well.
	used := map[int]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		used[n] = true
	}
	free := []int{}
	for n := 0; len(free) < 3; n++ {
		if !used[n] {
			free = append(free, n)
		}
	}
	lim := old
	lim.Cur = uint64(free[2])
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	_, err = c.Stream(0, lo4, lo4)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, ErrNoPorts) {
		t.Fatalf("stream at the fd limit: %v, want ErrNoPorts", err)
	}
	if got := openFDs(t); got != base {
		t.Errorf("fds %d, want %d", got, base)
	}
	if rs := r.Stats(); rs.PortsInUse != 0 {
		t.Errorf("stats %+v", rs)
	}
	if _, err := c.Stream(0, lo4, lo4); err != nil {
		t.Errorf("after the limit is back: %v", err)
	}
}

// TestSetLimits: new limits apply to the next call and stream; the calls
// already set up keep theirs.
func TestSetLimits(t *testing.T) {
	r, err := New(Config{PortMin: 42200, PortMax: 42299, MaxCalls: 1})
	if err != nil {
		t.Skip(err)
	}
	defer r.Close()
	if _, err := r.Call("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Call("b"); !errors.Is(err, ErrTooManyCalls) {
		t.Fatalf("second call with MaxCalls 1: %v", err)
	}
	r.SetLimits(2, 1, 0)
	c, err := r.Call("b")
	if err != nil {
		t.Fatalf("second call after SetLimits(2): %v", err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if _, err := c.Stream(0, lo, lo); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stream(1, lo, lo); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("second stream with MaxStreamsPerCall 1: %v", err)
	}
}

// TestSideDiagnostics: besides its counters, each direction tells what
// its side advertised (SDP), whether and to what it latched, when its
// first packet came, which payload type it sends, and why packets from
// it were dropped: refused sources (with the last one) and a peer not
// known yet.
func TestSideDiagnostics(t *testing.T) {
	r := newRelay(t, Config{Latch: LatchSSRC})
	c, _ := r.Call("diag")
	s, err := c.Stream(0, lo4, lo4)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newEndpoint(t, "udp4", lo4), newEndpoint(t, "udp4", lo4)
	aRTP, _ := s.Local(SideA)
	bRTP, _ := s.Local(SideB)
	sdpA := netip.MustParseAddrPort("127.0.0.1:4000") // what A says; it sends from elsewhere (NAT)
	if err := s.SetPeer(SideA, sdpA, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.AtoB.SDP != sdpA || st.BtoA.SDP.IsValid() || st.AtoB.Latched || !st.AtoB.First.IsZero() {
		t.Fatalf("before any packet: %+v", st)
	}

	// B's address is not known yet: A's first packets are dropped.
	before := time.Now()
	a.send(aRTP, rtpPacket(8, 1, 0, 0xa, 160))
	a.send(aRTP, rtpPacket(8, 2, 160, 0xa, 160))
	waitFor(t, "no-peer drops", func() bool { return s.Stats().AtoB.NoPeer == 2 })
	// A stranger with another SSRC is refused on A's port.
	stranger := newEndpoint(t, "udp4", lo4)
	stranger.send(aRTP, rtpPacket(0, 9, 0, 0xbad, 160))
	waitFor(t, "foreign drop", func() bool { return s.Stats().AtoB.Foreign == 1 })
	// B tells where it is; A's next packet is forwarded.
	if err := s.SetPeer(SideB, b.addr, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	p := rtpPacket(8, 3, 320, 0xa, 160)
	a.send(aRTP, p)
	b.expect(p, bRTP)

	st := s.Stats()
	ab := st.AtoB
	if ab.Packets != 3 || ab.RTP != 3 || ab.Forwarded != 1 || ab.Dropped != 3 || ab.NoPeer != 2 || ab.Foreign != 1 ||
		ab.SendErrors != 0 || ab.ForeignSource != stranger.addr || ab.PayloadType != 8 {
		t.Errorf("A→B counters %+v", ab)
	}
	if !ab.Latched || ab.Source != a.addr || ab.SDP != sdpA {
		t.Errorf("A→B latch: latched %v source %v sdp %v", ab.Latched, ab.Source, ab.SDP)
	}
	if ab.First.Before(before.Add(-time.Second)) || ab.First.After(ab.Last) || ab.Last.After(time.Now().Add(time.Second)) {
		t.Errorf("A→B first %v last %v (test began %v)", ab.First, ab.Last, before)
	}
	if ba := st.BtoA; ba.Packets != 0 || !ba.First.IsZero() || ba.Latched || ba.SDP != b.addr || ba.Foreign != 0 {
		t.Errorf("B→A %+v", ba)
	}
	// LatchOff never latches, whatever arrives.
	x := newSetup(t, Config{Latch: LatchOff, PortMin: 42000, PortMax: 42099})
	xa, _ := x.local(SideA)
	q := rtpPacket(0, 1, 0, 1, 160)
	x.a.send(xa, q)
	x.b.recv()
	if st := x.s.Stats().AtoB; st.Latched || st.Source != x.a.addr {
		t.Errorf("LatchOff: %+v", st)
	}
}

// Only A muxes (RFC 5761 §5.1.3, a relay between a muxing and a
// non-muxing endpoint): A's RTCP, sent to A's RTP port, leaves through
// B's RTCP port to B's RTCP address, while RTP in the same batches keeps
// to the RTP ports; B's RTCP, sent to B's RTCP port, leaves through A's
// RTP port to A's RTP address.
func TestRTCPMuxTranslated(t *testing.T) {
	for _, latch := range []LatchMode{LatchFirst, LatchOff} {
		t.Run(latch.String(), func(t *testing.T) {
			x := newSetup(t, Config{Latch: latch})
			aRTP, _ := x.local(SideA)
			bRTP, bRTCP := x.local(SideB)
			x.s.SetPeer(SideA, x.a.addr, x.a.addr) // a=rtcp-mux
			// B keeps its own RTCP address (newSetup).

			// Interleaved, so that one recvmmsg batch holds both kinds.
			seq := [][]byte{rtpPacket(0, 1, 0, 5, 160), rtcpPacket(200, 5), rtpPacket(0, 2, 160, 5, 160),
				rtcpPacket(206, 5), rtpPacket(0, 3, 320, 5, 160)}
			for _, p := range seq {
				x.a.send(aRTP, p)
			}
			for _, p := range seq {
				if p[1] >= 192 && p[1] <= 223 {
					x.bRTCP.expect(p, bRTCP)
				} else {
					x.b.expect(p, bRTP)
				}
			}
			if !x.b.quiet(50*time.Millisecond) || !x.bRTCP.quiet(time.Millisecond) {
				t.Error("a packet went to the wrong B port")
			}

			rr := rtcpPacket(201, 6)
			x.bRTCP.send(bRTCP, rr)
			x.a.expect(rr, aRTP) // A has no RTCP port of its own
			q := rtpPacket(0, 1, 0, 6, 160)
			x.b.send(bRTP, q)
			x.a.expect(q, aRTP)
			if !x.aRTCP.quiet(50 * time.Millisecond) {
				t.Error("RTCP went to A's unused RTCP address")
			}

			st := x.s.Stats()
			if st.AtoB.Packets != 5 || st.AtoB.RTCPPackets != 2 || st.AtoB.Forwarded != 5 || st.AtoB.Lost != 0 ||
				st.BtoA.Packets != 2 || st.BtoA.RTCPPackets != 1 || st.BtoA.Forwarded != 2 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// Before B's SDP is known, A's muxed RTCP has nowhere to go and is
// dropped as having no peer; once B's SDP names a separate RTCP address,
// it goes there.
func TestRTCPMuxTranslatedNoPeer(t *testing.T) {
	r := newRelay(t, Config{})
	c, _ := r.Call("mux")
	s, err := c.Stream(0, lo4, lo4)
	if err != nil {
		t.Fatal(err)
	}
	a, b, bc := newEndpoint(t, "udp4", lo4), newEndpoint(t, "udp4", lo4), newEndpoint(t, "udp4", lo4)
	s.SetPeer(SideA, a.addr, a.addr)
	aRTP, _ := s.Local(SideA)
	a.send(aRTP, rtcpPacket(200, 1))
	waitFor(t, "drop", func() bool { return s.Stats().AtoB.NoPeer == 1 })
	s.SetPeer(SideB, b.addr, bc.addr)
	p := rtcpPacket(200, 1)
	a.send(aRTP, p)
	_, bRTCP := s.Local(SideB)
	bc.expect(p, bRTCP)
}

// A forked INVITE: each fork has its own ports on both sides, so two
// callees' early media reach the caller at once, each from the A port of
// its own fork, and the caller's media to a fork's A port reaches that
// fork's callee only. Keep settles the call on one fork and frees the
// others' ports and pinholes.
func TestForks(t *testing.T) {
	fw := &recordFW{open: map[netip.AddrPort]bool{}}
	r := newRelay(t, Config{PortMin: 46000, PortMax: 46999, Firewall: fw})
	c, err := r.Call("forked")
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := c.Fork(""); f != c {
		t.Fatal(`Fork("") is not the call itself`)
	}
	caller := newEndpoint(t, "udp4", lo4)
	callees := []*endpoint{newEndpoint(t, "udp4", lo4), newEndpoint(t, "udp4", lo4), newEndpoint(t, "udp4", lo4)}
	forks := []*Call{c}
	for _, k := range []string{"b1", "b2"} {
		f, err := c.Fork(k)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := c.Fork(k); again != f {
			t.Fatal("Fork twice gave two forks")
		}
		if _, err := f.Fork("x"); err == nil {
			t.Error("a fork of a fork")
		}
		forks = append(forks, f)
	}
	var streams []*Stream
	seen := map[netip.AddrPort]bool{}
	for i, f := range forks {
		s, err := f.Stream(0, lo4, lo4)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range s.ports() {
			if seen[p] {
				t.Fatalf("fork %d reuses port %v", i, p)
			}
			seen[p] = true
		}
		// The caller's offer applies to every fork's side A; each
		// callee's answer to its own fork's side B.
		s.SetPeer(SideA, caller.addr, netip.AddrPort{})
		s.SetPeer(SideB, callees[i].addr, netip.AddrPort{})
		streams = append(streams, s)
	}
	if rs := r.Stats(); rs.Calls != 1 || rs.Streams != 3 || rs.PortsInUse != 12 || len(fw.open) != 12 {
		t.Fatalf("relay stats %+v, %d pinholes", rs, len(fw.open))
	}
	// Early media from every callee at once.
	for i, s := range streams {
		bRTP, _ := s.Local(SideB)
		aRTP, _ := s.Local(SideA)
		p := rtpPacket(0, 1, 0, uint32(10+i), 160)
		callees[i].send(bRTP, p)
		caller.expect(p, aRTP)
	}
	// The caller answers each fork; only that fork's callee hears it.
	for i, s := range streams {
		aRTP, _ := s.Local(SideA)
		bRTP, _ := s.Local(SideB)
		p := rtpPacket(0, 1, 0, uint32(20+i), 160)
		caller.send(aRTP, p)
		callees[i].expect(p, bRTP)
	}
	for i, e := range callees {
		if !e.quiet(20 * time.Millisecond) {
			t.Errorf("callee %d heard another fork", i)
		}
	}
	if got := c.Streams(); len(got) != 1 || got[0] != streams[0] {
		t.Errorf("Streams before Keep: %v", got)
	}

	// The 2xx came from fork b1.
	c.Keep("b1")
	if rs := r.Stats(); rs.Calls != 1 || rs.Streams != 1 || rs.PortsInUse != 4 || len(fw.open) != 4 {
		t.Errorf("after Keep: relay stats %+v, %d pinholes", rs, len(fw.open))
	}
	for _, p := range streams[1].ports() {
		if !fw.open[p] {
			t.Errorf("kept fork's pinhole %v closed", p)
		}
	}
	if got := c.Streams(); len(got) != 1 || got[0] != streams[1] {
		t.Errorf("Streams after Keep: %v", got)
	}
	// A re-INVITE finds the kept fork's stream.
	if s, err := c.Stream(0, lo4, lo4); err != nil || s != streams[1] {
		t.Errorf("Stream after Keep: %v, %v", s, err)
	}
	if _, err := forks[1].Stream(1, lo4, lo4); !errors.Is(err, ErrClosed) {
		t.Errorf("the kept fork's handle still allocates: %v", err)
	}
	for _, i := range []int{0, 2} {
		if err := streams[i].SetPeer(SideA, caller.addr, netip.AddrPort{}); !errors.Is(err, ErrClosed) {
			t.Errorf("released fork %d: SetPeer %v", i, err)
		}
	}
	aRTP, _ := streams[1].Local(SideA)
	bRTP, _ := streams[1].Local(SideB)
	p := rtpPacket(0, 2, 160, 21, 160)
	caller.send(aRTP, p)
	callees[1].expect(p, bRTP)

	c.Close()
	if rs := r.Stats(); rs.Calls != 0 || rs.Streams != 0 || rs.PortsInUse != 0 || len(fw.open) != 0 {
		t.Errorf("after Close: relay stats %+v, %d pinholes", rs, len(fw.open))
	}
	if _, err := c.Fork("b3"); !errors.Is(err, ErrClosed) {
		t.Errorf("Fork of a closed call: %v", err)
	}
}

// A fork closes on its own (its branch failed) or with its call; Keep("")
// keeps the call's own streams; early media on a fork keeps the call from
// counting as silent.
func TestForkLifecycle(t *testing.T) {
	r := newRelay(t, Config{PortMin: 47000, PortMax: 47999})
	c, _ := r.Call("lc")
	own, _ := c.Stream(0, lo4, lo4)
	f1, _ := c.Fork("1")
	f2, _ := c.Fork("2")
	s1, _ := f1.Stream(0, lo4, lo4)
	if _, err := f2.Stream(0, lo4, lo4); err != nil {
		t.Fatal(err)
	}
	if f1.ID() != "lc" {
		t.Errorf("fork ID %q", f1.ID())
	}
	f2.Close()
	if rs := r.Stats(); rs.Streams != 2 || rs.Calls != 1 {
		t.Errorf("after a fork's Close: %+v", rs)
	}
	if again, _ := c.Fork("2"); again == f2 {
		t.Error("a closed fork came back")
	}
	// Judged 10 s on with a 5 s limit: silent, unless fork 1 had a
	// packet a second ago.
	now, limit := nanotime()+int64(10*time.Second), int64(5*time.Second)
	r.mu.Lock()
	_, quiet := c.quiet(now, limit)
	s1.last.Store(now - int64(time.Second))
	_, quietFork := c.quiet(now, limit)
	r.mu.Unlock()
	if !quiet || quietFork {
		t.Errorf("quiet %v without media, %v with early media on a fork", quiet, quietFork)
	}
	c.Keep("")
	if got := c.Streams(); len(got) != 1 || got[0] != own {
		t.Errorf("Keep(\"\"): %v", got)
	}
	if rs := r.Stats(); rs.Streams != 1 {
		t.Errorf("after Keep(\"\"): %+v", rs)
	}
	c.Fork("3")
	c.Close()
	if rs := r.Stats(); rs.Streams != 0 || rs.Calls != 0 || rs.PortsInUse != 0 {
		t.Errorf("after Close: %+v", rs)
	}
}

// recordFW is a Firewall that remembers the open pinholes.
type recordFW struct {
	mu   sync.Mutex
	open map[netip.AddrPort]bool
}

func (f *recordFW) Open(ports []netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range ports {
		f.open[p] = true
	}
	return nil
}

func (f *recordFW) Close(ports []netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range ports {
		delete(f.open, p)
	}
}
