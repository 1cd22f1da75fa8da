package proxy_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// observer records how the branches of a test ended.
type observer struct {
	mu      sync.Mutex
	started []string
	ended   map[string]int
}

func (o *observer) BranchStarted(t *proxy.Target, req *sip.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started = append(o.started, t.Addr.String())
}

func (o *observer) BranchEnded(t *proxy.Target, req *sip.Message, code int, local bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, dup := o.ended[t.Addr.String()]; dup {
		panic("BranchEnded twice for " + t.Addr.String())
	}
	o.ended[t.Addr.String()] = code
}

func (o *observer) get(addr string) (int, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	c, ok := o.ended[addr]
	return c, ok
}

// failover routes every request to its groups as alternatives of one
// destination (RFC 3263 §4.3).
type failover [][]proxy.Target

func (f failover) Route(context.Context, *sip.Message, netip.AddrPort, transport.Proto) proxy.Decision {
	return proxy.Decision{Groups: f, Failover: true}
}

// TestNoAnswerFailsOver: a failover target that answers nothing within
// Target.NoAnswer counts as timed out, and the next group gets the INVITE
// at once rather than after Timer B (32 s); the observer hears of both
// branches, once each. A late 180 from the silent target gets it a
// CANCEL (RFC 3261 §9.1) and is not relayed.
func TestNoAnswerFailsOver(t *testing.T) {
	silent, live, caller := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	obs := &observer{ended: map[string]int{}}
	grp := func(p *proxytest.Peer) []proxy.Target {
		return []proxy.Target{{Proto: transport.UDP, Addr: p.Addr, NoAnswer: 300 * time.Millisecond, Observer: obs}}
	}
	_, px := proxytest.Start(t, failover{grp(silent), grp(live)}, nil)
	caller.Send(px, proxytest.Invite(caller, px, "noanswer-1", "z9hG4bKna1"))
	first := silent.ExpectRequest("INVITE")
	began := time.Now()
	req := live.ExpectRequestWithin("INVITE", 2*time.Second)
	if d := time.Since(began); d > time.Second {
		t.Fatalf("the next target got the INVITE %v after the first, want about NoAnswer (300 ms)", d)
	}
	if c, ok := obs.get(silent.Addr.String()); !ok || c != 408 {
		t.Fatalf("silent target ended with %d (%v), want 408", c, ok)
	}
	// The silent target wakes up: its 180 is not relayed, it is cancelled.
	silent.Send(px, silent.Answer(first, 180, "late"))
	cancel := silent.ExpectRequestWithin("CANCEL", 2*time.Second)
	silent.Send(px, silent.Answer(cancel, 200, "late"))
	live.Send(px, live.Answer(req, 200, "live"))
	for {
		m := caller.Recv(2 * time.Second)
		if m == nil {
			t.Fatal("no 200 for the caller")
		}
		if m.IsRequest() {
			continue
		}
		if m.StatusCode() == 180 {
			t.Fatal("the abandoned branch's 180 was relayed")
		}
		if m.StatusCode() == 200 {
			break
		}
	}
	if c, ok := obs.get(live.Addr.String()); !ok || c != 200 {
		t.Fatalf("live target ended with %d (%v), want 200", c, ok)
	}
	obs.mu.Lock()
	n := len(obs.started)
	obs.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d branches started, want 2", n)
	}
}

// TestNoAnswerLastGroupWaits: the last target left is not given up on
// after NoAnswer: with nothing else to try, it has the transaction's
// whole time, and a slow answer still makes the call.
func TestNoAnswerLastGroupWaits(t *testing.T) {
	slow, caller := proxytest.NewPeer(t), proxytest.NewPeer(t)
	obs := &observer{ended: map[string]int{}}
	_, px := proxytest.Start(t, failover{{{Proto: transport.UDP, Addr: slow.Addr, NoAnswer: 100 * time.Millisecond, Observer: obs}}}, nil)
	caller.Send(px, proxytest.Invite(caller, px, "noanswer-2", "z9hG4bKna2"))
	req := slow.ExpectRequest("INVITE")
	time.Sleep(400 * time.Millisecond)
	slow.Send(px, slow.Answer(req, 200, "slow"))
	caller.ExpectFor(200, "noanswer-2")
	if c, ok := obs.get(slow.Addr.String()); !ok || c != 200 {
		t.Fatalf("ended with %d (%v), want 200", c, ok)
	}
}
