package sdp

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// readPlan parses the golden plan format, one directive a line:
//
//	# comment
//	origin <addr>
//	media <i> addr <addr> rtp <port> [rtcp <port>] [ice drop]
//	media <i> keep
//
// Media without a line are left untouched, like "keep".
func readPlan(t testing.TB, text string, nmedia int) *Plan {
	p := &Plan{Media: make([]MediaPlan, nmedia)}
	for n, ln := range strings.Split(text, "\n") {
		f := strings.Fields(ln)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		bad := func(why string) { t.Fatalf("plan line %d %q: %s", n+1, ln, why) }
		switch f[0] {
		case "origin":
			if len(f) != 2 {
				bad("want origin <addr>")
			}
			a, err := netip.ParseAddr(f[1])
			if err != nil {
				bad(err.Error())
			}
			p.Origin = a
		case "media":
			if len(f) < 3 {
				bad("want media <i> ...")
			}
			i, err := strconv.Atoi(f[1])
			if err != nil || i < 0 || i >= nmedia {
				bad("bad media index")
			}
			mp := &p.Media[i]
			if f[2] == "keep" {
				continue
			}
			mp.Relay = true
			for k := 2; k < len(f); k += 2 {
				if k+1 >= len(f) {
					bad("missing value")
				}
				key, val := f[k], f[k+1]
				switch key {
				case "addr":
					if mp.Addr, err = netip.ParseAddr(val); err != nil {
						bad(err.Error())
					}
				case "rtp":
					if mp.RTPPort, err = strconv.Atoi(val); err != nil {
						bad(err.Error())
					}
				case "rtcp":
					if mp.RTCPPort, err = strconv.Atoi(val); err != nil {
						bad(err.Error())
					}
				case "ice":
					if val != "drop" {
						bad("ice takes drop")
					}
					mp.DropICE = true
				default:
					bad("unknown key " + key)
				}
			}
		default:
			bad("unknown directive")
		}
	}
	return p
}

func goldenNames(t testing.TB) []string {
	files, err := filepath.Glob("testdata/golden/*.sdp")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = strings.TrimSuffix(filepath.Base(f), ".sdp")
	}
	return names
}

