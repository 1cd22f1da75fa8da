package capture

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/transport"
)

var (
	alice   = netip.MustParseAddrPort("192.0.2.10:5070")
	bob     = netip.MustParseAddrPort("198.51.100.20:5080")
	edge    = netip.MustParseAddrPort("203.0.113.1:5060")
	anyAddr = netip.MustParseAddrPort("0.0.0.0:5060")
	t0      = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
)

// step is one tapped message: a request ("INVITE") or a response ("200
// INVITE": status, then the CSeq method), its direction and peer.
type step struct {
	dir  transport.TapDir
	peer netip.AddrPort
	msg  string
}

// sipMsg writes a small valid message for a step of call id.
func sipMsg(id, what string) []byte {
	code, method, isResp := strings.Cut(what, " ")
	if !isResp {
		method = code
		return []byte(fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK1\r\n"+
			"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: %s\r\nCSeq: 1 %s\r\n"+
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", method, id, method))
	}
	return []byte(fmt.Sprintf("SIP/2.0 %s Reason\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK1\r\n"+
		"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: %s\r\nCSeq: 1 %s\r\n"+
		"Content-Length: 0\r\n\r\n", code, id, method))
}

func tap(c *Capture, dir transport.TapDir, proto transport.Proto, local, remote netip.AddrPort, at time.Time, b []byte) {
	ev := transport.TapEvent{Dir: dir, Proto: proto, Local: local, Remote: remote, Time: at, Data: b}
	c.Tap(&ev)
}

func run(c *Capture, id string, steps []step) {
	for i, s := range steps {
		local := edge
		if s.dir == transport.TapIn {
			local = anyAddr
		}
		tap(c, s.dir, transport.UDP, local, s.peer, t0.Add(time.Duration(i)*time.Millisecond), sipMsg(id, s.msg))
	}
}

const in, out = transport.TapIn, transport.TapOut

func stateOf(c *Capture, id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fileLocked()
	cl := c.calls[id]
	if cl == nil {
		return "none"
	}
	return [...]string{"unconfirmed", "active", "ended", "ended"}[cl.state]
}

// TestTracking: which messages start a call, which join it, and when it
// ends, message by message.
func TestTracking(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
		state string // after the steps
		kept  int
	}{
		{"REGISTER never starts a call", []step{{in, alice, "REGISTER"}, {out, alice, "200 REGISTER"}}, "none", 0},
		{"OPTIONS outside a call is not kept", []step{{in, alice, "OPTIONS"}, {out, alice, "200 OPTIONS"}}, "none", 0},
		{"a BYE of an unknown call is not kept", []step{{in, alice, "BYE"}, {out, alice, "481 BYE"}}, "none", 0},
		{"a response alone is not kept", []step{{in, bob, "200 INVITE"}}, "none", 0},
		{"an INVITE received, nothing sent", []step{{in, alice, "INVITE"}}, "unconfirmed", 1},
		{"a 100 Trying makes it a call", []step{{in, alice, "INVITE"}, {out, alice, "100 INVITE"}}, "active", 2},
		{"forwarded and ringing", []step{{in, alice, "INVITE"}, {out, alice, "100 INVITE"}, {out, bob, "INVITE"},
			{in, bob, "180 INVITE"}, {out, alice, "180 INVITE"}}, "active", 5},
		{"answered", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"}, {out, alice, "200 INVITE"},
			{in, alice, "ACK"}, {out, bob, "ACK"}}, "active", 6},
		{"answered and hung up", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"}, {out, alice, "200 INVITE"},
			{in, alice, "ACK"}, {out, bob, "ACK"}, {in, bob, "BYE"}, {out, alice, "BYE"}, {in, alice, "200 BYE"}, {out, bob, "200 BYE"}}, "ended", 10},
		{"a BYE challenged goes on", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"}, {out, alice, "200 INVITE"},
			{in, alice, "BYE"}, {out, alice, "407 BYE"}}, "active", 6},
		{"a BYE sipedge sent, answered", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"}, {out, alice, "200 INVITE"},
			{out, bob, "BYE"}, {in, bob, "200 BYE"}}, "ended", 6},
		{"busy", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "486 INVITE"}, {out, bob, "ACK"}, {out, alice, "486 INVITE"},
			{in, alice, "ACK"}}, "ended", 6},
		{"one branch fails, sipedge waits for the others", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "486 INVITE"}},
			"active", 3},
		{"a failed re-INVITE does not end the call", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"},
			{out, alice, "200 INVITE"}, {in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "491 INVITE"}, {out, alice, "491 INVITE"}}, "active", 8},
		{"challenged, then the INVITE again", []step{{in, alice, "INVITE"}, {out, alice, "407 INVITE"}, {in, alice, "ACK"},
			{in, alice, "INVITE"}}, "unconfirmed", 4},
		{"challenged, then forwarded", []step{{in, alice, "INVITE"}, {out, alice, "407 INVITE"}, {in, alice, "ACK"},
			{in, alice, "INVITE"}, {out, alice, "100 INVITE"}, {out, bob, "INVITE"}}, "active", 6},
		{"cancelled", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, alice, "CANCEL"}, {out, alice, "200 CANCEL"},
			{out, bob, "CANCEL"}, {in, bob, "487 INVITE"}, {out, alice, "487 INVITE"}}, "ended", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{})
			run(c, "call-1", tc.steps)
			if got := stateOf(c, "call-1"); got != tc.state {
				t.Errorf("state %s, want %s", got, tc.state)
			}
			msgs, _, ok := c.Messages("call-1")
			if ok != (tc.kept > 0) || len(msgs) != tc.kept {
				t.Fatalf("kept %d (ok %v), want %d", len(msgs), ok, tc.kept)
			}
			for i, m := range msgs {
				want := sipMsg("call-1", tc.steps[i].msg)
				if m.Text != string(want) || m.Dir != tc.steps[i].dir.String() || m.Remote != tc.steps[i].peer ||
					!m.Time.Equal(t0.Add(time.Duration(i)*time.Millisecond)) || m.Transport != "UDP" || m.Size != len(want) {
					t.Errorf("message %d: %+v", i, m)
				}
			}
		})
	}
}

