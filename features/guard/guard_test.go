package guard

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tables on a clock the test moves: no socket, no sleep.

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// count is how many log lines contain substr.
func (s *syncBuffer) count(substr string) int {
	n := 0
	for _, l := range strings.Split(s.String(), "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

type fixture struct {
	g   *Guard
	now int64
	log *syncBuffer
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	f := &fixture{log: &syncBuffer{}}
	f.g = New(cfg, slog.New(slog.NewTextHandler(f.log, nil)))
	f.g.clock = func() int64 { return f.now }
	return f
}

func (f *fixture) advance(d time.Duration) { f.now += int64(d) }

// send makes n requests from a and returns how many were dropped.
func (f *fixture) send(a netip.Addr, n int) int {
	dropped := 0
	cfg := f.g.cfg.Load()
	for range n {
		if f.g.request(a, cfg) {
			dropped++
		}
	}
	return dropped
}

var (
	srcA = netip.MustParseAddr("203.0.113.7")
	srcB = netip.MustParseAddr("198.51.100.9")
	srcC = netip.MustParseAddr("2001:db8::1")
)

func rateConfig(n int) Config {
	c := Defaults()
	c.RateRequests, c.RateWindow, c.RateBan = n, 2*time.Second, 5*time.Minute
	return c
}

func TestRate(t *testing.T) {
	type step struct {
		at      time.Duration // since the previous step
		n       int           // requests from srcA
		dropped int           // of those, dropped
	}
	for _, tc := range []struct {
		name   string
		steps  []step
		banned bool
	}{
		{"below", []step{{0, 9, 0}}, false},
		{"at the threshold", []step{{0, 10, 0}}, false},
		{"above: the 11th is dropped and bans", []step{{0, 11, 1}, {0, 5, 5}}, true},
		{"spread over the window", []step{{0, 5, 0}, {1900 * time.Millisecond, 5, 0}}, false},
		{"sliding: the previous bucket still counts", []step{{0, 10, 0}, {2100 * time.Millisecond, 1, 1}}, true},
		{"sliding: half a window later, half of it", []step{{0, 10, 0}, {3 * time.Second, 5, 0}}, false},
		{"sliding: half a window later, one more bans", []step{{0, 10, 0}, {3 * time.Second, 6, 1}, {0, 1, 1}}, true},
		{"the window starts at the first request", []step{{time.Second, 5, 0}, {1900 * time.Millisecond, 6, 1}}, true},
		{"two windows later: forgotten", []step{{0, 10, 0}, {4 * time.Second, 10, 0}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, rateConfig(10))
			for i, s := range tc.steps {
				f.advance(s.at)
				if got := f.send(srcA, s.n); got != s.dropped {
					t.Errorf("step %d: %d dropped, want %d", i, got, s.dropped)
				}
			}
			if got := f.g.Banned(srcA); got != tc.banned {
				t.Errorf("Banned = %v, want %v", got, tc.banned)
			}
			if got, want := f.log.count("ban 203.0.113.7 reason=rate requests=10 window=2s for=5m0s"), map[bool]int{true: 1}[tc.banned]; got != want {
				t.Errorf("%d ban lines, want %d:\n%s", got, want, f.log)
			}
		})
	}
}

// A steady stream: 8 requests per window pass for ever, 13 are banned.
func TestRateSteady(t *testing.T) {
	for _, tc := range []struct {
		every  time.Duration
		banned bool
	}{{250 * time.Millisecond, false}, {150 * time.Millisecond, true}} {
		f := newFixture(t, rateConfig(10))
		for range 200 {
			f.send(srcA, 1)
			f.advance(tc.every)
		}
		if got := f.g.Banned(srcA); got != tc.banned {
			t.Errorf("one request every %v: banned %v, want %v", tc.every, got, tc.banned)
		}
	}
}

func TestBanIsPerSource(t *testing.T) {
	f := newFixture(t, rateConfig(10))
	f.send(srcA, 1000)
	if got := f.send(srcB, 10); got != 0 {
		t.Errorf("another source: %d of 10 dropped", got)
	}
	if !f.g.Banned(srcA) || f.g.Banned(srcB) {
		t.Errorf("Banned: A %v B %v, want true false", f.g.Banned(srcA), f.g.Banned(srcB))
	}
	bans := f.g.Bans()
	if len(bans) != 1 || bans[0].Source != srcA || bans[0].Reason != "rate" || bans[0].Count != 990 ||
		bans[0].Until.Sub(bans[0].Since) != 5*time.Minute {
		t.Errorf("Bans = %+v, want srcA, rate, 990 dropped, 5m", bans)
	}
	if n := f.log.count("ban "); n != 1 {
		t.Errorf("%d ban lines for one ban, want 1", n)
	}
	st := f.g.Stats()
	if st.Dropped != 990 || st.Bans["rate"] != 1 || st.ActiveBans != 1 || st.TrackedSources != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestRateOff(t *testing.T) {
	f := newFixture(t, rateConfig(0))
	if got := f.send(srcA, 10000); got != 0 {
		t.Errorf("%d dropped with requests: 0", got)
	}
	if st := f.g.Stats(); st.TrackedSources != 0 {
		t.Errorf("%d sources tracked with the rate limit off", st.TrackedSources)
	}
}

func TestBanExpires(t *testing.T) {
	f := newFixture(t, rateConfig(10))
	f.send(srcA, 11)
	f.advance(5*time.Minute - time.Millisecond)
	if got := f.send(srcA, 1); got != 1 {
		t.Fatalf("a millisecond before the end: not dropped")
	}
	f.advance(time.Millisecond)
	if got := f.send(srcA, 10); got != 0 {
		t.Errorf("after the ban: %d of 10 dropped (counts start afresh)", got)
	}
	if f.log.count("unban 203.0.113.7 reason=expired") != 1 {
		t.Errorf("no unban line:\n%s", f.log)
	}
	// A source that went quiet: the sweep ends its ban.
	f.send(srcB, 11)
	f.advance(6 * time.Minute)
	f.g.sweep()
	if f.log.count("unban 198.51.100.9 reason=expired") != 1 || f.g.Banned(srcB) {
		t.Errorf("sweep did not end the ban:\n%s", f.log)
	}
	st := f.g.Stats()
	if st.ActiveBans != 0 || st.Expired != 2 {
		t.Errorf("Stats = %+v, want 0 active bans, 2 expired", st)
	}
	// Idle sources are forgotten by the sweep.
	f.advance(time.Minute)
	f.g.sweep()
	if st := f.g.Stats(); st.TrackedSources != 0 {
		t.Errorf("%d sources tracked after they went quiet", st.TrackedSources)
	}
}

func TestLift(t *testing.T) {
	f := newFixture(t, rateConfig(10))
	for _, a := range []netip.Addr{srcA, srcB, srcC} {
		f.send(a, 11)
	}
	if n := f.g.Lift(netip.MustParsePrefix("203.0.113.0/24")); n != 1 {
		t.Errorf("Lift(203.0.113.0/24) = %d, want 1", n)
	}
	if f.g.Banned(srcA) || !f.g.Banned(srcB) {
		t.Error("the wrong ban was lifted")
	}
	if f.log.count("unban 203.0.113.7 reason=lifted") != 1 {
		t.Errorf("no unban line:\n%s", f.log)
	}
	if got := f.send(srcA, 10); got != 0 {
		t.Errorf("after the lift: %d of 10 dropped (counts start afresh)", got)
	}
	if n := f.g.Lift(netip.MustParsePrefix("0.0.0.0/0")); n != 1 {
		t.Errorf("Lift(0.0.0.0/0) = %d, want 1 (the IPv6 ban stays)", n)
	}
	if n := f.g.Lift(netip.MustParsePrefix("::/0")); n != 1 || f.g.Banned(srcC) {
		t.Errorf("Lift(::/0) = %d, want 1", n)
	}
	if st := f.g.Stats(); st.ActiveBans != 0 || st.Lifted != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestAuthFailuresPerSource(t *testing.T) {
	c := Defaults()
	c.AuthPerSource, c.AuthPerUser = 3, 0
	f := newFixture(t, c)
	src := netip.AddrPortFrom(srcA, 5060)
	f.g.AuthFailed(src, "alice", "example.com", "wrong-password")
	f.g.AuthFailed(src, "alice", "example.com", "wrong-password")
	f.g.AuthSucceeded(src, []byte("alice")) // resets the count
	f.g.AuthFailed(src, "alice", "example.com", "wrong-password")
	f.g.AuthFailed(src, "bob", "example.com", "wrong-password")
	if f.g.Banned(srcA) {
		t.Fatal("banned although a success reset the count")
	}
	f.g.AuthFailed(src, "carol", "example.com", "unknown-user")
	if !f.g.Banned(srcA) {
		t.Fatal("not banned after 3 failures in a row")
	}
	if f.log.count("ban 203.0.113.7 reason=auth-failures failures=3 window=1m0s for=15m0s") != 1 {
		t.Errorf("no ban line:\n%s", f.log)
	}
	if f.log.count(`auth failure from 203.0.113.7:5060 user=\"carol\" realm=\"example.com\" reason=unknown-user`) != 1 {
		t.Errorf("no auth failure line:\n%s", f.log)
	}
	if got := f.send(srcA, 1); got != 1 {
		t.Error("a request from the banned source was served")
	}
	f.advance(15 * time.Minute)
	if f.g.Banned(srcA) {
		t.Error("still banned after 15 minutes")
	}
	st := f.g.Stats()
	if st.AuthFailures != 5 || st.Bans["auth-failures"] != 1 {
		t.Errorf("Stats = %+v", st)
	}
	// Failures spread wider than the window never ban.
	f.advance(time.Hour)
	for range 10 {
		f.g.AuthFailed(src, "alice", "example.com", "wrong-password")
		f.advance(time.Minute)
	}
	if f.g.Banned(srcA) {
		t.Error("banned for one failure a minute")
	}
}

func TestUserLockSparesGoodSource(t *testing.T) {
	c := Defaults()
	c.AuthPerSource, c.AuthPerUser = 10, 5
	f := newFixture(t, c)
	phone := netip.MustParseAddrPort("192.0.2.10:5060")
	f.g.AuthSucceeded(phone, []byte("alice"))
	// A brute force from many addresses, a few tries each.
	for i := range 5 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), 5060)
		if f.g.UserLocked(src.Addr(), []byte("alice")) {
			t.Fatalf("locked after %d failures", i)
		}
		f.g.AuthFailed(src, "alice", "example.com", "wrong-password")
	}
	attacker := netip.MustParseAddr("203.0.113.99")
	if !f.g.UserLocked(attacker, []byte("alice")) {
		t.Error("not locked for a new source after 5 failures from 5 sources")
	}
	if f.g.UserLocked(phone.Addr(), []byte("alice")) {
		t.Error("locked for the source alice authenticated from")
	}
	if f.g.UserLocked(attacker, []byte("bob")) {
		t.Error("another user locked")
	}
	for i := range 5 {
		if f.g.Banned(netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})) {
			t.Error("a source banned after one failure")
		}
	}
	if f.log.count(`user locked user=\"alice\" reason=auth-failures failures=5 window=1m0s for=15m0s`) != 1 {
		t.Errorf("no lock line:\n%s", f.log)
	}
	if st := f.g.Stats(); st.UserLocks != 1 || st.LockedUsers != 1 {
		t.Errorf("Stats = %+v", st)
	}
	f.advance(15 * time.Minute)
	if f.g.UserLocked(attacker, []byte("alice")) {
		t.Error("still locked after the ban duration")
	}
	f.g.sweep()
	if f.log.count(`user unlocked user=\"alice\" reason=expired`) != 1 {
		t.Errorf("no unlock line:\n%s", f.log)
	}
	// A good source is good for goodFor only.
	f.advance(goodFor)
	for i := range 5 {
		f.g.AuthFailed(netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), 5060), "alice", "example.com", "wrong-password")
	}
	if !f.g.UserLocked(phone.Addr(), []byte("alice")) {
		t.Error("a source that authenticated a day ago is still spared")
	}
}

