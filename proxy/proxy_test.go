package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// staticRouter sends every initial request to fixed groups of targets.
type staticRouter struct{ groups [][]Target }

func (s staticRouter) Route(context.Context, *sip.Message, netip.AddrPort, transport.Proto) Decision {
	return Decision{Groups: s.groups}
}

// peer is a scripted SIP endpoint on a loopback UDP socket.
type peer struct {
	t    *testing.T
	conn *net.UDPConn
	addr netip.AddrPort
}

func newPeer(t *testing.T) *peer {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
}

func (p *peer) send(to netip.AddrPort, s string) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort([]byte(s), to); err != nil {
		p.t.Fatal(err)
	}
}

// recv waits for the next message; it returns nil on timeout.
func (p *peer) recv(d time.Duration) *sip.Message {
	buf := make([]byte, 65535)
	p.conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	m := new(sip.Message)
	if err := m.Parse(buf[:n], nil); err != nil {
		p.t.Fatalf("peer got unparsable message: %v\n%s", err, buf[:n])
	}
	return m
}

// expect waits for a response with the code (skipping others listed in skip).
func (p *peer) expect(code int) *sip.Message {
	p.t.Helper()
	for {
		m := p.recv(2 * time.Second)
		if m == nil {
			p.t.Fatalf("timed out waiting for %d", code)
		}
		if !m.IsRequest() && m.StatusCode() == code {
			return m
		}
		if !m.IsRequest() && m.StatusCode() == 100 {
			continue
		}
		p.t.Fatalf("got %s, want %d", firstLine(m), code)
	}
}

func (p *peer) expectRequest(method string) *sip.Message {
	p.t.Helper()
	m := p.recv(2 * time.Second)
	if m == nil {
		p.t.Fatalf("timed out waiting for %s", method)
	}
	if !m.IsRequest() || string(m.Method()) != method {
		p.t.Fatalf("got %s, want %s", firstLine(m), method)
	}
	return m
}

func firstLine(m *sip.Message) string {
	b := m.Bytes()
	if i := strings.Index(string(b), "\r\n"); i > 0 {
		return string(b[:i])
	}
	return string(b)
}

// answer builds a response to req from a UAS: Vias, From, To with tag,
// Call-ID, CSeq, and Record-Route copied (§12.1.1), a Contact.
func (p *peer) answer(req *sip.Message, code int, toTag string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, sip.ReasonPhrase(code))
	for i := 0; i < req.NumHeaders(); i++ {
		switch req.HeaderKind(i) {
		case sip.KindVia, sip.KindFrom, sip.KindCallID, sip.KindCSeq, sip.KindRecordRoute:
			fmt.Fprintf(&b, "%s: %s\r\n", req.HeaderKind(i), req.HeaderValue(i))
		case sip.KindTo:
			v := string(req.HeaderValue(i))
			if !strings.Contains(v, "tag=") && code > 100 {
				v += ";tag=" + toTag
			}
			fmt.Fprintf(&b, "To: %s\r\n", v)
		}
	}
	fmt.Fprintf(&b, "Contact: <sip:uas@%s>\r\nContent-Length: 0\r\n\r\n", p.addr)
	return b.String()
}

func startProxy(t *testing.T, router Router) (*Core, netip.AddrPort) {
	t.Helper()
	return startCore(t, Config{Router: router, Txn: txn.Config{T1: 500 * time.Millisecond}})
}

// startCore runs a core with cfg on a UDP listener on loopback until the
// test ends.
func startCore(t testing.TB, cfg Config) (*Core, netip.AddrPort) {
	t.Helper()
	core := New(cfg)
	layer, err := transport.New(transport.Config{Listen: []transport.ListenSpec{{Proto: transport.UDP, Addr: "127.0.0.1:0"}}}, core)
	if err != nil {
		t.Fatal(err)
	}
	if err := layer.Start(); err != nil {
		t.Fatal(err)
	}
	core.Attach(layer, nil)
	t.Cleanup(func() { layer.Close(); core.Close() })
	return core, layer.Addrs()[0].Addr
}

