// Package proxytest runs a proxy core on loopback with scripted SIP peers,
// for the tests of the core and of the feature packages.
package proxytest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/sdp"
	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// Static sends every initial request to fixed groups of targets.
type Static struct{ Groups [][]proxy.Target }

// Route implements proxy.Router.
func (s Static) Route(context.Context, *sip.Message, netip.AddrPort, transport.Proto) proxy.Decision {
	return proxy.Decision{Groups: s.Groups}
}

// To is a Static router to one UDP target.
func To(addr netip.AddrPort) Static {
	return Static{[][]proxy.Target{{{Proto: transport.UDP, Addr: addr}}}}
}

// Start runs a core with router and fast retransmission timers (T1 500
// ms) on a UDP listener on loopback until the test ends. features builds
// the features from the core, before it serves.
func Start(t testing.TB, router proxy.Router, features func(*proxy.Core) []proxy.Feature) (*proxy.Core, netip.AddrPort) {
	t.Helper()
	return StartCore(t, proxy.Config{Policy: proxy.Policy{Router: router}, Txn: txn.Config{T1: 500 * time.Millisecond}}, features)
}

// StartCore runs a core with cfg on a UDP listener on loopback until the
// test ends.
func StartCore(t testing.TB, cfg proxy.Config, features func(*proxy.Core) []proxy.Feature) (*proxy.Core, netip.AddrPort) {
	t.Helper()
	core, _, addr := StartLayer(t, cfg, features)
	return core, addr
}

// StartLayer is StartCore that also returns the transport layer (for
// benchmarks that hand packets to Core.HandleMessage directly).
func StartLayer(t testing.TB, cfg proxy.Config, features func(*proxy.Core) []proxy.Feature) (*proxy.Core, *transport.Layer, netip.AddrPort) {
	t.Helper()
	core, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if features != nil {
		if err := core.Use(features(core)...); err != nil {
			t.Fatal(err)
		}
	}
	layer, err := transport.New(transport.Config{Listen: []transport.ListenSpec{{Proto: transport.UDP, Addr: "127.0.0.1:0"}}}, core)
	if err != nil {
		t.Fatal(err)
	}
	if err := layer.Start(); err != nil {
		t.Fatal(err)
	}
	core.Attach(layer, nil)
	t.Cleanup(func() { layer.Close(); core.Close() })
	return core, layer, layer.Addrs()[0].Addr
}

// Peer is a scripted SIP endpoint on a loopback UDP socket.
type Peer struct {
	T    testing.TB
	Conn *net.UDPConn
	Addr netip.AddrPort
	// seen holds the first line and top Via of requests ExpectRequest
	// returned: their retransmissions (a loaded machine makes Timer A
	// fire) are skipped rather than taken for the next request.
	seen map[string]bool
}

