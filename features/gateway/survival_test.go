package gateway

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

var pstn = netip.MustParseAddrPort("10.0.0.50:5060") // the fallback route

func survivalHarness(t *testing.T, allow []netip.Prefix, fallback bool) *Feature {
	t.Helper()
	var f *Feature
	cfg := proxy.Config{Self: proxy.NewSelf([]netip.AddrPort{local}, nil), Policy: proxy.Policy{AllowSources: allow}}
	proxytest.Harness(t, cfg, func(c *proxy.Core) []proxy.Feature {
		var err error
		if f, err = New(c, nil); err != nil {
			t.Fatal(err)
		}
		return []proxy.Feature{f}
	})
	sc := SurvivalConfig{Enabled: true, Upstream: "sip:" + provider.Addr.String(), Target: provider,
		Domains: []string{"provider.example"}, RegisterExpires: 30 * time.Second}
	if fallback {
		sc.Fallback, sc.FallbackName = proxytest.To(pstn), "sip:"+pstn.String()
	}
	f.SetSurvival(sc)
	return f
}

// down switches f to survival with the default threshold (3 failures).
func down(f *Feature) {
	for range 3 {
		f.observe(false, "OPTIONS timeout")
	}
}

func TestSurvivalThresholds(t *testing.T) {
	f := survivalHarness(t, nil, false)
	for i, step := range []struct {
		ok   bool
		want string
	}{
		{false, "normal"}, {false, "normal"}, {true, "normal"}, // an answer starts the count again
		{false, "normal"}, {false, "normal"}, {false, "survival"}, // 3 in a row
		{true, "survival"}, {false, "survival"}, {true, "survival"}, // answers must be in a row
		{true, "normal"},
	} {
		f.observe(step.ok, "OPTIONS timeout")
		if got := f.Survival().Mode; got != step.want {
			t.Fatalf("step %d (ok=%v): mode %s, want %s", i, step.ok, got, step.want)
		}
	}
	st := f.Survival()
	if !strings.Contains(st.Reason, "answered 2 probes") || st.Since.IsZero() {
		t.Errorf("state %+v: want the reason of the last switch", st)
	}
	if s := f.Stats(); s.Switches != 2 || s.Active != 0 {
		t.Errorf("stats %+v: want 2 switches, not active", s)
	}
	down(f)
	c := *f.surv.cfg.Load()
	c.DownAfter = 5 // a reload with the same upstream keeps the mode
	f.SetSurvival(c)
	if !f.InSurvival() {
		t.Fatal("reload with the same upstream: back to normal")
	}
	c.Upstream, c.Target.Addr = "sip:198.51.100.21:5060", netip.MustParseAddrPort("198.51.100.21:5060")
	f.SetSurvival(c) // another upstream: normal, counted from zero
	if f.InSurvival() || f.Survival().Failures != 0 || !strings.Contains(f.Survival().Reason, "upstream changed") {
		t.Fatalf("new upstream: %+v", f.Survival())
	}
	down(f)
	f.SetSurvival(SurvivalConfig{}) // turned off: normal at once
	if f.InSurvival() {
		t.Fatal("survival turned off: still in survival mode")
	}
	down(f)
	if f.InSurvival() {
		t.Fatal("survival off: evidence switched mode")
	}
}

func inviteTo(ruri, callID string) string {
	return fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKi%s\r\nMax-Forwards: 70\r\n"+
		"From: <sip:bob@provider.example>;tag=b1\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:bob@10.0.0.6:5060>\r\nContent-Length: 0\r\n\r\n", ruri, phone, callID, ruri, callID)
}

