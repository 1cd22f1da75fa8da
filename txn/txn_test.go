package txn

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// recorder is a Sender that records what transactions send. Transactions
// are tested against their RFC 3261 state machines here; test/e2e runs them
// against real peers.
type recorder struct {
	mu   sync.Mutex
	sent []string
	fail error
}

func (r *recorder) Send(p transport.Proto, dst netip.AddrPort, b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.sent = append(r.sent, string(b))
	return nil
}

func (r *recorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.sent {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

const (
	testT1 = 20 * time.Millisecond
	testT2 = 80 * time.Millisecond
	testT4 = 100 * time.Millisecond
)

func newTestLayer(t *testing.T) (*Layer, *recorder) {
	return newTestLayerC(t, 3*time.Second)
}

func newTestLayerC(t *testing.T, timerC time.Duration) (*Layer, *recorder) {
	rec := &recorder{}
	l := New(Config{T1: testT1, T2: testT2, T4: testT4, TimerC: timerC, Sender: rec, Tick: 2 * time.Millisecond})
	t.Cleanup(l.Close)
	return l, rec
}

var dst = netip.MustParseAddrPort("127.0.0.1:5070")

func request(method, branch string) []byte {
	return []byte(method + " sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=" + branch + "\r\n" +
		"Route: <sip:proxy.example.com;lr>\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n" +
		"Call-ID: c1@192.0.2.1\r\nCSeq: 7 " + method + "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
}

func response(code int, method, branch, toTag string) []byte {
	return []byte(fmt.Sprintf("SIP/2.0 %d X\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=%s\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=%s\r\n"+
		"Call-ID: c1@192.0.2.1\r\nCSeq: 7 %s\r\nContent-Length: 0\r\n\r\n", code, branch, toTag, method))
}

func parse(t *testing.T, b []byte) (*sip.Message, *sip.Via) {
	t.Helper()
	m := new(sip.Message)
	if err := m.Parse(b, nil); err != nil {
		t.Fatal(err)
	}
	v, err := m.TopVia()
	if err != nil {
		t.Fatal(err)
	}
	return m, &v
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestServerInviteNon2xx(t *testing.T) {
	l, rec := newTestLayer(t)
	m, v := parse(t, request("INVITE", "z9hG4bKs1"))
	st, created := l.ServerFor(m, v, transport.UDP, dst)
	if !created {
		t.Fatal("not created")
	}
	// A retransmission before any response is absorbed silently.
	if again, c := l.ServerFor(m, v, transport.UDP, dst); c || again != st {
		t.Fatal("retransmission not matched")
	}
	if rec.count("") != 0 {
		t.Fatal("sent something before a response existed")
	}
	st.Respond([]byte("SIP/2.0 100 Trying\r\n"), 100)
	l.ServerFor(m, v, transport.UDP, dst) // retransmission: 100 resent
	if n := rec.count("SIP/2.0 100"); n != 2 {
		t.Fatalf("100 sent %d times, want 2", n)
	}
	st.Respond([]byte("SIP/2.0 486 Busy\r\n"), 486)
	// Timer G retransmits the 486 over UDP at T1, 2T1...
	eventually(t, "486 retransmission", 10*testT1, func() bool { return rec.count("SIP/2.0 486") >= 3 })
	// The ACK moves to Confirmed: retransmissions stop, ACK absorbed.
	ack, av := parse(t, request("ACK", "z9hG4bKs1"))
	if got, c := l.ServerFor(ack, av, transport.UDP, dst); got != st || c {
		t.Fatal("ACK not matched to the INVITE transaction")
	}
	n := rec.count("SIP/2.0 486")
	time.Sleep(4 * testT1)
	if rec.count("SIP/2.0 486") != n {
		t.Fatal("486 retransmitted after ACK")
	}
	// Timer I (T4) ends the transaction.
	eventually(t, "termination", 3*testT4, func() bool { s, _ := l.Counts(); return s == 0 })
}

func TestServerInviteNoACK(t *testing.T) {
	l, rec := newTestLayer(t)
	m, v := parse(t, request("INVITE", "z9hG4bKs2"))
	st, _ := l.ServerFor(m, v, transport.UDP, dst)
	st.Respond([]byte("SIP/2.0 603 Decline\r\n"), 603)
	// Timer H: 64*T1 after the final response the transaction ends.
	eventually(t, "timer H", 64*testT1+20*testT1, func() bool { s, _ := l.Counts(); return s == 0 })
	// G doubles up to T2: in 64*T1 = 1280 ms at 20,40,80,80... ~ 17 sends.
	if n := rec.count("SIP/2.0 603"); n < 10 || n > 20 {
		t.Fatalf("603 sent %d times", n)
	}
}

func TestServerInvite2xxAccepted(t *testing.T) {
	l, rec := newTestLayer(t)
	m, v := parse(t, request("INVITE", "z9hG4bKs3"))
	st, _ := l.ServerFor(m, v, transport.UDP, dst)
	st.Respond([]byte("SIP/2.0 200 OK a\r\n"), 200)
	st.Respond([]byte("SIP/2.0 200 OK b\r\n"), 200) // a second fork's 2xx is forwarded too
	st.Respond([]byte("SIP/2.0 486 Busy\r\n"), 486) // but nothing else after a 2xx
	l.ServerFor(m, v, transport.UDP, dst)           // INVITE retransmission: absorbed, no resend (RFC 6026)
	if rec.count("SIP/2.0 200") != 2 || rec.count("SIP/2.0 486") != 0 {
		t.Fatalf("sent %q", rec.sent)
	}
	// Nor is the 2xx kept for the 32 s of Timer L.
	st.mu.Lock()
	kept := st.last
	st.mu.Unlock()
	if kept != nil {
		t.Errorf("Accepted keeps %q", kept)
	}
	eventually(t, "timer L", 80*testT1, func() bool { s, _ := l.Counts(); return s == 0 })
}

func TestServerNonInvite(t *testing.T) {
	for _, proto := range []transport.Proto{transport.UDP, transport.TCP} {
		t.Run(proto.String(), func(t *testing.T) {
			l, rec := newTestLayer(t)
			m, v := parse(t, request("OPTIONS", "z9hG4bKs4"))
			st, _ := l.ServerFor(m, v, proto, dst)
			st.Respond([]byte("SIP/2.0 200 OK\r\n"), 200)
			if proto == transport.TCP {
				// Timer J is 0 on reliable transports.
				if s, _ := l.Counts(); s != 0 {
					t.Fatal("TCP transaction not ended at once")
				}
				return
			}
			l.ServerFor(m, v, proto, dst)
			if n := rec.count("SIP/2.0 200"); n != 2 {
				t.Fatalf("200 sent %d times, want 2 (retransmission answered)", n)
			}
			eventually(t, "timer J", 80*testT1, func() bool { s, _ := l.Counts(); return s == 0 })
		})
	}
}

func TestServerCancelAndStrayACK(t *testing.T) {
	l, _ := newTestLayer(t)
	m, v := parse(t, request("INVITE", "z9hG4bKs5"))
	st, _ := l.ServerFor(m, v, transport.UDP, dst)
	c, cv := parse(t, request("CANCEL", "z9hG4bKs5"))
	if l.FindInvite(c, cv) != st {
		t.Fatal("CANCEL does not find its INVITE")
	}
	cst, created := l.ServerFor(c, cv, transport.UDP, dst)
	if !created || cst == st {
		t.Fatal("CANCEL must be its own transaction")
	}
	a, av := parse(t, request("ACK", "z9hG4bKother"))
	if got, c := l.ServerFor(a, av, transport.UDP, dst); got != nil || c {
		t.Fatal("unmatched ACK (2xx ACK) must be passed on")
	}
}

func TestServerRFC2543Matching(t *testing.T) {
	l, _ := newTestLayer(t)
	inv := []byte("INVITE sip:UserB@example.com SIP/2.0\r\nVia: SIP/2.0/UDP iftgw.example.com\r\n" +
		"From: <sip:+13035551111@ift.client.example.net;user=phone>\r\nTo: sip:+16505552222@ss1.example.net;user=phone\r\n" +
		"Call-ID: inv2543.1717@ift.client.example.com\r\nCSeq: 56 INVITE\r\nContent-Length: 0\r\n\r\n")
	ack := []byte("ACK sip:UserB@example.com SIP/2.0\r\nVia: SIP/2.0/UDP iftgw.example.com\r\n" +
		"From: <sip:+13035551111@ift.client.example.net;user=phone>\r\nTo: sip:+16505552222@ss1.example.net;user=phone;tag=x\r\n" +
		"Call-ID: inv2543.1717@ift.client.example.com\r\nCSeq: 56 ACK\r\nContent-Length: 0\r\n\r\n")
	m, v := parse(t, inv)
	st, _ := l.ServerFor(m, v, transport.UDP, dst)
	st.Respond([]byte("SIP/2.0 404 Not Found\r\n"), 404)
	a, av := parse(t, ack)
	if got, _ := l.ServerFor(a, av, transport.UDP, dst); got != st {
		t.Fatal("RFC 2543 ACK not matched to its INVITE")
	}
}

type handler struct {
	mu        sync.Mutex
	responses []int
	timeouts  []bool
	terrs     int
}

func (h *handler) OnResponse(c *Client, m *sip.Message) {
	h.mu.Lock()
	h.responses = append(h.responses, m.StatusCode())
	h.mu.Unlock()
}
func (h *handler) OnTimeout(c *Client, timerC bool) {
	h.mu.Lock()
	h.timeouts = append(h.timeouts, timerC)
	h.mu.Unlock()
}
func (h *handler) OnTransportError(c *Client, err error) { h.mu.Lock(); h.terrs++; h.mu.Unlock() }
func (h *handler) snapshot() ([]int, []bool, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.responses...), append([]bool(nil), h.timeouts...), h.terrs
}

func newClient(t *testing.T, l *Layer, method, branch string, proto transport.Proto, h *handler) *Client {
	t.Helper()
	c, err := l.NewClient(Out{Method: sip.LookupMethod([]byte(method)), MethodName: []byte(method), Branch: []byte(branch), Msg: request(method, branch), Dest: transport.Dest{Proto: proto, Addr: dst}}, h)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func deliver(t *testing.T, l *Layer, b []byte) bool {
	m, _ := parse(t, b)
	return l.ClientResponse(m)
}

func TestClientInviteTimeout(t *testing.T) {
	l, rec := newTestLayer(t)
	h := &handler{}
	newClient(t, l, "INVITE", "z9hG4bKc1", transport.UDP, h)
	eventually(t, "timer B", 64*testT1+20*testT1, func() bool { _, to, _ := h.snapshot(); return len(to) == 1 })
	// Timer A: sends at 0, T1, 3T1, 7T1, 15T1, 31T1 (+ maybe 63T1) before B at 64T1.
	if n := rec.count("INVITE"); n < 6 || n > 7 {
		t.Fatalf("INVITE sent %d times", n)
	}
	if _, c := l.Counts(); c != 0 {
		t.Fatal("client transaction left after timer B")
	}
}

func TestClientInviteNon2xx(t *testing.T) {
	l, rec := newTestLayer(t)
	h := &handler{}
	c := newClient(t, l, "INVITE", "z9hG4bKc2", transport.UDP, h)
	if !deliver(t, l, response(180, "INVITE", "z9hG4bKc2", "b1")) {
		t.Fatal("180 not matched")
	}
	if !c.Proceeding() {
		t.Fatal("not proceeding after 180")
	}
	n := rec.count("INVITE")
	time.Sleep(3 * testT1)
	if rec.count("INVITE") != n {
		t.Fatal("INVITE retransmitted after a provisional response")
	}
	deliver(t, l, response(486, "INVITE", "z9hG4bKc2", "b1"))
	deliver(t, l, response(486, "INVITE", "z9hG4bKc2", "b1")) // retransmission
	resp, _, _ := h.snapshot()
	if fmt.Sprint(resp) != "[180 486]" {
		t.Fatalf("passed up %v, want [180 486]", resp)
	}
	if rec.count("ACK") != 2 {
		t.Fatalf("ACK sent %d times, want 2 (one per 486)", rec.count("ACK"))
	}
	rec.mu.Lock()
	var ack string
	for _, s := range rec.sent {
		if strings.HasPrefix(s, "ACK") {
			ack = s
		}
	}
	rec.mu.Unlock()
	for _, want := range []string{"ACK sip:bob@example.com SIP/2.0\r\n", "branch=z9hG4bKc2\r\n", "Route: <sip:proxy.example.com;lr>\r\n", "To: <sip:bob@example.com>;tag=b1\r\n", "CSeq: 7 ACK\r\n"} {
		if !strings.Contains(ack, want) {
			t.Errorf("ACK lacks %q:\n%s", want, ack)
		}
	}
}

func TestClientInvite2xx(t *testing.T) {
	l, _ := newTestLayer(t)
	h := &handler{}
	c := newClient(t, l, "INVITE", "z9hG4bKc3", transport.UDP, h)
	if c.Request() == nil {
		t.Fatal("no request before the answer")
	}
	deliver(t, l, response(200, "INVITE", "z9hG4bKc3", "b1"))
	deliver(t, l, response(200, "INVITE", "z9hG4bKc3", "b2")) // another fork
	resp, _, _ := h.snapshot()
	if fmt.Sprint(resp) != "[200 200]" {
		t.Fatalf("passed up %v", resp)
	}
	// Accepted keeps no request bytes for its 32 s: nothing is sent or
	// cancelled any more.
	if c.Request() != nil {
		t.Error("the request is kept in Accepted")
	}
}

func TestClientNonInvite(t *testing.T) {
	l, rec := newTestLayer(t)
	h := &handler{}
	newClient(t, l, "OPTIONS", "z9hG4bKc4", transport.UDP, h)
	eventually(t, "retransmissions", 10*testT1, func() bool { return rec.count("OPTIONS") >= 4 })
	deliver(t, l, response(200, "OPTIONS", "z9hG4bKc4", "b1"))
	deliver(t, l, response(200, "OPTIONS", "z9hG4bKc4", "b1"))
	resp, to, _ := h.snapshot()
	if fmt.Sprint(resp) != "[200]" || len(to) != 0 {
		t.Fatalf("passed up %v timeouts %v", resp, to)
	}
	eventually(t, "timer K", 3*testT4, func() bool { _, c := l.Counts(); return c == 0 })
}

func TestClientTimerC(t *testing.T) {
	l, _ := newTestLayerC(t, 300*time.Millisecond)
	h := &handler{}
	newClient(t, l, "INVITE", "z9hG4bKc5", transport.TCP, h)
	deliver(t, l, response(180, "INVITE", "z9hG4bKc5", "b1"))
	eventually(t, "timer C", time.Second, func() bool { _, to, _ := h.snapshot(); return len(to) == 1 })
	if _, to, _ := h.snapshot(); !to[0] {
		t.Fatal("timer C reported as plain timeout")
	}
}

func TestClientTransportError(t *testing.T) {
	l, rec := newTestLayer(t)
	rec.fail = fmt.Errorf("connection refused")
	h := &handler{}
	newClient(t, l, "INVITE", "z9hG4bKc6", transport.TCP, h)
	if _, _, terrs := h.snapshot(); terrs != 1 {
		t.Fatal("transport error not reported")
	}
	if _, c := l.Counts(); c != 0 {
		t.Fatal("transaction kept after a transport error")
	}
}

func TestBuildCancel(t *testing.T) {
	b, err := BuildCancel(request("INVITE", "z9hG4bKc7"))
	if err != nil {
		t.Fatal(err)
	}
	want := "CANCEL sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKc7\r\n" +
		"Route: <sip:proxy.example.com;lr>\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n" +
		"Call-ID: c1@192.0.2.1\r\nCSeq: 7 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
}

// TestWheelScale arms 200 000 timers (two per transaction for 100 000
// transactions) and checks they all fire without a goroutine per timer.
func TestWheelScale(t *testing.T) {
	w := newWheel(time.Millisecond)
	defer w.Close()
	before := runtime.NumGoroutine()
	const n = 200000
	var fired atomic.Int64
	for i := 0; i < n; i++ {
		tm := w.NewTimer(func() { fired.Add(1) })
		tm.Reset(time.Duration(10+i%50) * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before+2 {
		t.Fatalf("%d goroutines for %d timers", g-before, n)
	}
	eventually(t, "all timers", 10*time.Second, func() bool { return fired.Load() == n })
	if w.Len() != 0 {
		t.Fatalf("%d timers left", w.Len())
	}
}

func TestWheelStopAndLongTimers(t *testing.T) {
	w := newWheel(time.Millisecond)
	defer w.Close()
	var fired atomic.Int64
	a := w.NewTimer(func() { fired.Add(1) })
	a.Reset(20 * time.Millisecond)
	if !a.Stop() || a.Stop() {
		t.Fatal("Stop reports wrong armed state")
	}
	// Longer than one lap of the wheel (4096 ticks): must wait its laps.
	b := w.NewTimer(func() { fired.Add(10) })
	b.Reset(4200 * time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if fired.Load() != 0 {
		t.Fatal("stopped or long timer fired early")
	}
	if w.Len() != 1 {
		t.Fatalf("%d armed", w.Len())
	}
}

// An idle wheel sleeps until its next timer instead of ticking, and a
// timer armed while it sleeps still fires on time: not early (the wheel's
// tick count is behind the clock while it sleeps), and not at the end of
// the sleep.
func TestWheelSleepsWhenIdle(t *testing.T) {
	w := newWheel(10 * time.Millisecond)
	defer w.Close()
	far := w.NewTimer(func() {})
	far.Reset(3 * time.Second)
	time.Sleep(100 * time.Millisecond) // let it settle on the far timer
	before := w.rounds.Load()
	time.Sleep(700 * time.Millisecond)
	if n := w.rounds.Load() - before; n > 5 {
		t.Errorf("idle wheel woke %d times in 700 ms with 10 ms ticks; want it asleep", n)
	}
	fired := make(chan time.Time, 1)
	armed := time.Now()
	w.NewTimer(func() { fired <- time.Now() }).Reset(200 * time.Millisecond)
	select {
	case at := <-fired:
		// A timer fires on a tick boundary: up to one tick before the
		// exact instant, as ever; never by the wheel's stale count.
		if d := at.Sub(armed); d < 190*time.Millisecond {
			t.Errorf("timer of 200 ms fired after %v", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("timer armed while the wheel slept did not fire before the wheel's own wake-up")
	}
}
