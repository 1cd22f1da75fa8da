package capture

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"sipedge/transport"
)

// twoLegs runs tap(0, i) for calls 0..n-1 on one goroutine (the caller's
// leg) and tap(1, i) on another (the callee's), the callee's leg of call
// i only once the caller's leg has tapped call i+lag-1 (or every call):
// an INVITE sent before the one received would start the call as well.
// It returns when both are done.
func twoLegs(n, lag int, tap func(leg, i int)) {
	var ahead atomic.Int64 // calls the caller's leg has tapped
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range n {
			tap(0, i)
			ahead.Store(int64(i + 1))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			for ahead.Load() < int64(min(i+lag, n)) {
				runtime.Gosched()
			}
			tap(1, i)
		}
	}()
	wg.Wait()
}

// BenchmarkTapTwoLegs: a call's two legs tapped on two threads at once,
// as sipedge's readers do (the caller's messages are read and answered
// on one, the callee's on the other): each goroutine taps its leg's
// messages of 2 048 calls in turn, the callee's leg a few calls behind
// the caller's. ns/op is per message, both threads together; cpu-ns/msg the
// process's CPU time per message (the callee's thread waits by yielding,
// which is counted too).
func BenchmarkTapTwoLegs(b *testing.B) {
	caller := []step{{in, alice, "INVITE"}, {out, alice, "100 INVITE"}, {out, alice, "200 INVITE"}, {in, alice, "ACK"},
		{in, alice, "BYE"}, {out, alice, "200 BYE"}}
	callee := []step{{out, bob, "INVITE"}, {in, bob, "200 INVITE"}, {out, bob, "ACK"}, {out, bob, "BYE"}, {in, bob, "200 BYE"}}
	const calls = 2048
	legs := [2][]transport.TapEvent{}
	for i := range calls {
		id := fmt.Sprintf("legs-%d@192.0.2.10", i)
		for k, steps := range [2][]step{caller, callee} {
			for _, s := range steps {
				legs[k] = append(legs[k], transport.TapEvent{Dir: s.dir, Proto: transport.UDP, Local: edge, Remote: s.peer,
					Time: t0, Data: sipMsg(id, s.msg)})
			}
		}
	}
	c := New(Config{})
	perCall := len(caller) + len(callee)
	n := b.N / perCall
	cpu := func() int64 {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	b.ResetTimer()
	start := cpu()
	twoLegs(n, 4, func(leg, i int) {
		steps := len(caller)
		if leg == 1 {
			steps = len(callee)
		}
		for j := range steps {
			c.Tap(&legs[leg][(i%calls)*steps+j])
		}
	})
	if n > 0 {
		b.ReportMetric(float64(cpu()-start)/float64(n*perCall), "cpu-ns/msg")
	}
}

// TestStagedConcurrently: two threads tap the two legs of calls while a
// third reads (Messages, Version, Stats), as the page's stream and the
// API do; with the race detector this is the staging's locking. At the
// end every message of every call is filed under its own call: none
// lost between the stage and the calls, none under another call.
func TestStagedConcurrently(t *testing.T) {
	caller := []step{{in, alice, "INVITE"}, {out, alice, "100 INVITE"}, {out, alice, "200 INVITE"}, {in, alice, "ACK"}}
	callee := []step{{out, bob, "INVITE"}, {in, bob, "200 INVITE"}, {out, bob, "ACK"}}
	const calls = 300
	c := New(Config{MaxMessages: 1000})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Lag 1: the count below wants every message followed.
		twoLegs(calls, 1, func(leg, i int) {
			steps := caller
			if leg == 1 {
				steps = callee
			}
			id := fmt.Sprintf("conc-%d", i)
			for _, s := range steps {
				// Messages as large as a real INVITE with SDP, so the
				// stage passes stageBytes many times.
				b := append(sipMsg(id, s.msg), make([]byte, 700)...)
				c.Tap(&transport.TapEvent{Dir: s.dir, Proto: transport.UDP, Local: edge, Remote: s.peer, Time: t0, Data: b})
			}
		})
	}()
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Version()
			c.Stats()
			c.Messages(fmt.Sprintf("conc-%d", i%calls))
		}
	}()
	<-done
	close(stop)
	rwg.Wait()
	for i := range calls {
		id := fmt.Sprintf("conc-%d", i)
		msgs, dropped, ok := c.Messages(id)
		if !ok || dropped != 0 || len(msgs) != len(caller)+len(callee) {
			t.Fatalf("%s: %d messages, %d dropped (ok %v), want %d", id, len(msgs), dropped, ok, len(caller)+len(callee))
		}
		for _, m := range msgs {
			if !strings.Contains(m.Text, "Call-ID: "+id+"\r\n") {
				t.Fatalf("%s holds a message of another call", id)
			}
		}
	}
	if st := c.Stats(); st.Messages != calls*uint64(len(caller)+len(callee)) {
		t.Errorf("%d messages kept, want %d", st.Messages, calls*(len(caller)+len(callee)))
	}
}