func invite(from *peer, proxy netip.AddrPort, callID, branch string) string {
	return fmt.Sprintf("INVITE sip:bob@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@%s>\r\nContent-Length: 0\r\n\r\n",
		from.addr, branch, callID, from.addr)
}

func TestProxyCallFlow(t *testing.T) {
	uac, uas := newPeer(t), newPeer(t)
	_, px := startProxy(t, staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}})

	uac.send(px, invite(uac, px, "call1", "z9hG4bKu1"))
	uac.expect(100)
	inv := uas.expectRequest("INVITE")
	// §16.6: our Via on top with a loop-hash branch, Max-Forwards 69,
	// Record-Route naming the proxy, received/rport filled on the UAC's Via.
	v, _ := inv.TopVia()
	if !strings.HasPrefix(string(v.Branch), branchPrefix) || v.Port != int(px.Port()) {
		t.Fatalf("top Via %q", inv.Get(sip.KindVia))
	}
	if n, _ := inv.MaxForwards(); n != 69 {
		t.Fatalf("Max-Forwards %d", n)
	}
	rr := string(inv.Get(sip.KindRecordRoute))
	if rr != fmt.Sprintf("<sip:%s;lr>", px) {
		t.Fatalf("Record-Route %q", rr)
	}
	if !strings.Contains(string(inv.Bytes()), fmt.Sprintf("branch=z9hG4bKu1;rport=%d", uac.addr.Port())) {
		t.Fatalf("rport not filled:\n%s", inv.Bytes())
	}
	uas.send(px, uas.answer(inv, 180, "b1"))
	r180 := uac.expect(180)
	if r180.NumVias() != 1 {
		t.Fatalf("180 has %d Vias: our Via not removed", r180.NumVias())
	}
	uas.send(px, uas.answer(inv, 200, "b1"))
	ok := uac.expect(200)
	if string(ok.Get(sip.KindRecordRoute)) != rr {
		t.Fatal("Record-Route lost in 200")
	}
	// ACK and BYE follow the route set: Route: <proxy>, R-URI = UAS contact.
	ack := fmt.Sprintf("ACK sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKu2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"+
		"Call-ID: call1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", uas.addr, uac.addr, rr)
	uac.send(px, ack)
	gotACK := uas.expectRequest("ACK")
	if gotACK.Count(sip.KindRoute) != 0 {
		t.Fatal("our Route entry was not removed from the ACK")
	}
	bye := strings.ReplaceAll(strings.ReplaceAll(ack, "ACK", "BYE"), "z9hG4bKu2", "z9hG4bKu3")
	bye = strings.Replace(bye, "CSeq: 1 BYE", "CSeq: 2 BYE", 1)
	uac.send(px, bye)
	b := uas.expectRequest("BYE")
	uas.send(px, uas.answer(b, 200, "b1"))
	uac.expect(200)
}

func TestProxyBusyAndCancel(t *testing.T) {
	uac, uas := newPeer(t), newPeer(t)
	_, px := startProxy(t, staticRouter{[][]Target{{{Proto: transport.UDP, Addr: uas.addr}}}})

	// 486 is relayed; the proxy ACKs it hop by hop.
	uac.send(px, invite(uac, px, "busy", "z9hG4bKb1"))
	inv := uas.expectRequest("INVITE")
	uas.send(px, uas.answer(inv, 486, "b1"))
	uas.expectRequest("ACK")
	uac.expect(486)

	// CANCEL of a ringing call: 200 to the CANCEL, CANCEL downstream, 487.
	uac.send(px, invite(uac, px, "cancel", "z9hG4bKc1"))
	inv = uas.expectRequest("INVITE")
	uas.send(px, uas.answer(inv, 180, "b2"))
	uac.expect(180)
	cancel := fmt.Sprintf("CANCEL sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKc1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: cancel\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n", uac.addr)
	uac.send(px, cancel)
	uac.expect(200)
	c := uas.expectRequest("CANCEL")
	uas.send(px, uas.answer(c, 200, "b2"))
	uas.send(px, uas.answer(inv, 487, "b2"))
	uas.expectRequest("ACK")
	uac.expect(487)
}