// callSteps are the 11 messages of a complete call (fullCall), which the
// benchmarks tap too.
var callSteps = []step{{in, alice, "INVITE"}, {out, alice, "100 INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"},
	{out, alice, "200 INVITE"}, {in, alice, "ACK"}, {out, bob, "ACK"}, {in, alice, "BYE"}, {out, bob, "BYE"},
	{in, bob, "200 BYE"}, {out, alice, "200 BYE"}}

// A complete call, as seen on sipedge: the caller, sipedge on one socket
// (received on a wildcard socket), the callee.
func fullCall(c *Capture, id string, at time.Time) {
	for i, s := range callSteps {
		local := edge
		if s.dir == in {
			local = anyAddr
		}
		tap(c, s.dir, transport.UDP, local, s.peer, at.Add(time.Duration(i)*time.Millisecond), sipMsg(id, s.msg))
	}
}

// TestFloodsEvictNoCall: REGISTERs, OPTIONS and unanswered INVITEs by
// the thousand (a flood the guard drops silently) leave a call in
// progress and the ended calls alone; INVITEs sipedge answers itself
// (403, 407) push out only each other.
func TestFloodsEvictNoCall(t *testing.T) {
	c := New(Config{MaxCalls: 10})
	run(c, "live", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"}, {out, alice, "200 INVITE"}})
	for i := range 5 {
		fullCall(c, fmt.Sprintf("done-%d", i), t0)
	}
	for i := range 5000 {
		id := fmt.Sprintf("flood-%d", i)
		run(c, id, []step{{in, alice, "REGISTER"}, {out, alice, "200 REGISTER"}, {in, alice, "OPTIONS"}})
		run(c, id+"-inv", []step{{in, alice, "INVITE"}})
		run(c, id+"-403", []step{{in, alice, "INVITE"}, {out, alice, "403 INVITE"}, {in, alice, "ACK"}})
	}
	if got := stateOf(c, "live"); got != "active" {
		t.Fatalf("the call in progress: %s", got)
	}
	for i := range 5 {
		if msgs, _, ok := c.Messages(fmt.Sprintf("done-%d", i)); !ok || len(msgs) != 11 {
			t.Errorf("ended call %d: %d messages, %v", i, len(msgs), ok)
		}
	}
	st := c.Stats()
	// 1 active, 10 ended (the 5 forwarded and the last 5 answered by
	// sipedge), at most 256 unconfirmed.
	if st.Active != 1 || st.Calls > 1+10+maxUnconfirmed || st.EvictedActive != 0 || st.EvictedUnconfirmed < 5000-maxUnconfirmed {
		t.Fatalf("%+v", st)
	}
}

// TestBounds: messages per call, ended calls, calls in progress, bytes.
func TestBounds(t *testing.T) {
	t.Run("messages per call", func(t *testing.T) {
		c := New(Config{MaxMessages: 20})
		run(c, "long", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"}})
		for range 30 {
			run(c, "long", []step{{in, alice, "INFO"}})
		}
		// The BYE's answer is not kept but still ends the call.
		run(c, "long", []step{{in, alice, "BYE"}, {out, bob, "BYE"}, {in, bob, "200 BYE"}})
		msgs, dropped, _ := c.Messages("long")
		if len(msgs) != 20 || dropped != 16 || c.Stats().DroppedCallFull != 16 || stateOf(c, "long") != "ended" {
			t.Fatalf("%d kept, %d dropped, %+v, %s", len(msgs), dropped, c.Stats(), stateOf(c, "long"))
		}
	})
	t.Run("ended calls", func(t *testing.T) {
		c := New(Config{MaxCalls: 100})
		for i := range 150 {
			fullCall(c, fmt.Sprintf("c%d", i), t0)
		}
		for i := range 150 {
			_, _, ok := c.Messages(fmt.Sprintf("c%d", i))
			if ok != (i >= 50) {
				t.Fatalf("call %d kept: %v", i, ok)
			}
		}
		if st := c.Stats(); st.Calls != 100 || st.Active != 0 {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("calls in progress", func(t *testing.T) {
		c := New(Config{MaxActive: 50})
		for i := range 50 {
			run(c, fmt.Sprintf("a%d", i), []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}})
		}
		// The first call has a message two seconds later: it becomes the
		// most recent. The second has one within relist of its last
		// move: it keeps its place (the list is by activity to within
		// relist), and goes with the oldest.
		tap(c, in, transport.UDP, anyAddr, bob, t0.Add(2*relist), sipMsg("a0", "180 INVITE"))
		tap(c, in, transport.UDP, anyAddr, bob, t0.Add(relist/2), sipMsg("a1", "180 INVITE"))
		for i := 50; i < 80; i++ {
			run(c, fmt.Sprintf("a%d", i), []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}})
		}
		if st := c.Stats(); st.Active != 50 || st.EvictedActive != 30 {
			t.Fatalf("%+v", st)
		}
		for _, id := range []string{"a0", "a31", "a79"} {
			if stateOf(c, id) != "active" {
				t.Errorf("%s: %s", id, stateOf(c, id))
			}
		}
		for _, id := range []string{"a1", "a30"} {
			if stateOf(c, id) != "none" {
				t.Errorf("%s: %s", id, stateOf(c, id))
			}
		}
	})
	t.Run("silent calls end", func(t *testing.T) {
		c := New(Config{})
		run(c, "dead", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"}})
		c.Tap(&transport.TapEvent{Dir: out, Proto: transport.UDP, Local: edge, Remote: bob, Time: t0.Add(13 * time.Hour), Data: sipMsg("next", "INVITE")})
		if stateOf(c, "dead") != "ended" || stateOf(c, "next") != "active" {
			t.Fatalf("%s %s", stateOf(c, "dead"), stateOf(c, "next"))
		}
	})
	t.Run("bytes", func(t *testing.T) {
		const budget = 64 << 10
		c := New(Config{MaxBytes: budget})
		for i := range 200 {
			run(c, fmt.Sprintf("b%d", i), []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}, {in, bob, "200 INVITE"}})
			if i%2 == 0 {
				run(c, fmt.Sprintf("b%d", i), []step{{in, bob, "BYE"}, {out, alice, "BYE"}, {in, alice, "200 BYE"}})
			}
			if st := c.Stats(); st.Bytes > budget {
				t.Fatalf("call %d: %+v", i, st)
			}
		}
		if msgs, _, _ := c.Messages("b199"); len(msgs) != 3 {
			t.Fatalf("newest call: %d messages", len(msgs))
		}
		// Four chunks: ended calls go before calls in progress, the
		// oldest first.
		c = New(Config{MaxBytes: 4 * chunkSize})
		for _, id := range []string{"x1", "x2", "x3"} {
			run(c, id, []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}})
		}
		run(c, "x2", []step{{in, bob, "486 INVITE"}, {out, alice, "486 INVITE"}})
		for _, id := range []string{"x4", "x5", "x6"} {
			run(c, id, []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}})
		}
		for id, want := range map[string]string{"x1": "none", "x2": "none", "x3": "active", "x4": "active", "x5": "active", "x6": "active"} {
			if got := stateOf(c, id); got != want {
				t.Errorf("%s: %s, want %s", id, got, want)
			}
		}
		if st := c.Stats(); st.EvictedActive != 1 || st.Bytes != 4*chunkSize {
			t.Errorf("%+v", st)
		}
		// One call bigger than the whole budget: its first messages are
		// kept, the rest counted.
		big := strings.Repeat("x", 8000)
		c2 := New(Config{MaxBytes: 16 << 10})
		run(c2, "big", []step{{in, alice, "INVITE"}})
		for range 4 {
			tap(c2, in, transport.UDP, edge, alice, t0, []byte("INFO sip:x SIP/2.0\r\nCall-ID: big\r\nCSeq: 2 INFO\r\n\r\n"+big))
		}
		if msgs, dropped, _ := c2.Messages("big"); len(msgs) != 2 || dropped != 3 || c2.Stats().DroppedNoMemory != 3 {
			t.Fatalf("%d kept, %d dropped, %+v", len(msgs), dropped, c2.Stats())
		}
	})
	t.Run("truncated", func(t *testing.T) {
		c := New(Config{})
		run(c, "huge", []step{{in, alice, "INVITE"}})
		b := append([]byte("INFO sip:x SIP/2.0\r\nCall-ID: huge\r\nCSeq: 2 INFO\r\n\r\n"), make([]byte, 70000)...)
		tap(c, in, transport.TCP, edge, alice, t0, b)
		msgs, _, _ := c.Messages("huge")
		if len(msgs) != 2 || len(msgs[1].Text) != MaxMessageBytes || msgs[1].Size != len(b) || c.Stats().Truncated != 1 {
			t.Fatalf("%d messages, %d bytes of %d", len(msgs), len(msgs[1].Text), msgs[1].Size)
		}
	})
}

