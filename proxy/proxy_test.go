package proxy_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// start runs a core with no feature: what these tests check is the RFC
// 3261 §16 core alone.
func start(t *testing.T, router proxy.Router) (*proxy.Core, netip.AddrPort) {
	t.Helper()
	return proxytest.Start(t, router, nil)
}

func TestProxyCallFlow(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := start(t, proxytest.To(uas.Addr))

	uac.Send(px, proxytest.Invite(uac, px, "call1", "z9hG4bKu1"))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	// §16.6: our Via on top with a loop-hash branch, Max-Forwards 69,
	// Record-Route naming the proxy, received/rport filled on the UAC's Via.
	v, _ := inv.TopVia()
	if !strings.HasPrefix(string(v.Branch), proxy.BranchPrefix) || v.Port != int(px.Port()) {
		t.Fatalf("top Via %q", inv.Get(sip.KindVia))
	}
	if n, _ := inv.MaxForwards(); n != 69 {
		t.Fatalf("Max-Forwards %d", n)
	}
	rr := string(inv.Get(sip.KindRecordRoute))
	if rr != fmt.Sprintf("<sip:%s;lr>", px) {
		t.Fatalf("Record-Route %q", rr)
	}
	if !strings.Contains(string(inv.Bytes()), fmt.Sprintf("branch=z9hG4bKu1;rport=%d", uac.Addr.Port())) {
		t.Fatalf("rport not filled:\n%s", inv.Bytes())
	}
	uas.Send(px, uas.Answer(inv, 180, "b1"))
	r180 := uac.Expect(180)
	if r180.NumVias() != 1 {
		t.Fatalf("180 has %d Vias: our Via not removed", r180.NumVias())
	}
	uas.Send(px, uas.Answer(inv, 200, "b1"))
	ok := uac.Expect(200)
	if string(ok.Get(sip.KindRecordRoute)) != rr {
		t.Fatal("Record-Route lost in 200")
	}
	// ACK and BYE follow the route set: Route: <proxy>, R-URI = UAS contact.
	ack := fmt.Sprintf("ACK sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKu2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"+
		"Call-ID: call1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", uas.Addr, uac.Addr, rr)
	uac.Send(px, ack)
	gotACK := uas.ExpectRequest("ACK")
	if gotACK.Count(sip.KindRoute) != 0 {
		t.Fatal("our Route entry was not removed from the ACK")
	}
	bye := strings.ReplaceAll(strings.ReplaceAll(ack, "ACK", "BYE"), "z9hG4bKu2", "z9hG4bKu3")
	bye = strings.Replace(bye, "CSeq: 1 BYE", "CSeq: 2 BYE", 1)
	uac.Send(px, bye)
	b := uas.ExpectRequest("BYE")
	uas.Send(px, uas.Answer(b, 200, "b1"))
	uac.Expect(200)
}

func TestProxyBusyAndCancel(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := start(t, proxytest.To(uas.Addr))

	// 486 is relayed; the proxy ACKs it hop by hop.
	uac.Send(px, proxytest.Invite(uac, px, "busy", "z9hG4bKb1"))
	inv := uas.ExpectRequest("INVITE")
	uas.Send(px, uas.Answer(inv, 486, "b1"))
	uas.ExpectRequest("ACK")
	uac.Expect(486)

	// CANCEL of a ringing call: 200 to the CANCEL, CANCEL downstream, 487.
	uac.Send(px, proxytest.Invite(uac, px, "cancel", "z9hG4bKc1"))
	inv = uas.ExpectRequest("INVITE")
	uas.Send(px, uas.Answer(inv, 180, "b2"))
	uac.Expect(180)
	cancel := fmt.Sprintf("CANCEL sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKc1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: cancel\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n", uac.Addr)
	uac.Send(px, cancel)
	uac.Expect(200)
	c := uas.ExpectRequest("CANCEL")
	uas.Send(px, uas.Answer(c, 200, "b2"))
	uas.Send(px, uas.Answer(inv, 487, "b2"))
	uas.ExpectRequest("ACK")
	uac.Expect(487)
}

