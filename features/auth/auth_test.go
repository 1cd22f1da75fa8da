package auth

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"sipedge/digest"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// The stage on fake messages: no socket. The client side of every
// exchange is the digest package's own client, answering the challenge
// the stage sent.

const realm = "example.com"

var (
	stranger = netip.MustParseAddrPort("203.0.113.7:5060")
	inside   = netip.MustParseAddrPort("10.0.0.5:5060")
)

type failLog struct {
	mu      sync.Mutex
	reasons []string
	ok      []string
	locked  map[string]bool
}

func (l *failLog) AuthFailed(src netip.AddrPort, user, realm, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reasons = append(l.reasons, user+":"+reason)
}
func (l *failLog) AuthSucceeded(src netip.AddrPort, user []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ok = append(l.ok, string(user))
}
func (l *failLog) UserLocked(src netip.Addr, user []byte) bool { return l.locked[string(user)] }

func users(t testing.TB) *digest.Users {
	var b strings.Builder
	for _, u := range []string{"alice", "bob"} {
		fmt.Fprintf(&b, "%s %s md5:%s sha-256:%s sha-512-256:%s\n", u, realm,
			digest.HA1(digest.MD5, u, realm, u+"-pw"), digest.HA1(digest.SHA256, u, realm, u+"-pw"),
			digest.HA1(digest.SHA512_256, u, realm, u+"-pw"))
	}
	us, err := digest.ParseUsers([]byte(b.String()), "users")
	if err != nil {
		t.Fatal(err)
	}
	return us
}

type fixture struct {
	f    *Feature
	core *proxy.Core
	log  *failLog
	now  time.Time
}

func newFixture(t testing.TB, mod func(*Config)) *fixture {
	fx := &fixture{log: &failLog{locked: map[string]bool{}}, now: time.Unix(1_800_000_000, 0)}
	cfg := Config{Realm: realm, Users: users(t)}
	if mod != nil {
		mod(&cfg)
	}
	fx.core = proxytest.Harness(t, proxy.Config{Self: proxy.NewSelf([]netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:5060")}, nil), Policy: proxy.Policy{
		AllowSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Domains:      proxy.NewDomains([]string{realm}),
	}}, func(c *proxy.Core) []proxy.Feature {
		fx.f = New(c, cfg, []byte("0123456789abcdef0123456789abcdef"), fx.log, nil)
		// Each challenge a nonce of its own, as with a real clock.
		fx.f.now = func() time.Time { fx.now = fx.now.Add(time.Microsecond); return fx.now }
		return []proxy.Feature{fx.f}
	})
	return fx
}

// request builds a request; hdr is extra header lines.
func request(method, ruri, from, to, hdr string) string {
	return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <%s>;tag=f1\r\nTo: <%s>\r\nCall-ID: c1@203.0.113.7\r\nCSeq: 1 %s\r\nContact: <sip:x@203.0.113.7:5060>\r\n"+
		"User-Agent: a user agent with a rather long name, as phones have\r\n%sContent-Length: 0\r\n\r\n",
		method, ruri, time.Now().UnixNano(), from, to, method, hdr)
}

func register(user, hdr string) string {
	aor := "sip:" + user + "@" + realm
	return request("REGISTER", "sip:"+realm, aor, aor, hdr)
}

// run walks the auth stage; it returns whether it ended the walk, the
// answer if any, and the request.
func (fx *fixture) run(t *testing.T, msg string, src netip.AddrPort) (bool, *sip.Message, *proxy.Request) {
	t.Helper()
	r, ans := proxytest.Request(t, fx.core, msg, src)
	done := fx.f.stage(r)
	var m *sip.Message
	if len(ans.Msgs) > 0 {
		m = ans.Msgs[0]
	}
	if done != (m != nil) && r.Msg().MethodKind() != sip.ACK {
		t.Fatalf("stage returned %v with answer %v", done, m != nil)
	}
	return done, m, r
}

// answer computes credentials for the challenge of kind k in resp.
func answer(t *testing.T, resp *sip.Message, k sip.HeaderKind, alg digest.Algorithm, user, pw, method, uri string, nc uint32) string {
	t.Helper()
	for i := resp.Find(k); i >= 0; i = resp.FindNext(k, i) {
		ch, err := digest.ParseChallenge(resp.HeaderValue(i))
		if err != nil {
			t.Fatal(err)
		}
		if ch.Algorithm == alg {
			return string(ch.Authorize(nil, user, pw, []byte(method), []byte(uri), []byte("cn0001"), nc))
		}
	}
	t.Fatalf("no %v challenge in\n%s", alg, resp.Bytes())
	return ""
}

