package callmedia

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"sipedge/media"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sdp"
	"sipedge/sip"
	"sipedge/transport"
)

// The hooks on fake messages: no SIP socket, no sleep (the relay binds its
// ports on loopback when a stream asks for them, nothing is sent).

var (
	caller = netip.MustParseAddrPort("127.0.0.1:5070")
	local  = netip.MustParseAddrPort("127.0.0.1:5060")
	callee = proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("127.0.0.1:5080")}
	rtpA   = netip.MustParseAddrPort("127.0.0.1:7000") // where the caller receives RTP
	rtpB   = netip.MustParseAddrPort("127.0.0.1:7100") // where the callee does
)

const portMin, portMax = 45000, 45199

func harness(t *testing.T, cfg Config) (*Feature, *proxy.Core, *media.Relay) {
	t.Helper()
	relay, err := media.New(media.Config{PortMin: portMin, PortMax: portMax})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() }) // after the core's (LIFO)
	var f *Feature
	core := proxytest.Harness(t, proxy.Config{}, func(c *proxy.Core) []proxy.Feature {
		f = New(c, relay, cfg)
		return []proxy.Feature{f}
	})
	return f, core, relay
}

// request is a request from alice (tag a1) with body as SDP ("" : none);
// toTag makes it in-dialog.
func request(method, callID, user, toTag, body string) string {
	to := "<sip:bob@example.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	m := fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 %s\r\nContact: <sip:%s@%s>\r\nContent-Length: 0\r\n\r\n",
		method, caller, callID, user, to, callID, method, user, caller)
	if body != "" {
		m = proxytest.WithBody(m, body)
	}
	return m
}

// response is the callee's answer to request with body as SDP.
func response(code int, callID, body string) string {
	m := fmt.Sprintf("SIP/2.0 %d %s\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKSe0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:bob@%s>\r\nContent-Length: 0\r\n\r\n", code, sip.ReasonPhrase(code), local, caller, callID, callID, callee.Addr)
	if body != "" {
		m = proxytest.WithBody(m, body)
	}
	return m
}

// offer runs the media stage on an INVITE routed to callee.
func offer(t *testing.T, f *Feature, core *proxy.Core, msg string) (*proxy.Request, *proxytest.Answers, bool) {
	t.Helper()
	r, ans := proxytest.Request(t, core, msg, caller)
	r.Decide(proxy.Decision{Groups: [][]proxy.Target{{callee}}})
	return r, ans, f.stage(r)
}

// sdpAddr reads the audio address of an SDP body and checks the
// Content-Length.
func sdpAddr(t *testing.T, m *sip.Message) netip.AddrPort {
	t.Helper()
	var s sdp.Session
	if err := s.Parse(m.Body()); err != nil {
		t.Fatalf("SDP: %v\n%s", err, m.Body())
	}
	if cl := m.ContentLength(); cl != len(m.Body()) {
		t.Fatalf("Content-Length %d for a %d-byte body", cl, len(m.Body()))
	}
	md := s.Media(0)
	return netip.AddrPortFrom(md.Conn.Addr, uint16(md.Port))
}

func relayed(ap netip.AddrPort) bool { return ap.Port() >= portMin && ap.Port() <= portMax }

