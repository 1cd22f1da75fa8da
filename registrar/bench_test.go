package registrar

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/sip"
	"sipedge/store"
	"sipedge/transport"
)

// synth builds REGISTER messages from one template by rewriting
// fixed-width decimal fields in place: the user (To and Contact) and the
// CSeq. Parse then indexes the same buffer, so generating a request costs
// a few byte writes and a parse, and allocates nothing.
type synth struct {
	buf     []byte
	users   []int // offsets of the 8-digit user fields
	cseq    int   // offset of the 10-digit CSeq
	src     int   // offset of the 3-digit address byte in the Contact
	m       sip.Message
	lastErr error
}

func newSynth(extra string) *synth { return newSynthContact("", extra) }

// newSynthContact is newSynth with contact params after the Contact URI.
func newSynthContact(cparams, extra string) *synth {
	t := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK776asdhds;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:uUUUUUUUU@example.com>;tag=456248\r\n" +
		"To: <sip:uUUUUUUUU@example.com>\r\n" +
		"Call-ID: 843817637684230@998sdasdh09\r\n" +
		"CSeq: CCCCCCCCCC REGISTER\r\n" +
		"User-Agent: Yealink SIP-T46S 66.86.0.15\r\n" +
		"Contact: <sip:uUUUUUUUU@10.1.2.AAA:5060;transport=udp>" + cparams + "\r\n" +
		extra +
		"Expires: 3600\r\n" +
		"Content-Length: 0\r\n\r\n"
	s := &synth{buf: []byte(t)}
	for i := 0; ; {
		j := strings.Index(t[i:], "UUUUUUUU")
		if j < 0 {
			break
		}
		s.users = append(s.users, i+j)
		i += j + 8
	}
	s.cseq = strings.Index(t, "CCCCCCCCCC")
	s.src = strings.Index(t, "AAA")
	s.set(0, 1)
	return s
}

func putDigits(b []byte, v int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// set rewrites the user number and CSeq and parses the result.
func (s *synth) set(user, cseq int) *sip.Message {
	for _, off := range s.users {
		putDigits(s.buf[off:off+8], user)
	}
	putDigits(s.buf[s.cseq:s.cseq+10], cseq)
	putDigits(s.buf[s.src:s.src+3], user%200+1)
	if err := s.m.Parse(s.buf, nil); err != nil {
		s.lastErr = err
	}
	return &s.m
}

var benchReq = Request{Source: netip.MustParseAddrPort("203.0.113.50:5060"), Local: netip.MustParseAddrPort("192.0.2.1:5060"), Proto: transport.UDP}

func noop(error) {}

// BenchmarkRegister measures Register (with the in-place parse of the
// request included; see parse-only for that share):
//
//	refresh: a known AoR re-registers its contact (same Call-ID, next CSeq)
//	new:     a new AoR each time
func BenchmarkRegister(b *testing.B) {
	b.Run("parse-only", func(b *testing.B) {
		s := newSynth("")
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			s.set(i%1024, i)
		}
	})
	for _, mode := range []string{"memory", "store-nosync"} {
		setup := func(b *testing.B) *Registrar {
			cfg := Config{Logger: quiet}
			if mode == "store-nosync" {
				st, err := store.Open(b.TempDir(), store.Options{NoSync: true, Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				cfg.Store = st
			}
			r, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { r.Close() })
			return r
		}
		b.Run(mode+"/refresh", func(b *testing.B) {
			r := setup(b)
			s := newSynth("")
			const aors = 1024
			for u := range aors {
				req := benchReq
				req.Msg = s.set(u, 1)
				if res := r.Register(req); res.Code != 200 {
					b.Fatal(res.Code, res.Reason)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				req := benchReq
				req.Msg = s.set(i%aors, 1+i)
				res := r.Register(req)
				if res.Code != 200 || res.Commit == nil {
					b.Fatal(res.Code, res.Reason)
				}
				res.Commit.Then(noop)
			}
			if s.lastErr != nil {
				b.Fatal(s.lastErr)
			}
		})
		if mode == "memory" {
			// refresh with +sip.instance (no reg-id): the binding is found
			// by instance (findBinding).
			b.Run(mode+"/refresh-instance", func(b *testing.B) {
				r := setup(b)
				s := newSynthContact(`;+sip.instance="<urn:uuid:00000000-0000-1000-8000-0000UUUUUUUU>"`, "")
				const aors = 1024
				for u := range aors {
					req := benchReq
					req.Msg = s.set(u, 1)
					if res := r.Register(req); res.Code != 200 {
						b.Fatal(res.Code, res.Reason)
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					req := benchReq
					req.Msg = s.set(i%aors, 1+i)
					if res := r.Register(req); res.Code != 200 {
						b.Fatal(res.Code, res.Reason)
					}
				}
				if s.lastErr != nil {
					b.Fatal(s.lastErr)
				}
			})
		}
		b.Run(mode+"/new", func(b *testing.B) {
			r := setup(b)
			s := newSynth("")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				req := benchReq
				req.Msg = s.set(i, 1)
				res := r.Register(req)
				if res.Code != 200 {
					b.Fatal(res.Code, res.Reason)
				}
				res.Commit.Then(noop)
			}
		})
	}
	b.Run("memory/refresh-parallel", func(b *testing.B) {
		r, _ := New(Config{Logger: quiet})
		defer r.Close()
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			s := newSynth("")
			base := int(next.Add(1)) * 100000
			i := 0
			for pb.Next() {
				i++
				req := benchReq
				req.Msg = s.set(base+i%512, i)
				if res := r.Register(req); res.Code != 200 {
					b.Error(res.Code, res.Reason)
					return
				}
			}
		})
	})
}

