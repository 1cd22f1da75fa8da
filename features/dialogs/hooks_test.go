package dialogs

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

// The hooks on fake messages: no socket, no sleep.

var (
	callerAddr = netip.MustParseAddrPort("198.51.100.30:5060")
	local      = netip.MustParseAddrPort("198.51.100.1:5060")
	callee     = proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("198.51.100.20:5060")}
)

// invite is an INVITE from the caller; toTag makes it in-dialog, extra
// header lines go before Content-Length.
func invite(method, toTag, extra string) string {
	to := "<sip:bob@example.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: c1\r\nCSeq: 1 %s\r\n"+
		"Contact: <sip:alice@%s>\r\n%sContent-Length: 0\r\n\r\n", method, callerAddr, to, method, callerAddr, extra)
}

// answer is the callee's response to invite.
func answer(code int, method, extra string) string {
	return fmt.Sprintf("SIP/2.0 %d %s\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKSe0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK1\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\nCall-ID: c1\r\nCSeq: 1 %s\r\n"+
		"Contact: <sip:bob@%s>\r\n%sContent-Length: 0\r\n\r\n", code, sip.ReasonPhrase(code), local, callerAddr, method, callee.Addr, extra)
}

// ended records what the core tells the features when a dialog ends.
type ended struct{ calls []string }

func (e *ended) Hooks() proxy.Hooks {
	return proxy.Hooks{DialogEnded: []func(callID, fromTag string){func(c, tag string) { e.calls = append(e.calls, c+"/"+tag) }}}
}

func harness(t *testing.T, cfg Config) (*Feature, *proxy.Core, *ended) {
	t.Helper()
	var f *Feature
	e := &ended{}
	core := proxytest.Harness(t, proxy.Config{}, func(c *proxy.Core) []proxy.Feature {
		f = New(c, cfg)
		return []proxy.Feature{f, e}
	})
	return f, core, e
}

func TestSessionMin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		minSE time.Duration
		msg   string
		want  int // 0: passed on
	}{
		{"below Min-SE", 90 * time.Second, invite("INVITE", "", "Session-Expires: 30\r\n"), 422},
		{"below Min-SE with refresher", 90 * time.Second, invite("INVITE", "", "Session-Expires: 30;refresher=uac\r\n"), 422},
		{"at Min-SE", 90 * time.Second, invite("INVITE", "", "Session-Expires: 90\r\n"), 0},
		{"above Min-SE", 90 * time.Second, invite("INVITE", "", "Session-Expires: 1800\r\n"), 0},
		{"no session timer", 90 * time.Second, invite("INVITE", "", ""), 0},
		{"re-INVITE (in dialog) not checked", 90 * time.Second, invite("INVITE", "b1", "Session-Expires: 30\r\n"), 0},
		{"UPDATE not checked", 90 * time.Second, invite("UPDATE", "b1", "Session-Expires: 30\r\n"), 0},
		{"no Min-SE configured", 0, invite("INVITE", "", "Session-Expires: 30\r\n"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core, _ := harness(t, Config{MinSE: tc.minSE})
			r, ans := proxytest.Request(t, core, tc.msg, callerAddr)
			done := f.sessionMin(r)
			if done != (tc.want != 0) || ans.Code() != tc.want {
				t.Fatalf("stage done %v, answered %v; want %d", done, ans.Codes, tc.want)
			}
			if tc.want == 422 {
				if got := string(ans.Msgs[0].GetByName("Min-SE")); got != "90" {
					t.Errorf("Min-SE %q, want 90", got)
				}
				if f.Stats().TooSmall != 1 {
					t.Errorf("TooSmall %d", f.Stats().TooSmall)
				}
			}
		})
	}
}

