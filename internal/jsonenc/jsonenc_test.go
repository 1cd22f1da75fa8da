package jsonenc

import (
	"encoding/json"
	"math"
	"net/netip"
	"testing"
	"time"
)

func same(t *testing.T, what string, got []byte, v any) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: encoding/json: %v", what, err)
	}
	if string(got) != string(want) {
		t.Errorf("%s: got %s, encoding/json %s", what, got, want)
	}
}

func TestString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uo\te`, "<a href='x'>&amp;</a>", "\x00\x01\b\f\n\r\t\x1f\x7f",
		"caf\xc3\xa9", "bad \xff\xfe utf8", "\xe2\x80\xa8 and \xe2\x80\xa9", "\xed\xa0\x80", "日本語", "\xf0\x9f\x93\x9e"} {
		same(t, s, String(nil, s), s)
	}
}

func FuzzString(f *testing.F) {
	for _, s := range []string{"", "a<b>&c", "\xff", "\u2028", "\"\\\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { same(t, "fuzz", String(nil, s), s) })
}

func TestFloat(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.1, 4.2, 12.5, 1e-6, 9.99e-7, 1e-7, 1.5e-9, 1e20, 1e21, 1.234e25, -3e-8,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 100.0 / 3} {
		same(t, "float", Float(nil, f), f)
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := string(Float(nil, f)); got != "null" {
			t.Errorf("%v: %s", f, got)
		}
	}
}

func FuzzFloat(f *testing.F) {
	f.Add(1.5)
	f.Add(1e-9)
	f.Fuzz(func(t *testing.T, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		same(t, "fuzz", Float(nil, v), v)
	})
}

func TestTimeAddrBool(t *testing.T) {
	for _, tm := range []time.Time{time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600)), {}} {
		same(t, "time", Time(nil, tm), tm)
	}
	for _, a := range []netip.AddrPort{{}, netip.MustParseAddrPort("10.0.0.1:5060"), netip.MustParseAddrPort("[2001:db8::1]:5060"),
		netip.MustParseAddrPort("[::ffff:10.0.0.1]:7"), netip.MustParseAddrPort("[fe80::1%eth0]:9")} {
		same(t, "addrport", AddrPort(nil, a), a)
	}
	same(t, "true", Bool(nil, true), true)
	same(t, "false", Bool(nil, false), false)
	same(t, "int", Int(nil, -42), -42)
	same(t, "uint", Uint(nil, math.MaxUint64), uint64(math.MaxUint64))
	same(t, "nil strings", Strings(nil, nil), []string(nil))
	same(t, "strings", Strings(nil, []string{}), []string{})
	same(t, "strings", Strings(nil, []string{"a", "<b>"}), []string{"a", "<b>"})
}

// The call log's line: a few short strings, three times and the media's
// plain-language diagnosis, a few hundred bytes of ASCII text.
func BenchmarkString(b *testing.B) {
	s := "sipedge did not relay this call's media (media.relay is auto and the call did not need it: no side behind NAT and both on one network; or its INVITE carried no SDP offer), so it cannot see it: only the phones or a capture on their network can tell whether audio flowed."
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = String(buf[:0], s)
	}
}

func BenchmarkTime(b *testing.B) {
	t := time.Date(2026, 12, 7, 2, 39, 44, 720712338, time.UTC)
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = Time(buf[:0], t)
	}
}