func BenchmarkLookup(b *testing.B) {
	r, _ := New(Config{Logger: quiet})
	defer r.Close()
	s := newSynth("")
	keys := make([]string, 1024)
	for u := range keys {
		req := benchReq
		req.Msg = s.set(u, 1)
		r.Register(req)
		keys[u] = fmt.Sprintf("sip:u%08d@example.com", u)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if len(r.Lookup(keys[i%len(keys)])) != 1 {
			b.Fatal("lookup")
		}
	}
}

// memory1M registers n AoRs with one binding each through Register and
// reports the memory they hold, then refreshes every binding once (the
// garbage of a refresh — replaced records, responses — is what lets the
// heap grow towards twice the live data under GOGC=100) and checks the
// peak RSS against 1 GiB. It runs with Go's default GC settings, as
// sipedge does; SIPEDGE_BIG_LIMIT=N sets a soft memory limit of N MiB to
// compare.
func memory1M(tb testing.TB, n int, withStore bool) {
	if v, err := strconv.Atoi(os.Getenv("SIPEDGE_BIG_LIMIT")); err == nil && v > 0 {
		old := debug.SetMemoryLimit(int64(v) << 20)
		defer debug.SetMemoryLimit(old)
		tb.Logf("soft memory limit %d MiB", v)
	}
	cfg := Config{Logger: quiet}
	var st *store.Store
	if withStore {
		var err error
		st, err = store.Open(tb.TempDir(), store.Options{NoSync: true, Logger: quiet})
		if err != nil {
			tb.Fatal(err)
		}
		defer st.Close()
		cfg.Store = st
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	s := newSynth("")
	start := time.Now()
	for i := range n {
		req := benchReq
		req.Msg = s.set(i, 1)
		res := r.Register(req)
		if res.Code != 200 {
			tb.Fatal(res.Code, res.Reason)
		}
		res.Commit.Then(noop)
	}
	if st != nil {
		st.Sync()
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	rssNow, peak := rss()
	debug.FreeOSMemory()
	rssFreed, _ := rss()
	aors, bindings := r.Count()
	if bindings != n {
		tb.Fatalf("%d bindings of %d", bindings, n)
	}
	per := func(v uint64) float64 { return float64(v) / float64(n) }
	tb.Logf("%d AoRs / %d bindings (store: %v) registered in %v (%v each)", aors, bindings, withStore, elapsed.Round(time.Millisecond), elapsed/time.Duration(n))
	tb.Logf("heap in use %.0f MiB (%.0f B/binding), heap alloc %.0f MiB (%.0f B/binding), runtime Sys %.0f MiB (%.0f B/binding)",
		mib(after.HeapInuse-before.HeapInuse), per(after.HeapInuse-before.HeapInuse),
		mib(after.HeapAlloc-before.HeapAlloc), per(after.HeapAlloc-before.HeapAlloc),
		mib(after.Sys), per(after.Sys))
	tb.Logf("process RSS %.0f MiB after GC, %.0f MiB after FreeOSMemory, peak %.0f MiB", mib(rssNow), mib(rssFreed), mib(peak))
	if b, ok := tb.(*testing.B); ok {
		b.ReportMetric(per(after.HeapInuse-before.HeapInuse), "heapinuse-B/binding")
		b.ReportMetric(per(after.Sys), "sys-B/binding")
		b.ReportMetric(per(rssNow), "rss-B/binding")
	}
	// Steady state: every phone refreshes once.
	start = time.Now()
	for i := range n {
		req := benchReq
		req.Msg = s.set(i, 2)
		res := r.Register(req)
		if res.Code != 200 {
			tb.Fatal(res.Code, res.Reason)
		}
		res.Commit.Then(noop)
	}
	if st != nil {
		st.Sync()
	}
	rssNow, peak = rss()
	tb.Logf("after refreshing every binding once (%v): RSS %.0f MiB, peak %.0f MiB", time.Since(start).Round(time.Millisecond), mib(rssNow), mib(peak))
	if peak > 1<<30 {
		tb.Errorf("peak RSS %.0f MiB exceeds 1 GiB", mib(peak))
	}
	runtime.KeepAlive(r)
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }

// rss reads the current and peak resident set size (Linux; 0 elsewhere).
func rss() (now, peak uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				now = v << 10
			} else {
				peak = v << 10
			}
		}
	}
	return now, peak
}

// TestMemory1M registers a million bindings; it runs only with
// SIPEDGE_BIG=1 and without -short (a minute and a gigabyte):
//
//	SIPEDGE_BIG=1 go test -run TestMemory1M -v ./registrar/
func TestMemory1M(t *testing.T) {
	if testing.Short() || os.Getenv("SIPEDGE_BIG") != "1" {
		t.Skip("set SIPEDGE_BIG=1 (and no -short) to register 1 000 000 bindings")
	}
	withStore := os.Getenv("SIPEDGE_BIG_STORE") != "0"
	memory1M(t, 1000000, withStore)
}

// BenchmarkMemory1M is the same as a benchmark (one iteration is the
// whole million):
//
//	go test -run '^$' -bench Memory1M -benchtime 1x ./registrar/
func BenchmarkMemory1M(b *testing.B) {
	for _, withStore := range []bool{false, true} {
		b.Run(fmt.Sprintf("store=%v", withStore), func(b *testing.B) {
			for b.Loop() {
				memory1M(b, 1000000, withStore)
			}
		})
	}
}
