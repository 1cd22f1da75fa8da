package media

import (
	"encoding/binary"
	"testing"
	"time"
)

// rtpPacket builds an RTP packet (RFC 3550 §5.1) with a payload of size
// bytes after the 12-byte header.
func rtpPacket(pt uint8, seq uint16, ts, ssrc uint32, size int) []byte {
	b := make([]byte, 12+size)
	b[0] = 0x80
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return b
}

// rtcpPacket builds a minimal RTCP packet of type pt from ssrc.
func rtcpPacket(pt uint8, ssrc uint32) []byte {
	b := make([]byte, 8)
	b[0] = 0x80
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:], 1)
	binary.BigEndian.PutUint32(b[4:], ssrc)
	return b
}

func TestReadHeader(t *testing.T) {
	withCSRC := rtpPacket(8, 7, 9, 10, 8)
	withCSRC[0] |= 2 // two CSRCs: exactly fills the 8 payload bytes
	shortCSRC := rtpPacket(8, 7, 9, 10, 4)
	shortCSRC[0] |= 2
	marker := rtpPacket(0x80|96, 1, 2, 3, 0)
	tests := []struct {
		name string
		b    []byte
		want header
	}{
		{"PCMU", rtpPacket(0, 513, 0xdeadbeef, 0x01020304, 160), header{kindRTP, 0, 513, 0xdeadbeef, 0x01020304}},
		{"marker bit stripped", marker, header{kindRTP, 96, 1, 2, 3}},
		{"CSRC list present", withCSRC, header{kindRTP, 8, 7, 9, 10}},
		{"CSRC list cut short", shortCSRC, header{}},
		{"bare 12-byte header", rtpPacket(18, 1, 1, 1, 0), header{kindRTP, 18, 1, 1, 1}},
		{"SR", rtcpPacket(200, 77), header{kind: kindRTCP, pt: 200, ssrc: 77}},
		{"RR", rtcpPacket(201, 78), header{kind: kindRTCP, pt: 201, ssrc: 78}},
		{"PLI (RFC 4585) is RTCP", rtcpPacket(206, 79), header{kind: kindRTCP, pt: 206, ssrc: 79}},
		{"RFC 5761 lower bound", rtcpPacket(192, 1), header{kind: kindRTCP, pt: 192, ssrc: 1}},
		{"RFC 5761 upper bound", rtcpPacket(223, 1), header{kind: kindRTCP, pt: 223, ssrc: 1}},
		{"PT 224 with marker is RTP", rtpPacket(224, 5, 6, 7, 0), header{kindRTP, 96, 5, 6, 7}},
		{"STUN binding request", append([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...), header{}},
		{"DTLS handshake", append([]byte{22, 0xfe, 0xfd}, make([]byte, 20)...), header{}},
		{"version 1", append([]byte{0x40, 0}, make([]byte, 20)...), header{}},
		{"runt RTCP", rtcpPacket(200, 1)[:7], header{}},
		{"runt RTP", rtpPacket(0, 1, 1, 1, 0)[:11], header{}},
		{"empty", nil, header{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readHeader(tt.b); got != tt.want {
				t.Errorf("readHeader = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzReadHeader checks that no input panics and that what is classified
// as RTP or RTCP really holds the header it was read from.
func FuzzReadHeader(f *testing.F) {
	f.Add(rtpPacket(0, 1, 2, 3, 160))
	f.Add(rtcpPacket(200, 4))
	f.Add([]byte{0x8f, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h := readHeader(b)
		switch h.kind {
		case kindRTP:
			if len(b) < 12+4*int(b[0]&15) || h.pt > 127 || h.ssrc != binary.BigEndian.Uint32(b[8:]) {
				t.Fatalf("bad RTP %+v from % x", h, b)
			}
		case kindRTCP:
			if len(b) < 8 || h.pt < 192 || h.pt > 223 {
				t.Fatalf("bad RTCP %+v from % x", h, b)
			}
		case kindOther:
			if h != (header{}) {
				t.Fatalf("other with fields %+v", h)
			}
		}
		if h.kind != kindOther && b[0]>>6 != 2 {
			t.Fatalf("version %d classified %v", b[0]>>6, h.kind)
		}
		// The stats must take any header without panicking.
		var s rtpRecv
		s.update(h.ssrc, h.seq, h.ts, int64(len(b))*1e6, staticClock[h.pt&0x7f])
		_ = s.lost()
	})
}

func TestRTPRecvLoss(t *testing.T) {
	seqs := func(from, to int) []int { // inclusive, wrapping mod 2^16
		var s []int
		for i := from; i <= to; i++ {
			s = append(s, i&0xffff)
		}
		return s
	}
	cat := func(parts ...[]int) []int {
		var s []int
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	tests := []struct {
		name string
		seq  []int
		lost int64
	}{
		{"in order", seqs(100, 199), 0},
		{"one gap of 5", cat(seqs(1, 10), seqs(16, 20)), 5},
		{"two gaps", cat(seqs(1, 10), seqs(12, 20), seqs(30, 40)), 10},
		{"wraparound without loss", seqs(65500, 65535+40), 0},
		{"gap across the wrap", cat(seqs(65530, 65535), seqs(65536+4, 65536+20)), 4},
		{"reordered pair", cat(seqs(1, 10), []int{12, 11}, seqs(13, 20)), 0},
		{"duplicate makes loss negative", cat(seqs(1, 10), []int{10}, seqs(11, 20)), -1},
		{"lost first packets are not seen", seqs(500, 520), 0},
		// A jump beyond MAX_DROPOUT is ignored once and taken as a
		// restart when the next packet follows it (RFC 3550 A.1).
		{"sender restart", cat(seqs(1, 10), seqs(30000, 30010)), 0},
		{"single stray far packet", cat(seqs(1, 10), []int{40000}, seqs(11, 20)), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s rtpRecv
			for i, q := range tt.seq {
				s.update(42, uint16(q), uint32(i*160), int64(i)*20e6, 8000)
			}
			if got := s.lost(); got != tt.lost {
				t.Errorf("lost = %d, want %d", got, tt.lost)
			}
		})
	}
}

func TestRTPRecvSSRCChangeKeepsLoss(t *testing.T) {
	var s rtpRecv
	for _, q := range []uint16{1, 2, 3, 6, 7} { // 2 lost
		s.update(1, q, 0, 0, 0)
	}
	for _, q := range []uint16{900, 901, 905} { // 3 lost under the new SSRC
		s.update(2, q, 0, 0, 0)
	}
	if got := s.lost(); got != 5 {
		t.Errorf("lost over two SSRCs = %d, want 5", got)
	}
	if s.ssrc != 2 {
		t.Errorf("ssrc = %d, want 2", s.ssrc)
	}
}

func TestJitter(t *testing.T) {
	const ms = int64(time.Millisecond)
	tests := []struct {
		name    string
		arrival func(i int) int64 // ns, packet i has ts 160*i at 8 kHz
		lo, hi  uint32            // expected jitter in timestamp units
	}{
		{"steady 20 ms", func(i int) int64 { return int64(i) * 20 * ms }, 0, 0},
		// Every arrival 2 ms (16 units) late or early in turn: |D| = 32,
		// so J converges to 32 (RFC 3550 A.8).
		{"alternating ±2 ms", func(i int) int64 { return int64(i)*20*ms + int64(i%2)*4*ms }, 31, 32},
		// All packets at once: |D| = 160 each time.
		{"burst", func(int) int64 { return 5 * ms }, 158, 160},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s rtpRecv
			for i := 0; i < 400; i++ {
				s.update(7, uint16(i), uint32(160*i), tt.arrival(i)+3e12, 8000)
			}
			if j := s.jitterUnits(); j < tt.lo || j > tt.hi {
				t.Errorf("jitter = %d units, want %d..%d", j, tt.lo, tt.hi)
			}
		})
	}
}

func TestJitterTimestampWrap(t *testing.T) {
	var s rtpRecv
	base := uint32(0xffffffff - 160*10)
	for i := 0; i < 50; i++ {
		s.update(7, uint16(i), base+uint32(160*i), int64(i)*20e6, 8000)
	}
	if j := s.jitterUnits(); j != 0 {
		t.Errorf("jitter across a timestamp wrap = %d, want 0", j)
	}
}

func TestJitterUnknownClock(t *testing.T) {
	var s rtpRecv
	for i := 0; i < 20; i++ {
		s.update(7, uint16(i), 0, int64(i)*20e6, 0)
	}
	if s.jitterUnits() != 0 {
		t.Errorf("jitter without a clock rate = %d", s.jitterUnits())
	}
}

func TestToUnits(t *testing.T) {
	tests := []struct {
		ns   int64
		hz   uint32
		want uint32
	}{
		{0, 8000, 0},
		{1e9, 8000, 8000},
		{20e6, 8000, 160},
		{1e9 + 125e3, 8000, 8001},
		{1e9, 90000, 90000},
		// 30 days at 90 kHz: 233,280,000,000 units, mod 2^32.
		{30 * 86400 * 1e9, 90000, uint32(uint64(30*86400) * 90000 % (1 << 32))},
	}
	for _, tt := range tests {
		if got := toUnits(tt.ns, tt.hz); got != tt.want {
			t.Errorf("toUnits(%d, %d) = %d, want %d", tt.ns, tt.hz, got, tt.want)
		}
	}
}

func BenchmarkReadHeader(b *testing.B) {
	p := rtpPacket(0, 1, 2, 3, 160)
	b.ReportAllocs()
	var h header
	for b.Loop() {
		h = readHeader(p)
	}
	_ = h
}

func BenchmarkRTPRecvUpdate(b *testing.B) {
	var s rtpRecv
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.update(9, uint16(i), uint32(160*i), int64(i)*20e6, 8000)
		i++
	}
}