func TestRegisterChallengeAndAuthenticate(t *testing.T) {
	// By default MD5 alone.
	fx := newFixture(t, nil)
	if _, resp, _ := fx.run(t, register("alice", ""), stranger); resp.Count(sip.KindWWWAuthenticate) != 1 {
		t.Fatalf("default challenge:\n%s", resp.Bytes())
	}
	fx = newFixture(t, func(c *Config) { c.Algorithms = []digest.Algorithm{digest.MD5, digest.SHA256} })
	done, resp, _ := fx.run(t, register("alice", ""), stranger)
	if !done || resp.StatusCode() != 401 {
		t.Fatalf("REGISTER without credentials: %v", resp)
	}
	// MD5 first (most deployed clients take the first), then SHA-256.
	var algs []string
	for i := resp.Find(sip.KindWWWAuthenticate); i >= 0; i = resp.FindNext(sip.KindWWWAuthenticate, i) {
		ch, _ := digest.ParseChallenge(resp.HeaderValue(i))
		algs = append(algs, ch.Algorithm.String())
	}
	if strings.Join(algs, ",") != "MD5,SHA-256" {
		t.Fatalf("challenges %v, want MD5,SHA-256", algs)
	}
	for _, alg := range []digest.Algorithm{digest.MD5, digest.SHA256} {
		_, resp, _ := fx.run(t, register("alice", ""), stranger)
		cred := answer(t, resp, sip.KindWWWAuthenticate, alg, "alice", "alice-pw", "REGISTER", "sip:"+realm, 1)
		done, ans, r := fx.run(t, register("alice", "Authorization: "+cred+"\r\n"), stranger)
		if done || !r.Authenticated() {
			t.Fatalf("%v: valid credentials not accepted: %v", alg, ans)
		}
		// The same credentials again (same nonce, same nc): a replay.
		done, ans, r = fx.run(t, register("alice", "Authorization: "+cred+"\r\n"), stranger)
		if !done || ans.StatusCode() != 401 || r.Authenticated() {
			t.Fatalf("%v: replay not refused: %v", alg, ans)
		}
	}
	if got := strings.Join(fx.log.reasons, " "); got != "alice:replay alice:replay" {
		t.Errorf("failures %q", got)
	}
}

