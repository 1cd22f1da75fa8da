package cluster

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"sipedge/features/dialogs"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/txn"
)

// TestDialogsAdopted: three instances. A call with a 2 s session timer
// passes A, whose record of the dialog goes to Redis; A dies (its core
// stops, its heartbeat ends). Exactly one of B and C takes the dialog
// over and, when the session expires without a refresh, sends a BYE with
// a Reason to each side, with CSeqs above the ones the sides used.
func TestDialogsAdopted(t *testing.T) {
	r := startRedis(t)
	caller, callee := proxytest.NewPeer(t), proxytest.NewPeer(t)
	type instance struct {
		c    *Cluster
		dlg  *dialogs.Feature
		addr netip.AddrPort
	}
	run := func(node string) *instance {
		in := &instance{c: open(t, r, node)}
		shared := in.c.Dialogs()
		_, in.addr = proxytest.StartCore(t, proxy.Config{Policy: proxy.Policy{Router: proxytest.To(callee.Addr)}, Txn: txn.Config{T1: 50 * time.Millisecond}},
			func(c *proxy.Core) []proxy.Feature {
				in.dlg = dialogs.New(c, dialogs.Config{})
				return []proxy.Feature{in.dlg}
			})
		in.dlg.SetShared(shared)
		shared.Bind(in.dlg)
		in.c.Start()
		return in
	}
	a := run("127.0.0.1:15071")
	b := run("127.0.0.1:15072")
	c := run("127.0.0.1:15073")
	time.Sleep(1200 * time.Millisecond) // each has seen the others alive

	inv := strings.Replace(proxytest.Invite(caller, a.addr, "adopt-1", "z9hG4bKad1"), "Content-Length: 0",
		"Session-Expires: 3\r\nContent-Length: 0", 1)
	caller.Send(a.addr, inv)
	caller.Expect(100)
	fwd := callee.ExpectRequest("INVITE")
	callee.Send(a.addr, strings.Replace(callee.Answer(fwd, 200, "b1"), "Content-Length: 0",
		"Session-Expires: 3;refresher=uac\r\nContent-Length: 0", 1))
	ok := caller.Expect(200)
	to := string(ok.Get(sip.KindTo))
	if a.dlg.Active() != 1 {
		t.Fatalf("A follows %d dialogs", a.dlg.Active())
	}
	// The caller sends an INFO inside the dialog (CSeq 5): a BYE sent
	// later for it must carry a CSeq above 5 towards the callee.
	caller.Send(a.addr, fmt.Sprintf("INFO sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKad2;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: adopt-1\r\nCSeq: 5 INFO\r\n"+
		"Content-Length: 0\r\n\r\n", callee.Addr, caller.Addr, to))
	info := callee.ExpectRequest("INFO")
	callee.Send(a.addr, callee.Answer(info, 200, "b1"))
	caller.Expect(200)
	time.Sleep(100 * time.Millisecond) // the record reaches Redis

	// A dies: its session timers stop with it, its heartbeat ends.
	a.dlg.Close()
	a.c.Close()

	byeCaller := caller.ExpectRequestWithin("BYE", 8*time.Second)
	byeCallee := callee.ExpectRequestWithin("BYE", 3*time.Second)
	for _, m := range []*sip.Message{byeCaller, byeCallee} {
		if !strings.Contains(string(m.GetByName("Reason")), "cause=408") {
			t.Errorf("BYE without the session timer's Reason: %s", m.Bytes())
		}
	}
	if n, _ := byeCallee.CSeq(); n <= 5 {
		t.Errorf("BYE to the callee has CSeq %d, not above the caller's INFO (5)", n)
	}
	if got := string(byeCallee.RequestURIBytes()); got != "sip:uas@"+callee.Addr.String() {
		t.Errorf("BYE to the callee has Request-URI %q", got)
	}
	caller.Send(b.addr, caller.Answer(byeCaller, 200, "a1"))
	callee.Send(b.addr, callee.Answer(byeCallee, 200, "b1"))
	// Exactly one instance took it.
	if m := caller.Recv(time.Second); m != nil && m.MethodKind() == sip.BYE {
		t.Fatalf("a second BYE: both survivors adopted the dialog")
	}
	sb, sc := b.c.Stats(), c.c.Stats()
	if sb.DialogsAdopted+sc.DialogsAdopted != 1 {
		t.Fatalf("dialogs adopted: B %d, C %d; want 1 in all", sb.DialogsAdopted, sc.DialogsAdopted)
	}
	if b.dlg.Stats().Ended+c.dlg.Stats().Ended != 1 || b.dlg.Active()+c.dlg.Active() != 0 {
		t.Fatalf("ended: B %d, C %d; active: B %d, C %d", b.dlg.Stats().Ended, c.dlg.Stats().Ended, b.dlg.Active(), c.dlg.Active())
	}
}