func TestGoodSourcesBounded(t *testing.T) {
	f := newFixture(t, Defaults())
	var srcs []netip.AddrPort
	for i := range maxGood + 2 {
		s := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 5060)
		srcs = append(srcs, s)
		f.g.AuthSucceeded(s, []byte("alice"))
		f.advance(time.Second)
	}
	for range 20 {
		f.g.AuthFailed(netip.MustParseAddrPort("203.0.113.1:5060"), "alice", "example.com", "wrong-password")
	}
	for i, s := range srcs {
		want := i < 2 // the oldest were forgotten
		if got := f.g.UserLocked(s.Addr(), []byte("alice")); got != want {
			t.Errorf("source %d: locked %v, want %v", i, got, want)
		}
	}
}

func TestTableCap(t *testing.T) {
	c := rateConfig(10)
	c.MaxTrackedSources = 3
	f := newFixture(t, c)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }
	for i := 1; i <= 3; i++ {
		f.send(addr(i), 5)
		f.advance(time.Millisecond)
	}
	f.send(addr(1), 1) // 1 is now the most recent; 2 the least
	f.send(addr(4), 1)
	if st := f.g.Stats(); st.TrackedSources != 3 || st.Evicted != 1 {
		t.Fatalf("Stats = %+v, want 3 tracked, 1 evicted", st)
	}
	// 2 was forgotten: its count starts afresh (5 more are fine).
	if got := f.send(addr(2), 10); got != 0 {
		t.Errorf("evicted source: %d dropped", got)
	}
	// 1 kept its count: 6 more ban it.
	if f.send(addr(1), 6); !f.g.Banned(addr(1)) {
		t.Error("the recent source lost its count")
	}
	// Full of bans: new sources are served untracked; no ban is lost.
	f.send(addr(2), 11)
	f.send(addr(4), 11)
	for i := 1; i <= 4; i++ {
		if f.g.Banned(addr(i)) != (i != 3) {
			t.Fatalf("source %d: banned %v", i, f.g.Banned(addr(i)))
		}
	}
	f.send(addr(3), 100) // was evicted by 4 or 2; table full of bans now
	if f.g.Banned(addr(3)) || f.send(addr(3), 1) != 0 {
		t.Error("a source was banned or dropped because the table is full")
	}
	st := f.g.Stats()
	if st.Untracked == 0 || st.ActiveBans != 3 || st.TrackedSources != 3 {
		t.Errorf("Stats = %+v, want untracked requests and the 3 bans kept", st)
	}
}