func TestProxyParallelFork(t *testing.T) {
	uac, a, b := newPeer(t), newPeer(t), newPeer(t)
	_, px := startProxy(t, staticRouter{[][]Target{{{Proto: transport.UDP, Addr: a.addr}, {Proto: transport.UDP, Addr: b.addr}}}})
	uac.send(px, invite(uac, px, "fork", "z9hG4bKf1"))
	ia := a.expectRequest("INVITE")
	ib := b.expectRequest("INVITE")
	va, _ := ia.TopVia()
	vb, _ := ib.TopVia()
	if string(va.Branch) == string(vb.Branch) {
		t.Fatal("two branches share a branch id")
	}
	a.send(px, a.answer(ia, 180, "ta"))
	b.send(px, b.answer(ib, 180, "tb"))
	uac.expect(180)
	uac.expect(180)
	b.send(px, b.answer(ib, 200, "tb"))
	uac.expect(200)
	// The loser is cancelled.
	c := a.expectRequest("CANCEL")
	a.send(px, a.answer(c, 200, "ta"))
	a.send(px, a.answer(ia, 487, "ta"))
	a.expectRequest("ACK")
	// The 487 of the loser is not forwarded after the 2xx.
	if m := uac.recv(300 * time.Millisecond); m != nil {
		t.Fatalf("unexpected %s", firstLine(m))
	}
}

func TestProxySequentialFork(t *testing.T) {
	uac, a, b := newPeer(t), newPeer(t), newPeer(t)
	_, px := startProxy(t, staticRouter{[][]Target{{{Proto: transport.UDP, Addr: a.addr}}, {{Proto: transport.UDP, Addr: b.addr}}}})
	uac.send(px, invite(uac, px, "seq", "z9hG4bKs1"))
	ia := a.expectRequest("INVITE")
	if m := b.recv(200 * time.Millisecond); m != nil {
		t.Fatal("second group started before the first failed")
	}
	a.send(px, a.answer(ia, 480, "ta"))
	a.expectRequest("ACK")
	ib := b.expectRequest("INVITE")
	b.send(px, b.answer(ib, 200, "tb"))
	uac.expect(200)
}

func TestProxyBestResponse(t *testing.T) {
	uac, a, b := newPeer(t), newPeer(t), newPeer(t)
	_, px := startProxy(t, staticRouter{[][]Target{{{Proto: transport.UDP, Addr: a.addr}, {Proto: transport.UDP, Addr: b.addr}}}})
	uac.send(px, invite(uac, px, "best", "z9hG4bKr1"))
	ia := a.expectRequest("INVITE")
	ib := b.expectRequest("INVITE")
	a.send(px, a.answer(ia, 503, "ta"))
	a.expectRequest("ACK")
	b.send(px, b.answer(ib, 404, "tb"))
	b.expectRequest("ACK")
	uac.expect(404) // 4xx beats 5xx (§16.7 step 6)
}

func TestProxyLoop(t *testing.T) {
	uac := newPeer(t)
	// The target is the proxy itself: the request comes back with our Via
	// and the same loop hash.
	self := &selfRouter{}
	_, px := startProxy(t, self)
	self.addr.Store(px)
	uac.send(px, invite(uac, px, "loop", "z9hG4bKl1"))
	uac.expect(482)
}

type selfRouter struct{ addr atomic.Value }

func (s *selfRouter) Route(context.Context, *sip.Message, netip.AddrPort, transport.Proto) Decision {
	return Decision{Groups: [][]Target{{{Proto: transport.UDP, Addr: s.addr.Load().(netip.AddrPort)}}}}
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
	core := New(Config{Router: staticRouter{[][]Target{{{Proto: transport.UDP, Addr: target}}}}})
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
	uac := newPeer(t)
	big := strings.Replace(invite(uac, px, "big", "z9hG4bKbig"), "Content-Length: 0\r\n",
		"X-Padding: "+strings.Repeat("x", 1400)+"\r\nContent-Length: 0\r\n", 1)
	uac.send(px, big)
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
	uac := newPeer(t)
	core, px := startProxy(t, nil)
	ack := fmt.Sprintf("ACK sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKself;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:a@x>;tag=1\r\nTo: <sip:%s>;tag=2\r\nCall-ID: selfack\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", px, uac.addr, px)
	uac.send(px, ack)
	time.Sleep(200 * time.Millisecond)
	if n := core.Stats().StatelessForwards.Load(); n != 0 {
		t.Fatalf("ACK for sipedge forwarded %d times", n)
	}
	if m := uac.recv(100 * time.Millisecond); m != nil {
		t.Fatalf("ACK answered: %s", firstLine(m))
	}
}