// An unknown user and a wrong password get the same answer: same status,
// same header names and the same challenge shape (CVE-2011-2536).
func TestNoEnumeration(t *testing.T) {
	fx := newFixture(t, nil)
	_, ch, _ := fx.run(t, register("alice", ""), stranger)
	shape := func(user, pw string) string {
		cred := answer(t, ch, sip.KindWWWAuthenticate, digest.MD5, user, pw, "REGISTER", "sip:"+realm, 1)
		done, resp, _ := fx.run(t, register(user, "Authorization: "+cred+"\r\n"), stranger)
		if !done {
			t.Fatalf("%s/%s accepted", user, pw)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d %s", resp.StatusCode(), resp.Reason())
		for i := 0; i < resp.NumHeaders(); i++ {
			b.WriteString("|" + string(resp.HeaderName(i)))
		}
		for i := resp.Find(sip.KindWWWAuthenticate); i >= 0; i = resp.FindNext(sip.KindWWWAuthenticate, i) {
			c, _ := digest.ParseChallenge(resp.HeaderValue(i))
			fmt.Fprintf(&b, "|%s %s %d %v", c.Realm, c.Algorithm, len(c.Nonce), c.Stale)
		}
		return b.String()
	}
	wrong, unknown := shape("alice", "guess"), shape("mallory", "guess")
	if wrong != unknown {
		t.Fatalf("wrong password and unknown user answered differently:\n%s\n%s", wrong, unknown)
	}
	fx.log.locked["bob"] = true
	if locked := shape("bob", "bob-pw"); locked != wrong {
		t.Fatalf("a locked user's right password answered differently:\n%s\n%s", locked, wrong)
	}
	if got := strings.Join(fx.log.reasons, " "); got != "alice:wrong-password mallory:unknown-user bob:locked" {
		t.Errorf("failures %q", got)
	}
}

func TestStaleNonce(t *testing.T) {
	fx := newFixture(t, nil)
	_, ch, _ := fx.run(t, register("alice", ""), stranger)
	cred := answer(t, ch, sip.KindWWWAuthenticate, digest.MD5, "alice", "alice-pw", "REGISTER", "sip:"+realm, 1)
	fx.now = fx.now.Add(NonceLifetime + time.Second)
	done, resp, _ := fx.run(t, register("alice", "Authorization: "+cred+"\r\n"), stranger)
	if !done || resp.StatusCode() != 401 {
		t.Fatalf("expired nonce: %v", resp)
	}
	c, err := digest.ParseChallenge(resp.HeaderValue(resp.Find(sip.KindWWWAuthenticate)))
	if err != nil || !c.Stale {
		t.Fatalf("expired nonce answered without stale=true: %s", resp.Bytes())
	}
	// A nonce sipedge never made: a plain challenge, no stale.
	forged := strings.Replace(cred, "nonce=\"", "nonce=\"AAAA", 1)
	_, resp, _ = fx.run(t, register("alice", "Authorization: "+forged+"\r\n"), stranger)
	c, _ = digest.ParseChallenge(resp.HeaderValue(resp.Find(sip.KindWWWAuthenticate)))
	if resp.StatusCode() != 401 || c.Stale {
		t.Fatalf("forged nonce: %d stale=%v", resp.StatusCode(), c.Stale)
	}
}

// The authenticated user must own the AoR it registers or calls from.
func TestAoROwnership(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.Identities = map[string][]string{"bob": {"100"}} })
	_, ch, _ := fx.run(t, register("alice", ""), stranger)
	cred := answer(t, ch, sip.KindWWWAuthenticate, digest.MD5, "alice", "alice-pw", "REGISTER", "sip:"+realm, 1)
	// alice's credentials on a REGISTER for bob.
	done, resp, r := fx.run(t, register("bob", "Authorization: "+cred+"\r\n"), stranger)
	if !done || resp.StatusCode() != 403 || r.Authenticated() {
		t.Fatalf("alice registering bob: %v", resp)
	}
	// bob may use 100 (identities).
	_, ch, _ = fx.run(t, register("100", ""), stranger)
	cred = answer(t, ch, sip.KindWWWAuthenticate, digest.MD5, "bob", "bob-pw", "REGISTER", "sip:"+realm, 1)
	if done, resp, _ := fx.run(t, register("100", "Authorization: "+cred+"\r\n"), stranger); done {
		t.Fatalf("bob registering 100: %v", resp)
	}
	// An INVITE from alice's AoR with bob's credentials.
	inv := request("INVITE", "sip:carol@"+realm, "sip:alice@"+realm, "sip:carol@"+realm, "")
	_, ch, _ = fx.run(t, inv, stranger)
	if ch.StatusCode() != 407 {
		t.Fatalf("INVITE from a local user without credentials: %d", ch.StatusCode())
	}
	cred = answer(t, ch, sip.KindProxyAuthenticate, digest.MD5, "bob", "bob-pw", "INVITE", "sip:carol@"+realm, 1)
	inv = request("INVITE", "sip:carol@"+realm, "sip:alice@"+realm, "sip:carol@"+realm, "Proxy-Authorization: "+cred+"\r\n")
	if done, resp, _ := fx.run(t, inv, stranger); !done || resp.StatusCode() != 403 {
		t.Fatalf("bob calling as alice: %v", resp)
	}
}

func TestWhoNeedsNoCredentials(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allow   bool
		msg     string
		src     netip.AddrPort
		want    int // 0: the stage lets it on
		authed  bool
		absorbs bool
	}{
		{"trusted source", false, request("INVITE", "sip:bob@"+realm, "sip:alice@"+realm, "sip:bob@"+realm, ""), inside, 0, false, false},
		{"OPTIONS for sipedge itself", false, request("OPTIONS", "sip:198.51.100.1", "sip:x@elsewhere.net", "sip:198.51.100.1", ""), stranger, 0, false, false},
		{"in-dialog: the relay stage decides", false, strings.Replace(request("BYE", "sip:bob@192.0.2.1", "sip:alice@"+realm, "sip:bob@"+realm, ""), "To: <sip:bob@"+realm+">", "To: <sip:bob@"+realm+">;tag=t1", 1), stranger, 0, false, false},
		{"CANCEL", false, request("CANCEL", "sip:bob@"+realm, "sip:alice@"+realm, "sip:bob@"+realm, ""), stranger, 0, false, false},
		{"foreign caller to a local user, not allowed", false, request("INVITE", "sip:bob@"+realm, "sip:x@elsewhere.net", "sip:bob@"+realm, ""), stranger, 407, false, false},
		{"foreign caller to a local user, allowed", true, request("INVITE", "sip:bob@"+realm, "sip:x@elsewhere.net", "sip:bob@"+realm, ""), stranger, 0, false, false},
		{"local From to a local user, allowed: still challenged", true, request("INVITE", "sip:bob@"+realm, "sip:alice@"+realm, "sip:bob@"+realm, ""), stranger, 407, false, false},
		{"foreign caller to a foreign address", true, request("INVITE", "sip:victim@192.0.2.9", "sip:x@elsewhere.net", "sip:victim@192.0.2.9", ""), stranger, 407, false, false},
		{"REGISTER always challenged", true, register("alice", ""), stranger, 401, false, false},
		{"a user at sipedge's address is not sipedge", false, request("INVITE", "sip:victim@198.51.100.1", "sip:100@198.51.100.1", "sip:victim@198.51.100.1", ""), stranger, 407, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, func(c *Config) { c.AllowUnauthenticatedToLocal = tc.allow })
			done, resp, r := fx.run(t, tc.msg, tc.src)
			code := 0
			if resp != nil {
				code = resp.StatusCode()
			}
			if code != tc.want || (tc.want == 0 && done) {
				t.Fatalf("answer %d (done %v), want %d", code, done, tc.want)
			}
			if r.Authenticated() != tc.authed {
				t.Fatalf("authenticated %v", r.Authenticated())
			}
		})
	}
}