// TestStreamSend: two messages handed to one stream send are kept as two.
func TestStreamSend(t *testing.T) {
	c := New(Config{})
	run(c, "s", []step{{in, alice, "INVITE"}})
	two := append(sipMsg("s", "100 INVITE"), sipMsg("s", "180 INVITE")...)
	tap(c, out, transport.TLS, edge, alice, t0, two)
	msgs, _, _ := c.Messages("s")
	if len(msgs) != 3 || msgs[1].Label != "100 Reason" || msgs[2].Label != "180 Reason" || msgs[2].Transport != "TLS" {
		t.Fatalf("%+v", msgs)
	}
}

// TestResolveLocal: a message received on a wildcard socket shows the
// address sipedge sent from on that port.
func TestResolveLocal(t *testing.T) {
	other := netip.MustParseAddrPort("10.0.0.1:5060")
	msgs := []Message{
		{Dir: "in", Local: anyAddr, Remote: alice},
		{Dir: "out", Local: other, Remote: bob},
		{Dir: "out", Local: edge, Remote: alice},
		{Dir: "in", Local: netip.MustParseAddrPort("0.0.0.0:5999"), Remote: bob},
		{Dir: "in", Local: netip.MustParseAddrPort("[::]:5060"), Remote: bob},
	}
	resolveLocal(msgs)
	for i, want := range []netip.AddrPort{edge, other, edge, netip.MustParseAddrPort("0.0.0.0:5999"), other} {
		if msgs[i].Local != want {
			t.Errorf("message %d: local %s, want %s", i, msgs[i].Local, want)
		}
	}
}

