package cluster

import (
	"fmt"
	"net/netip"
	"strings"
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