func TestShardedCap(t *testing.T) {
	c := rateConfig(1000)
	c.MaxTrackedSources = 100000
	f := newFixture(t, c)
	if n := len(f.g.sources.shards); n != maxShards {
		t.Errorf("%d shards for 100000 sources", n)
	}
	for i := range 200000 {
		f.send(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1)
	}
	if st := f.g.Stats(); st.TrackedSources > 100000 || st.TrackedSources < 90000 {
		t.Errorf("%d sources tracked, cap 100000", st.TrackedSources)
	}
}

func TestSetConfig(t *testing.T) {
	f := newFixture(t, rateConfig(10))
	f.send(srcA, 11)
	f.g.SetConfig(rateConfig(1000))
	if !f.g.Banned(srcA) {
		t.Error("a reload lifted a ban")
	}
	if got := f.send(srcB, 500); got != 0 {
		t.Errorf("%d dropped under the new limit", got)
	}
}

func TestLogLines(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{authFailureLine(netip.MustParseAddrPort("203.0.113.7:5060"), "alice", "sip.example.com", "wrong-password"),
			`auth failure from 203.0.113.7:5060 user="alice" realm="sip.example.com" reason=wrong-password`},
		{authFailureLine(netip.MustParseAddrPort("[2001:db8::1]:5070"), `a" b`, "", "bad reason\n"),
			`auth failure from [2001:db8::1]:5070 user="a\" b" realm="" reason=bad-reason-`},
		{authFailureLine(netip.MustParseAddrPort("203.0.113.7:5060"), "x\nauth failure from 192.0.2.1:1", "r", ""),
			`auth failure from 203.0.113.7:5060 user="x\nauth failure from 192.0.2.1:1" realm="r" reason=unknown`},
		{banLine(srcA, banRate, 100, 2*time.Second, 5*time.Minute), "ban 203.0.113.7 reason=rate requests=100 window=2s for=5m0s"},
		{banLine(srcC, banAuth, 10, time.Minute, 15*time.Minute), "ban 2001:db8::1 reason=auth-failures failures=10 window=1m0s for=15m0s"},
		{unbanLine(srcA, false), "unban 203.0.113.7 reason=expired"},
		{unbanLine(srcA, true), "unban 203.0.113.7 reason=lifted"},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
}