// TestTapAllocs: keeping a message of a followed call, and passing over
// a REGISTER or an OPTIONS, allocate nothing once the chunks exist.
func TestTapAllocs(t *testing.T) {
	c := New(Config{})
	run(c, "alloc", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}})
	info := &transport.TapEvent{Dir: in, Proto: transport.UDP, Local: edge, Remote: alice, Time: t0, Data: sipMsg("alloc", "INFO")}
	reg := &transport.TapEvent{Dir: in, Proto: transport.UDP, Local: edge, Remote: alice, Time: t0, Data: sipMsg("r", "REGISTER")}
	opt := &transport.TapEvent{Dir: in, Proto: transport.UDP, Local: edge, Remote: alice, Time: t0, Data: sipMsg("o", "OPTIONS")}
	// Fill the call to MaxMessages in a second capture, so the measured
	// runs below always store.
	if n := testing.AllocsPerRun(100, func() { c.Tap(reg); c.Tap(opt) }); n != 0 {
		t.Errorf("REGISTER and OPTIONS: %.1f allocations", n)
	}
	c2 := New(Config{MaxMessages: 1 << 20})
	run(c2, "alloc", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}})
	// Chunks come from the free list once a call gave them back.
	for i := range 50 {
		fullCall(c2, fmt.Sprintf("warm-%d", i), t0)
	}
	if n := testing.AllocsPerRun(20, func() { c2.Tap(info) }); n > 0.1 {
		t.Errorf("a message of a call: %.2f allocations", n)
	}
}

