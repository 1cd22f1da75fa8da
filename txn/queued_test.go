package txn

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sipedge/transport"
)

// batchRecorder is a recorder that also takes batches, and counts them.
type batchRecorder struct {
	recorder
	bmu     sync.Mutex
	batches []int
	gate    chan struct{} // if not nil, the first batch waits for it
}

func (r *batchRecorder) SendBatch(out []transport.Outgoing) int {
	r.bmu.Lock()
	r.batches = append(r.batches, len(out))
	first := len(r.batches) == 1
	r.bmu.Unlock()
	if first && r.gate != nil {
		<-r.gate
	}
	failed := 0
	for _, o := range out {
		if r.Send(o.Proto, o.Dst, o.Data) != nil {
			failed++
		}
	}
	return failed
}

// Responses queued while the sender is busy go out together, as one
// batch; each moves its transaction as Respond would: a retransmitted
// request is answered with it afterwards, not before, and the layer ends
// with no transaction left.
func TestRespondQueued(t *testing.T) {
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprint("batching=", batching), func(t *testing.T) {
			br := &batchRecorder{}
			var s Sender = &br.recorder
			if batching {
				s = br
				br.gate = make(chan struct{})
			}
			l := New(Config{T1: testT1, T2: testT2, T4: testT4, Sender: s, Tick: 2 * time.Millisecond})
			defer l.Close()
			const n = 300
			sts := make([]*Server, n)
			for i := range n {
				m, v := parse(t, request("REGISTER", fmt.Sprintf("z9hG4bKq%d", i)))
				sts[i], _ = l.ServerFor(m, v, transport.UDP, dst)
			}
			// Before its response is sent, a retransmission is absorbed
			// silently (Trying, §17.2.2).
			m0, v0 := parse(t, request("REGISTER", "z9hG4bKq0"))
			l.ServerFor(m0, v0, transport.UDP, dst)
			if got := br.count("SIP/2.0"); got != 0 {
				t.Fatalf("%d responses before any was queued", got)
			}
			for i, st := range sts {
				st.RespondQueued(fmt.Appendf(nil, "SIP/2.0 200 OK %d\r\n", i), 200)
				if i == 0 && batching {
					// The sender takes the first alone and is held in
					// SendBatch while the others are queued.
					eventually(t, "first batch", time.Second, func() bool {
						br.bmu.Lock()
						defer br.bmu.Unlock()
						return len(br.batches) == 1
					})
				}
			}
			if batching {
				close(br.gate)
			}
			eventually(t, "queued responses", 2*time.Second, func() bool { return br.count("SIP/2.0 200") == n })
			l.ServerFor(m0, v0, transport.UDP, dst)
			eventually(t, "retransmission answered", time.Second, func() bool { return br.count("SIP/2.0 200 OK 0\r\n") == 2 })
			if s, _ := l.Counts(); s != 0 {
				t.Errorf("%d server transactions left; completed ones wait in the completed table", s)
			}
			if batching {
				br.bmu.Lock()
				if len(br.batches) != 2 || br.batches[1] != n-1 {
					t.Errorf("batches %v, want [1 %d]", br.batches, n-1)
				}
				br.bmu.Unlock()
			}
		})
	}
}

// Close sends what is still queued and leaves no goroutine behind; a
// response queued after Close is counted as a send error.
func TestRespondQueuedClose(t *testing.T) {
	rec := &recorder{}
	l := New(Config{T1: testT1, Sender: rec, Tick: 2 * time.Millisecond})
	m, v := parse(t, request("REGISTER", "z9hG4bKc1"))
	st, _ := l.ServerFor(m, v, transport.UDP, netip.MustParseAddrPort("127.0.0.1:5070"))
	st.RespondQueued([]byte("SIP/2.0 200 OK\r\n"), 200)
	l.Close()
	if rec.count("SIP/2.0 200") != 1 {
		t.Error("queued response not sent by Close")
	}
	m2, v2 := parse(t, request("REGISTER", "z9hG4bKc2"))
	st2, _ := l.ServerFor(m2, v2, transport.UDP, dst)
	st2.RespondQueued([]byte("SIP/2.0 200 OK\r\n"), 200)
	if l.Stats().SendErrors != 1 || rec.count("SIP/2.0 200") != 1 {
		t.Error("a response queued after Close was not counted as a send error")
	}
}