func TestSessionExpiresInserted(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		msg      string
		want     string // Session-Expires forwarded
	}{
		{"initial INVITE without one", 1800 * time.Second, invite("INVITE", "", ""), "1800"},
		{"initial INVITE with its own", 1800 * time.Second, invite("INVITE", "", "Session-Expires: 600;refresher=uac\r\n"), "600;refresher=uac"},
		{"re-INVITE", 1800 * time.Second, invite("INVITE", "b1", ""), ""},
		{"UPDATE", 1800 * time.Second, invite("UPDATE", "b1", ""), ""},
		{"OPTIONS", 1800 * time.Second, invite("OPTIONS", "", ""), ""},
		{"no interval configured", 0, invite("INVITE", "", ""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core, _ := harness(t, Config{Interval: tc.interval})
			r, _ := proxytest.Request(t, core, tc.msg, callerAddr)
			b := r.TestBranch(&callee, local)
			if err := f.sessionExpires(b); err != nil {
				t.Fatal(err)
			}
			out := proxytest.Edited(t, b.Msg)
			if got := string(out.Get(sip.KindSessionExpires)); got != tc.want {
				t.Errorf("Session-Expires %q, want %q", got, tc.want)
			}
			if n := out.Count(sip.KindSessionExpires); n > 1 {
				t.Errorf("%d Session-Expires headers", n)
			}
		})
	}
}

func TestReplyMakesDialog(t *testing.T) {
	for _, tc := range []struct {
		name       string
		wantDialog bool
		resp       string
		first      bool
		want       int // dialogs after the reply
		timer      bool
	}{
		{"200, nobody asked", false, answer(200, "INVITE", ""), true, 0, false},
		{"200, WantDialog", true, answer(200, "INVITE", ""), true, 1, false},
		{"200 with Session-Expires", false, answer(200, "INVITE", "Session-Expires: 1800;refresher=uac\r\n"), true, 1, true},
		{"200, WantDialog and Session-Expires", true, answer(200, "INVITE", "Session-Expires: 90\r\n"), true, 1, true},
		{"180, WantDialog", true, answer(180, "INVITE", ""), true, 0, false},
		{"486, WantDialog", true, answer(486, "INVITE", "Session-Expires: 90\r\n"), true, 0, false},
		{"second 200 of a fork", true, answer(200, "INVITE", ""), false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core, _ := harness(t, Config{})
			r, _ := proxytest.Request(t, core, invite("INVITE", "", ""), callerAddr)
			if tc.wantDialog {
				r.WantDialog()
			}
			rp := r.TestReply(proxytest.Parse(t, tc.resp), &callee, tc.first)
			if err := f.reply(rp); err != nil {
				t.Fatal(err)
			}
			if f.Active() != tc.want {
				t.Fatalf("%d dialogs, want %d", f.Active(), tc.want)
			}
			if tc.want == 0 {
				return
			}
			d := f.m[dialogKey([]byte("c1"), []byte("a1"), []byte("b1"))]
			if d == nil {
				t.Fatal("dialog not under Call-ID, caller tag, callee tag")
			}
			if (d.timer != nil) != tc.timer {
				t.Errorf("session timer armed %v, want %v", d.timer != nil, tc.timer)
			}
			if d.legs[0].ruri != "sip:alice@"+callerAddr.String() || d.legs[1].ruri != "sip:bob@"+callee.Addr.String() {
				t.Errorf("remote targets %q, %q", d.legs[0].ruri, d.legs[1].ruri)
			}
			if d.legs[0].target.Addr != callerAddr || d.legs[1].target.Addr != callee.Addr || d.legs[0].cseq != 1 {
				t.Errorf("legs %+v", d.legs)
			}
		})
	}
}

// dialogUp makes the dialog c1/a1/b1 through the reply hook.
func dialogUp(t *testing.T, f *Feature, core *proxy.Core, respExtra string) {
	t.Helper()
	r, _ := proxytest.Request(t, core, invite("INVITE", "", ""), callerAddr)
	r.WantDialog()
	if err := f.reply(r.TestReply(proxytest.Parse(t, answer(200, "INVITE", respExtra)), &callee, true)); err != nil {
		t.Fatal(err)
	}
	if f.Active() != 1 {
		t.Fatal("no dialog")
	}
}