func TestStageCreatesCall(t *testing.T) {
	f, core, relay := harness(t, Config{Mode: Always})
	r, ans, done := offer(t, f, core, request("INVITE", "c1", "alice", "", proxytest.OfferSDP(rtpA)))
	if done || ans.Code() != 0 {
		t.Fatalf("stage done %v, answered %v", done, ans.Codes)
	}
	if f.Calls() != 1 || relay.Stats().Calls != 1 || f.Stats().Calls != 1 {
		t.Fatalf("calls %d, relay %+v", f.Calls(), relay.Stats())
	}
	rm, _ := r.Note(f.note).(*reqMedia)
	if rm == nil || rm.call == nil || !rm.created || rm.side != media.SideA || rm.body == nil {
		t.Fatalf("note %+v", rm)
	}
	if !r.TestReply(proxytest.Parse(t, response(200, "c1", "")), &callee, true).WantDialog {
		t.Error("a relayed INVITE does not ask for its dialog to be followed")
	}
	// The branch carries the relay's side B instead of the caller's SDP.
	b := r.TestBranch(&callee, local)
	if err := f.branch(b); err != nil {
		t.Fatal(err)
	}
	out := proxytest.Edited(t, b.Msg)
	relayB := sdpAddr(t, out)
	if !relayed(relayB) || relayB.Addr() != local.Addr() {
		t.Fatalf("offer not rewritten to the relay: %s\n%s", relayB, out.Body())
	}
	if !strings.Contains(string(out.Body()), "a=rtpmap:101 telephone-event/8000\r\n") {
		t.Error("untouched lines changed")
	}
	// The answer carries the relay's side A instead of the callee's.
	resp := proxytest.Parse(t, response(200, "c1", proxytest.OfferSDP(rtpB)))
	if err := f.reply(r.TestReply(resp, &callee, true)); err != nil {
		t.Fatal(err)
	}
	relayA := sdpAddr(t, proxytest.Edited(t, resp))
	if !relayed(relayA) || relayA == relayB {
		t.Fatalf("answer not rewritten to the relay's other side: %s (offer %s)", relayA, relayB)
	}
	// A provisional without SDP and a failure are left alone.
	for _, s := range []string{response(180, "c1", ""), response(486, "c1", proxytest.OfferSDP(rtpB))} {
		resp := proxytest.Parse(t, s)
		if err := f.reply(r.TestReply(resp, &callee, false)); err != nil || resp.Edited() {
			t.Errorf("%s: edited %v, err %v", proxytest.FirstLine(resp), resp.Edited(), err)
		}
	}
	// The callee's re-INVITE is side B: rewritten to the caller's relay side.
	re, _ := proxytest.Request(t, core, strings.NewReplacer("From: <sip:alice@example.com>;tag=a1", "From: <sip:bob@example.com>;tag=b1",
		"To: <sip:bob@example.com>;tag=a1", "To: <sip:alice@example.com>;tag=a1").Replace(request("INVITE", "c1", "alice", "a1", proxytest.OfferSDP(rtpB))), callee.Addr)
	re.Decide(proxy.Decision{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: caller}}}})
	if f.stage(re) {
		t.Fatal("re-INVITE answered")
	}
	if rm, _ := re.Note(f.note).(*reqMedia); rm == nil || rm.created || rm.side != media.SideB {
		t.Fatalf("re-INVITE note %+v", rm)
	}
	if f.Calls() != 1 {
		t.Fatalf("%d calls after the re-INVITE", f.Calls())
	}
	// BYE ends it.
	bye, _ := proxytest.Request(t, core, request("BYE", "c1", "alice", "b1", ""), caller)
	if f.stage(bye) {
		t.Fatal("BYE answered")
	}
	if f.Calls() != 0 || relay.Stats().Calls != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after BYE: %d calls, relay %+v", f.Calls(), relay.Stats())
	}
}

func TestStageLeavesAlone(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode Mode
		msg  string
	}{
		{"never", Never, request("INVITE", "n1", "alice", "", proxytest.OfferSDP(rtpA))},
		{"auto, a local call", Auto, request("INVITE", "n2", "alice", "", proxytest.OfferSDP(rtpA))},
		{"INVITE without SDP", Always, request("INVITE", "n3", "alice", "", "")},
		{"re-INVITE of a call not relayed", Always, request("INVITE", "n4", "alice", "b1", proxytest.OfferSDP(rtpA))},
		{"MESSAGE with a body", Always, strings.Replace(request("MESSAGE", "n5", "alice", "", "hello"), "application/sdp", "text/plain", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core, relay := harness(t, Config{Mode: tc.mode})
			r, ans, done := offer(t, f, core, tc.msg)
			if done || ans.Code() != 0 || f.Calls() != 0 || relay.Stats().Calls != 0 {
				t.Fatalf("done %v answered %v calls %d relay %+v", done, ans.Codes, f.Calls(), relay.Stats())
			}
			b := r.TestBranch(&callee, local)
			if err := f.branch(b); err != nil || b.Msg.Edited() {
				t.Fatalf("branch edited %v err %v", b.Msg.Edited(), err)
			}
		})
	}
}

func TestStageRefusesBadSDP(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		code int
	}{
		{"not SDP", "v=0\r\nthis is not SDP\r\n", 400},
		{"no connection address", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", 488},
		{"IPv6 media on an IPv4 path", "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", 488},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core, relay := harness(t, Config{Mode: Always})
			r, ans, done := offer(t, f, core, request("INVITE", "bad", "alice", "", tc.body))
			if !done || ans.Code() != tc.code {
				t.Fatalf("done %v answered %v, want %d", done, ans.Codes, tc.code)
			}
			if f.Calls() != 0 || relay.Stats().Calls != 0 || relay.Stats().PortsInUse != 0 || f.Stats().Refused != 1 {
				t.Fatalf("after %d: %d calls, relay %+v, stats %+v", tc.code, f.Calls(), relay.Stats(), f.Stats())
			}
			if r.Note(f.note) != nil {
				t.Error("a refused offer left a note for the hooks")
			}
			// The user's slot is free again.
			if _, _, done := offer(t, f, core, request("INVITE", "good", "alice", "", proxytest.OfferSDP(rtpA))); done || f.Calls() != 1 {
				t.Fatalf("next call: done %v, %d calls", done, f.Calls())
			}
		})
	}
}