func TestProxyParallelFork(t *testing.T) {
	uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := start(t, proxytest.Static{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: a.Addr}, {Proto: transport.UDP, Addr: b.Addr}}}})
	uac.Send(px, proxytest.Invite(uac, px, "fork", "z9hG4bKf1"))
	ia := a.ExpectRequest("INVITE")
	ib := b.ExpectRequest("INVITE")
	va, _ := ia.TopVia()
	vb, _ := ib.TopVia()
	if string(va.Branch) == string(vb.Branch) {
		t.Fatal("two branches share a branch id")
	}
	a.Send(px, a.Answer(ia, 180, "ta"))
	b.Send(px, b.Answer(ib, 180, "tb"))
	uac.Expect(180)
	uac.Expect(180)
	b.Send(px, b.Answer(ib, 200, "tb"))
	uac.Expect(200)
	// The loser is cancelled.
	c := a.ExpectRequest("CANCEL")
	a.Send(px, a.Answer(c, 200, "ta"))
	a.Send(px, a.Answer(ia, 487, "ta"))
	a.ExpectRequest("ACK")
	// The 487 of the loser is not forwarded after the 2xx.
	if m := uac.Recv(300 * time.Millisecond); m != nil {
		t.Fatalf("unexpected %s", proxytest.FirstLine(m))
	}
}

func TestProxySequentialFork(t *testing.T) {
	uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := start(t, proxytest.Static{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: a.Addr}}, {{Proto: transport.UDP, Addr: b.Addr}}}})
	uac.Send(px, proxytest.Invite(uac, px, "seq", "z9hG4bKs1"))
	ia := a.ExpectRequest("INVITE")
	if m := b.Recv(200 * time.Millisecond); m != nil {
		t.Fatal("second group started before the first failed")
	}
	a.Send(px, a.Answer(ia, 480, "ta"))
	a.ExpectRequest("ACK")
	ib := b.ExpectRequest("INVITE")
	b.Send(px, b.Answer(ib, 200, "tb"))
	uac.Expect(200)
}

func TestProxyBestResponse(t *testing.T) {
	uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := start(t, proxytest.Static{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: a.Addr}, {Proto: transport.UDP, Addr: b.Addr}}}})
	uac.Send(px, proxytest.Invite(uac, px, "best", "z9hG4bKr1"))
	ia := a.ExpectRequest("INVITE")
	ib := b.ExpectRequest("INVITE")
	a.Send(px, a.Answer(ia, 503, "ta"))
	a.ExpectRequest("ACK")
	b.Send(px, b.Answer(ib, 404, "tb"))
	b.ExpectRequest("ACK")
	uac.Expect(404) // 4xx beats 5xx (§16.7 step 6)
}

func TestProxyLoop(t *testing.T) {
	uac := proxytest.NewPeer(t)
	// The target is the proxy itself: the request comes back with our Via
	// and the same loop hash.
	self := &selfRouter{}
	_, px := start(t, self)
	self.addr.Store(px)
	uac.Send(px, proxytest.Invite(uac, px, "loop", "z9hG4bKl1"))
	uac.Expect(482)
}

type selfRouter struct{ addr atomic.Value }

func (s *selfRouter) Route(context.Context, *sip.Message, netip.AddrPort, transport.Proto) proxy.Decision {
	return proxy.Decision{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: s.addr.Load().(netip.AddrPort)}}}}
}