// The ACK of a 407 sent without a transaction ends at the stage.
func TestAckOfChallenge(t *testing.T) {
	fx := newFixture(t, nil)
	inv := request("INVITE", "sip:carol@"+realm, "sip:alice@"+realm, "sip:carol@"+realm, "")
	_, resp, _ := fx.run(t, inv, stranger)
	to := string(resp.Get(sip.KindTo))
	ack := strings.Replace(strings.Replace(inv, "INVITE", "ACK", 2), "To: <sip:carol@"+realm+">", "To: "+to, 1)
	if done, _, _ := fx.run(t, ack, stranger); !done {
		t.Fatalf("ACK of the 407 not absorbed:\n%s", ack)
	}
	other := strings.Replace(ack, to, "<sip:carol@"+realm+">;tag=someoneelse", 1)
	if done, _, _ := fx.run(t, other, stranger); done {
		t.Fatal("ACK with another To tag absorbed")
	}
}

// The credentials for sipedge's realm are not forwarded; others are.
func TestCredentialsStripped(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.Algorithms = []digest.Algorithm{digest.MD5, digest.SHA256} })
	pad := "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER, SUBSCRIBE, INFO, MESSAGE, UPDATE, PRACK\r\nSupported: replaces, timer, 100rel, path, gruu, outbound\r\n"
	inv := request("INVITE", "sip:carol@"+realm, "sip:alice@"+realm, "sip:carol@"+realm, pad)
	_, ch, _ := fx.run(t, inv, stranger)
	cred := answer(t, ch, sip.KindProxyAuthenticate, digest.SHA256, "alice", "alice-pw", "INVITE", "sip:carol@"+realm, 1)
	other := `Digest username="a", realm="upstream.example.net", nonce="n", uri="sip:carol@` + realm + `", response="0123456789abcdef0123456789abcdef"`
	inv = request("INVITE", "sip:carol@"+realm, "sip:alice@"+realm, "sip:carol@"+realm,
		"Proxy-Authorization: "+other+"\r\nProxy-Authorization: "+cred+"\r\n")
	done, resp, r := fx.run(t, inv, stranger)
	if done {
		t.Fatalf("refused: %v", resp)
	}
	b := r.TestBranch(&proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("10.0.0.9:5060")}, netip.MustParseAddrPort("10.0.0.1:5060"))
	if err := fx.f.stripCredentials(b); err != nil {
		t.Fatal(err)
	}
	out := string(b.Msg.AppendTo(nil))
	if strings.Contains(out, "realm=\""+realm+"\"") || !strings.Contains(out, "upstream.example.net") {
		t.Fatalf("forwarded credentials wrong:\n%s", out)
	}
}

