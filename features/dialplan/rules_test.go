package dialplan

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sdp"
	"sipedge/sip"
)

// TestCompileErrors: every way a rule can be wrong is refused with the
// key that is wrong and a message that says what to write.
func TestCompileErrors(t *testing.T) {
	ok := Rule{Name: "r", Prefix: "0"}
	for _, tc := range []struct {
		edit func(r *Rule)
		key  string
		want string
	}{
		{func(r *Rule) { r.Name = "" }, "name", "needs a name"},
		{func(r *Rule) { r.Prefix = "" }, "prefix", "give prefix"},
		{func(r *Rule) { r.Match = "^0" }, "match", "not both"},
		{func(r *Rule) { r.Prefix, r.Match = "", "(" }, "match", "not a regular expression"},
		{func(r *Rule) { r.Prefix = "0@" }, "prefix", "start of a number"},
		{func(r *Rule) { r.Replace = "$1" }, "replace", "needs match"},
		{func(r *Rule) { r.Strip = -1 }, "strip", "0 to 64"},
		{func(r *Rule) { r.AddPrefix = "+ 49" }, "add_prefix", "letters, digits"},
		{func(r *Rule) { r.Methods = []string{"BYE"} }, "methods[0]", "follows its dialog"},
		{func(r *Rule) { r.Methods = []string{"invite"} }, "methods[0]", "in capitals"},
		{func(r *Rule) { r.To = "http://x" }, "to", "a SIP URI"},
		{func(r *Rule) { r.To = "pool:nowhere" }, "to", "no pool named nowhere"},
		{func(r *Rule) { r.Headers.Remove = []string{"Via"} }, "headers.remove[0]", "Via cannot be edited"},
		{func(r *Rule) { r.Headers.Remove = []string{"v"} }, "headers.remove[0]", "cannot be edited"},
		{func(r *Rule) { r.Headers.Set = []string{"Max-Forwards: 10"} }, "headers.set[0]", "decrements Max-Forwards"},
		{func(r *Rule) { r.Headers.Add = []string{"Record-Route: <sip:x>"} }, "headers.add[0]", "Record-Route"},
		{func(r *Rule) { r.Headers.Set = []string{"Call-ID: x"} }, "headers.set[0]", "identifies the dialog"},
		{func(r *Rule) { r.Headers.Set = []string{"CSeq: 1 INVITE"} }, "headers.set[0]", "CSeq"},
		{func(r *Rule) { r.Headers.Rewrite = []HeaderRewrite{{Header: "From", Match: "a", Replace: "b"}} }, "headers.rewrite[0].header", "tag"},
		{func(r *Rule) { r.Headers.Remove = []string{"Route"} }, "headers.remove[0]", "route set"},
		{func(r *Rule) { r.Headers.Remove = []string{"Content-Length"} }, "headers.remove[0]", "frames the message"},
		{func(r *Rule) { r.Headers.Set = []string{"User-Agent"} }, "headers.set[0]", "Name: value"},
		{func(r *Rule) { r.Headers.Set = []string{"User-Agent:"} }, "headers.set[0]", "no value"},
		{func(r *Rule) { r.Headers.Add = []string{"X-A: b\nVia: evil"} }, "headers.add[0]", "control characters"},
		{func(r *Rule) { r.Headers.Remove, r.Headers.Set = []string{"X-A"}, []string{"x-a: 1"} }, "headers.set[0]", "edited by headers.remove"},
		{func(r *Rule) { r.Headers.Rewrite = []HeaderRewrite{{Header: "X-A", Match: ""}} }, "headers.rewrite[0].match", "regular expression"},
		{func(r *Rule) { r.Codecs.Remove = []string{"G 729"} }, "codecs.remove[0]", "payload type"},
		{func(r *Rule) { r.Redirects = "recurse" }, "redirects", "relay"},
		{func(r *Rule) { r.MaxRedirects = 2 }, "max_redirects", "only with redirects: follow"},
		{func(r *Rule) { r.Redirects, r.MaxRedirects = "follow", 9 }, "max_redirects", "1 to 5"},
	} {
		r := ok
		tc.edit(&r)
		_, err := compile([]Rule{{Name: "first", Prefix: "1"}, r}, testEnv, true)
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("%s: err %v, want a RuleError", tc.key, err)
			continue
		}
		if re.Index != 1 || re.Key != tc.key || !strings.Contains(re.Msg, tc.want) {
			t.Errorf("got %v; want dial_plan[1].%s: ...%s...", err, tc.key, tc.want)
		}
	}
	if _, err := compile([]Rule{{Name: "a", Prefix: "1"}, {Name: "a", Prefix: "2"}}, testEnv, true); err == nil || !strings.Contains(err.Error(), "dial_plan[1].name") {
		t.Errorf("duplicate name: %v", err)
	}
	// Without destinations (the configuration's own check) a named
	// destination is not looked up.
	if err := Check([]Rule{{Name: "a", Prefix: "1", To: "pool:later"}}); err != nil {
		t.Error(err)
	}
	// Allowed: remove then add the same header, add twice.
	if err := Check([]Rule{{Name: "a", Prefix: "1", Headers: Headers{Remove: []string{"X-A"}, Add: []string{"X-A: 1", "X-A: 2"}}}}); err != nil {
		t.Error(err)
	}
}