func TestFailureFreesCall(t *testing.T) {
	f, core, relay := harness(t, Config{Mode: Always})
	r, _, _ := offer(t, f, core, request("INVITE", "f1", "alice", "", proxytest.OfferSDP(rtpA)))
	// A failed re-INVITE of the call does not end it.
	re, _, _ := offer(t, f, core, request("INVITE", "f1", "alice", "b1", proxytest.OfferSDP(rtpA)))
	f.failure(re.TestFailure(488))
	if f.Calls() != 1 {
		t.Fatal("a failed re-INVITE ended the call")
	}
	// Neither does a request without a note.
	plain, _ := proxytest.Request(t, core, request("OPTIONS", "f2", "alice", "", ""), caller)
	f.failure(plain.TestFailure(404))
	if f.Calls() != 1 {
		t.Fatal("a failure without a note ended the call")
	}
	f.failure(r.TestFailure(487))
	if f.Calls() != 0 || relay.Stats().Calls != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after the INVITE failed: %d calls, relay %+v", f.Calls(), relay.Stats())
	}
}

func TestPerUserLimit(t *testing.T) {
	f, core, _ := harness(t, Config{Mode: Always, MaxCallsPerUser: 2})
	for i, tc := range []struct {
		callID, user string
		code         int
	}{
		{"l1", "alice", 0},
		{"l2", "alice", 0},
		{"l3", "alice", 403},
		{"l4", "carol", 0},
	} {
		_, ans, done := offer(t, f, core, request("INVITE", tc.callID, tc.user, "", proxytest.OfferSDP(rtpA)))
		if done != (tc.code != 0) || ans.Code() != tc.code {
			t.Fatalf("call %d (%s): done %v answered %v, want %d", i, tc.user, done, ans.Codes, tc.code)
		}
	}
	if f.Calls() != 3 {
		t.Fatalf("%d calls", f.Calls())
	}
	// Ending one of alice's calls frees her slot.
	f.End(key([]byte("l1"), []byte("a1")))
	if _, ans, done := offer(t, f, core, request("INVITE", "l5", "alice", "", proxytest.OfferSDP(rtpA))); done {
		t.Fatalf("after an end: answered %v", ans.Codes)
	}
}

