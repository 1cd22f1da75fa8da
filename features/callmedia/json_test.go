package callmedia

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// randomMedia makes a Media with every field set from r, nil and empty
// slices and pointers included.
func randomMedia(r *rand.Rand, text func() string) Media {
	addr := func() netip.AddrPort {
		switch r.IntN(4) {
		case 0:
			return netip.AddrPort{}
		case 1:
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(256)), 5}), uint16(r.IntN(65536)))
		case 2:
			return netip.MustParseAddrPort("[2001:db8::7]:5062")
		}
		return netip.MustParseAddrPort("[::ffff:192.0.2.1]:4000")
	}
	when := func() *time.Time {
		if r.IntN(3) == 0 {
			return nil
		}
		t := time.Unix(1_790_000_000+r.Int64N(1e6), r.Int64N(1e9)).In(time.FixedZone("z", 3600*r.IntN(3)))
		return &t
	}
	m := Media{Audio: text()}
	switch r.IntN(3) {
	case 0:
	case 1:
		m.Diagnosis = []string{}
	default:
		m.Diagnosis = []string{text(), text()}
	}
	if r.IntN(4) != 0 {
		m.Streams = []Stream{}
		for i := range r.IntN(3) {
			s := Stream{Index: i, Type: text()}
			if r.IntN(4) != 0 {
				s.Legs = []Leg{}
			}
			for range r.IntN(3) {
				l := Leg{Side: text(), Signalling: addr(), SDP: addr(), SDPPrivate: r.IntN(2) == 0, Relay: addr(), Source: addr(),
					Latched: r.IntN(2) == 0, Packets: r.Uint64(), Bytes: r.Uint64N(1e9), RTCPPackets: r.Uint64N(100),
					Forwarded: r.Uint64N(1e6), Kernel: r.Uint64N(1e6), InKernel: r.IntN(2) == 0, Dropped: r.Uint64N(10),
					Foreign: r.Uint64N(10), ForeignSource: addr(), Lost: r.Int64N(2000) - 1000, LossPct: r.Float64() * 100,
					JitterMS: r.ExpFloat64() * 1e-5, Codec: text(), First: when(), Last: when(), NoPeer: 3, SendErrors: 4}
				if r.IntN(2) == 0 {
					mos := 1 + r.Float64()*3.5
					l.MOS = &mos
				}
				s.Legs = append(s.Legs, l)
			}
			m.Streams = append(m.Streams, s)
		}
	}
	return m
}

// Media.AppendJSON writes what encoding/json writes, byte for byte.
func TestMediaJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	texts := []string{"", "ok", "one-way", "PCMU/8000", `a "quoted" <b>&</b>`, "caf\xc3\xa9 \xff", "line\nbreak\u2028"}
	text := func() string { return texts[r.IntN(len(texts))] }
	for i := range 2000 {
		m := randomMedia(r, text)
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// NotRelayed as the call log writes it.
	m := NotRelayed("media.relay is never")
	want, _ := json.Marshal(m)
	if got := m.AppendJSON(nil); string(got) != string(want) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func FuzzMediaJSON(f *testing.F) {
	f.Add("ok", "PCMU/8000", "No packets from the callee since 12:03:04.", uint64(7))
	f.Add("", "\xff<", "\u2029", uint64(0))
	f.Fuzz(func(t *testing.T, audio, codec, diag string, seed uint64) {
		r := rand.New(rand.NewPCG(seed, seed))
		texts := []string{audio, codec, diag}
		m := randomMedia(r, func() string { return texts[r.IntN(3)] })
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkMediaJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	m := randomMedia(r, func() string { return "PCMU/8000" })
	b.Run("AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		b.ReportAllocs()
		for b.Loop() {
			buf = m.AppendJSON(buf[:0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(m)
		}
	})
}