// The request path of a known source allocates nothing.
func TestRequestAllocs(t *testing.T) {
	f := newFixture(t, rateConfig(1<<20))
	cfg := f.g.cfg.Load()
	f.g.request(srcA, cfg)
	if n := testing.AllocsPerRun(1000, func() { f.g.request(srcA, cfg) }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	f.send(srcB, 1<<21) // banned
	if n := testing.AllocsPerRun(1000, func() { f.g.request(srcB, cfg) }); n != 0 {
		t.Errorf("%v allocations per dropped request", n)
	}
}

func TestConcurrent(t *testing.T) {
	g := New(rateConfig(50), slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := g.cfg.Load()
			for i := range 5000 {
				a := netip.AddrFrom4([4]byte{10, 0, byte(w), byte(i % 64)})
				g.request(a, cfg)
				if i%100 == 0 {
					g.AuthFailed(netip.AddrPortFrom(a, 5060), fmt.Sprint("u", i%7), "r", "wrong-password")
					g.UserLocked(a, []byte("u1"))
					g.Bans()
					g.Stats()
				}
				if i%1000 == 0 {
					g.sweep()
					g.Lift(netip.MustParsePrefix("10.0.0.0/8"))
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkRequestKnownSource(b *testing.B) {
	g := New(rateConfig(1<<30), slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
	cfg := g.cfg.Load()
	g.request(srcA, cfg)
	b.ReportAllocs()
	for b.Loop() {
		g.request(srcA, cfg)
	}
}

func BenchmarkRequestManySources(b *testing.B) {
	g := New(Defaults(), slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
	cfg := g.cfg.Load()
	addrs := make([]netip.Addr, 10000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		g.request(addrs[i], cfg)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			g.request(addrs[i%len(addrs)], cfg)
			i++
		}
	})
}

func BenchmarkRequestBanned(b *testing.B) {
	g := New(rateConfig(10), slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
	cfg := g.cfg.Load()
	for range 11 {
		g.request(srcA, cfg)
	}
	b.ReportAllocs()
	for b.Loop() {
		g.request(srcA, cfg)
	}
}
