package trunk

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/digest"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// answer builds a response of a registrar to req: Vias, From, To (with a
// tag), Call-ID and CSeq copied, then extra header lines.
func answer(req *sip.Message, code int, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, sip.ReasonPhrase(code))
	for i := 0; i < req.NumHeaders(); i++ {
		switch req.HeaderKind(i) {
		case sip.KindVia, sip.KindFrom, sip.KindCallID, sip.KindCSeq:
			fmt.Fprintf(&b, "%s: %s\r\n", req.HeaderKind(i), req.HeaderValue(i))
		case sip.KindTo:
			fmt.Fprintf(&b, "To: %s;tag=reg\r\n", req.HeaderValue(i))
		}
	}
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// nextRegister waits for a REGISTER with a CSeq above last (skipping
// retransmissions).
func nextRegister(t *testing.T, p *proxytest.Peer, last uint32, within time.Duration) *sip.Message {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		m := p.Recv(time.Until(deadline))
		if m == nil || !m.IsRequest() || string(m.Method()) != "REGISTER" {
			continue
		}
		if n, _ := m.CSeq(); n > last {
			return m
		}
	}
	t.Fatalf("no new REGISTER within %v", within)
	return nil
}

func startTrunk(t *testing.T, tr Trunk, router proxy.Router) (*Feature, netip.AddrPort) {
	t.Helper()
	f, err := New([]Trunk{tr}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, px := proxytest.Start(t, router, func(c *proxy.Core) []proxy.Feature {
		f.Use(c)
		return []proxy.Feature{f}
	})
	t.Cleanup(f.Close)
	return f, px
}

func state(f *Feature) State { return f.States()[0] }

// TestRegistration: the first REGISTER is challenged and answered with
// credentials the server side verifies (RFC 3261 §22.2, same Call-ID,
// CSeq up); the granted interval is read from the Contact's expires and
// the refresh comes at 85 % of it; a 423 raises the interval to
// Min-Expires (§10.2.8); a 503 is retried after the minimum delay with
// the trunk still registered while its binding lasts.
func TestRegistration(t *testing.T) {
	reg := proxytest.NewPeer(t)
	f, px := startTrunk(t, Trunk{Name: "prov", Registrar: "sip:" + reg.Addr.String(), Username: "acme", Password: "secret",
		Expires: 2 * time.Second, RetryMin: 200 * time.Millisecond, RetryMax: time.Second}, nil)

	r1 := nextRegister(t, reg, 0, 2*time.Second)
	if r1.Get(sip.KindAuthorization) != nil {
		t.Fatal("credentials before any challenge")
	}
	if got := string(r1.RequestURIBytes()); got != "sip:"+reg.Addr.String() {
		t.Fatalf("Request-URI %s", got)
	}
	if to := string(r1.Get(sip.KindTo)); to != "<sip:acme@"+reg.Addr.String()+">" {
		t.Fatalf("To %s", to)
	}
	contact := string(r1.Get(sip.KindContact))
	if !strings.HasPrefix(contact, "<sip:acme@127.0.0.1:") {
		t.Fatalf("Contact %s", contact)
	}
	ch := digest.AppendChallenge(nil, digest.SHA256, "prov.example", []byte("nonce1"), false)
	reg.Send(px, answer(r1, 401, "WWW-Authenticate: "+string(ch)))

	n1, _ := r1.CSeq()
	r2 := nextRegister(t, reg, n1, 2*time.Second)
	if string(r2.CallID()) != string(r1.CallID()) {
		t.Fatal("Call-ID changed between REGISTERs (RFC 3261 §10.2.4)")
	}
	c, err := digest.ParseCredentials(r2.Get(sip.KindAuthorization))
	if err != nil {
		t.Fatalf("Authorization %q: %v", r2.Get(sip.KindAuthorization), err)
	}
	if c.Algorithm != digest.SHA256 || !c.Verify([]byte(digest.HA1(digest.SHA256, "acme", "prov.example", "secret")), []byte("REGISTER")) {
		t.Fatalf("credentials do not verify: %s", r2.Get(sip.KindAuthorization))
	}
	sent := time.Now()
	reg.Send(px, answer(r2, 200, "Contact: "+contact+";expires=2"))
	waitFor(t, func() bool { return state(f).Status == StatusRegistered })
	if st := state(f); st.Expires.Before(sent.Add(time.Second)) || st.NextAttempt.IsZero() {
		t.Fatalf("state %+v", st)
	}

	// The refresh: at 85 % of 2 s.
	n2, _ := r2.CSeq()
	r3 := nextRegister(t, reg, n2, 3*time.Second)
	if d := time.Since(sent); d < 1500*time.Millisecond || d > 2500*time.Millisecond {
		t.Fatalf("refresh after %v, want about 1.7 s", d)
	}
	reg.Send(px, answer(r3, 423, "Min-Expires: 3"))
	n3, _ := r3.CSeq()
	r4 := nextRegister(t, reg, n3, 2*time.Second)
	if e := string(r4.Get(sip.KindExpires)); e != "3" {
		t.Fatalf("Expires after 423: %q", e)
	}
	reg.Send(px, answer(r4, 503))
	waitFor(t, func() bool { return state(f).Failures == 1 })
	if st := state(f); st.Status != StatusRegistered || !strings.Contains(st.LastError, "503") {
		t.Fatalf("after a 503 with the binding current: %+v", st)
	}
	n4, _ := r4.CSeq()
	r5 := nextRegister(t, reg, n4, 2*time.Second)
	reg.Send(px, answer(r5, 200, "Expires: 3"))
	waitFor(t, func() bool {
		st := state(f)
		return st.Failures == 0 && st.Expires.After(time.Now().Add(2*time.Second))
	})
	if s := f.Stats(); s.Registrations["prov"] != 2 || s.Failures["prov"] != 1 || s.Registered != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRegistrationNeverGivesUp: a registrar that refuses the password and
// then answers nothing is retried with growing delays, and registering
// works again as soon as it answers.
func TestRegistrationNeverGivesUp(t *testing.T) {
	reg := proxytest.NewPeer(t)
	f, addr := startTrunk(t, Trunk{Name: "prov", Registrar: "sip:" + reg.Addr.String(), Username: "acme", Password: "wrong",
		Expires: 60 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 400 * time.Millisecond}, nil)
	px := func() netip.AddrPort { return addr }
	var last uint32
	for i := 0; i < 4; i++ {
		r := nextRegister(t, reg, last, 3*time.Second)
		last, _ = r.CSeq()
		ch := digest.AppendChallenge(nil, digest.MD5, "prov.example", []byte(fmt.Sprint("n", i)), false)
		reg.Send(px(), answer(r, 401, "WWW-Authenticate: "+string(ch)))
		r = nextRegister(t, reg, last, 3*time.Second)
		last, _ = r.CSeq()
		reg.Send(px(), answer(r, 401, "WWW-Authenticate: "+string(ch)))
	}
	waitFor(t, func() bool { return state(f).Failures >= 4 })
	if st := state(f); st.Status != StatusFailed || !strings.Contains(st.LastError, "credentials refused") {
		t.Fatalf("state %+v", st)
	}
	r := nextRegister(t, reg, last, 3*time.Second)
	reg.Send(px(), answer(r, 200, "Expires: 60"))
	waitFor(t, func() bool { return state(f).Status == StatusRegistered })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 3 s")
}

// TestBackoff: doubling from the minimum, capped, jittered down by at
// most a fifth.
func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{1, 800 * time.Millisecond, time.Second},
		{2, 1600 * time.Millisecond, 2 * time.Second},
		{3, 3200 * time.Millisecond, 4 * time.Second},
		{10, 8 * time.Second, 10 * time.Second},
		{1000, 8 * time.Second, 10 * time.Second},
	} {
		for i := 0; i < 50; i++ {
			if d := backoff(time.Second, 10*time.Second, tc.n); d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d) = %v, want %v..%v", tc.n, d, tc.lo, tc.hi)
			}
		}
	}
}