// TestPerUserLimitAtomic: concurrent INVITEs from one caller cannot pass
// the limit together (run it with -race).
func TestPerUserLimitAtomic(t *testing.T) {
	const tries, limit = 50, 5
	f, core, relay := harness(t, Config{Mode: Always, MaxCallsPerUser: limit})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	start := make(chan struct{})
	for i := 0; i < tries; i++ {
		r, ans := proxytest.Request(t, core, request("INVITE", fmt.Sprintf("a%d", i), "alice", "", proxytest.OfferSDP(rtpA)), caller)
		r.Decide(proxy.Decision{Groups: [][]proxy.Target{{callee}}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f.stage(r)
			mu.Lock()
			codes[ans.Code()]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if f.Calls() != limit || codes[0] != limit || codes[403] != tries-limit || relay.Stats().Calls != limit {
		t.Fatalf("%d calls, relay %d, answers %v; want %d calls and %d × 403", f.Calls(), relay.Stats().Calls, codes, limit, tries-limit)
	}
	f.mu.Lock()
	n := f.users["alice@example.com"]
	f.mu.Unlock()
	if n != limit {
		t.Fatalf("alice counted %d calls", n)
	}
}

// TestDialogEnded: the dialog feature's report ends the call.
func TestDialogEnded(t *testing.T) {
	f, core, relay := harness(t, Config{Mode: Always})
	offer(t, f, core, request("INVITE", "d1", "alice", "", proxytest.OfferSDP(rtpA)))
	core.DialogEnded("d1", "b1") // the callee's tag does not name the call
	if f.Calls() != 1 {
		t.Fatal("call ended by the wrong tag")
	}
	core.DialogEnded("d1", "a1")
	if f.Calls() != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after DialogEnded: %d calls, relay %+v", f.Calls(), relay.Stats())
	}
	// No dialog feature: Inactive frees the ports itself.
	offer(t, f, core, request("INVITE", "d2", "alice", "", proxytest.OfferSDP(rtpA)))
	f.Inactive(key([]byte("d2"), []byte("a1")))
	if f.Calls() != 0 || relay.Stats().PortsInUse != 0 {
		t.Fatalf("after Inactive: %d calls, relay %+v", f.Calls(), relay.Stats())
	}
}

// An offer inside an early dialog of a forked call (UPDATE, RFC 3311)
// goes to that dialog's fork, found by its To tag; after the 2xx every
// in-dialog offer goes to the call's kept streams.
func TestEarlyDialogOfferReachesItsFork(t *testing.T) {
	f, core, relay := harness(t, Config{Mode: Always})
	other := proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("127.0.0.1:5090")}
	r, _, _ := offer(t, f, core, request("INVITE", "e1", "alice", "", proxytest.OfferSDP(rtpA)))
	var offered [2]netip.AddrPort
	for i, tg := range []*proxy.Target{&callee, &other} {
		b := r.TestBranch(tg, local)
		if err := f.branch(b); err != nil {
			t.Fatal(err)
		}
		offered[i] = sdpAddr(t, proxytest.Edited(t, b.Msg))
	}
	if offered[0] == offered[1] || relay.Stats().Streams != 2 {
		t.Fatalf("branches offered %v; relay %+v", offered, relay.Stats())
	}
	// The second branch's callee answers 183 with tag b2.
	p183 := proxytest.Parse(t, strings.Replace(response(183, "e1", proxytest.OfferSDP(rtpB)), "tag=b1", "tag=b2", 1))
	if err := f.reply(r.TestReply(p183, &other, false)); err != nil {
		t.Fatal(err)
	}
	early := sdpAddr(t, proxytest.Edited(t, p183))
	// The caller's UPDATE in that early dialog: rewritten to the second
	// branch's callee-side ports.
	up, _ := proxytest.Request(t, core, request("UPDATE", "e1", "alice", "b2", proxytest.OfferSDP(rtpA)), caller)
	up.Decide(proxy.Decision{Groups: [][]proxy.Target{{other}}})
	if f.stage(up) {
		t.Fatal("UPDATE answered")
	}
	b := up.TestBranch(&other, local)
	if err := f.branch(b); err != nil {
		t.Fatal(err)
	}
	if got := sdpAddr(t, proxytest.Edited(t, b.Msg)); got != offered[1] {
		t.Errorf("UPDATE names %v, its fork's callee side is %v", got, offered[1])
	}
	// Its answer comes back from the same fork's caller side.
	a := proxytest.Parse(t, strings.Replace(strings.Replace(response(200, "e1", proxytest.OfferSDP(rtpB)), "tag=b1", "tag=b2", 1), "1 INVITE", "1 UPDATE", 1))
	if err := f.reply(up.TestReply(a, &other, false)); err != nil {
		t.Fatal(err)
	}
	if got := sdpAddr(t, proxytest.Edited(t, a)); got != early {
		t.Errorf("UPDATE's answer names %v, the early dialog's 183 %v", got, early)
	}
	// The first branch's callee answers 200: its streams are kept.
	p200 := proxytest.Parse(t, response(200, "e1", proxytest.OfferSDP(rtpB)))
	if err := f.reply(r.TestReply(p200, &callee, true)); err != nil {
		t.Fatal(err)
	}
	if relay.Stats().Streams != 1 {
		t.Errorf("after the 2xx: relay %+v", relay.Stats())
	}
	// A late 183 of the cancelled branch is left alone.
	late := proxytest.Parse(t, strings.Replace(response(183, "e1", proxytest.OfferSDP(rtpB)), "tag=b1", "tag=b2", 1))
	if err := f.reply(r.TestReply(late, &other, false)); err != nil || late.Edited() {
		t.Errorf("late 183 of a freed fork: edited %v, err %v", late.Edited(), err)
	}
	re, _ := proxytest.Request(t, core, request("INVITE", "e1", "alice", "b1", proxytest.OfferSDP(rtpA)), caller)
	re.Decide(proxy.Decision{Groups: [][]proxy.Target{{callee}}})
	f.stage(re)
	rb := re.TestBranch(&callee, local)
	if err := f.branch(rb); err != nil {
		t.Fatal(err)
	}
	if got := sdpAddr(t, proxytest.Edited(t, rb.Msg)); got != offered[0] {
		t.Errorf("re-INVITE names %v, the kept branch's %v", got, offered[0])
	}
}