// TestProxyLargeRequestUsesTCP: a request over 1300 bytes for a UDP target
// is sent over TCP instead, with a TCP Via (RFC 3261 §18.1.1).
func TestProxyLargeRequestUsesTCP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	core, err := proxy.New(proxy.Config{Policy: proxy.Policy{Router: proxytest.Static{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: target}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	layer, err := transport.New(transport.Config{Listen: []transport.ListenSpec{
		{Proto: transport.UDP, Addr: "127.0.0.1:0"}, {Proto: transport.TCP, Addr: "127.0.0.1:0"}}}, core)
	if err != nil {
		t.Fatal(err)
	}
	if err := layer.Start(); err != nil {
		t.Fatal(err)
	}
	core.Attach(layer, nil)
	t.Cleanup(func() { layer.Close(); core.Close() })
	var px netip.AddrPort
	for _, a := range layer.Addrs() {
		if a.Proto == transport.UDP {
			px = a.Addr
		}
	}
	uac := proxytest.NewPeer(t)
	big := strings.Replace(proxytest.Invite(uac, px, "big", "z9hG4bKbig"), "Content-Length: 0\r\n",
		"X-Padding: "+strings.Repeat("x", 1400)+"\r\nContent-Length: 0\r\n", 1)
	uac.Send(px, big)
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal("no TCP connection for the large request:", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 8192)
	n := 0
	for n < 1400 {
		k, err := c.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}
	got := string(buf[:n])
	if !strings.HasPrefix(got, "INVITE sip:bob@example.com SIP/2.0\r\n") || !strings.Contains(got, "\r\nVia: SIP/2.0/TCP 127.0.0.1:") {
		t.Fatalf("request over TCP:\n%s", got[:300])
	}
	// It changed transport, so it is record-routed twice (§16.6 step 4):
	// the TCP side first, then the UDP side it came from.
	if !strings.Contains(got, ";transport=tcp;lr>\r\nRecord-Route: <sip:"+px.String()+";lr>") {
		t.Fatalf("no double Record-Route:\n%s", got[:300])
	}
}

// TestACKForSelfIsAbsorbed: an ACK whose Request-URI is sipedge itself
// must not be forwarded (it would come back to us until Max-Forwards ran
// out: one packet in, dozens of sends).
func TestACKForSelfIsAbsorbed(t *testing.T) {
	uac := proxytest.NewPeer(t)
	core, px := start(t, nil)
	ack := fmt.Sprintf("ACK sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKself;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:a@x>;tag=1\r\nTo: <sip:%s>;tag=2\r\nCall-ID: selfack\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", px, uac.Addr, px)
	uac.Send(px, ack)
	time.Sleep(200 * time.Millisecond)
	if n := core.Stats().StatelessForwards; n != 0 {
		t.Fatalf("ACK for sipedge forwarded %d times", n)
	}
	if m := uac.Recv(100 * time.Millisecond); m != nil {
		t.Fatalf("ACK answered: %s", proxytest.FirstLine(m))
	}
}

// slowDNSRouter answers "would block" on a reader (WithoutBlocking) and,
// off the reader, waits for release before naming the target: a DNS
// server that takes its time.
type slowDNSRouter struct {
	target  proxy.Target
	release chan struct{}
	onRead  atomic.Int32 // non-blocking attempts
}

func (s *slowDNSRouter) Route(ctx context.Context, m *sip.Message, _ netip.AddrPort, _ transport.Proto) proxy.Decision {
	if proxy.NonBlocking(ctx) {
		s.onRead.Add(1)
		return proxy.Decision{Blocked: true}
	}
	if u, _ := m.RequestURI(); string(u.User) == "fast" {
		return proxy.Decision{Groups: [][]proxy.Target{{s.target}}}
	}
	select {
	case <-s.release:
	case <-ctx.Done():
		return proxy.Decision{Code: 503, Reason: "DNS Timeout"}
	}
	return proxy.Decision{Groups: [][]proxy.Target{{s.target}}}
}

// A request whose routing waits for DNS leaves the reader: a second call
// arriving meanwhile is forwarded at once, and the first one completes when
// the answer comes.
func TestDNSWaitDoesNotStallReader(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	r := &slowDNSRouter{target: proxy.Target{Proto: transport.UDP, Addr: uas.Addr}, release: make(chan struct{})}
	core, px := start(t, r)

	uac.Send(px, proxytest.Invite(uac, px, "slow", "z9hG4bKs1"))
	uac.Expect(100)
	fast := strings.Replace(proxytest.Invite(uac, px, "fast", "z9hG4bKf1"), "sip:bob@example.com SIP", "sip:fast@example.com SIP", 1)
	uac.Send(px, fast)
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	if string(inv.CallID()) != "fast" {
		t.Fatalf("first INVITE forwarded is %q, want the one that needed no wait", inv.CallID())
	}
	close(r.release)
	inv2 := uas.ExpectRequest("INVITE")
	if string(inv2.CallID()) != "slow" {
		t.Fatalf("got %q, want the deferred INVITE", inv2.CallID())
	}
	uas.Send(px, uas.Answer(inv2, 486, "b1"))
	uac.Expect(486)
	if core.Stats().Deferred != 2 || r.onRead.Load() != 2 {
		t.Fatalf("deferred %d, non-blocking attempts %d; want 2 and 2", core.Stats().Deferred, r.onRead.Load())
	}
}
