package capture

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"sipedge/transport"
)

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
	n := b.N / 11
	var ahead atomic.Int64 // calls the caller's thread has tapped
	var wg sync.WaitGroup
	cpu := func() int64 {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	b.ResetTimer()
	start := cpu()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range n {
			for j := range caller {
				c.Tap(&legs[0][(i%calls)*len(caller)+j])
			}
			ahead.Store(int64(i + 1))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			for ahead.Load() < int64(min(i+4, n)) {
				runtime.Gosched()
			}
			for j := range callee {
				c.Tap(&legs[1][(i%calls)*len(callee)+j])
			}
		}
	}()
	wg.Wait()
	if n > 0 {
		b.ReportMetric(float64(cpu()-start)/float64(n*11), "cpu-ns/msg")
	}
}