// TestGrantedExpires: the expires of our own Contact wins over the
// Expires header (RFC 3261 §10.2.4); other contacts are not ours.
func TestGrantedExpires(t *testing.T) {
	const contact = "sip:acme@192.0.2.1:5060"
	for _, tc := range []struct {
		headers string
		want    int
	}{
		{"Contact: <sip:acme@192.0.2.1:5060>;expires=120\r\nExpires: 600\r\n", 120},
		{"Contact: <sip:other@192.0.2.9>;expires=30, <sip:acme@192.0.2.1:5060;received=sip:x>;expires=90\r\n", 90},
		{"Contact: <sip:other@192.0.2.9>;expires=30\r\nExpires: 300\r\n", 300},
		{"Expires: 0\r\n", 0},
		{"", -1},
	} {
		m := proxytest.Parse(t, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n"+
			"Call-ID: c\r\nCSeq: 1 REGISTER\r\n"+tc.headers+"Content-Length: 0\r\n\r\n")
		if got := grantedExpires(m, contact); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.headers, got, tc.want)
		}
	}
}

// TestRoute: "trunk:NAME" sends to the provider with the dialled user at
// the trunk's domain and the trunk's credentials for its challenges.
func TestRoute(t *testing.T) {
	f, err := New([]Trunk{{Name: "prov", Registrar: "sip:192.0.2.7:5080;transport=tcp", Username: "acme", Password: "pw", Domain: "prov.example"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := f.Routers()["trunk:prov"]
	for _, tc := range []struct{ ruri, want string }{
		{"sip:+4930123@local.example", "sip:+4930123@prov.example;transport=tcp"},
		{"tel:+4930123;phone-context=x", "sip:+4930123@prov.example;transport=tcp"},
	} {
		m := proxytest.Parse(t, "INVITE "+tc.ruri+" SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n"+
			"Call-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
		d := r.Route(context.Background(), m, netip.AddrPort{}, transport.UDP)
		if len(d.Groups) != 1 || len(d.Groups[0]) != 1 {
			t.Fatalf("%s: decision %+v", tc.ruri, d)
		}
		tg := d.Groups[0][0]
		if string(tg.URI) != tc.want || tg.Auth == nil || tg.Proto != transport.TCP || tg.Addr != netip.MustParseAddrPort("192.0.2.7:5080") {
			t.Fatalf("%s: target %+v", tc.ruri, tg)
		}
	}
}

// TestAuthorize: a 407's Proxy-Authenticate is answered with
// Proxy-Authorization, the strongest algorithm offered first; a realm
// other than the configured one is not answered.
func TestAuthorize(t *testing.T) {
	f, err := New([]Trunk{{Name: "prov", Registrar: "sip:192.0.2.7", Username: "acme", Password: "pw", Realm: "prov.example"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := f.trunks[0]
	resp := func(code int, realm string) *sip.Message {
		h := "WWW-Authenticate"
		if code == 407 {
			h = "Proxy-Authenticate"
		}
		return proxytest.Parse(t, fmt.Sprintf("SIP/2.0 %d X\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n"+
			"Call-ID: c\r\nCSeq: 1 INVITE\r\n%s: %s\r\n%s: %s\r\nContent-Length: 0\r\n\r\n", code,
			h, digest.AppendChallenge(nil, digest.MD5, realm, []byte("n"), false), h, digest.AppendChallenge(nil, digest.SHA256, realm, []byte("n"), false)))
	}
	name, v, ok := tr.Authorize([]byte("INVITE"), []byte("sip:123@prov.example"), resp(407, "prov.example"))
	if !ok || name != "Proxy-Authorization" {
		t.Fatalf("%v %s", ok, name)
	}
	c, err := digest.ParseCredentials(v)
	if err != nil || c.Algorithm != digest.SHA256 || string(c.URI) != "sip:123@prov.example" ||
		!c.Verify([]byte(digest.HA1(digest.SHA256, "acme", "prov.example", "pw")), []byte("INVITE")) {
		t.Fatalf("credentials %s: %v", v, err)
	}
	if name, _, ok := tr.Authorize([]byte("INVITE"), []byte("sip:123@prov.example"), resp(401, "prov.example")); !ok || name != "Authorization" {
		t.Fatalf("401: %v %s", ok, name)
	}
	if _, _, ok := tr.Authorize([]byte("INVITE"), []byte("sip:123@prov.example"), resp(407, "elsewhere.example")); ok {
		t.Fatal("answered a challenge of another realm")
	}
}

// TestInbound: a call on the trunk's contact is routed by the inbound
// rule, "{to}" taking the number dialled at the provider; other users and
// in-dialog requests are left alone.
func TestInbound(t *testing.T) {
	uac, pbx := proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := startTrunk(t, Trunk{Name: "prov", Registrar: "sip:192.0.2.7", Username: "acme", NoRegister: true,
		Inbound: "sip:{to}@pbx.example"}, proxytest.To(pbx.Addr))
	inv := func(ruri, to string) string {
		return fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:+15550100@prov.example>;tag=p1\r\nTo: <%s>\r\nCall-ID: in%d@prov\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
			ruri, uac.Addr, time.Now().UnixNano(), to, time.Now().UnixNano())
	}
	uac.Send(px, inv("sip:acme@"+px.String(), "sip:+4930100@prov.example"))
	uac.Expect(100)
	got := pbx.ExpectRequest("INVITE")
	if u := string(got.RequestURIBytes()); u != "sip:+4930100@pbx.example" {
		t.Fatalf("Request-URI %s", u)
	}
	pbx.Send(px, pbx.Answer(got, 486, "x"))
	uac.Expect(486)
	// Another user at sipedge goes the ordinary way (here: the same
	// static router, with the Request-URI untouched).
	uac.Send(px, inv("sip:bob@"+px.String(), "sip:bob@example.com"))
	uac.Expect(100)
	got = pbx.ExpectRequestWithin("INVITE", 2*time.Second)
	if u := string(got.RequestURIBytes()); u != "sip:bob@"+px.String() {
		t.Fatalf("Request-URI %s", u)
	}
	pbx.Send(px, pbx.Answer(got, 486, "x"))
	uac.Expect(486)
	// A To user that would change the URI's shape is refused.
	uac.Send(px, inv("sip:acme@"+px.String(), "sip:a%40b@prov.example"))
	uac.Expect(404)
}

// TestDialogCSeq: after sipedge answered the provider's 407 to an INVITE
// (sent again with CSeq 2), the caller's ACK of the 2xx reaches the
// provider with the INVITE's number (RFC 3261 §13.2.2.4) and its BYE one
// above it, while the caller sees its own numbers in every response.
func TestDialogCSeq(t *testing.T) {
	uac, prov := proxytest.NewPeer(t), proxytest.NewPeer(t)
	f, err := New([]Trunk{{Name: "prov", Registrar: "sip:" + prov.Addr.String(), Username: "acme", Password: "pw", NoRegister: true}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, px := proxytest.Start(t, f.Routers()["trunk:prov"], func(c *proxy.Core) []proxy.Feature {
		f.Use(c)
		return []proxy.Feature{f}
	})
	uac.Send(px, proxytest.Invite(uac, px, "cseq1", "z9hG4bKc1"))
	uac.Expect(100)
	inv := prov.ExpectRequest("INVITE")
	ch := digest.AppendChallenge(nil, digest.MD5, "prov", []byte("n1"), false)
	prov.Send(px, strings.Replace(prov.Answer(inv, 407, "p1"), "Content-Length: 0", "Proxy-Authenticate: "+string(ch)+"\r\nContent-Length: 0", 1))
	prov.ExpectRequest("ACK")
	inv2 := prov.ExpectRequest("INVITE")
	if n, _ := inv2.CSeq(); n != 2 || inv2.Get(sip.KindProxyAuthorization) == nil {
		t.Fatalf("retried INVITE: CSeq %d, credentials %q", n, inv2.Get(sip.KindProxyAuthorization))
	}
	prov.Send(px, prov.Answer(inv2, 200, "p1"))
	ok := uac.Expect(200)
	if n, _ := ok.CSeq(); n != 1 {
		t.Fatalf("200 upstream: CSeq %d", n)
	}
	rr := string(ok.Get(sip.KindRecordRoute))
	inDialog := func(method string, cseq int, branch string) string {
		return fmt.Sprintf("%s sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nRoute: %s\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=p1\r\n"+
			"Call-ID: cseq1\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n", method, prov.Addr, uac.Addr, branch, rr, cseq, method)
	}
	uac.Send(px, inDialog("ACK", 1, "z9hG4bKc2"))
	if n, _ := prov.ExpectRequestWithin("ACK", 2*time.Second).CSeq(); n != 2 {
		t.Fatalf("ACK of the 2xx reached the provider with CSeq %d, want 2", n)
	}
	uac.Send(px, inDialog("BYE", 2, "z9hG4bKc3"))
	bye := prov.ExpectRequestWithin("BYE", 2*time.Second)
	if n, _ := bye.CSeq(); n != 3 {
		t.Fatalf("BYE reached the provider with CSeq %d, want 3", n)
	}
	prov.Send(px, prov.Answer(bye, 200, "p1"))
	r := uac.Expect(200)
	if n, m := r.CSeq(); n != 2 || string(m) != "BYE" {
		t.Fatalf("200 to the BYE upstream: CSeq %d %s", n, m)
	}
	if f.shifts.n.Load() != 0 {
		t.Fatal("the dialog's entry outlived its BYE")
	}
}

// TestDialogCSeqFailed: an authenticated INVITE that fails leaves no entry.
func TestDialogCSeqFailed(t *testing.T) {
	uac, prov := proxytest.NewPeer(t), proxytest.NewPeer(t)
	f, err := New([]Trunk{{Name: "prov", Registrar: "sip:" + prov.Addr.String(), Username: "acme", Password: "pw", NoRegister: true}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, px := proxytest.Start(t, f.Routers()["trunk:prov"], func(c *proxy.Core) []proxy.Feature {
		f.Use(c)
		return []proxy.Feature{f}
	})
	uac.Send(px, proxytest.Invite(uac, px, "cseq2", "z9hG4bKd1"))
	uac.Expect(100)
	inv := prov.ExpectRequest("INVITE")
	ch := digest.AppendChallenge(nil, digest.MD5, "prov", []byte("n1"), false)
	prov.Send(px, strings.Replace(prov.Answer(inv, 407, "p1"), "Content-Length: 0", "Proxy-Authenticate: "+string(ch)+"\r\nContent-Length: 0", 1))
	prov.ExpectRequest("ACK")
	inv2 := prov.ExpectRequest("INVITE")
	if f.shifts.n.Load() != 1 {
		t.Fatal("no entry for the authenticated INVITE")
	}
	prov.Send(px, prov.Answer(inv2, 486, "p1"))
	if n, _ := uac.Expect(486).CSeq(); n != 1 {
		t.Fatalf("486 upstream: CSeq %d", n)
	}
	waitFor(t, func() bool { return f.shifts.n.Load() == 0 })
}