func TestDialogStage(t *testing.T) {
	calleeBye := strings.NewReplacer("From: <sip:alice@example.com>;tag=a1", "From: <sip:bob@example.com>;tag=b1",
		"To: <sip:bob@example.com>;tag=a1", "To: <sip:alice@example.com>;tag=a1").Replace(invite("BYE", "a1", ""))
	for _, tc := range []struct {
		name string
		msg  string
		gone bool
		side int
		cseq uint32
	}{
		{"BYE from the caller", strings.Replace(invite("BYE", "b1", ""), "CSeq: 1 BYE", "CSeq: 2 BYE", 1), true, 0, 2},
		{"BYE from the callee", calleeBye, true, 1, 1},
		{"re-INVITE from the caller", strings.Replace(invite("INVITE", "b1", ""), "CSeq: 1 INVITE", "CSeq: 7 INVITE", 1), false, 0, 7},
		{"BYE of another call", strings.Replace(invite("BYE", "b1", ""), "Call-ID: c1", "Call-ID: c2", 1), false, 0, 1},
		{"BYE with another To tag", invite("BYE", "b2", ""), false, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core, e := harness(t, Config{})
			dialogUp(t, f, core, "Session-Expires: 1800\r\n")
			d := f.m[dialogKey([]byte("c1"), []byte("a1"), []byte("b1"))]
			r, ans := proxytest.Request(t, core, tc.msg, callerAddr)
			if f.request(r) || ans.Code() != 0 {
				t.Fatalf("the dialog stage dealt with the request (answered %v); it only follows it", ans.Codes)
			}
			if gone := f.Active() == 0; gone != tc.gone {
				t.Fatalf("dialog removed %v, want %v", gone, tc.gone)
			}
			if tc.gone {
				if len(e.calls) != 1 || e.calls[0] != "c1/a1" {
					t.Errorf("features told %v, want [c1/a1]", e.calls)
				}
				if len(f.byCall) != 0 {
					t.Errorf("byCall keeps %v", f.byCall)
				}
				return
			}
			if len(e.calls) != 0 {
				t.Errorf("features told %v of an end", e.calls)
			}
			if d.legs[tc.side].cseq != tc.cseq {
				t.Errorf("side %d CSeq %d, want %d", tc.side, d.legs[tc.side].cseq, tc.cseq)
			}
		})
	}
}

func TestEndCall(t *testing.T) {
	f, core, e := harness(t, Config{})
	if f.EndCall("c1", "a1", 408, "Media stopped") || core.EndDialog("c1", "a1", 408, "Media stopped") {
		t.Fatal("EndCall of an unknown dialog reported true")
	}
	dialogUp(t, f, core, "")
	if f.EndCall("c1", "b1", 408, "Media stopped") {
		t.Fatal("EndCall with the callee's tag: the caller's tag names the call")
	}
	// Through the core, as the media feature asks. No transport: the
	// BYEs are not sent, the dialog ends anyway.
	if !core.EndDialog("c1", "a1", 408, "Media stopped") {
		t.Fatal("EndDialog of a known dialog reported false")
	}
	if f.Active() != 0 || f.Stats().Ended != 1 || len(e.calls) != 1 || e.calls[0] != "c1/a1" {
		t.Fatalf("after EndCall: %d dialogs, %d ended, features told %v", f.Active(), f.Stats().Ended, e.calls)
	}
	if f.EndCall("c1", "a1", 408, "Media stopped") {
		t.Fatal("EndCall twice reported true")
	}
}

// A 2xx to a re-INVITE with Session-Expires is a refresh of a dialog
// with a timer; one of a dialog without a timer changes nothing.
func TestRefresh(t *testing.T) {
	for _, tc := range []struct {
		name      string
		initial   string
		refreshes uint64
		interval  time.Duration
	}{
		{"timer", "Session-Expires: 1800\r\n", 1, 90 * time.Second},
		{"no timer", "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core, _ := harness(t, Config{})
			dialogUp(t, f, core, tc.initial)
			r, _ := proxytest.Request(t, core, strings.Replace(invite("INVITE", "b1", ""), "CSeq: 1", "CSeq: 2", 1), callerAddr)
			resp := strings.Replace(answer(200, "INVITE", "Session-Expires: 90\r\n"), "CSeq: 1", "CSeq: 2", 1)
			if err := f.reply(r.TestReply(proxytest.Parse(t, resp), &callee, true)); err != nil {
				t.Fatal(err)
			}
			d := f.m[dialogKey([]byte("c1"), []byte("a1"), []byte("b1"))]
			if f.Stats().Refreshes != tc.refreshes || d.interval != tc.interval || f.Active() != 1 {
				t.Fatalf("refreshes %d, interval %v, %d dialogs", f.Stats().Refreshes, d.interval, f.Active())
			}
		})
	}
}
