package topohide

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// The hooks on fake messages, with a fixed key so that tokens, and so the
// golden files, are stable. A golden file is the message as the hooks
// leave it (before the core's own Via and Record-Route): review its diff
// by hand after -update.

var (
	testKey  = bytes.Repeat([]byte{1}, keyLen)
	local    = netip.MustParseAddrPort("198.51.100.1:5060") // sipedge, outside
	inside   = netip.MustParseAddrPort("10.0.0.9:5060")     // an inside proxy
	caller   = netip.MustParseAddrPort("10.0.0.5:5060")     // inside UA
	peerAddr = netip.MustParseAddrPort("203.0.113.10:5060")
	toPeer   = proxy.Target{Proto: transport.UDP, Addr: peerAddr}
	toInside = proxy.Target{Proto: transport.UDP, Addr: caller}
)

func newFeature(t *testing.T, cfg Config) (*Feature, *proxy.Core) {
	t.Helper()
	if cfg.Peers == nil {
		cfg = Config{Peers: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, Via: true, Contact: true, RecordRoute: true, CallID: true}
	}
	var f *Feature
	core := proxytest.Harness(t, proxy.Config{Self: proxy.NewSelf([]netip.AddrPort{local}, nil)}, func(c *proxy.Core) []proxy.Feature {
		var err error
		if f, err = New(c, cfg, testKey); err != nil {
			t.Fatal(err)
		}
		f.localFor = func(transport.Proto, netip.Addr) (netip.AddrPort, bool) { return local, true }
		return []proxy.Feature{f}
	})
	return f, core
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata/golden", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to make it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden file:\n got:\n%s\nwant:\n%s", name, got, want)
	}
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// invite is a dialog-creating INVITE from the caller through an inside
// proxy (10.0.0.9) that record-routed it.
var invite = crlf(`INVITE sip:+15551234@carrier.example SIP/2.0
Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKp1
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKu1;rport=5060
Max-Forwards: 69
Record-Route: <sip:10.0.0.9;lr>
From: <sip:alice@example.com>;tag=a1
To: <sip:+15551234@carrier.example>
Call-ID: abc123@10.0.0.5
CSeq: 1 INVITE
Contact: <sip:alice@10.0.0.5:5060;transport=udp>;+sip.instance="<urn:uuid:1>"
Content-Length: 0

`)

// forwardToPeer runs the branch hook on the INVITE towards the peer.
func forwardToPeer(t *testing.T, f *Feature, core *proxy.Core, msg string) (*proxy.Branch, []byte) {
	t.Helper()
	r, _ := proxytest.Request(t, core, msg, inside)
	tg := toPeer
	b := r.TestBranch(&tg, local)
	if err := f.branch(b); err != nil {
		t.Fatal(err)
	}
	return b, b.Msg.AppendTo(nil)
}

func TestBranchToPeer(t *testing.T) {
	f, core := newFeature(t, Config{})
	b, out := forwardToPeer(t, f, core, invite)
	if !b.Target.HideVias {
		t.Error("Vias not hidden")
	}
	golden(t, "invite-to-peer", out)
	for _, leak := range []string{"10.0.0.5", "10.0.0.9", "abc123"} {
		if bytes.Contains(out[bytes.Index(out, []byte("Record-Route")):], []byte(leak)) {
			t.Errorf("%s left in the headers sipedge rewrites:\n%s", leak, out)
		}
	}
	// Retransmissions and later requests of the dialog map alike.
	_, again := forwardToPeer(t, f, core, invite)
	if !bytes.Equal(out, again) {
		t.Error("the same request hid differently twice")
	}
}

