package pool

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// uas is a scripted PBX: it answers OPTIONS and INVITE 200 and BYE 200,
// and counts the INVITEs — until it is made silent.
type uas struct {
	p       *proxytest.Peer
	silent  atomic.Bool
	status  atomic.Int32 // the answer to INVITE (0: 200)
	invites atomic.Int32
	options atomic.Int32
}

func newUAS(t *testing.T) *uas {
	u := &uas{p: proxytest.NewPeer(t)}
	go func() {
		for {
			m := u.p.Recv(10 * time.Second)
			if m == nil {
				return
			}
			if !m.IsRequest() || u.silent.Load() {
				continue
			}
			code := int(u.status.Load())
			if code == 0 {
				code = 200
			}
			switch m.MethodKind() {
			case sip.OPTIONS:
				u.options.Add(1)
				u.reply(m, 200)
			case sip.INVITE:
				u.invites.Add(1)
				u.reply(m, code)
			case sip.BYE:
				u.reply(m, 200)
			}
		}
	}()
	return u
}

func (u *uas) reply(m *sip.Message, code int) {
	src := u.p.Addr
	if v, err := m.TopVia(); err == nil {
		if ap, err := netip.ParseAddrPort(fmt.Sprintf("%s:%d", v.Host, v.Port)); err == nil {
			src = ap
		}
	}
	u.p.Conn.WriteToUDPAddrPort([]byte(u.p.Answer(m, code, "uas")), src)
}

func (u *uas) uri() string { return "sip:" + u.p.Addr.String() }

// lazy lets the core be built before the pool it routes to.
type lazy struct{ r atomic.Pointer[proxy.Router] }