// Over UDP from a stranger, the answer stays within the amplification
// bound: a small request gets only the first challenge, a tiny one none.
func TestChallengeStaysSmall(t *testing.T) {
	fx := newFixture(t, func(c *Config) {
		c.Algorithms = []digest.Algorithm{digest.MD5, digest.SHA256, digest.SHA512_256}
	})
	tiny := "REGISTER sip:" + realm + " SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.7;branch=z9hG4bKs\r\nFrom: <sip:a@" + realm + ">;tag=1\r\nTo: <sip:a@" + realm + ">\r\nCall-ID: s\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
	r, ans := proxytest.Request(t, fx.core, tiny, stranger)
	if !fx.f.stage(r) || len(ans.Msgs) != 0 || fx.core.Stats().Amplification != 1 {
		t.Fatalf("tiny REGISTER answered: %d answers, amplification counter %d", len(ans.Msgs), fx.core.Stats().Amplification)
	}
	small := strings.Replace(tiny, "Content-Length", "Max-Forwards: 70\r\nExpires: 3600\r\nContact: <sip:a@203.0.113.7:5060>\r\nUser-Agent: softphone 1.0\r\nContent-Length", 1)
	_, resp, _ := fx.run(t, small, stranger)
	if resp == nil || resp.StatusCode() != 401 || resp.Count(sip.KindWWWAuthenticate) != 1 {
		t.Fatalf("small REGISTER: %v", resp)
	}
	if float64(len(resp.Bytes())) > proxy.MaxAmplification*float64(len(small)) {
		t.Fatalf("answer %d bytes to a %d-byte request", len(resp.Bytes()), len(small))
	}
	_, resp, _ = fx.run(t, register("alice", "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER, SUBSCRIBE, INFO, MESSAGE, UPDATE, PRACK\r\nSupported: replaces, timer, 100rel, path, gruu, outbound\r\n"), stranger)
	if resp.Count(sip.KindWWWAuthenticate) != 3 {
		t.Fatalf("ordinary REGISTER got %d challenges", resp.Count(sip.KindWWWAuthenticate))
	}
}

// The stage's cost per request: a challenge (nonce, one MD5 challenge,
// the 401 built) and a verification (parse, nonce check, MD5 response,
// replay counter) of a REGISTER from a stranger.
func BenchmarkStage(b *testing.B) {
	fx := newFixture(b, nil)
	b.Run("challenge", func(b *testing.B) {
		msg := []byte(register("alice", ""))
		b.ReportAllocs()
		for b.Loop() {
			r, err := fx.core.TestRequest(msg, stranger, transport.UDP, func(int, []byte) {})
			if err != nil {
				b.Fatal(err)
			}
			fx.f.stage(r)
		}
	})
	b.Run("verify", func(b *testing.B) {
		var ch *sip.Message
		r, _ := fx.core.TestRequest([]byte(register("alice", "")), stranger, transport.UDP, func(_ int, resp []byte) {
			ch = new(sip.Message)
			ch.Parse(append([]byte(nil), resp...), nil)
		})
		fx.f.stage(r)
		c, _ := digest.ParseChallenge(ch.HeaderValue(ch.Find(sip.KindWWWAuthenticate)))
		// A fresh nc each time, as a phone refreshing with one nonce.
		msgs := make([][]byte, 4096)
		for i := range msgs {
			msgs[i] = []byte(register("alice", "Authorization: "+string(c.Authorize(nil, "alice", "alice-pw",
				[]byte("REGISTER"), []byte("sip:"+realm), []byte("cn"), uint32(i+1)))+"\r\n"))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r, err := fx.core.TestRequest(msgs[i%len(msgs)], stranger, transport.UDP, func(int, []byte) {})
			if err != nil {
				b.Fatal(err)
			}
			if fx.f.stage(r) {
				b.Fatal("refused")
			}
			i++
		}
	})
}

// Whatever a stranger puts in Authorization or Proxy-Authorization, the
// stage answers or lets the request on; it never panics, and never marks
// the request authenticated without the right password.
func FuzzStage(f *testing.F) {
	for _, seed := range []string{
		`Digest username="alice", realm="example.com", nonce="GO6PA04ElSxyoU5CSpOHULO44zQS6G2S", uri="sip:example.com", response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="x", qop=auth, nc=00000001`,
		`Digest username="alice", realm="example.com", nonce="", uri="", response=""`,
		`Basic YWxpY2U6c2VjcmV0`,
		`Digest realm="example.com", algorithm=SHA-512-256-sess`,
		"Digest username=\"\\\"\", realm=\"example.com\"",
		``,
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	fx := newFixture(f, nil)
	f.Fuzz(func(t *testing.T, cred string, isRegister bool) {
		if strings.ContainsAny(cred, "\r\n") {
			return
		}
		msg := register("alice", "Authorization: "+cred+"\r\n")
		if !isRegister {
			msg = request("INVITE", "sip:carol@"+realm, "sip:alice@"+realm, "sip:carol@"+realm, "Proxy-Authorization: "+cred+"\r\n")
		}
		r, err := fx.core.TestRequest([]byte(msg), stranger, transport.UDP, func(int, []byte) {})
		if err != nil {
			return
		}
		fx.f.stage(r)
		if r.Authenticated() {
			t.Fatalf("authenticated by %q", cred)
		}
	})
}