// slowDNSRouter answers "would block" on a reader (WithoutBlocking) and,
// off the reader, waits for release before naming the target: a DNS
// server that takes its time.
type slowDNSRouter struct {
	target  Target
	release chan struct{}
	onRead  atomic.Int32 // non-blocking attempts
}

func (s *slowDNSRouter) Route(ctx context.Context, m *sip.Message, _ netip.AddrPort, _ transport.Proto) Decision {
	if NonBlocking(ctx) {
		s.onRead.Add(1)
		return Decision{Blocked: true}
	}
	if u, _ := m.RequestURI(); string(u.User) == "fast" {
		return Decision{Groups: [][]Target{{s.target}}}
	}
	select {
	case <-s.release:
	case <-ctx.Done():
		return Decision{Code: 503, Reason: "DNS Timeout"}
	}
	return Decision{Groups: [][]Target{{s.target}}}
}

// A request whose routing waits for DNS leaves the reader: a second call
// arriving meanwhile is forwarded at once, and the first one completes when
// the answer comes.
func TestDNSWaitDoesNotStallReader(t *testing.T) {
	uac, uas := newPeer(t), newPeer(t)
	r := &slowDNSRouter{target: Target{Proto: transport.UDP, Addr: uas.addr}, release: make(chan struct{})}
	core, px := startProxy(t, r)

	uac.send(px, invite(uac, px, "slow", "z9hG4bKs1"))
	uac.expect(100)
	fast := strings.Replace(invite(uac, px, "fast", "z9hG4bKf1"), "sip:bob@example.com SIP", "sip:fast@example.com SIP", 1)
	uac.send(px, fast)
	uac.expect(100)
	inv := uas.expectRequest("INVITE")
	if string(inv.CallID()) != "fast" {
		t.Fatalf("first INVITE forwarded is %q, want the one that needed no wait", inv.CallID())
	}
	close(r.release)
	inv2 := uas.expectRequest("INVITE")
	if string(inv2.CallID()) != "slow" {
		t.Fatalf("got %q, want the deferred INVITE", inv2.CallID())
	}
	uas.send(px, uas.answer(inv2, 486, "b1"))
	uac.expect(486)
	if core.Stats().Deferred.Load() != 2 || r.onRead.Load() != 2 {
		t.Fatalf("deferred %d, non-blocking attempts %d; want 2 and 2", core.Stats().Deferred.Load(), r.onRead.Load())
	}
}

// expectRequestWithin waits up to d for a request with this method,
// skipping anything else (responses, retransmissions).
func (p *peer) expectRequestWithin(method string, d time.Duration) *sip.Message {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := p.recv(time.Until(deadline))
		if m != nil && m.IsRequest() && string(m.Method()) == method {
			return m
		}
	}
	p.t.Fatalf("no %s within %v", method, d)
	return nil
}

// expectRequestFor waits for a request with this method and Call-ID,
// skipping anything else (retransmissions of earlier requests, responses).
func (p *peer) expectRequestFor(method, callID string) *sip.Message {
	p.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		m := p.recv(time.Until(deadline))
		if m != nil && m.IsRequest() && string(m.Method()) == method && string(m.CallID()) == callID {
			return m
		}
	}
	p.t.Fatalf("no %s for %s", method, callID)
	return nil
}

// expectFor waits for a response with this code and Call-ID, skipping
// anything else.
func (p *peer) expectFor(code int, callID string) *sip.Message {
	p.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		m := p.recv(time.Until(deadline))
		if m != nil && !m.IsRequest() && m.StatusCode() == code && string(m.CallID()) == callID {
			return m
		}
	}
	p.t.Fatalf("no %d for %s", code, callID)
	return nil
}
