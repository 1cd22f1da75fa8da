package sdp

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// addGoldenSeeds seeds a fuzz target with every golden input.
func addGoldenSeeds(f *testing.F, add func(b []byte)) {
	files, err := filepath.Glob("testdata/golden/*.sdp")
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden inputs: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
	add(benchOffer)
}

// FuzzParse: any input parses or fails with an *Error carrying 400 or 488
// and an offset inside the body, never panics; every view of an accepted
// description can be read; a no-op plan writes it back byte for byte.
func FuzzParse(f *testing.F) {
	addGoldenSeeds(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Session
		err := s.Parse(b)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || (e.Status() != 400 && e.Status() != 488) || e.Offset < 0 || e.Offset > len(b) {
				t.Fatalf("error %#v", err)
			}
			if _, err := s.AppendRewrite(nil, &Plan{}); err != ErrNotParsed {
				t.Fatalf("rewrite after a failed parse: %v", err)
			}
			return
		}
		_ = s.Origin()
		_, _ = s.Version()
		_ = s.Conn()
		for i := 0; i < s.NumLines(); i++ {
			_, _ = s.Line(i)
			st, en := s.LineSpan(i)
			if st < 0 || en > len(b) || st >= en {
				t.Fatalf("line %d span %d-%d", i, st, en)
			}
		}
		for i := 0; i < s.NumMedia(); i++ {
			m := s.Media(i)
			if m.Port != 0 && !m.Conn.Present() {
				t.Fatalf("active media %d without connection address", i)
			}
		}
		p, _ := noopPlan(&s)
		out, err := s.AppendRewrite(nil, p)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("no-op rewrite: %v\n got: %q\nwant: %q", err, out, b)
		}
	})
}

// FuzzRewrite: a plan derived from the fuzzer's choices applies to any
// accepted description; the output parses again (limits aside, since lines
// may be added), shows the plan through its views, and leaves streams that
// are not relayed byte for byte as they were.
func FuzzRewrite(f *testing.F) {
	addGoldenSeeds(f, func(b []byte) {
		f.Add(b, uint32(0xcb007105), uint16(30000), uint16(0), uint8(0xff), uint8(0))
		f.Add(b, uint32(0x0a000001), uint16(1), uint16(65535), uint8(0x55), uint8(0x0f))
	})
	f.Fuzz(func(t *testing.T, b []byte, addr uint32, port, rtcp uint16, relay, flags uint8) {
		var s Session
		if s.Parse(b) != nil {
			return
		}
		a := netip.AddrFrom4([4]byte{byte(addr >> 24), byte(addr >> 16), byte(addr >> 8), byte(addr)})
		if flags&0x10 != 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(addr >> 8), 15: byte(addr)})
		}
		if a.IsUnspecified() {
			a = netip.MustParseAddr("203.0.113.5")
		}
		p := &Plan{Media: make([]MediaPlan, s.NumMedia())}
		for i := range p.Media {
			rtp := max(1, (int(port)+2*i)%65535)
			mp := MediaPlan{Relay: relay>>(i%8)&1 != 0, Addr: a, RTPPort: rtp, RTCPPort: int(rtcp), DropICE: flags>>(i%4)&1 != 0}
			if i%2 == 1 && flags&0x20 != 0 {
				mp.Addr = a.Next() // a second relay address
				if !mp.Addr.IsValid() || mp.Addr.IsUnspecified() {
					mp.Addr = a
				}
			}
			p.Media[i] = mp
		}
		if flags&0x40 != 0 {
			p.Origin = a
		}
		out, err := s.AppendRewrite(nil, p)
		if err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		r := Session{Limits: Limits{MaxSize: 1 << 20, MaxLines: 4096}}
		if err := r.Parse(out); err != nil {
			t.Fatalf("output does not parse: %v\n in: %q\nout: %q", err, b, out)
		}
		checkApplied(t, &s, &r, p)
		if s.NumLines() > 0 {
			// Session-level lines other than o=, c= and ICE stay as written.
			for li, lj := 0, 0; li < s.NumLines() && lj < r.NumLines(); li++ {
				ti, vi := s.Line(li)
				if ti == 'm' {
					break
				}
				if ti == 'a' && s.lines[li].attr.ice() {
					if tj, vj := r.Line(lj); tj == 'a' && bytes.Equal(vi, vj) {
						lj++
					}
					continue
				}
				tj, vj := r.Line(lj)
				if ti != tj || (ti != 'o' && ti != 'c' && !bytes.Equal(vi, vj)) {
					t.Fatalf("session line %d %c=%q became %c=%q", li, ti, vi, tj, vj)
				}
				lj++
			}
		}
	})
}

// FuzzFilter: on any description that parses, dropping the first format
// of every stream that has more than one writes a description that parses
// again with exactly one format fewer per such stream; nothing panics.
func FuzzFilter(f *testing.F) {
	files, _ := filepath.Glob("testdata/formats/*.sdp")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addGoldenSeeds(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Session
		if s.Parse(b) != nil {
			return
		}
		p := &FormatPlan{Drop: make([][]string, s.NumMedia())}
		want := make([]int, s.NumMedia())
		for i := range p.Drop {
			fs := s.Formats(nil, i)
			want[i] = len(fs)
			if len(fs) > 1 && s.Media(i).Port != 0 && !contains([]string{string(fs[0].PT)}, fs[1].PT) {
				p.Drop[i] = []string{string(fs[0].PT)}
				for _, g := range fs {
					if bytes.Equal(g.PT, fs[0].PT) {
						want[i]--
					}
				}
			}
		}
		out, err := s.AppendFilter(nil, p)
		if err != nil {
			t.Fatalf("filter: %v", err)
		}
		var r Session
		if err := r.Parse(out); err != nil {
			t.Fatalf("filtered description does not parse: %v\n%q", err, out)
		}
		for i := range want {
			if n := len(r.Formats(nil, i)); n != want[i] {
				t.Fatalf("media %d: %d formats, want %d\n%q", i, n, want[i], out)
			}
		}
	})
}
