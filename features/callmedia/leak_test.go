package callmedia_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"sipedge/features/callmedia"
	"sipedge/features/dialogs"
	"sipedge/internal/race"
	"sipedge/media"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/txn"
)

// TestNoLeakAfterManyCalls runs 10 000 relayed calls through the core,
// each with RTP both ways through the relay, then a few failed and
// cancelled ones, and checks that everything comes back to where it
// started: relay calls, streams and ports, media calls, transactions,
// goroutines and heap.
func TestNoLeakAfterManyCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("10 000 calls")
	}
	calls := 10000
	if race.Enabled {
		calls = 2000 // the race detector makes each call ~10x dearer
	}
	relay, err := media.New(media.Config{PortMin: 42000, PortMax: 42999})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	var mc *callmedia.Feature
	var dlg *dialogs.Feature
	core, px := proxytest.StartCore(t, proxy.Config{Policy: proxy.Policy{Router: proxytest.To(uas.Addr)},
		// Short timers so the transactions of 10 000 calls end within seconds
		// (Timer L = 64·T1, Timer D); retransmissions are skipped below.
		Txn: txn.Config{T1: 50 * time.Millisecond, T2: 400 * time.Millisecond, T4: 500 * time.Millisecond,
			TimerD: time.Second, Tick: 5 * time.Millisecond}},
		func(c *proxy.Core) []proxy.Feature {
			mc = callmedia.New(c, relay, callmedia.Config{Mode: callmedia.Always})
			dlg = dialogs.New(c, dialogs.Config{})
			return []proxy.Feature{mc, dlg}
		})
	rtpA, rtpB := proxytest.UDPSocket(t), proxytest.UDPSocket(t)
	aAddr, bAddr := addrOf(rtpA), addrOf(rtpB)

	call := func(i int) {
		id := fmt.Sprintf("leak%d", i)
		uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, id, "z9hG4bK"+id), proxytest.OfferSDP(aAddr)))
		inv := uas.ExpectRequestFor("INVITE", id)
		relayB := proxytest.RelayPort(t, inv)
		uas.Send(px, proxytest.WithBody(uas.Answer(inv, 200, "b"+id), proxytest.OfferSDP(bAddr)))
		r200 := uac.ExpectFor(200, id)
		relayA := proxytest.RelayPort(t, r200)
		rtpA.WriteToUDPAddrPort(proxytest.RTPPacket(uint16(i)), relayA)
		proxytest.ExpectRTP(t, rtpB, relayB)
		rtpB.WriteToUDPAddrPort(proxytest.RTPPacket(uint16(i)), relayB)
		proxytest.ExpectRTP(t, rtpA, relayA)
		rr := string(r200.Get(sip.KindRecordRoute))
		to := string(r200.Get(sip.KindTo))
		ack := fmt.Sprintf("ACK sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKa%s;rport\r\nRoute: %s\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\n"+
			"Content-Length: 0\r\n\r\n", uas.Addr, uac.Addr, id, rr, to, id)
		uac.Send(px, ack)
		uas.ExpectRequestFor("ACK", id)
		bye := strings.NewReplacer("ACK sip:", "BYE sip:", "CSeq: 1 ACK", "CSeq: 2 BYE", "z9hG4bKa", "z9hG4bKb").Replace(ack)
		uac.Send(px, bye)
		b := uas.ExpectRequestFor("BYE", id)
		uas.Send(px, uas.Answer(b, 200, "b"+id))
		uac.ExpectFor(200, id)
	}
	// Warm up (pools, maps, the relay's threads), then take the baseline.
	for i := 0; i < 50; i++ {
		call(i)
	}
	settle := func() (goroutines int, heap uint64) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if tx := core.Transactions(); tx.Servers == 0 && tx.Clients == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse
	}
	g0, h0 := settle()
	start := time.Now()
	for i := 50; i < 50+calls; i++ {
		call(i)
	}
	// A busy callee and a cancelled call free their media too.
	uac.Send(px, proxytest.WithBody(proxytest.Invite(uac, px, "busy", "z9hG4bKbusy"), proxytest.OfferSDP(aAddr)))
	inv := uas.ExpectRequestFor("INVITE", "busy")
	uas.Send(px, uas.Answer(inv, 486, "bx"))
	uac.ExpectFor(486, "busy")
	elapsed := time.Since(start)
	g1, h1 := settle()
	st := relay.Stats()
	tx := core.Transactions()
	s, c := tx.Servers, tx.Clients
	t.Logf("%d calls in %v; goroutines %d → %d; heap in use %.1f → %.1f MiB; relay %+v; transactions %d/%d",
		calls, elapsed.Round(time.Millisecond), g0, g1, float64(h0)/(1<<20), float64(h1)/(1<<20), st, s, c)
	if st.Calls != 0 || st.Streams != 0 || st.PortsInUse != 0 || mc.Calls() != 0 {
		t.Errorf("media left behind: relay %+v, media calls %d", st, mc.Calls())
	}
	if n := dlg.Active(); n != 0 {
		t.Errorf("%d dialogs left behind", n)
	}
	if s != 0 || c != 0 {
		t.Errorf("transactions left: %d server, %d client", s, c)
	}
	if g1 > g0+2 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if h1 > h0+8<<20 {
		t.Errorf("heap in use grew from %.1f to %.1f MiB", float64(h0)/(1<<20), float64(h1)/(1<<20))
	}
	if st.Relayed < uint64(2*calls) {
		t.Errorf("relay forwarded %d packets, want at least %d", st.Relayed, 2*calls)
	}
}
