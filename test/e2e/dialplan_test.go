package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDialPlanSipp: a sipp caller dials national numbers through sipedge
// with a dial plan and the media relay on.
//
//   - 0301234567 matches the rule "national" by prefix: sipedge strips the
//     0, adds +49 and sends the call to the callee (a sipp UAS on
//     127.0.0.3, named by a SIP URI) without P-Asserted-Identity, with its
//     own User-Agent and an X-Dialplan header, and with G.729 removed from
//     the offer the relay rewrites.
//   - 7001 matches "moved": its destination (127.0.0.2) answers 302 with
//     a Contact at the callee, and the rule follows redirects: the callee
//     gets the call at the contact's URI, the caller never sees the 302.
//
// Both calls complete; what the callee received is read from its message
// trace.
func TestDialPlanSipp(t *testing.T) {
	sipp := needSipp(t)
	td := mustAbs(t, "testdata")
	dir := t.TempDir()
	callee, redirector, caller := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(cfg, []byte(`dns:
  servers: ["127.0.0.1:9"]
store:
  dir: `+filepath.Join(dir, "data")+`
media:
  relay: always
  ports: 48700-48799
dial_plan:
  - name: national
    prefix: "0"
    strip: 1
    add_prefix: "+49"
    to: sip:127.0.0.3:`+callee+`
    headers:
      remove: [P-Asserted-Identity]
      set: ["User-Agent: sipedge-dialplan"]
      add: ["X-Dialplan: national"]
    codecs:
      remove: [G729]
  - name: moved
    prefix: "7"
    to: sip:127.0.0.2:`+redirector+`
    redirects: follow
    headers:
      add: ["X-Dialplan: moved"]
`), 0o644)
	s := start(t, "--config", cfg)
	os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)

	uas := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(sipp, append(args, "-nostdin", "-timeout", "20s", "-trace_msg", "-trace_stat",
			"-stf", filepath.Join(dir, name+".csv"))...)
		c.Dir = dir
		out, _ := os.Create(filepath.Join(dir, name+".log"))
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	calleeCmd := uas("callee", "-sf", filepath.Join(td, "call-uas.xml"), "-t", "u1", "-i", "127.0.0.3", "-p", callee, "-m", "2")
	redirCmd := uas("redirector", "-sf", filepath.Join(td, "uas-redirect.xml"), "-t", "u1", "-i", "127.0.0.2", "-p", redirector,
		"-m", "1", "-key", "target", "redirected@127.0.0.3:"+callee)
	time.Sleep(300 * time.Millisecond) // let the UASs bind their ports

	for i, number := range []string{"0301234567", "7001"} {
		uac := exec.Command(sipp, "-sf", filepath.Join(td, "dialplan-uac.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", caller,
			"-inf", filepath.Join(dir, "caller.csv"), "-s", number, "-m", "1", "-d", "100",
			"-nostdin", "-timeout", "15s", "-trace_stat", "-stf", filepath.Join(dir, "uac"+strconv.Itoa(i)+".csv"), s.addr())
		uac.Dir = dir
		if out, err := uac.CombinedOutput(); err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "callee.log"))
			t.Fatalf("call to %s: %v\n%s\ncallee:\n%s", number, err, tail(out), tail(log))
		}
		expectCalls(t, "caller "+number, filepath.Join(dir, "uac"+strconv.Itoa(i)+".csv"), 1)
	}
	for _, c := range []struct {
		name string
		cmd  *exec.Cmd
	}{{"callee", calleeCmd}, {"redirector", redirCmd}} {
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				log, _ := os.ReadFile(filepath.Join(dir, c.name+".log"))
				t.Fatalf("%s: %v\n%s", c.name, err, tail(log))
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not finish its calls", c.name)
		}
	}

	traces, _ := filepath.Glob(filepath.Join(dir, "call-uas_*_messages.log"))
	if len(traces) != 1 {
		t.Fatalf("callee traces: %v", traces)
	}
	b, err := os.ReadFile(traces[0])
	if err != nil {
		t.Fatal(err)
	}
	var invites []string
	for _, m := range received(string(b)) {
		if strings.HasPrefix(m, "INVITE ") {
			invites = append(invites, m)
		}
	}
	if len(invites) != 2 {
		t.Fatalf("callee got %d INVITEs:\n%s", len(invites), b)
	}
	first, second := invites[0], invites[1]
	header := func(m, name string) []string {
		var vs []string
		for _, line := range headerLines(m) {
			n, v, _ := strings.Cut(line, ":")
			if strings.EqualFold(strings.TrimSpace(n), name) {
				vs = append(vs, strings.TrimSpace(v))
			}
		}
		return vs
	}
	if !strings.HasPrefix(first, "INVITE sip:+49301234567@"+s.addr()+" SIP/2.0") {
		t.Errorf("national: Request-URI not rewritten:\n%s", first)
	}
	if to := header(first, "To"); len(to) != 1 || !strings.Contains(to[0], "0301234567@") {
		t.Errorf("national: To changed: %v", to)
	}
	if v := header(first, "P-Asserted-Identity"); len(v) != 0 {
		t.Errorf("national: P-Asserted-Identity not removed: %v", v)
	}
	if v := header(first, "User-Agent"); len(v) != 1 || v[0] != "sipedge-dialplan" {
		t.Errorf("national: User-Agent %v", v)
	}
	if v := header(first, "X-Dialplan"); len(v) != 1 || v[0] != "national" {
		t.Errorf("national: X-Dialplan %v", v)
	}
	if strings.Contains(first, "G729") || !strings.Contains(first, "RTP/AVP 0 8") || !strings.Contains(first, "c=IN IP4 127.0.0.1") {
		t.Errorf("national: offer not filtered and relayed:\n%s", first)
	}
	if !strings.HasPrefix(second, "INVITE sip:redirected@127.0.0.3:"+callee+" SIP/2.0") {
		t.Errorf("moved: the redirect's contact not followed:\n%s", second)
	}
	if v := header(second, "X-Dialplan"); len(v) != 1 || v[0] != "moved" {
		t.Errorf("moved: X-Dialplan %v", v)
	}
	if v := header(second, "P-Asserted-Identity"); len(v) != 1 {
		t.Errorf("moved: P-Asserted-Identity %v (the rule does not remove it)", v)
	}
}

