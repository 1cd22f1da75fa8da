package auth

import (
	"strings"
	"testing"

	"sipedge/digest"
	"sipedge/sip"
)

type fakeCluster struct {
	node  string
	nodes []string
}

func (c fakeCluster) Node() string    { return c.node }
func (c fakeCluster) Nodes() []string { return c.nodes }

// TestClusterNonces: two instances with the shared secret. A nonce made
// by A and used with A cannot be replayed with B (B accepts only its own
// nonces): B answers stale=true with a nonce of its own, counts no
// failure, and the client's retry with B's nonce authenticates. A nonce of
// no live instance gets a plain challenge.
func TestClusterNonces(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	fa, fb := newFixture(t, nil), newFixture(t, nil)
	fa.f.SetCluster(fakeCluster{"192.0.2.1:5060", []string{"192.0.2.2:5060"}}, secret)
	fb.f.SetCluster(fakeCluster{"192.0.2.2:5060", []string{"192.0.2.1:5060"}}, secret)

	_, ch, _ := fa.run(t, register("alice", ""), stranger)
	cred := answer(t, ch, sip.KindWWWAuthenticate, digest.MD5, "alice", "alice-pw", "REGISTER", "sip:"+realm, 1)
	if done, ans, r := fa.run(t, register("alice", "Authorization: "+cred+"\r\n"), stranger); done || !r.Authenticated() {
		t.Fatalf("A refused its own nonce: %v", ans)
	}
	// The same credentials, replayed against B.
	done, resp, r := fb.run(t, register("alice", "Authorization: "+cred+"\r\n"), stranger)
	if !done || r.Authenticated() || resp.StatusCode() != 401 {
		t.Fatalf("B accepted A's nonce: %v", resp)
	}
	c, err := digest.ParseChallenge(resp.HeaderValue(resp.Find(sip.KindWWWAuthenticate)))
	if err != nil || !c.Stale {
		t.Fatalf("A's nonce at B: want stale=true, got %s", resp.Bytes())
	}
	if len(fb.log.reasons) != 0 || fb.f.Stats().PeerNonces != 1 {
		t.Fatalf("B counted %q, peer nonces %d", fb.log.reasons, fb.f.Stats().PeerNonces)
	}
	// The client retries with B's nonce.
	cred = answer(t, resp, sip.KindWWWAuthenticate, digest.MD5, "alice", "alice-pw", "REGISTER", "sip:"+realm, 1)
	if done, ans, r := fb.run(t, register("alice", "Authorization: "+cred+"\r\n"), stranger); done || !r.Authenticated() {
		t.Fatalf("B refused its own nonce: %v", ans)
	}
	// B's nonce back at A, A's peers list now empty (B died): a plain
	// challenge.
	fa.f.SetCluster(fakeCluster{"192.0.2.1:5060", nil}, secret)
	_, resp, _ = fa.run(t, register("alice", "Authorization: "+cred+"\r\n"), stranger)
	c, _ = digest.ParseChallenge(resp.HeaderValue(resp.Find(sip.KindWWWAuthenticate)))
	if resp.StatusCode() != 401 || c.Stale {
		t.Fatalf("a dead instance's nonce: %d stale=%v", resp.StatusCode(), c.Stale)
	}
	if !strings.Contains(string(resp.Bytes()), "nonce=") {
		t.Fatal("no nonce")
	}
}