// Between BeginQueued and EndQueued (a store batch's callbacks) queued
// responses wait and leave together from EndQueued's caller when all go
// by UDP; a batch with a stream response goes to the sender goroutine.
func TestQueuedBatchHooks(t *testing.T) {
	for _, withTCP := range []bool{false, true} {
		t.Run(fmt.Sprint("tcp=", withTCP), func(t *testing.T) {
			br := &batchRecorder{}
			l := New(Config{T1: testT1, T2: testT2, T4: testT4, Sender: br, Tick: 2 * time.Millisecond})
			defer l.Close()
			const n = 5
			l.BeginQueued()
			for i := range n {
				proto := transport.UDP
				if withTCP && i == n-1 {
					proto = transport.TCP
				}
				m, v := parse(t, request("REGISTER", fmt.Sprintf("z9hG4bKh%d", i)))
				st, _ := l.ServerFor(m, v, proto, dst)
				st.RespondQueued(fmt.Appendf(nil, "SIP/2.0 200 OK %d\r\n", i), 200)
			}
			time.Sleep(20 * time.Millisecond)
			if got := br.count("SIP/2.0"); got != 0 {
				t.Fatalf("%d responses sent before EndQueued", got)
			}
			l.EndQueued()
			if !withTCP {
				// Sent by EndQueued itself, before it returned, as one batch.
				if got := br.count("SIP/2.0"); got != n {
					t.Fatalf("%d responses after EndQueued, want %d", got, n)
				}
				br.bmu.Lock()
				defer br.bmu.Unlock()
				if len(br.batches) != 1 || br.batches[0] != n {
					t.Fatalf("batches %v, want one of %d", br.batches, n)
				}
				return
			}
			eventually(t, "the sender goroutine sends the batch", time.Second, func() bool { return br.count("SIP/2.0") == n })
			// Outside a batch a queued response goes at once.
			m, v := parse(t, request("REGISTER", "z9hG4bKlate"))
			st, _ := l.ServerFor(m, v, transport.UDP, dst)
			st.RespondQueued([]byte("SIP/2.0 200 OK late\r\n"), 200)
			eventually(t, "a response queued outside a batch", time.Second, func() bool { return br.count("SIP/2.0") == n+1 })
		})
	}
}

// Brackets overlap when several goroutines write store batches at once
// (two stores, a reader's own batch beside the committer's): responses
// wait while any bracket is open, each EndQueued sends what is queued when
// it comes, and concurrent EndQueued calls do not share their buffers
// (run with -race).
func TestQueuedBatchHooksOverlap(t *testing.T) {
	br := &batchRecorder{}
	l := New(Config{T1: testT1, T2: testT2, T4: testT4, Sender: br, Tick: 2 * time.Millisecond})
	defer l.Close()
	respond := func(id string) {
		m, v := parse(t, request("REGISTER", "z9hG4bK"+id))
		st, _ := l.ServerFor(m, v, transport.UDP, dst)
		st.RespondQueued([]byte("SIP/2.0 200 OK "+id+"\r\n"), 200)
	}
	l.BeginQueued()
	l.BeginQueued()
	respond("a1")
	l.EndQueued() // the other bracket is still open: a1 leaves now, with this End
	if got := br.count("SIP/2.0"); got != 1 {
		t.Fatalf("%d responses after the first EndQueued, want 1", got)
	}
	respond("a2")
	time.Sleep(20 * time.Millisecond)
	if got := br.count("SIP/2.0"); got != 1 {
		t.Fatalf("a2 sent while a bracket was open")
	}
	l.EndQueued()
	if got := br.count("SIP/2.0"); got != 2 {
		t.Fatalf("%d responses after the last EndQueued, want 2", got)
	}

	var wg sync.WaitGroup
	const workers, rounds = 4, 200
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				l.BeginQueued()
				respond(fmt.Sprintf("w%d-%d", w, i))
				l.EndQueued()
			}
		}()
	}
	wg.Wait()
	eventually(t, "every response", 2*time.Second, func() bool { return br.count("SIP/2.0") == 2+workers*rounds })
}