func readGolden(t testing.TB, name, ext string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata/golden", name+ext))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden rewrites every testdata/golden/NAME.sdp with NAME.plan and
// compares with NAME.golden. The golden files are the specification of
// the rewriter: run with -update, then review the diff by hand.
func TestGolden(t *testing.T) {
	for _, name := range goldenNames(t) {
		t.Run(name, func(t *testing.T) {
			in := readGolden(t, name, ".sdp")
			var s Session
			if err := s.Parse(in); err != nil {
				t.Fatalf("parse: %v", err)
			}
			p := readPlan(t, string(readGolden(t, name, ".plan")), s.NumMedia())
			out, err := s.AppendRewrite(nil, p)
			if err != nil {
				t.Fatalf("rewrite: %v", err)
			}
			path := filepath.Join("testdata/golden", name+".golden")
			if *update {
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := readGolden(t, name, ".golden")
			if !bytes.Equal(out, want) {
				t.Errorf("output differs from %s:\n got: %q\nwant: %q", path, out, want)
			}
			var r Session
			if err := r.Parse(out); err != nil {
				t.Errorf("output does not parse: %v", err)
			}
			checkApplied(t, &s, &r, p)
		})
	}
}

// checkApplied verifies through the views of the re-parsed output r that
// the plan p was applied to s: relayed streams point at the relay (unless
// held by address), carry its ports and lost their candidates if asked;
// every other stream's lines are unchanged.
func checkApplied(t testing.TB, s, r *Session, p *Plan) {
	if r.NumMedia() != s.NumMedia() {
		t.Fatalf("%d media after rewrite, %d before", r.NumMedia(), s.NumMedia())
	}
	for i := 0; i < s.NumMedia(); i++ {
		before, after := s.Media(i), r.Media(i)
		rp := s.relayed(p, i)
		if rp == nil {
			if !bytes.Equal(sectionBytes(s, i), sectionBytes(r, i)) {
				t.Errorf("media %d not relayed but changed:\n%q\n%q", i, sectionBytes(s, i), sectionBytes(r, i))
			}
			if !before.Rejected() && !bytes.Equal(before.Conn.Raw, after.Conn.Raw) {
				t.Errorf("media %d not relayed but its address changed: %q -> %q", i, before.Conn.Raw, after.Conn.Raw)
			}
			continue
		}
		a := rp.Addr.Unmap()
		if after.Port != rp.RTPPort || after.PortCount != before.PortCount {
			t.Errorf("media %d port %d/%d, want %d/%d", i, after.Port, after.PortCount, rp.RTPPort, before.PortCount)
		}
		if before.Conn.IsHold() {
			if !after.Conn.IsHold() {
				t.Errorf("media %d hold address %q replaced by %q", i, before.Conn.Raw, after.Conn.Raw)
			}
		} else if after.Conn.Addr != a || after.Conn.IP6 != a.Is6() || after.Conn.NumAddr != 1 || after.Conn.TTL != -1 {
			t.Errorf("media %d address %+v, want %v", i, after.Conn, a)
		}
		if rp.DropICE && (after.Candidates != 0 || after.Attrs&(AttrICEUfrag|AttrICEPwd|AttrICEOptions|AttrICELite|AttrCandidate) != 0) {
			t.Errorf("media %d keeps ICE attributes: %d candidates, attrs %b", i, after.Candidates, after.Attrs)
		}
		if !rp.DropICE && (after.Candidates != before.Candidates) {
			t.Errorf("media %d lost candidates", i)
		}
		rtcp := rp.RTCPPort
		if rtcp == 0 {
			rtcp = rp.RTPPort + 1
		}
		switch {
		case after.Has(AttrRTCPMux):
			if after.RTCP.Present && after.RTCP.Port != rp.RTPPort {
				t.Errorf("media %d rtcp-mux with a=rtcp:%d, want the RTP port %d", i, after.RTCP.Port, rp.RTPPort)
			}
		case after.RTCP.Present:
			if after.RTCP.Port != rtcp {
				t.Errorf("media %d a=rtcp:%d, want %d", i, after.RTCP.Port, rtcp)
			}
		case after.Transport.RTP() && rtcp != rp.RTPPort+1:
			t.Errorf("media %d RTCP port %d needs an a=rtcp", i, rtcp)
		}
		if c := after.RTCP.Conn; c.Present() && !before.RTCP.Conn.IsHold() && c.Addr != a {
			t.Errorf("media %d a=rtcp address %q, want %v", i, c.Raw, a)
		}
		if after.Direction != before.Direction || after.Attrs&^iceAttrs != before.Attrs&^iceAttrs {
			t.Errorf("media %d attributes changed: %v %b -> %v %b", i, before.Direction, before.Attrs, after.Direction, after.Attrs)
		}
	}
	if p.Origin.IsValid() {
		o := r.Origin()
		if a, err := netip.ParseAddr(string(o.Address)); err != nil || a != p.Origin.Unmap() {
			t.Errorf("origin address %q, want %v", o.Address, p.Origin)
		}
	}
	v1, ok1 := s.Version()
	v2, ok2 := r.Version()
	if v1 != v2 || ok1 != ok2 {
		t.Errorf("session version changed: %d -> %d", v1, v2)
	}
}

const iceAttrs = AttrICEUfrag | AttrICEPwd | AttrICEOptions | AttrICELite | AttrCandidate

// sectionBytes returns the lines of media description i.
func sectionBytes(s *Session, i int) []byte {
	m := &s.media[i]
	st, _ := s.LineSpan(int(m.line))
	_, en := s.LineSpan(int(m.last))
	// The last line's terminator may be added or lost by an insertion or
	// deletion after it; compare content only.
	return bytes.TrimRight(s.buf[st:en], "\r\n")
}

// noopPlan builds a plan that relays every stream it can to the address and
// ports it already has. It returns the plan and how many streams it relays.
func noopPlan(s *Session) (*Plan, int) {
	p := &Plan{Media: make([]MediaPlan, s.NumMedia())}
	n := 0
	plain := func(c Conn) bool {
		return c.Addr.IsValid() && !c.Addr.Is4In6() && c.IP6 == c.Addr.Is6() && c.TTL < 0 && c.NumAddr == 1 && !c.IsHold()
	}
	for i := range p.Media {
		m := s.Media(i)
		if m.Port == 0 {
			continue
		}
		var a netip.Addr
		switch {
		case plain(m.Conn):
			a = m.Conn.Addr
		case m.Conn.IsHold():
			a = netip.MustParseAddr("192.0.2.99") // any: a hold address stays
		default:
			continue
		}
		rtcp := 0
		if m.RTCP.Present {
			if c := m.RTCP.Conn; c.Present() && !c.IsHold() {
				if !plain(c) || (m.Conn.IsHold() && c.Addr != a) {
					continue
				}
				if !m.Conn.IsHold() && c.Addr != a {
					continue
				}
				a = c.Addr
			}
			if m.Has(AttrRTCPMux) {
				if m.RTCP.Port != m.Port {
					continue
				}
			} else {
				rtcp = m.RTCP.Port
				if rtcp == 0 {
					continue
				}
			}
		}
		if rtcp == 0 && m.Port == 65535 {
			continue
		}
		p.Media[i] = MediaPlan{Relay: true, Addr: a, RTPPort: m.Port, RTCPPort: rtcp}
		n++
	}
	o := s.Origin()
	if a, err := netip.ParseAddr(string(o.Address)); err == nil && a.Zone() == "" && !a.Is4In6() &&
		string(o.NetType) == "IN" && (string(o.AddrType) == "IP6") == a.Is6() && string(o.AddrType) != "" &&
		(string(o.AddrType) == "IP4" || string(o.AddrType) == "IP6") {
		p.Origin = a
	}
	return p, n
}

// TestNoopRoundTrip: for every golden input, a plan that repeats the
// current addresses and ports writes the body byte for byte.
func TestNoopRoundTrip(t *testing.T) {
	for _, name := range goldenNames(t) {
		in := readGolden(t, name, ".sdp")
		var s Session
		if err := s.Parse(in); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p, n := noopPlan(&s)
		if n == 0 && name != "multicast-ttl" {
			t.Errorf("%s: no-op plan relays nothing", name)
		}
		out, err := s.AppendRewrite(nil, p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(out, in) {
			t.Errorf("%s: no-op rewrite changed the body:\n got: %q\nwant: %q", name, out, in)
		}
		if out, _ := s.AppendRewrite(nil, &Plan{}); !bytes.Equal(out, in) {
			t.Errorf("%s: empty plan changed the body", name)
		}
		if out, _ := s.AppendRewrite(nil, nil); !bytes.Equal(out, in) {
			t.Errorf("%s: nil plan changed the body", name)
		}
	}
}

// TestRewriteAppends: AppendRewrite appends to dst and leaves its prefix.
func TestRewriteAppends(t *testing.T) {
	var s Session
	if err := s.Parse(benchOffer); err != nil {
		t.Fatal(err)
	}
	dst := []byte("prefix")
	out, err := s.AppendRewrite(dst, &benchPlan)
	if err != nil || !bytes.HasPrefix(out, []byte("prefix")) || len(out) <= len(benchOffer) {
		t.Fatalf("%q %v", out, err)
	}
}

func TestRewritePlanErrors(t *testing.T) {
	body := []byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
	a := netip.MustParseAddr("203.0.113.5")
	for _, tc := range []struct {
		name string
		p    Plan
	}{
		{"more entries than media", Plan{Media: make([]MediaPlan, 2)}},
		{"no address", Plan{Media: []MediaPlan{{Relay: true, RTPPort: 30000}}}},
		{"zoned address", Plan{Media: []MediaPlan{{Relay: true, Addr: netip.MustParseAddr("fe80::1%eth0"), RTPPort: 30000}}}},
		{"unspecified address", Plan{Media: []MediaPlan{{Relay: true, Addr: netip.IPv4Unspecified(), RTPPort: 30000}}}},
		{"RTP port 0", Plan{Media: []MediaPlan{{Relay: true, Addr: a}}}},
		{"RTP port too big", Plan{Media: []MediaPlan{{Relay: true, Addr: a, RTPPort: 65536}}}},
		{"RTCP port too big", Plan{Media: []MediaPlan{{Relay: true, Addr: a, RTPPort: 30000, RTCPPort: 70000}}}},
		{"RTP+1 overflows", Plan{Media: []MediaPlan{{Relay: true, Addr: a, RTPPort: 65535}}}},
		{"zoned origin", Plan{Origin: netip.MustParseAddr("fe80::1%eth0")}},
	} {
		var s Session
		if err := s.Parse(body); err != nil {
			t.Fatal(err)
		}
		out, err := s.AppendRewrite([]byte("x"), &tc.p)
		if !errors.Is(err, ErrPlan) || string(out) != "x" {
			t.Errorf("%s: %q %v, want ErrPlan and dst unchanged", tc.name, out, err)
		}
	}
	var s Session
	if _, err := s.AppendRewrite(nil, &Plan{}); err != ErrNotParsed {
		t.Errorf("unparsed session: %v", err)
	}
	if err := s.Parse([]byte("v=0\r\nm=audio 1 RTP/AVP 0\r\n")); err == nil {
		t.Fatal("accepted")
	}
	if _, err := s.AppendRewrite(nil, &Plan{}); err != ErrNotParsed {
		t.Errorf("failed parse: %v", err)
	}
}

// TestRewriteCases covers rules that the golden files do not show alone.
func TestRewriteCases(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
	r1 := MediaPlan{Relay: true, Addr: netip.MustParseAddr("203.0.113.5"), RTPPort: 30000}
	r2 := MediaPlan{Relay: true, Addr: netip.MustParseAddr("203.0.113.6"), RTPPort: 30002}
	for _, tc := range []struct {
		name, in string
		p        Plan
		want     string
	}{
		{
			// RFC 3264 §6: the rejected stream keeps port 0 and its
			// lines, and does not hold the session c= back.
			"rejected stream does not keep the session c=",
			head + "c=IN IP4 192.0.2.1\r\nm=video 0 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 0\r\n",
			Plan{Media: []MediaPlan{r2, r1}},
			head + "c=IN IP4 203.0.113.5\r\nm=video 0 RTP/AVP 96\r\nm=audio 30000 RTP/AVP 0\r\n",
		},
		{
			"active unrelayed stream keeps the session c=; relayed ones get their own",
			head + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\ni=x\r\ni=y\r\nb=AS:64\r\nm=video 5000 RTP/AVP 96\r\n",
			Plan{Media: []MediaPlan{r1}},
			head + "c=IN IP4 192.0.2.1\r\nm=audio 30000 RTP/AVP 0\r\ni=x\r\ni=y\r\nc=IN IP4 203.0.113.5\r\nb=AS:64\r\nm=video 5000 RTP/AVP 96\r\n",
		},
		{
			"IPv4-mapped relay address is written as IPv4",
			head + "c=IN IP6 2001:db8::1\r\nm=audio 4000 RTP/AVP 0\r\n",
			Plan{Media: []MediaPlan{{Relay: true, Addr: netip.MustParseAddr("::ffff:203.0.113.5"), RTPPort: 4000}}},
			head + "c=IN IP4 203.0.113.5\r\nm=audio 4000 RTP/AVP 0\r\n",
		},
		{
			"host name connection address is replaced",
			head + "c=IN IP4 pc33.atlanta.example.com\r\nm=audio 4000 RTP/AVP 0\r\n",
			Plan{Media: []MediaPlan{r1}},
			head + "c=IN IP4 203.0.113.5\r\nm=audio 30000 RTP/AVP 0\r\n",
		},
		{
			"media-level hold address stays while the session c= is rewritten",
			head + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\nm=video 5000 RTP/AVP 96\r\n",
			Plan{Media: []MediaPlan{r1, r2}},
			head + "c=IN IP4 203.0.113.6\r\nm=audio 30000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\nm=video 30002 RTP/AVP 96\r\n",
		},
		{
			"session ICE stays while an active stream keeps ICE",
			head + "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\nc=IN IP4 192.0.2.1\r\n" +
				"m=audio 4000 RTP/AVP 0\r\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\r\n" +
				"m=video 5000 RTP/AVP 96\r\na=candidate:1 1 UDP 1 192.0.2.1 5000 typ host\r\n",
			Plan{Media: []MediaPlan{{Relay: true, Addr: r1.Addr, RTPPort: 30000, DropICE: true}}},
			head + "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\nc=IN IP4 192.0.2.1\r\n" +
				"m=audio 30000 RTP/AVP 0\r\nc=IN IP4 203.0.113.5\r\n" +
				"m=video 5000 RTP/AVP 96\r\na=candidate:1 1 UDP 1 192.0.2.1 5000 typ host\r\n",
		},
		{
			"ICE-lite session with a rejected stream: session ICE goes",
			head + "a=ice-lite\r\na=ice-ufrag:abcd\r\nc=IN IP4 192.0.2.1\r\n" +
				"m=audio 4000 RTP/AVP 0\r\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\r\na=remote-candidates:1 192.0.2.9 6000\r\n" +
				"m=video 0 RTP/AVP 96\r\na=candidate:1 1 UDP 1 192.0.2.1 5000 typ host",
			Plan{Media: []MediaPlan{{Relay: true, Addr: r1.Addr, RTPPort: 30000, DropICE: true}}},
			head + "c=IN IP4 203.0.113.5\r\n" +
				"m=audio 30000 RTP/AVP 0\r\n" +
				"m=video 0 RTP/AVP 96\r\na=candidate:1 1 UDP 1 192.0.2.1 5000 typ host",
		},
		{
			"deleting an unterminated last line, then adding a=rtcp",
			head + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host",
			Plan{Media: []MediaPlan{{Relay: true, Addr: r1.Addr, RTPPort: 30000, RTCPPort: 30005, DropICE: true}}},
			head + "c=IN IP4 203.0.113.5\r\nm=audio 30000 RTP/AVP 0\r\na=rtcp:30005\r\n",
		},
		{
			"udptl and non-RTP streams never get an a=rtcp",
			head + "c=IN IP4 192.0.2.1\r\nm=image 4000 UDPTL t38\r\nm=application 4002 udp wb\r\n",
			Plan{Media: []MediaPlan{{Relay: true, Addr: r1.Addr, RTPPort: 30000, RTCPPort: 30009}, {Relay: true, Addr: r1.Addr, RTPPort: 30002, RTCPPort: 30011}}},
			head + "c=IN IP4 203.0.113.5\r\nm=image 30000 UDPTL t38\r\nm=application 30002 udp wb\r\n",
		},
		{
			"port count and leading zeros: only the port digits change",
			head + "c=IN IP4 192.0.2.1\r\nm=message 02855/1 TCP/MSRP *\r\n",
			Plan{Media: []MediaPlan{r1}},
			head + "c=IN IP4 203.0.113.5\r\nm=message 30000/1 TCP/MSRP *\r\n",
		},
		{
			"origin with another address type",
			head + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n",
			Plan{Origin: netip.MustParseAddr("2001:db8::7")},
			"v=0\r\no=- 1 1 IN IP6 2001:db8::7\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n",
		},
	} {
		var s Session
		if err := s.Parse([]byte(tc.in)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		out, err := s.AppendRewrite(nil, &tc.p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(out) != tc.want {
			t.Errorf("%s:\n got: %q\nwant: %q", tc.name, out, tc.want)
		}
		var r Session
		if err := r.Parse(out); err != nil {
			t.Errorf("%s: output does not parse: %v", tc.name, err)
			continue
		}
		checkApplied(t, &s, &r, &tc.p)
	}
}

// TestZeroAllocs: a warm Session parses, and rewrites into a buffer with
// room, without allocating.
func TestZeroAllocs(t *testing.T) {
	var s Session
	out := make([]byte, 0, 1024)
	for _, name := range goldenNames(t) {
		in := readGolden(t, name, ".sdp")
		if err := s.Parse(in); err != nil {
			t.Fatal(err)
		}
		p := readPlan(t, string(readGolden(t, name, ".plan")), s.NumMedia())
		n := testing.AllocsPerRun(20, func() {
			if err := s.Parse(in); err != nil {
				t.Fatal(err)
			}
			out, _ = s.AppendRewrite(out[:0], p)
			for i := 0; i < s.NumMedia(); i++ {
				_ = s.Media(i)
			}
			_, _ = s.Version()
			_ = s.Origin()
		})
		if n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

func ExampleSession_AppendRewrite() {
	body := []byte("v=0\r\n" +
		"o=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\n" +
		"s=-\r\n" +
		"c=IN IP4 192.168.1.20\r\n" +
		"t=0 0\r\n" +
		"m=audio 49170 RTP/AVP 0\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n")
	var s Session
	if err := s.Parse(body); err != nil {
		fmt.Println(err.(*Error).Status(), err)
		return
	}
	out, _ := s.AppendRewrite(nil, &Plan{Media: []MediaPlan{{
		Relay: true, Addr: netip.MustParseAddr("203.0.113.5"), RTPPort: 30000,
	}}})
	fmt.Printf("%s", bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n")))
	// Output:
	// v=0
	// o=alice 2890844526 2890844526 IN IP4 192.168.1.20
	// s=-
	// c=IN IP4 203.0.113.5
	// t=0 0
	// m=audio 30000 RTP/AVP 0
	// a=rtpmap:0 PCMU/8000
}