// BenchmarkTap: the cost per message of a call (11 messages per call,
// 2 048 calls in turn, so calls start, end and are forgotten as in
// production) and of a REGISTER passed over.
func BenchmarkTap(b *testing.B) {
	steps := callSteps
	var evs []transport.TapEvent
	for i := range 2048 {
		for _, s := range steps {
			evs = append(evs, transport.TapEvent{Dir: s.dir, Proto: transport.UDP, Local: edge, Remote: s.peer, Time: t0,
				Data: sipMsg(fmt.Sprintf("bench-%d@192.0.2.10", i), s.msg)})
		}
	}
	b.Run("call", func(b *testing.B) {
		c := New(Config{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			c.Tap(&evs[i%len(evs)])
		}
	})
	b.Run("register", func(b *testing.B) {
		c := New(Config{})
		ev := transport.TapEvent{Dir: in, Proto: transport.UDP, Local: edge, Remote: alice, Time: t0, Data: sipMsg("r", "REGISTER")}
		b.ReportAllocs()
		for b.Loop() {
			c.Tap(&ev)
		}
	})
}

// BenchmarkTapInProgress: the cost per message when many calls are in
// progress at once and their messages interleave, as at thousands of
// calls a second: each message is of another call than the one before,
// so its call's memory (map bucket, call, chunk) is cold, while the
// message itself is warm, as one just read or sent is. calls=16 keeps
// everything in the cache; calls=4000 is ~4 000 calls/s with 1 s calls.
func BenchmarkTapInProgress(b *testing.B) {
	steps := callSteps
	// One message per step whose Call-ID ("bench-" and 12 digits) is
	// rewritten in place before each tap.
	const idDigits = 12
	msgs := make([][]byte, len(steps))
	at := make([]int, len(steps))
	for k, s := range steps {
		msgs[k] = sipMsg("bench-"+strings.Repeat("0", idDigits)+"@192.0.2.10", s.msg)
		at[k] = bytes.Index(msgs[k], []byte("bench-")) + len("bench-")
	}
	for _, calls := range []int{16, 4000} {
		b.Run(fmt.Sprintf("calls=%d", calls), func(b *testing.B) {
			c := New(Config{})
			ev := transport.TapEvent{Proto: transport.UDP, Local: edge, Time: t0}
			b.ReportAllocs()
			// Message i is of call slot j = i % calls, in round
			// r = i / calls; the slots are a step apart, so calls end
			// and start all the time, not all at once: slot j is at
			// step (r + j) % steps of its call number (r + j) / steps.
			for i := 0; b.Loop(); i++ {
				j, r := i%calls, i/calls
				k := (r + j) % len(steps)
				id := uint64((r+j)/len(steps))*uint64(calls) + uint64(j)
				m := msgs[k]
				for d := at[k] + idDigits - 1; d >= at[k]; d-- {
					m[d] = byte('0' + id%10)
					id /= 10
				}
				ev.Dir, ev.Remote, ev.Data = steps[k].dir, steps[k].peer, m
				c.Tap(&ev)
			}
		})
	}
}

// TestLastCall: the call of the last message, kept to spare the map's
// look-up, never files a message under another call: not when calls
// alternate, not once it was forgotten and its memory reused for a new
// call.
func TestLastCall(t *testing.T) {
	c := New(Config{MaxActive: 1})
	run(c, "a", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}})
	run(c, "b", []step{{in, alice, "INVITE"}, {out, bob, "INVITE"}}) // forgets a (MaxActive 1), the last call
	if got := stateOf(c, "a"); got != "none" {
		t.Fatalf("a: %s, want forgotten", got)
	}
	run(c, "a", []step{{in, bob, "200 INVITE"}}) // a response of a forgotten call starts nothing
	if got := stateOf(c, "a"); got != "none" {
		t.Errorf("a after its 200: %s, want none", got)
	}
	check := func(id string, want int) {
		t.Helper()
		msgs, _, ok := c.Messages(id)
		if !ok || len(msgs) != want {
			t.Errorf("%s: %d messages (ok %v), want %d", id, len(msgs), ok, want)
		}
		for _, m := range msgs {
			if !strings.Contains(m.Text, "Call-ID: "+id+"\r\n") {
				t.Errorf("%s holds a message of another call:\n%s", id, m.Text)
			}
		}
	}
	run(c, "c", []step{{in, alice, "INVITE"}}) // unconfirmed: b stays
	run(c, "b", []step{{in, bob, "180 INVITE"}})
	check("b", 3)
	check("c", 1)
	// c's forwarded INVITE makes it active and forgets b, the last call;
	// a new call takes b's memory.
	run(c, "c", []step{{out, bob, "INVITE"}})
	run(c, "d", []step{{in, alice, "INVITE"}, {in, alice, "INVITE"}})
	run(c, "b", []step{{in, bob, "200 INVITE"}})
	if got := stateOf(c, "b"); got != "none" {
		t.Errorf("b: %s, want forgotten", got)
	}
	check("c", 2)
	check("d", 2)
}