// TestDialPlanReload: SIGHUP takes new dial-plan rules for the next call;
// a file with a rule that edits a header the core owns is refused with
// the rule's key, and the rules in force keep routing.
func TestDialPlanReload(t *testing.T) {
	a, b, caller := newSIPPeer(t), newSIPPeer(t), newSIPPeer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "sipedge.yaml")
	rule := func(prefix string, p *sipPeer, extra string) string {
		return "dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: " + filepath.Join(dir, "data") +
			"\ndial_plan:\n  - name: national\n    prefix: \"0\"\n    strip: 1\n    add_prefix: \"" + prefix +
			"\"\n    to: sip:" + p.addr() + "\n" + extra
	}
	os.WriteFile(file, []byte(rule("+49", a, "")), 0o644)
	s := start(t, "--config", file)
	call := func(callee *sipPeer, callID, want string) {
		t.Helper()
		caller.send(s.addr(), "INVITE sip:0301@pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP "+caller.addr()+";branch=z9hG4bK"+callID+";rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=c\r\nTo: <sip:0301@pbx.example.com>\r\nCall-ID: "+callID+"\r\n"+
			"CSeq: 1 INVITE\r\nContact: <sip:caller@"+caller.addr()+">\r\nContent-Length: 0\r\n\r\n")
		req, from := callee.expect("INVITE ", callID)
		if !strings.HasPrefix(req, "INVITE "+want+" SIP/2.0") {
			t.Fatalf("callee got:\n%s\nwant Request-URI %s", req, want)
		}
		callee.send(from, reply(req, 486, callee.addr()))
		caller.expect("SIP/2.0 486", callID)
	}
	call(a, "dpr1", "sip:+49301@pbx.example.com")
	s.reload(t, file, rule("+43", b, ""), "configuration reloaded")
	call(b, "dpr2", "sip:+43301@pbx.example.com")
	s.reload(t, file, rule("+41", a, "    headers:\n      set: [\"Via: SIP/2.0/UDP 192.0.2.1\"]\n"), "configuration not reloaded")
	if line := lastLine(s.logs(), "configuration not reloaded"); !strings.Contains(line, "dial_plan[0].headers.set[0]: Via cannot be edited") {
		t.Fatalf("refusal does not name the rule's key: %s", line)
	}
	call(b, "dpr3", "sip:+43301@pbx.example.com")
}