// NewPeer opens a peer on a loopback UDP port, closed when the test ends.
func NewPeer(t testing.TB) *Peer {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Peer{T: t, Conn: c, Addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// Send sends s to to.
func (p *Peer) Send(to netip.AddrPort, s string) {
	p.T.Helper()
	if _, err := p.Conn.WriteToUDPAddrPort([]byte(s), to); err != nil {
		p.T.Fatal(err)
	}
}

// Recv waits for the next message; it returns nil on timeout.
func (p *Peer) Recv(d time.Duration) *sip.Message {
	buf := make([]byte, 65535)
	p.Conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.Conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	m := new(sip.Message)
	if err := m.Parse(buf[:n], nil); err != nil {
		p.T.Fatalf("peer got unparsable message: %v\n%s", err, buf[:n])
	}
	return m
}

// Expect waits for a response with the code, skipping 100 Trying; any
// other message fails the test.
func (p *Peer) Expect(code int) *sip.Message {
	p.T.Helper()
	for {
		m := p.Recv(2 * time.Second)
		if m == nil {
			p.T.Fatalf("timed out waiting for %d", code)
		}
		if !m.IsRequest() && m.StatusCode() == code {
			return m
		}
		if !m.IsRequest() && m.StatusCode() == 100 {
			continue
		}
		p.T.Fatalf("got %s, want %d", FirstLine(m), code)
	}
}

// ExpectRequest waits for the next message, which must be a request with
// this method.
func (p *Peer) ExpectRequest(method string) *sip.Message {
	p.T.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		m := p.Recv(time.Until(deadline))
		if m == nil {
			p.T.Fatalf("timed out waiting for %s", method)
		}
		key := FirstLine(m) + "|" + string(m.Get(sip.KindVia))
		if m.IsRequest() && string(m.Method()) != method && p.seen[key] {
			continue // a retransmission of a request already taken
		}
		if !m.IsRequest() || string(m.Method()) != method {
			p.T.Fatalf("got %s, want %s", FirstLine(m), method)
		}
		if p.seen == nil {
			p.seen = map[string]bool{}
		}
		p.seen[key] = true
		return m
	}
}

// FirstLine is the start line of m (for messages in failures).
func FirstLine(m *sip.Message) string {
	b := m.Bytes()
	if i := strings.Index(string(b), "\r\n"); i > 0 {
		return string(b[:i])
	}
	return string(b)
}

// Answer builds a response to req from a UAS: Vias, From, To with tag,
// Call-ID, CSeq, and Record-Route copied (§12.1.1), a Contact.
func (p *Peer) Answer(req *sip.Message, code int, toTag string) string {
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
	fmt.Fprintf(&b, "Contact: <sip:uas@%s>\r\nContent-Length: 0\r\n\r\n", p.Addr)
	return b.String()
}

// Invite is an INVITE from alice (tag a1) at from to bob@example.com,
// without a body.
func Invite(from *Peer, proxy netip.AddrPort, callID, branch string) string {
	return fmt.Sprintf("INVITE sip:bob@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@%s>\r\nContent-Length: 0\r\n\r\n",
		from.Addr, branch, callID, from.Addr)
}

// ExpectRequestWithin waits up to d for a request with this method,
// skipping anything else (responses, retransmissions).
func (p *Peer) ExpectRequestWithin(method string, d time.Duration) *sip.Message {
	p.T.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := p.Recv(time.Until(deadline))
		if m != nil && m.IsRequest() && string(m.Method()) == method {
			return m
		}
	}
	p.T.Fatalf("no %s within %v", method, d)
	return nil
}

// ExpectRequestFor waits for a request with this method and Call-ID,
// skipping anything else (retransmissions of earlier requests, responses).
func (p *Peer) ExpectRequestFor(method, callID string) *sip.Message {
	p.T.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		m := p.Recv(time.Until(deadline))
		if m != nil && m.IsRequest() && string(m.Method()) == method && string(m.CallID()) == callID {
			return m
		}
	}
	p.T.Fatalf("no %s for %s", method, callID)
	return nil
}

// ExpectFor waits for a response with this code and Call-ID, skipping
// anything else.
func (p *Peer) ExpectFor(code int, callID string) *sip.Message {
	p.T.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		m := p.Recv(time.Until(deadline))
		if m != nil && !m.IsRequest() && m.StatusCode() == code && string(m.CallID()) == callID {
			return m
		}
	}
	p.T.Fatalf("no %d for %s", code, callID)
	return nil
}

// OfferSDP is an audio offer receiving RTP at rtp.
func OfferSDP(rtp netip.AddrPort) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
		rtp.Addr(), rtp.Addr(), rtp.Port())
}

// WithBody puts an SDP body into msg (which has Content-Length: 0).
func WithBody(msg, body string) string {
	msg = strings.Replace(msg, "Content-Length: 0\r\n\r\n", fmt.Sprintf("Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n", len(body)), 1)
	return msg + body
}

