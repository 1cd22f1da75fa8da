package proxy

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"sipedge/media"
	"sipedge/sip"
	"sipedge/transport"
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
	if raceEnabled {
		calls = 2000 // the race detector makes each call ~10x dearer
	}
	relay, err := media.New(media.Config{PortMin: 42000, PortMax: 42999})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	uac, uas := newPeer(t), newPeer(t)
	core, px := startCore(t, Config{Router: staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}},
		// Short timers so the transactions of 10 000 calls end within seconds
		// (Timer L = 64·T1, Timer D); retransmissions are skipped below.
		Txn: txn.Config{T1: 50 * time.Millisecond, T2: 400 * time.Millisecond, T4: 500 * time.Millisecond,
			TimerD: time.Second, Tick: 5 * time.Millisecond},
		Media: relay, MediaMode: RelayAlways})
	rtpA, rtpB := udpSocket(t), udpSocket(t)
	aAddr, bAddr := rtpA.LocalAddr().(*net.UDPAddr).AddrPort(), rtpB.LocalAddr().(*net.UDPAddr).AddrPort()

	call := func(i int) {
		id := fmt.Sprintf("leak%d", i)
		uac.send(px, withBody(invite(uac, px, id, "z9hG4bK"+id), offerSDP(aAddr)))
		inv := uas.expectRequestFor("INVITE", id)
		relayB := relayPort(t, inv)
		uas.send(px, withBody(uas.answer(inv, 200, "b"+id), offerSDP(bAddr)))
		r200 := uac.expectFor(200, id)
		relayA := relayPort(t, r200)
		rtpA.WriteToUDPAddrPort(rtpPacket(uint16(i)), relayA)
		expectRTP(t, rtpB, relayB)
		rtpB.WriteToUDPAddrPort(rtpPacket(uint16(i)), relayB)
		expectRTP(t, rtpA, relayA)
		rr := string(r200.Get(sip.KindRecordRoute))
		to := string(r200.Get(sip.KindTo))
		ack := fmt.Sprintf("ACK sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKa%s;rport\r\nRoute: %s\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\n"+
			"Content-Length: 0\r\n\r\n", uas.addr, uac.addr, id, rr, to, id)
		uac.send(px, ack)
		uas.expectRequestFor("ACK", id)
		bye := strings.NewReplacer("ACK sip:", "BYE sip:", "CSeq: 1 ACK", "CSeq: 2 BYE", "z9hG4bKa", "z9hG4bKb").Replace(ack)
		uac.send(px, bye)
		b := uas.expectRequestFor("BYE", id)
		uas.send(px, uas.answer(b, 200, "b"+id))
		uac.expectFor(200, id)
	}
	// Warm up (pools, maps, the relay's threads), then take the baseline.
	for i := 0; i < 50; i++ {
		call(i)
	}
	settle := func() (goroutines int, heap uint64) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, c := core.Transactions().Counts()
			if s == 0 && c == 0 || time.Now().After(deadline) {
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
	uac.send(px, withBody(invite(uac, px, "busy", "z9hG4bKbusy"), offerSDP(aAddr)))
	inv := uas.expectRequestFor("INVITE", "busy")
	uas.send(px, uas.answer(inv, 486, "bx"))
	uac.expectFor(486, "busy")
	elapsed := time.Since(start)
	g1, h1 := settle()
	st := relay.Stats()
	s, c := core.Transactions().Counts()
	t.Logf("%d calls in %v; goroutines %d → %d; heap in use %.1f → %.1f MiB; relay %+v; transactions %d/%d",
		calls, elapsed.Round(time.Millisecond), g0, g1, float64(h0)/(1<<20), float64(h1)/(1<<20), st, s, c)
	if st.Calls != 0 || st.Streams != 0 || st.PortsInUse != 0 || core.MediaCalls() != 0 {
		t.Errorf("media left behind: relay %+v, proxy media calls %d", st, core.MediaCalls())
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
