package proxy_test

import (
	"strings"
	"sync"
	"testing"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// fixedAuth answers every challenge with the same credentials and
// remembers what it was asked.
type fixedAuth struct {
	mu          sync.Mutex
	method, uri string
	calls       int
}

func (a *fixedAuth) Authorize(method, uri []byte, resp *sip.Message) (string, []byte, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	a.method, a.uri = string(method), string(uri)
	name := "Authorization"
	if resp.StatusCode() == 407 {
		name = "Proxy-Authorization"
	}
	return name, []byte(`Digest username="trunk", response="x"`), true
}

// TestAuthRetry: a 407 of a next hop whose credentials sipedge holds is
// absorbed; the INVITE goes again with Proxy-Authorization and CSeq 2 on a
// new branch (RFC 3261 §22.2), and the caller sees only the final answer,
// with its own CSeq 1.
func TestAuthRetry(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	auth := &fixedAuth{}
	_, px := start(t, proxytest.Static{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: uas.Addr, Auth: auth}}}})

	uac.Send(px, proxytest.Invite(uac, px, "auth1", "z9hG4bKa1"))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	uas.Send(px, uas.Answer(inv, 407, "p1"))
	if ack := uas.ExpectRequest("ACK"); ack == nil {
		t.Fatal("407 not acknowledged")
	}
	inv2 := uas.ExpectRequest("INVITE")
	if n, _ := inv2.CSeq(); n != 2 {
		t.Fatalf("retried INVITE has CSeq %d, want 2", n)
	}
	if got := string(inv2.Get(sip.KindProxyAuthorization)); !strings.Contains(got, `username="trunk"`) {
		t.Fatalf("Proxy-Authorization %q", got)
	}
	v1, _ := inv.TopVia()
	v2, _ := inv2.TopVia()
	if string(v1.Branch) == string(v2.Branch) {
		t.Fatal("retried INVITE reuses the branch")
	}
	auth.mu.Lock()
	method, uri := auth.method, auth.uri
	auth.mu.Unlock()
	if method != "INVITE" || uri != "sip:bob@example.com" {
		t.Fatalf("asked for %s %s", method, uri)
	}
	uas.Send(px, uas.Answer(inv2, 180, "p1"))
	r180 := uac.Expect(180)
	if n, _ := r180.CSeq(); n != 1 {
		t.Fatalf("180 upstream has CSeq %d, want 1", n)
	}
	uas.Send(px, uas.Answer(inv2, 200, "p1"))
	ok := uac.Expect(200)
	if n, m := ok.CSeq(); n != 1 || string(m) != "INVITE" {
		t.Fatalf("200 upstream has CSeq %d %s", n, m)
	}
}

// TestAuthRetryOnce: a second challenge (the credentials were refused) is
// relayed, not answered again.
func TestAuthRetryOnce(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	auth := &fixedAuth{}
	_, px := start(t, proxytest.Static{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: uas.Addr, Auth: auth}}}})

	uac.Send(px, proxytest.Invite(uac, px, "auth2", "z9hG4bKa2"))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	uas.Send(px, uas.Answer(inv, 401, "p1"))
	uas.ExpectRequest("ACK")
	inv2 := uas.ExpectRequest("INVITE")
	if inv2.Get(sip.KindAuthorization) == nil {
		t.Fatal("no Authorization after a 401")
	}
	uas.Send(px, uas.Answer(inv2, 401, "p1"))
	uas.ExpectRequest("ACK")
	r := uac.Expect(401)
	if n, _ := r.CSeq(); n != 1 {
		t.Fatalf("401 upstream has CSeq %d", n)
	}
	auth.mu.Lock()
	defer auth.mu.Unlock()
	if auth.calls != 1 {
		t.Fatalf("Authorize called %d times", auth.calls)
	}
}

// TestChallengeRelayedWithoutAuth: a target without credentials relays
// the challenge as before.
func TestChallengeRelayedWithoutAuth(t *testing.T) {
	uac, uas := proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := start(t, proxytest.To(uas.Addr))
	uac.Send(px, proxytest.Invite(uac, px, "auth3", "z9hG4bKa3"))
	uac.Expect(100)
	inv := uas.ExpectRequest("INVITE")
	uas.Send(px, uas.Answer(inv, 407, "p1"))
	uas.ExpectRequest("ACK")
	uac.Expect(407)
}