func TestBranchOptionsOff(t *testing.T) {
	f, core := newFeature(t, Config{Peers: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	b, out := forwardToPeer(t, f, core, invite)
	if b.Target.HideVias || !bytes.Equal(out, []byte(invite)) {
		t.Errorf("hidden with every option off:\n%s", out)
	}
}

func TestBranchNotPeer(t *testing.T) {
	f, core := newFeature(t, Config{})
	r, _ := proxytest.Request(t, core, invite, inside)
	tg := proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("192.0.2.7:5060")}
	b := r.TestBranch(&tg, local)
	if err := f.branch(b); err != nil {
		t.Fatal(err)
	}
	if b.Target.HideVias || b.Msg.Edited() {
		t.Errorf("a next hop outside the peers got hiding:\n%s", b.Msg.AppendTo(nil))
	}
}

// hidden returns the value of header name in msg.
func hidden(t *testing.T, msg []byte, k sip.HeaderKind) string {
	t.Helper()
	m := proxytest.Parse(t, string(msg))
	return string(m.Get(k))
}

// peerReply is the peer's 200 to the hidden INVITE: the Record-Route
// echoed (the core's own entry added after the hook's), one Via.
func peerReply(t *testing.T, out []byte) string {
	rr := hidden(t, out, sip.KindRecordRoute)
	return crlf(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKSe1;rport=5060
Record-Route: ` + rr + `
Record-Route: <sip:198.51.100.1:5060;lr>
From: <sip:alice@example.com>;tag=a1
To: <sip:+15551234@carrier.example>;tag=p1
Call-ID: ` + hidden(t, out, sip.KindCallID) + `
CSeq: 1 INVITE
Contact: <sip:gw@203.0.113.10:5060>
Content-Length: 0

`)
}

func TestReplyFromPeer(t *testing.T) {
	f, core := newFeature(t, Config{})
	_, out := forwardToPeer(t, f, core, invite)
	r, _ := proxytest.Request(t, core, invite, inside)
	resp := proxytest.Parse(t, peerReply(t, out))
	rp := r.TestReply(resp, &toPeer, true)
	if err := f.reply(rp); err != nil {
		t.Fatal(err)
	}
	got := resp.AppendTo(nil)
	golden(t, "reply-from-peer", got)
	if id := hidden(t, got, sip.KindCallID); id != "abc123@10.0.0.5" {
		t.Errorf("Call-ID %q, want the caller's back", id)
	}
}

// The peer's BYE comes back through the hidden Record-Route to the hidden
// Contact with the hidden Call-ID: it goes to the inside proxy, with the
// inside Route set, the caller's Contact and Call-ID.
func TestRequestFromPeer(t *testing.T) {
	f, core := newFeature(t, Config{})
	_, out := forwardToPeer(t, f, core, invite)
	contact, _ := sip.ParseAddress([]byte(hidden(t, out, sip.KindContact)))
	bye := crlf(`BYE ` + string(contact.RawURI) + ` SIP/2.0
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKb1
Max-Forwards: 70
Route: ` + hidden(t, out, sip.KindRecordRoute) + `, <sip:198.51.100.1:5060;lr>
From: <sip:+15551234@carrier.example>;tag=p1
To: <sip:alice@example.com>;tag=a1
Call-ID: ` + hidden(t, out, sip.KindCallID) + `
CSeq: 1 BYE
Content-Length: 0

`)
	r, ans := proxytest.Request(t, core, bye, peerAddr)
	if f.routeStage(r) || ans.Code() != 0 {
		t.Fatalf("stage answered %d", ans.Code())
	}
	d := r.Decision()
	if len(d.Groups) != 1 || len(d.Groups[0]) != 1 {
		t.Fatalf("decision %+v", d)
	}
	tg := d.Groups[0][0]
	if tg.Addr != netip.MustParseAddrPort("10.0.0.9:5060") || string(tg.URI) != "sip:alice@10.0.0.5:5060;transport=udp" {
		t.Fatalf("next hop %v, Request-URI %q: want the inside proxy and the caller's Contact", tg.Addr, tg.URI)
	}
	b := r.TestBranch(&tg, netip.MustParseAddrPort("10.0.0.1:5060"))
	if err := f.branch(b); err != nil {
		t.Fatal(err)
	}
	golden(t, "bye-from-peer", b.Msg.AppendTo(nil))

	// Its 200 from inside goes back with the peer's Call-ID.
	ok := crlf(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKSe2
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKb1
From: <sip:+15551234@carrier.example>;tag=p1
To: <sip:alice@example.com>;tag=a1
Call-ID: abc123@10.0.0.5
CSeq: 1 BYE
Content-Length: 0

`)
	resp := proxytest.Parse(t, ok)
	if err := f.reply(r.TestReply(resp, &tg, false)); err != nil {
		t.Fatal(err)
	}
	if id := hidden(t, resp.AppendTo(nil), sip.KindCallID); id != hidden(t, out, sip.KindCallID) {
		t.Errorf("200 to the peer has Call-ID %q", id)
	}
}

// A call from the peer: the inside callee's 200 loses its Contact and the
// Record-Route of the inside proxy nearer the callee.
func TestReplyToPeer(t *testing.T) {
	f, core := newFeature(t, Config{})
	inv := crlf(`INVITE sip:bob@198.51.100.1 SIP/2.0
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKi1
Max-Forwards: 70
From: <sip:+15551234@carrier.example>;tag=p1
To: <sip:bob@198.51.100.1>
Call-ID: xyz@203.0.113.10
CSeq: 1 INVITE
Contact: <sip:gw@203.0.113.10:5060>
Content-Length: 0

`)
	r, _ := proxytest.Request(t, core, inv, peerAddr)
	resp := proxytest.Parse(t, crlf(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKSe3
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKi1
Record-Route: <sip:10.0.0.9;lr>, <sip:198.51.100.1:5060;lr>
From: <sip:+15551234@carrier.example>;tag=p1
To: <sip:bob@198.51.100.1>;tag=b1
Call-ID: xyz@203.0.113.10
CSeq: 1 INVITE
Contact: <sip:bob@10.0.0.20:5062>
Content-Length: 0

`))
	if err := f.reply(r.TestReply(resp, &toInside, true)); err != nil {
		t.Fatal(err)
	}
	got := resp.AppendTo(nil)
	golden(t, "reply-to-peer", got)
	if bytes.Contains(got, []byte("10.0.0.")) {
		t.Errorf("inside address left:\n%s", got)
	}
	// The peer's re-INVITE through the hidden entry goes to the proxy.
	m := proxytest.Parse(t, string(got))
	var rrs []string
	for it := m.Values(sip.KindRecordRoute); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		rrs = append([]string{string(v)}, rrs...) // UAC: reversed (§12.1.2)
	}
	contact, _ := sip.ParseAddress(m.Get(sip.KindContact))
	reinv := crlf(`INVITE ` + string(contact.RawURI) + ` SIP/2.0
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKi2
Max-Forwards: 70
Route: ` + strings.Join(rrs, ", ") + `
From: <sip:+15551234@carrier.example>;tag=p1
To: <sip:bob@198.51.100.1>;tag=b1
Call-ID: xyz@203.0.113.10
CSeq: 2 INVITE
Content-Length: 0

`)
	r2, _ := proxytest.Request(t, core, reinv, peerAddr)
	f.routeStage(r2)
	if g := r2.Decision().Groups; len(g) != 1 || g[0][0].Addr != netip.MustParseAddrPort("10.0.0.9:5060") || string(g[0][0].URI) != "sip:bob@10.0.0.20:5062" {
		t.Fatalf("re-INVITE decision %+v", r2.Decision())
	}
}

func TestResolver(t *testing.T) {
	f, core := newFeature(t, Config{})
	_, out := forwardToPeer(t, f, core, invite)
	contact, _ := sip.ParseAddress([]byte(hidden(t, out, sip.KindContact)))
	for _, tc := range []struct {
		name             string
		uri              string
		claimed, ok      bool
		addr, requestURI string
	}{
		{"hidden contact", string(contact.RawURI), true, true, "10.0.0.5:5060", "sip:alice@10.0.0.5:5060;transport=udp"},
		{"caller behind NAT", string(contact.RawURI) + ";alias=192.0.2.9~40000~1", true, true, "192.0.2.9:40000", "sip:alice@10.0.0.5:5060;transport=udp"},
		{"altered token", strings.Replace(string(contact.RawURI), "th.", "th.A", 1), true, false, "", ""},
		{"another host", strings.Replace(string(contact.RawURI), "198.51.100.1", "192.0.2.1", 1), false, false, "", ""},
		{"ordinary user", "sip:alice@198.51.100.1:5060", false, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := sip.ParseURI([]byte(tc.uri))
			if err != nil {
				t.Fatal(err)
			}
			tg, claimed, ok := f.resolve(&u)
			if claimed != tc.claimed || ok != tc.ok {
				t.Fatalf("claimed %v ok %v, want %v %v", claimed, ok, tc.claimed, tc.ok)
			}
			if ok && (tg.Addr.String() != tc.addr || string(tg.URI) != tc.requestURI) {
				t.Errorf("target %v %q", tg.Addr, tg.URI)
			}
		})
	}
}

// Table of what counts as inside (RFC 1918, loopback, sipedge's other
// addresses) and what does not (the peer's, sipedge's own towards it,
// public addresses, host names).
func TestInternal(t *testing.T) {
	f, _ := newFeature(t, Config{})
	for _, tc := range []struct {
		host string
		port int
		want bool
	}{
		{"10.0.0.5", 5060, true},
		{"192.168.1.2", 0, true},
		{"127.0.0.1", 5070, true},
		{"[fd00::1]", 0, true},
		{"203.0.113.10", 5060, false}, // a peer
		{"198.51.100.1", 5060, false}, // sipedge towards the peer
		{"198.51.100.1", 0, false},
		{"192.0.2.44", 5060, false},
		{"pbx.example.com", 5060, false},
	} {
		if got := f.internal([]byte(tc.host), tc.port, local); got != tc.want {
			t.Errorf("internal(%s:%d) = %v, want %v", tc.host, tc.port, got, tc.want)
		}
	}
}