type adoptRecorder struct {
	mu  sync.Mutex
	got []string // owner + " " + record
}

func (a *adoptRecorder) Adopt(owner string, rec []byte) error {
	a.mu.Lock()
	a.got = append(a.got, owner+" "+string(rec))
	a.mu.Unlock()
	return nil
}

func (a *adoptRecorder) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

// TestDialogsNotAdoptedAfterOutage: Redis is away longer than a node's
// heartbeat may be; when it is back every heartbeat looks old, but no
// instance takes another's dialogs for that (split brain): only a node
// that stays silent once Redis answers again is dead. Then its dialog goes
// to the survivor, once.
func TestDialogsNotAdoptedAfterOutage(t *testing.T) {
	r := startRedis(t)
	a, b := open(t, r, "127.0.0.1:15081"), open(t, r, "127.0.0.1:15082")
	da, db := a.Dialogs(), b.Dialogs()
	ra, rb := &adoptRecorder{}, &adoptRecorder{}
	da.Bind(ra)
	db.Bind(rb)
	a.Start()
	time.Sleep(Heartbeat / 2) // the two beat at different moments
	b.Start()
	da.Save("k1", []byte("rec1"), time.Now().Add(time.Hour))
	for deadline := time.Now().Add(2 * time.Second); da.saved.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the dialog was not saved")
		}
		time.Sleep(10 * time.Millisecond)
	}

	time.Sleep(2 * Heartbeat) // each has seen the other alive
	r.kill()
	time.Sleep(DeadAfter + 1500*time.Millisecond)
	r.start()
	time.Sleep(DeadAfter + 3*Heartbeat)
	if got := append(ra.list(), rb.list()...); len(got) != 0 {
		t.Fatalf("adopted after a Redis outage, with both instances alive: %q", got)
	}

	a.Close() // A leaves: B takes its dialog
	for deadline := time.Now().Add(DeadAfter + 3*Heartbeat); len(rb.list()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("B did not take the dialog of A, which left")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := rb.list(); len(got) != 1 || got[0] != "127.0.0.1:15081 rec1" {
		t.Fatalf("B adopted %q", got)
	}
}

// The rule behind it, step by step: a node missing from a heartbeat made
// too soon after the connection came back is kept, and judged at the
// first beat that can be trusted.
func TestDialogsBeatRule(t *testing.T) {
	r := startRedis(t)
	c := open(t, r, "127.0.0.1:15091")
	d := c.Dialogs()
	rec := &adoptRecorder{}
	d.Bind(rec)
	// A dialog of node X, as X would have written it.
	if err := c.rdb.Set(c.ctx, d.prefix("127.0.0.1:15092")+"k", "recX", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	x := map[string]struct{}{"127.0.0.1:15092": {}}
	wait := func() { time.Sleep(300 * time.Millisecond) }
	d.beat(x, true)                      // X alive
	d.beat(map[string]struct{}{}, false) // X's heartbeat looks old, just after an outage
	wait()
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("adopted on an untrusted beat: %q", got)
	}
	d.beat(x, true) // X beat again: it was alive all along
	d.beat(x, true)
	wait()
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("adopted from a live node: %q", got)
	}
	d.beat(map[string]struct{}{}, false)
	d.beat(map[string]struct{}{}, true) // X silent at a trusted beat: dead
	for deadline := time.Now().Add(2 * time.Second); len(rec.list()) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := rec.list(); len(got) != 1 || got[0] != "127.0.0.1:15092 recX" {
		t.Fatalf("adopted %q, want X's dialog once", got)
	}
	if n, _ := c.rdb.Exists(c.ctx, d.prefix("127.0.0.1:15092")+"k").Result(); n != 0 {
		t.Fatal("the adopted dialog's key is still in Redis")
	}
}