func TestSurvivalRegisterAndRoute(t *testing.T) {
	phoneURI := "sip:alice@" + phone.String()
	for _, tc := range []struct {
		name     string
		survival bool
		msg      string
		src      netip.AddrPort
		handled  bool
		code     int
		expires  string // Contact expiry of the 200
	}{
		{"normal mode: passes", false, register(phone.String(), "<"+phoneURI+">;expires=3600"), phone, false, 0, ""},
		{"REGISTER answered, expiry shortened", true, register(phone.String(), "<"+phoneURI+">;expires=3600"), phone, true, 200, "30"},
		{"REGISTER asking less keeps it", true, register(phone.String(), "<"+phoneURI+">;expires=10"), phone, true, 200, "10"},
		{"REGISTER for another domain: passes", true, strings.Replace(register(phone.String(), "<"+phoneURI+">"), "REGISTER sip:provider.example", "REGISTER sip:other.example", 1), phone, false, 0, ""},
		{"unknown phone off the trusted networks", true, register(natSrc.String(), "<"+phoneURI+">"), natSrc, true, 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := survivalHarness(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, false)
			if tc.survival {
				down(f)
			}
			r, ans := proxytest.Request(t, f.core, tc.msg, tc.src)
			if got := f.survivalStage(r); got != tc.handled || ans.Code() != tc.code {
				t.Fatalf("handled %v answered %d, want %v %d", got, ans.Code(), tc.handled, tc.code)
			}
			if tc.expires != "" {
				c := string(ans.Msgs[0].Get(sip.KindContact))
				if want := "<" + phoneURI + ">;expires=" + tc.expires; c != want {
					t.Errorf("Contact %q, want %q", c, want)
				}
				if ts := f.lookup([]byte("alice"), []byte("PROVIDER.example")); len(ts) != 1 || ts[0].Addr != phone || string(ts[0].URI) != phoneURI {
					t.Errorf("binding %+v: want the phone", ts)
				}
			}
		})
	}
}

func TestSurvivalKnownPhoneRefreshes(t *testing.T) {
	// A binding mirrored from the provider: the phone may refresh it from
	// where it registered even off the trusted networks, and unregister.
	f := survivalHarness(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, false)
	phoneURI := "sip:alice@" + phone.String()
	msg := register(phone.String(), "<"+phoneURI+">")
	forward(t, f, f.core, msg, natSrc, provider)
	f.learn(proxytest.Parse(t, ok200("<sip:alice@"+local.String()+";sipedge="+f.token([]byte(phoneURI), natSrc)+">;expires=600")), f.token([]byte(phoneURI), natSrc))
	down(f)
	r, ans := proxytest.Request(t, f.core, msg, natSrc)
	if !f.survivalStage(r) || ans.Code() != 200 {
		t.Fatalf("known phone refreshing: %v", ans.Codes)
	}
	r, ans = proxytest.Request(t, f.core, register(phone.String(), "<"+phoneURI+">;expires=0"), natSrc)
	if !f.survivalStage(r) || ans.Code() != 200 || f.Bindings() != 0 {
		t.Fatalf("unregister: %v, %d bindings", ans.Codes, f.Bindings())
	}
}

func TestSurvivalRouting(t *testing.T) {
	phoneURI := "sip:alice@" + phone.String()
	for i, tc := range []struct {
		name     string
		ruri     string
		fallback bool
		want     netip.AddrPort // zero: answered
		code     int
	}{
		{"local user", "sip:alice@provider.example", false, phone, 0},
		{"number: fallback", "sip:0301234@provider.example", true, pstn, 0},
		{"number without fallback: 480", "sip:0301234@provider.example", false, netip.AddrPort{}, 480},
		{"another domain: routing table", "sip:carol@other.example", true, netip.AddrPort{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := survivalHarness(t, nil, tc.fallback)
			reg, _ := proxytest.Request(t, f.core, register(phone.String(), "<"+phoneURI+">"), phone)
			f.survivalStage(reg) // normal mode: nothing
			down(f)
			reg, _ = proxytest.Request(t, f.core, register(phone.String(), "<"+phoneURI+">"), phone)
			f.survivalStage(reg)
			r, ans := proxytest.Request(t, f.core, inviteTo(tc.ruri, fmt.Sprintf("c%d", i)), phone)
			handled := f.survivalStage(r)
			if handled != (tc.code != 0) || ans.Code() != tc.code {
				t.Fatalf("handled %v answered %v, want %d", handled, ans.Codes, tc.code)
			}
			d := r.Decision()
			if !tc.want.IsValid() {
				if len(d.Groups) != 0 {
					t.Errorf("decision %+v, want none", d)
				}
				return
			}
			if len(d.Groups) != 1 || len(d.Groups[0]) != 1 || d.Groups[0][0].Addr != tc.want {
				t.Fatalf("decision %+v, want %s", d, tc.want)
			}
		})
	}
}

