package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"sipedge/sip"
	"sipedge/transport"
)

// The access and relay stages and the response target, on requests from a
// stranger (203.0.113.7) to a sipedge at 198.51.100.1 serving example.com,
// with a feature that authenticates (its stage lets everything on).

type passAuth struct{}

func (passAuth) Hooks() Hooks {
	return Hooks{Stages: []Stage{{Name: "auth", Run: func(*Request) bool { return false }}}}
}

var (
	strangerSrc = netip.MustParseAddrPort("203.0.113.7:5060")
	selfAddr    = netip.MustParseAddrPort("198.51.100.1:5060")
)

func accessCore(t *testing.T, features ...Feature) *Core {
	t.Helper()
	c, err := New(Config{Secret: []byte("0123456789abcdef"), Self: NewSelf([]netip.AddrPort{selfAddr}, nil),
		Policy: Policy{AllowSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Domains: NewDomains([]string{"example.com"})}}, features...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func strangerRequest(method, ruri, hdr string) string {
	return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bKr1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:x@elsewhere.net>;tag=f1\r\nTo: <sip:bob@example.com>%s\r\nCall-ID: call-1\r\nCSeq: 1 %s\r\n%s"+
		"Contact: <sip:x@203.0.113.7>\r\nUser-Agent: padding so that answers are allowed by the amplification bound\r\nContent-Length: 0\r\n\r\n",
		method, ruri, map[bool]string{true: ";tag=t1"}[method == "BYE" || method == "ACK"], method, hdr)
}

// walkTo runs the core's stages up to and including the named one; it
// returns the answer (0: none) and whether a stage ended the walk.
func walkTo(t *testing.T, c *Core, msg string, src netip.AddrPort, last string) (int, bool) {
	t.Helper()
	code := 0
	r, err := c.TestRequest([]byte(msg), src, transport.UDP, func(cd int, b []byte) { code = cd })
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.pipe.stages {
		if s.Run(r) {
			return code, true
		}
		if s.Name == last {
			break
		}
	}
	return code, false
}

func TestNoOpenRelay(t *testing.T) {
	c := accessCore(t, passAuth{})
	var rr [64]byte
	signed := "<sip:198.51.100.1;" + rrParam + "=" + string(appendHex(rr[:0], c.rrKey.sum([]byte("call-1")))) + ";lr>"
	for _, tc := range []struct {
		name, msg string
		want      int // 0: goes on
	}{
		{"local user", strangerRequest("INVITE", "sip:bob@example.com", ""), 0},
		{"local user through sipedge's own Route", strangerRequest("INVITE", "sip:bob@example.com", "Route: <sip:198.51.100.1;lr>\r\n"), 0},
		{"sipedge itself", strangerRequest("OPTIONS", "sip:198.51.100.1", ""), 0},
		{"IP-literal Request-URI", strangerRequest("INVITE", "sip:victim@127.0.0.1:5099", ""), 403},
		{"foreign domain", strangerRequest("INVITE", "sip:victim@elsewhere.net", ""), 403},
		{"Route pointing outside", strangerRequest("INVITE", "sip:bob@example.com", "Route: <sip:127.0.0.1:5099;lr>\r\n"), 403},
		{"our Route, then one outside", strangerRequest("INVITE", "sip:bob@example.com", "Route: <sip:198.51.100.1;lr>, <sip:127.0.0.1:5099;lr>\r\n"), 403},
		{"maddr", strangerRequest("INVITE", "sip:bob@example.com;maddr=127.0.0.1", ""), 403},
		{"strict routing through sipedge", strangerRequest("INVITE", "sip:198.51.100.1", "Route: <sip:victim@127.0.0.1:5099>\r\n"), 403},
		{"in-dialog, no Route", strangerRequest("BYE", "sip:victim@127.0.0.1:5099", ""), 403},
		{"in-dialog, unsigned Route of ours", strangerRequest("BYE", "sip:victim@127.0.0.1:5099", "Route: <sip:198.51.100.1;lr>\r\n"), 403},
		{"in-dialog, Route signed for another call", strangerRequest("BYE", "sip:victim@127.0.0.1:5099", "Route: <sip:198.51.100.1;ck=0123456789abcdef;lr>\r\n"), 403},
		{"in-dialog, signed Route", strangerRequest("BYE", "sip:x@203.0.113.7", "Route: "+signed+"\r\n"), 0},
		{"in-dialog, signed strict-routed Request-URI", strangerRequest("BYE", strings.Trim(signed, "<>"), "Route: <sip:x@203.0.113.7>\r\n"), 0},
		{"ACK of a 2xx, signed", strangerRequest("ACK", "sip:x@203.0.113.7", "Route: "+signed+"\r\n"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.Stats().RelayDenied
			code, done := walkTo(t, c, tc.msg, strangerSrc, "relay")
			denied := c.Stats().RelayDenied - before
			switch {
			case tc.want == 0 && (done || denied != 0):
				t.Fatalf("refused: %d", code)
			case tc.want != 0 && (code != tc.want || denied != 1):
				t.Fatalf("answer %d, denied %d; want %d", code, denied, tc.want)
			}
		})
	}
	// The ACK: refused silently.
	before := c.Stats().RelayDenied
	if code, done := walkTo(t, c, strangerRequest("ACK", "sip:victim@127.0.0.1:5099", ""), strangerSrc, "relay"); !done || code != 0 || c.Stats().RelayDenied != before+1 {
		t.Fatalf("unsigned ACK from a stranger: done %v, answer %d", done, code)
	}
	// From a trusted network, anything goes on.
	if _, done := walkTo(t, c, strangerRequest("INVITE", "sip:victim@127.0.0.1:5099", ""), netip.MustParseAddrPort("10.0.0.5:5060"), "relay"); done {
		t.Fatal("trusted source refused")
	}
}

// Without a feature that authenticates, strangers get 403 at the access
// stage; an empty trusted list trusts nobody, a nil one everybody.
func TestAccessWithoutAuth(t *testing.T) {
	c := accessCore(t)
	if code, _ := walkTo(t, c, strangerRequest("OPTIONS", "sip:198.51.100.1", ""), strangerSrc, "access"); code != 403 {
		t.Fatalf("stranger: %d", code)
	}
	c.SetPolicy(Policy{AllowSources: []netip.Prefix{}})
	if code, _ := walkTo(t, c, strangerRequest("OPTIONS", "sip:198.51.100.1", ""), netip.MustParseAddrPort("10.0.0.5:5060"), "access"); code != 403 {
		t.Fatalf("trusted_networks [] let a source on: %d", code)
	}
	c.SetPolicy(Policy{})
	if _, done := walkTo(t, c, strangerRequest("OPTIONS", "sip:198.51.100.1", ""), strangerSrc, "access"); done {
		t.Fatal("a core without configuration refused a source")
	}
}

// Answers to strangers go to where the request came from: not to a Via
// maddr, not to the sent-by port (reflection).
func TestResponseTarget(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.7:40000")
	for _, tc := range []struct {
		via     string
		trusted bool
		want    string
	}{
		{"SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK1;maddr=192.0.2.66", true, "192.0.2.66:5060"},
		{"SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK1;maddr=192.0.2.66", false, "203.0.113.7:40000"},
		{"SIP/2.0/UDP 192.0.2.66:5070;branch=z9hG4bK1", true, "203.0.113.7:5070"},
		{"SIP/2.0/UDP 192.0.2.66:5070;branch=z9hG4bK1", false, "203.0.113.7:40000"},
	} {
		v, err := sip.ParseVia([]byte(tc.via))
		if err != nil {
			t.Fatal(err)
		}
		if got := responseTarget(src, &v, false, tc.trusted); got.String() != tc.want {
			t.Errorf("%s trusted=%v: %s, want %s", tc.via, tc.trusted, got, tc.want)
		}
	}
}

// A response matching no transaction is relayed statelessly only when its
// top Via branch is sipedge's signature for the Via below it.
func TestSignedBranch(t *testing.T) {
	c := accessCore(t)
	msg := strangerRequest("INVITE", "sip:bob@example.com", "")
	var m sip.Message
	if err := m.Parse([]byte(msg), nil); err != nil {
		t.Fatal(err)
	}
	via, _ := m.TopVia()
	for _, idx := range []int{0, 3, statelessIdx} {
		b := c.appendBranch(nil, &m, &via, idx)
		if !c.signedBranch(b, &via, m.CallID()) {
			t.Errorf("branch %s (idx %d) not recognised", b, idx)
		}
		other := via
		other.Host = []byte("192.0.2.66")
		if c.signedBranch(b, &other, m.CallID()) {
			t.Errorf("branch %s accepted for another Via", b)
		}
		if c.signedBranch(b, &via, []byte("other-call")) {
			t.Errorf("branch %s accepted for another Call-ID", b)
		}
	}
	if c.signedBranch([]byte(branchPrefix+"0123456789abcdef.0123456789abcdef"), &via, m.CallID()) {
		t.Error("a made-up branch accepted")
	}
}