// TestRewrite: the user rewrites of each rule kind, alone and combined.
func TestRewrite(t *testing.T) {
	for _, tc := range []struct {
		rule       Rule
		user, want string // want "" : no rule matched; "=": matched, unchanged
		code       int
	}{
		{Rule{Prefix: "0"}, "0301234", "=", 0},
		{Rule{Prefix: "0"}, "301234", "", 0},
		{Rule{Prefix: "0", Strip: 1}, "0301234", "301234", 0},
		{Rule{Prefix: "0", Strip: 1, AddPrefix: "+49"}, "0301234", "+49301234", 0},
		{Rule{Prefix: "9", StripPrefix: "9"}, "90301234", "0301234", 0},
		{Rule{Prefix: "9", StripPrefix: "90"}, "91234", "=", 0}, // strip_prefix not there: unchanged
		{Rule{Prefix: "0", AddPrefix: "00"}, "0301", "000301", 0},
		{Rule{Match: `^00([1-9][0-9]+)$`, Replace: "+$1"}, "0044207", "+44207", 0},
		{Rule{Match: `^00([1-9][0-9]+)$`, Replace: "+$1"}, "00044207", "", 0},
		{Rule{Match: `^(?P<area>0[0-9]{2})(?P<n>[0-9]+)$`, Replace: "+49${area}-${n}", StripPrefix: "+490"}, "030123", "30-123", 0},
		{Rule{Match: `^1[0-9]{2}$`}, "112", "=", 0},
		{Rule{Match: `^1[0-9]{2}$`}, "1123", "", 0},
		{Rule{Prefix: "0", Strip: 2}, "01", "", 484},
		{Rule{Match: `^(.*)$`, Replace: "$1@evil"}, "0301", "", 500},
		{Rule{Prefix: "*", Strip: 1}, "*21", "21", 0},
	} {
		tc.rule.Name = "r"
		c, err := compile([]Rule{tc.rule}, testEnv, true)
		if err != nil {
			t.Fatalf("%+v: %v", tc.rule, err)
		}
		m := parse(t, invite("sip:"+tc.user+"@example.com", ""))
		p := decide(c, m, new(sdp.Session))
		switch {
		case tc.code != 0:
			if p == nil || p.Code != tc.code {
				t.Errorf("%+v on %s: plan %+v, want answer %d", tc.rule, tc.user, p, tc.code)
			}
		case tc.want == "":
			if p != nil {
				t.Errorf("%+v matched %s", tc.rule, tc.user)
			}
		case tc.want == "=":
			if p == nil || p.User != nil || p.Code != 0 {
				t.Errorf("%+v on %s: plan %+v, want a match without rewrite", tc.rule, tc.user, p)
			}
		default:
			if p == nil || string(p.User) != tc.want {
				t.Errorf("%+v on %s: plan %+v, want user %s", tc.rule, tc.user, p, tc.want)
			}
		}
	}
}

// TestCodecChoice: which formats a codec rule removes, by payload type or
// encoding name (static payload types have a name without a=rtpmap);
// streams that are not RTP, or rejected, are left alone.
func TestCodecChoice(t *testing.T) {
	body := "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 18 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n" +
		"m=image 4002 udptl t38\r\n" +
		"m=audio 0 RTP/AVP 18\r\n"
	for _, tc := range []struct {
		remove []string
		want   string // drop list of media 0, or "488", or "" for no filter
	}{
		{[]string{"G729"}, "18"},
		{[]string{"g729", "TELEPHONE-EVENT"}, "18 101"},
		{[]string{"8"}, "8"},
		{[]string{"t38"}, ""},
		{[]string{"opus"}, ""},
		{[]string{"18", "PCMU", "PCMA", "101"}, "488"},
	} {
		c, err := compile([]Rule{{Name: "c", Prefix: "0", Codecs: Codecs{Remove: tc.remove}}}, testEnv, true)
		if err != nil {
			t.Fatal(err)
		}
		p := decide(c, parse(t, invite("sip:0301@example.com", body)), new(sdp.Session))
		got := ""
		switch {
		case p.Code == 488:
			got = "488"
		case p.Formats != nil:
			got = strings.Join(p.Formats.Drop[0], " ")
			if len(p.Formats.Drop[1]) > 0 || len(p.Formats.Drop[2]) > 0 {
				t.Errorf("%v: other streams filtered: %v", tc.remove, p.Formats.Drop)
			}
		}
		if got != tc.want {
			t.Errorf("remove %v: got %q, want %q", tc.remove, got, tc.want)
		}
	}
}