// RelayPort reads the audio address the SDP body of m names, and checks
// its Content-Length.
func RelayPort(t *testing.T, m *sip.Message) netip.AddrPort {
	t.Helper()
	var s sdp.Session
	if err := s.Parse(m.Body()); err != nil {
		t.Fatalf("SDP: %v\n%s", err, m.Body())
	}
	md := s.Media(0)
	if cl, _ := m.ContentLength(), 0; cl != len(m.Body()) {
		t.Fatalf("Content-Length %d for a %d-byte body", cl, len(m.Body()))
	}
	return netip.AddrPortFrom(md.Conn.Addr, uint16(md.Port))
}

// UDPSocket is a loopback UDP socket (an RTP endpoint), closed when the
// test ends.
func UDPSocket(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// RTPPacket is a 172-byte RTP packet (PCMU, 20 ms) with sequence number seq.
func RTPPacket(seq uint16) []byte {
	p := make([]byte, 172)
	p[0], p[1] = 0x80, 0
	p[2], p[3] = byte(seq>>8), byte(seq)
	p[8], p[11] = 0x12, 0x34
	return p
}

// ExpectRTP waits for an RTPPacket on c, sent from the relay port from.
func ExpectRTP(t *testing.T, c *net.UDPConn, from netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no RTP: %v", err)
	}
	if n != 172 || src != from {
		t.Fatalf("got %d bytes from %s, want 172 from the relay port %s", n, src, from)
	}
}

// CancelFor is the CANCEL of the Invite with this Call-ID and branch.
func CancelFor(callID, branch string, from *Peer, px netip.AddrPort) string {
	return fmt.Sprintf("CANCEL sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: %s\r\nCSeq: 1 CANCEL\r\n"+
		"Content-Length: 0\r\n\r\n", from.Addr, branch, callID)
}

// Table tests of hooks: a core with no transport, requests and responses
// made from text, the edits hooks scheduled applied and read back.

// Harness returns a core with cfg and no transport (nothing it answers
// leaves the process), with the features features builds from it.
func Harness(t testing.TB, cfg proxy.Config, features func(*proxy.Core) []proxy.Feature) *proxy.Core {
	t.Helper()
	core, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if features != nil {
		if err := core.Use(features(core)...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(core.Close)
	return core
}

// Answers records what stages answered a request made by Request.
type Answers struct {
	Codes []int
	Msgs  []*sip.Message
}

// Code is the last status answered, 0 when none.
func (a *Answers) Code() int {
	if len(a.Codes) == 0 {
		return 0
	}
	return a.Codes[len(a.Codes)-1]
}

// Request parses msg as a request that came from src over UDP to core
// (Core.TestRequest); its local answers go to the returned Answers.
func Request(t testing.TB, core *proxy.Core, msg string, src netip.AddrPort) (*proxy.Request, *Answers) {
	t.Helper()
	a := &Answers{}
	r, err := core.TestRequest([]byte(msg), src, transport.UDP, func(code int, b []byte) {
		m := new(sip.Message)
		if err := m.Parse(b, nil); err != nil {
			t.Errorf("unparsable local answer %d: %v\n%s", code, err, b)
		}
		a.Codes, a.Msgs = append(a.Codes, code), append(a.Msgs, m)
	})
	if err != nil {
		t.Fatalf("request: %v\n%s", err, msg)
	}
	return r, a
}

// Parse parses a message (a response for a reply hook).
func Parse(t testing.TB, s string) *sip.Message {
	t.Helper()
	m := new(sip.Message)
	if err := m.Parse([]byte(s), nil); err != nil {
		t.Fatalf("parse: %v\n%s", err, s)
	}
	return m
}

// Edited returns m as it would be sent, with the edits hooks scheduled on
// it applied, parsed again.
func Edited(t testing.TB, m *sip.Message) *sip.Message {
	t.Helper()
	b := m.AppendTo(nil)
	out := new(sip.Message)
	if err := out.Parse(b, nil); err != nil {
		t.Fatalf("edited message does not parse: %v\n%s", err, b)
	}
	return out
}
