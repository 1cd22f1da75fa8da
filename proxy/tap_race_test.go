package proxy_test

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// TestTapSeesCall: a subscriber of the transport's message tap sees every
// message of a call through the core, in order, in both directions, with
// its transport, addresses and Call-ID.
func TestTapSeesCall(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, layer, px := proxytest.StartLayer(t, proxy.Config{Policy: proxy.Policy{Router: proxytest.To(uas.Addr)}, Txn: txn.Config{T1: 500 * time.Millisecond}}, nil)
	var mu sync.Mutex
	var seen []string
	cancel := layer.Subscribe(func(ev *transport.TapEvent) {
		if string(ev.CallID()) != "tap1" {
			return
		}
		line := string(ev.Data[:strings.Index(string(ev.Data), " SIP/2.0")+1])
		if strings.HasPrefix(line, "SIP/2.0") {
			line = string(ev.Data[:12])
		}
		peer := "uac"
		if ev.Remote == uas.Addr {
			peer = "uas"
		} else if ev.Remote != uac.Addr {
			peer = ev.Remote.String()
		}
		if ev.Proto != transport.UDP || ev.Local.Port() != px.Port() || ev.Time.IsZero() {
			t.Errorf("event %s: proto %s local %s time %v", line, ev.Proto, ev.Local, ev.Time)
		}
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s %s", ev.Dir, peer, strings.TrimSpace(line)))
		mu.Unlock()
	})
	defer cancel()

	uac.Send(px, proxytest.Invite(uac, px, "tap1", "z9hG4bKtap1"))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	uas.Send(px, uas.Answer(inv, 200, "b1"))
	ok := uac.Expect(200)
	toHdr := string(ok.Get(sip.KindTo))
	bye := fmt.Sprintf("BYE sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKtap2;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: tap1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", uas.Addr, uac.Addr, toHdr)
	uac.Send(px, bye)
	b := uas.ExpectRequest("BYE")
	uas.Send(px, uas.Answer(b, 200, "b1"))
	uac.Expect(200)

	want := []string{
		"in uac INVITE sip:bob@example.com",
		"out uac SIP/2.0 100",
		"out uas INVITE sip:bob@example.com",
		"in uas SIP/2.0 200",
		"out uac SIP/2.0 200",
		"in uac BYE sip:uas@" + uas.Addr.String(),
		"out uas BYE sip:uas@" + uas.Addr.String(),
		"in uas SIP/2.0 200",
		"out uac SIP/2.0 200",
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), seen...)
		mu.Unlock()
		// A sent message is tapped once its write returns, so a peer's
		// quick answer may be tapped before the request it answers:
		// put such pairs back in causal order.
		for i := 0; i+1 < len(got); i++ {
			in, out := got[i], got[i+1]
			if peer := strings.Fields(in); len(peer) > 2 && peer[0] == "in" && peer[2] == "SIP/2.0" &&
				strings.HasPrefix(out, "out "+peer[1]+" ") && !strings.Contains(out, "SIP/2.0 ") {
				got[i], got[i+1] = out, in
			}
		}
		if strings.Join(got, "\n") == strings.Join(want, "\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCancelRacesDeferredForward: a CANCEL that arrives while its INVITE
// waits for DNS off the reader, at any moment of that wait, leaves the
// caller with 200 for the CANCEL and 487 for the INVITE, and the callee
// either never sees the INVITE or gets its CANCEL. Run with -race: the
// server transaction's owner is set and read under its lock.
func TestCancelRacesDeferredForward(t *testing.T) {
	for i := 0; i < 20; i++ {
		uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
		r := &slowDNSRouter{target: proxy.Target{Proto: transport.UDP, Addr: uas.Addr}, release: make(chan struct{})}
		_, px := start(t, r)
		callID := fmt.Sprintf("race%d", i)
		branch := fmt.Sprintf("z9hG4bKrace%d", i)
		uac.Send(px, proxytest.Invite(uac, px, callID, branch))
		uac.ExpectFor(100, callID)
		// Release the DNS answer and send the CANCEL at the same time,
		// with a varying head start for one or the other.
		done := make(chan struct{})
		go func() {
			time.Sleep(time.Duration(i%5) * 200 * time.Microsecond)
			close(r.release)
			close(done)
		}()
		time.Sleep(time.Duration((i/5)%4) * 200 * time.Microsecond)
		uac.Send(px, proxytest.CancelFor(callID, branch, uac, px))
		<-done
		got200, got487 := false, false
		var forwarded *sip.Message
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !(got200 && got487); {
			if m := uac.Recv(50 * time.Millisecond); m != nil && !m.IsRequest() && string(m.CallID()) == callID {
				switch m.StatusCode() {
				case 200:
					got200 = true
				case 487:
					got487 = true
					uac.Send(px, ackFor(m, uac, px, branch))
				}
			}
			if m := uas.Recv(time.Millisecond); m != nil && m.IsRequest() && string(m.CallID()) == callID {
				switch string(m.Method()) {
				case "INVITE":
					forwarded = m
					uas.Send(px, uas.Answer(m, 180, "r"+callID))
				case "CANCEL":
					if forwarded == nil {
						t.Fatalf("%s: CANCEL before INVITE at the callee", callID)
					}
					uas.Send(px, uas.Answer(m, 200, "r"+callID))
					uas.Send(px, uas.Answer(forwarded, 487, "r"+callID))
				}
			}
		}
		if !got200 || !got487 {
			t.Fatalf("%s: CANCEL answered %v, INVITE ended 487 %v (forwarded %v)", callID, got200, got487, forwarded != nil)
		}
	}
}

// ackFor is the caller's ACK for a non-2xx final response: same branch as
// the INVITE, the response's To (RFC 3261 §17.1.1.3).
func ackFor(resp *sip.Message, uac *proxytest.Peer, px netip.AddrPort, branch string) string {
	return fmt.Sprintf("ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		uac.Addr, branch, resp.Get(sip.KindTo), resp.CallID())
}