func TestSurvivalSkipsUpstreamRoute(t *testing.T) {
	up := "<sip:" + provider.Addr.String() + ";lr;ftag=b1>"
	self := "<sip:" + local.String() + ";lr>"
	other := "<sip:10.0.0.9:5060;lr>"
	for _, tc := range []struct {
		name, routes, want string
	}{
		{"upstream then sipedge again: Request-URI", "Route: " + up + ", " + self + "\r\n", ""},
		{"upstream then another hop", "Route: " + up + "\r\nRoute: " + other + "\r\n", other},
		{"no upstream: untouched", "Route: " + other + "\r\n", other},
		{"upstream by its domain", "Route: <sip:provider.example;lr>, " + other + "\r\n", other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := survivalHarness(t, nil, false)
			down(f)
			msg := fmt.Sprintf("BYE sip:alice@%s;sipedge=abc SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKb1\r\nMax-Forwards: 70\r\n"+
				"%sFrom: <sip:bob@provider.example>;tag=b1\r\nTo: <sip:alice@provider.example>;tag=a1\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
				local, phone, tc.routes)
			r, _ := proxytest.Request(t, f.core, msg, phone)
			if f.routeStage(r) {
				t.Fatal("an in-dialog request was answered")
			}
			var got []string
			for it := r.Msg().Values(sip.KindRoute); ; {
				v, ok := it.Next()
				if !ok {
					break
				}
				got = append(got, string(v))
			}
			if strings.Join(got, ", ") != tc.want {
				t.Errorf("Route %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSurvivalWatch(t *testing.T) {
	f := survivalHarness(t, nil, false)
	r, _ := proxytest.Request(t, f.core, inviteTo("sip:2000@provider.example", "w1"), phone)
	tgt := provider
	b := r.TestBranch(&tgt, local)
	if err := f.watch(b); err != nil || tgt.Observer == nil {
		t.Fatalf("INVITE to the upstream not watched (%v)", err)
	}
	other := proxy.Target{Proto: transport.UDP, Addr: pstn}
	if f.watch(r.TestBranch(&other, local)); other.Observer != nil {
		t.Fatal("a request elsewhere is watched")
	}
	for _, code := range []int{408, 503, 503} {
		tgt.Observer.BranchEnded(&tgt, r.Msg(), code, code == 408)
	}
	if !f.InSurvival() || f.Stats().PassiveFailures != 3 {
		t.Fatalf("3 failed calls: survival %v, stats %+v", f.InSurvival(), f.Stats())
	}
}

// TestSurvivalProbes: a core on loopback probing a scripted upstream that
// answers, goes silent, and answers again.
func TestSurvivalProbes(t *testing.T) {
	upstream := proxytest.NewPeer(t)
	var f *Feature
	_, addr := proxytest.StartCore(t, proxy.Config{}, func(c *proxy.Core) []proxy.Feature {
		var err error
		if f, err = New(c, nil); err != nil {
			t.Fatal(err)
		}
		return []proxy.Feature{f}
	})
	f.SetSurvival(SurvivalConfig{Enabled: true, Upstream: "sip:" + upstream.Addr.String(),
		Target:   proxy.Target{Proto: transport.UDP, Addr: upstream.Addr},
		Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond})
	answer := func(n int) {
		for i := 0; i < n; i++ {
			m := upstream.ExpectRequest("OPTIONS")
			upstream.Send(addr, upstream.Answer(m, 200, "u"))
		}
	}
	answer(2)
	if f.InSurvival() {
		t.Fatal("answered probes: survival")
	}
	deadline := time.Now().Add(3 * time.Second)
	for !f.InSurvival() {
		if time.Now().After(deadline) {
			t.Fatalf("silent upstream: still normal: %+v", f.Survival())
		}
		upstream.Recv(50 * time.Millisecond) // dropped
	}
	answer(3)
	deadline = time.Now().Add(time.Second)
	for f.InSurvival() {
		if time.Now().After(deadline) {
			t.Fatalf("upstream back: still survival: %+v", f.Survival())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := f.Stats(); st.Probes < 5 || st.ProbeFailures < 3 || st.Switches != 2 {
		t.Errorf("stats %+v", st)
	}
}