func (l *lazy) Route(ctx context.Context, m *sip.Message, src netip.AddrPort, p transport.Proto) proxy.Decision {
	return (*l.r.Load()).Route(ctx, m, src, p)
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startPool(t *testing.T, cfg Config) (*Feature, netip.AddrPort, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	var f *Feature
	l := &lazy{}
	_, px := proxytest.Start(t, l, func(c *proxy.Core) []proxy.Feature {
		f = New(c, slog.New(slog.NewTextHandler(lb, nil)))
		return []proxy.Feature{f}
	})
	s, err := f.Prepare([]Config{cfg})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Routers()["pool:"+cfg.Name]
	l.r.Store(&r)
	f.Use(s)
	return f, px, lb
}

// dial sends an INVITE through the proxy and waits for its final answer;
// it returns the status and how long it took.
func dial(t *testing.T, caller *proxytest.Peer, px netip.AddrPort, id string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	caller.Send(px, proxytest.Invite(caller, px, id, "z9hG4bK"+id))
	for time.Since(start) < 5*time.Second {
		m := caller.Recv(5 * time.Second)
		if m == nil {
			break
		}
		if !m.IsRequest() && string(m.CallID()) == id && m.StatusCode() >= 200 {
			return m.StatusCode(), time.Since(start)
		}
	}
	t.Fatalf("%s: no final answer", id)
	return 0, 0
}

func target(f *Feature, uri string) TargetView {
	for _, p := range f.View() {
		for _, tv := range p.Targets {
			if tv.URI == uri {
				return tv
			}
		}
	}
	return TargetView{}
}

func eventually(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s: not within %v", what, d)
}

// TestFailoverAndHealth: calls spread over both targets; one goes silent:
// every call still completes (the next target after AnswerTimeout), the
// failures of calls and probes take it down, and calls then go straight
// to the other; it answers again and comes back after UpAfter probes.
func TestFailoverAndHealth(t *testing.T) {
	a, b := newUAS(t), newUAS(t)
	cfg := Config{Name: "pbx", Targets: []TargetConfig{{URI: a.uri()}, {URI: b.uri()}},
		Probe:         Probe{Interval: 150 * time.Millisecond, Timeout: 100 * time.Millisecond, DownAfter: 3, UpAfter: 2},
		AnswerTimeout: 200 * time.Millisecond}
	f, px, logs := startPool(t, cfg)
	caller := proxytest.NewPeer(t)
	for i := 0; i < 20; i++ {
		if code, _ := dial(t, caller, px, fmt.Sprintf("spread-%d", i)); code != 200 {
			t.Fatalf("call %d: %d", i, code)
		}
	}
	if a.invites.Load() == 0 || b.invites.Load() == 0 {
		t.Fatalf("calls not spread: %d and %d", a.invites.Load(), b.invites.Load())
	}
	eventually(t, "probes answered", time.Second, func() bool { return a.options.Load() > 0 && b.options.Load() > 0 })

	a.silent.Store(true)
	for i := 0; i < 10; i++ {
		if code, _ := dial(t, caller, px, fmt.Sprintf("failover-%d", i)); code != 200 {
			t.Fatalf("call %d while a target is silent: %d", i, code)
		}
	}
	eventually(t, "the silent target down", 2*time.Second, func() bool { return target(f, a.uri()).State == "down" })
	before := a.invites.Load()
	for i := 0; i < 10; i++ {
		code, took := dial(t, caller, px, fmt.Sprintf("down-%d", i))
		if code != 200 || took > 150*time.Millisecond {
			t.Fatalf("call %d with a target down: %d after %v (it should not wait for the down target)", i, code, took)
		}
	}
	if a.invites.Load() != before {
		t.Fatal("a target that is down got a call")
	}
	if !strings.Contains(logs.String(), `msg="pool target down" pool=pbx target=`+a.uri()) {
		t.Fatalf("no log line for the change:\n%s", logs)
	}

	a.silent.Store(false)
	eventually(t, "the target back up", 2*time.Second, func() bool { return target(f, a.uri()).State == "up" })
	if !strings.Contains(logs.String(), `msg="pool target up" pool=pbx target=`+a.uri()) {
		t.Fatalf("no log line for the change:\n%s", logs)
	}
	tv := target(f, a.uri())
	if tv.LastProbe == nil || !tv.LastProbe.OK || tv.LastProbe.Status != 200 || tv.AvgLatencyMS <= 0 {
		t.Fatalf("probe state not kept: %+v", tv)
	}
	st := f.Stats()
	if st.Up["pbx/"+a.uri()] != 1 || st.TargetsUp["pbx"] != 2 || st.StateChanges != 2 || st.PassiveFailures == 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestPassive503: a target answering 503 is taken down by the calls
// alone, before its probes (answered 200) could tell: each 503 fails
// over to the other target, and the caller never sees it.
func TestPassive503(t *testing.T) {
	a, b := newUAS(t), newUAS(t)
	cfg := Config{Name: "pbx", Algorithm: Priority, Targets: []TargetConfig{{URI: a.uri(), Priority: 1}, {URI: b.uri(), Priority: 2}},
		Probe: Probe{Interval: time.Hour, DownAfter: 3, UpAfter: 2}}
	f, px, _ := startPool(t, cfg)
	// The first probes (answered 200) are counted before the calls.
	eventually(t, "first probes", time.Second, func() bool {
		return target(f, a.uri()).LastProbe != nil && target(f, b.uri()).LastProbe != nil
	})
	a.status.Store(503)
	caller := proxytest.NewPeer(t)
	for i := 0; i < 5; i++ {
		if code, _ := dial(t, caller, px, fmt.Sprintf("c503-%d", i)); code != 200 {
			t.Fatalf("call %d: %d", i, code)
		}
	}
	if n := a.invites.Load(); n != 3 {
		t.Fatalf("the first-priority target got %d calls, want 3 (down_after) and no more", n)
	}
	if target(f, a.uri()).State != "down" {
		t.Fatal("still up after three 503s")
	}
}

// TestLeastCalls: answered calls count on their target until their BYE;
// new calls go to the target with fewer.
func TestLeastCalls(t *testing.T) {
	a, b := newUAS(t), newUAS(t)
	cfg := Config{Name: "pbx", Algorithm: LeastCalls, Targets: []TargetConfig{{URI: a.uri()}, {URI: b.uri()}},
		Probe: Probe{Interval: time.Hour}}
	f, px, _ := startPool(t, cfg)
	caller := proxytest.NewPeer(t)
	for i := 0; i < 6; i++ {
		if code, _ := dial(t, caller, px, fmt.Sprintf("lc-%d", i)); code != 200 {
			t.Fatalf("call %d: %d", i, code)
		}
	}
	if a.invites.Load() != 3 || b.invites.Load() != 3 {
		t.Fatalf("6 calls held open went %d and %d, want 3 each", a.invites.Load(), b.invites.Load())
	}
	if ta, tb := target(f, a.uri()), target(f, b.uri()); ta.ActiveCalls != 3 || tb.ActiveCalls != 3 {
		t.Fatalf("active calls %d and %d, want 3 each", ta.ActiveCalls, tb.ActiveCalls)
	}
	// The calls on a end.
	for i := 0; i < 6; i++ {
		f.ended(fmt.Sprintf("lc-%d", i))
	}
	if ta, tb := target(f, a.uri()), target(f, b.uri()); ta.ActiveCalls != 0 || tb.ActiveCalls != 0 {
		t.Fatalf("after the BYEs: active calls %d and %d", ta.ActiveCalls, tb.ActiveCalls)
	}
}

// TestAllDown: a pool with no target up answers 503 at once.
func TestAllDown(t *testing.T) {
	a := newUAS(t)
	a.silent.Store(true)
	cfg := Config{Name: "pbx", Targets: []TargetConfig{{URI: a.uri()}},
		Probe: Probe{Interval: 50 * time.Millisecond, Timeout: 30 * time.Millisecond, DownAfter: 2, UpAfter: 2}}
	f, px, _ := startPool(t, cfg)
	eventually(t, "down", 2*time.Second, func() bool { return target(f, a.uri()).State == "down" })
	caller := proxytest.NewPeer(t)
	if code, took := dial(t, caller, px, "alldown"); code != 503 || took > 200*time.Millisecond {
		t.Fatalf("%d after %v, want 503 at once", code, took)
	}
	if f.Stats().Unavailable != 1 {
		t.Fatalf("stats: %+v", f.Stats())
	}
}

// TestReloadKeepsHealth: a reload keeps the state of the targets that
// stay (a down target stays down), and forgets those that go.
func TestReloadKeepsHealth(t *testing.T) {
	a, b, c := newUAS(t), newUAS(t), newUAS(t)
	a.silent.Store(true)
	probe := Probe{Interval: 50 * time.Millisecond, Timeout: 30 * time.Millisecond, DownAfter: 2, UpAfter: 2}
	f, _, _ := startPool(t, Config{Name: "pbx", Targets: []TargetConfig{{URI: a.uri()}, {URI: b.uri()}}, Probe: probe})
	eventually(t, "down", 2*time.Second, func() bool { return target(f, a.uri()).State == "down" })
	since := target(f, a.uri()).Since
	probe.Interval = time.Hour // no probe may change it during the check
	if err := f.Configure([]Config{{Name: "pbx", Algorithm: Hash, Targets: []TargetConfig{{URI: a.uri(), Weight: 5}, {URI: c.uri()}}, Probe: probe}}); err != nil {
		t.Fatal(err)
	}
	v := f.View()
	if len(v) != 1 || len(v[0].Targets) != 2 || v[0].Algorithm != "hash" {
		t.Fatalf("view after reload: %+v", v)
	}
	if ta := v[0].Targets[0]; ta.State != "down" || !ta.Since.Equal(since) || ta.Weight != 5 {
		t.Fatalf("kept target: %+v", ta)
	}
	if tc := v[0].Targets[1]; tc.URI != c.uri() || tc.State != "up" {
		t.Fatalf("new target: %+v", tc)
	}
	if _, ok := f.Stats().Up["pbx/"+b.uri()]; ok {
		t.Fatal("a target no longer configured is still in the metrics")
	}
}

func TestPrepareRefuses(t *testing.T) {
	f := New(nil, nil)
	for _, tc := range []struct {
		cfg  []Config
		want string
	}{
		{[]Config{{Name: "p", Targets: []TargetConfig{{URI: "sip:pbx.example.com"}}}}, "names are not resolved"},
		{[]Config{{Name: "p", Targets: []TargetConfig{{URI: "sip:100@10.0.0.1"}}}}, "sip:IP"},
		{[]Config{{Name: "p"}}, "no targets"},
		{[]Config{{Name: "p", Targets: []TargetConfig{{URI: "sip:10.0.0.1"}, {URI: "sip:10.0.0.1"}}}}, "twice"},
		{[]Config{{Name: "p", Targets: []TargetConfig{{URI: "sip:10.0.0.1"}}}, {Name: "p", Targets: []TargetConfig{{URI: "sip:10.0.0.2"}}}}, "configured twice"},
	} {
		if _, err := f.Prepare(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