// TestApplyHeadersOverlap: a header another hook already removed is left
// to it (counted), and the rest of the rule's edits are still made.
func TestApplyHeadersOverlap(t *testing.T) {
	c, err := compile([]Rule{{Name: "h", Prefix: "0", Headers: Headers{
		Remove: []string{"Proxy-Authorization"}, Add: []string{"X-Edge: 1"}}}}, testEnv, true)
	if err != nil {
		t.Fatal(err)
	}
	m := parse(t, invite("sip:0301@example.com", "")+"")
	m2 := parse(t, strings.Replace(string(m.Bytes()), "Content-Length", "Proxy-Authorization: Digest username=\"a\"\r\nContent-Length", 1))
	i := m2.Find(sip.KindProxyAuthorization)
	if err := m2.DeleteHeader(i); err != nil { // the credentials hook's edit
		t.Fatal(err)
	}
	p := &Plan{rule: c[0]}
	if n := ApplyHeaders(m2, p); n != 1 {
		t.Errorf("skipped %d, want 1", n)
	}
	out := string(m2.AppendTo(nil))
	if strings.Contains(out, "Proxy-Authorization") || !strings.Contains(out, "X-Edge: 1\r\n") {
		t.Errorf("edits:\n%s", out)
	}
}

// TestDeferredResume: a stage resumed after a DNS wait (its note set) does
// not apply the rule a second time to the rewritten request.
func TestDeferredResume(t *testing.T) {
	var f *Feature
	core := proxytest.Harness(t, proxy.Config{}, func(c *proxy.Core) []proxy.Feature {
		var err error
		f, err = New(c, []Rule{{Name: "n", Prefix: "0", AddPrefix: "0"}}, testEnv)
		if err != nil {
			t.Fatal(err)
		}
		return []proxy.Feature{f}
	})
	r, _ := proxytest.Request(t, core, invite("sip:0301@example.com", ""), caller)
	f.stage(r)
	f.stage(r)
	if got := string(r.Msg().RequestURIBytes()); got != "sip:00301@example.com" {
		t.Errorf("Request-URI %s after the stage ran twice", got)
	}
	if st := f.Stats(); st.Matched["n"] != 1 || st.Rewritten != 1 {
		t.Errorf("stats %+v", st)
	}
}

func parse(t testing.TB, s string) *sip.Message {
	t.Helper()
	m := new(sip.Message)
	if err := m.Parse([]byte(s), nil); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	return m
}

// invite is an INVITE to ruri with an SDP body (none when body is "").
func invite(ruri, body string) string {
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\r\n"
	}
	return fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKt1\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <%s>\r\nCall-ID: t1\r\nCSeq: 1 INVITE\r\n%sContent-Length: %d\r\n\r\n%s",
		ruri, ruri, ct, len(body), body)
}

// TestStrangersNotDialPlanned: a request from outside the trusted networks
// that did not authenticate is routed as it came: a rule must not turn a
// call a stranger may make to a local user into one to a provider.
func TestStrangersNotDialPlanned(t *testing.T) {
	var f *Feature
	core := proxytest.Harness(t, proxy.Config{Policy: proxy.Policy{AllowSources: []netip.Prefix{}}}, func(c *proxy.Core) []proxy.Feature {
		var err error
		if f, err = New(c, []Rule{{Name: "out", Prefix: "0", AddPrefix: "+49", To: "trunk:provider"}}, testEnv); err != nil {
			t.Fatal(err)
		}
		return []proxy.Feature{f}
	})
	r, _ := proxytest.Request(t, core, invite("sip:0301@example.com", ""), caller)
	if f.stage(r) || len(r.Decision().Groups) > 0 || string(r.Msg().RequestURIBytes()) != "sip:0301@example.com" {
		t.Fatal("a stranger's request was dial-planned")
	}
	r, _ = proxytest.Request(t, core, invite("sip:0301@example.com", ""), caller)
	r.Authenticate()
	if f.stage(r); string(r.Msg().RequestURIBytes()) != "sip:+490301@example.com" {
		t.Fatal("an authenticated request was not dial-planned")
	}
}
