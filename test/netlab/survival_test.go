package netlab

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// survivalConfig is gatewayConfig with survival: probes twice a second,
// three failures to switch, two answers to switch back, phones given 5 s.
const survivalConfig = gatewayConfig + `survival:
  enabled: true
  upstream: sip:203.0.113.10:5060
  probe: {interval: 500ms, timeout: 400ms, down_after: 3, up_after: 2}
  register_expires: 5s
  fallback: sip:203.0.113.12:5060
`

// provider starts the lab's Kamailio provider with its log under logName
// and returns its process (l.kamailio starts the first one the same way).
func (l *lab) provider(logName string) *exec.Cmd {
	l.t.Helper()
	if _, err := os.Stat("/usr/sbin/kamailio"); err != nil {
		l.t.Skip("kamailio not installed (./test.sh installs it)")
	}
	run := filepath.Join(l.tmp, logName)
	os.MkdirAll(run, 0o755)
	c := l.bg(logName, "wan", "/usr/sbin/kamailio", "-f", filepath.Join(l.dir, "sip", "kamailio-provider.cfg"),
		"-DD", "-E", "-Y", run, "-m", "64", "-M", "16")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.logFile(logName), "INFO") {
		if time.Now().After(deadline) {
			l.t.Fatalf("kamailio did not start:\n%s", l.logFile(logName))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return c
}

// survivalState reads GET /api/v1/survival from sipedge in the gw
// namespace.
func (l *lab) survivalState() (mode, reason string) {
	l.t.Helper()
	out, err := l.cmd("gw", "curl", "-sf", "http://127.0.0.1:8080/api/v1/survival").Output()
	if err != nil {
		l.t.Fatalf("GET /api/v1/survival: %v", err)
	}
	var st struct{ Mode, Reason string }
	if err := json.Unmarshal(out, &st); err != nil {
		l.t.Fatalf("GET /api/v1/survival: %v: %s", err, out)
	}
	return st.Mode, st.Reason
}

// waitMode waits until sipedge reports mode, and returns how long it took.
func (l *lab) waitMode(mode string, within time.Duration) time.Duration {
	l.t.Helper()
	start := time.Now()
	for {
		got, why := l.survivalState()
		if got == mode {
			l.t.Logf("%s after %v: %s", mode, time.Since(start).Round(10*time.Millisecond), why)
			return time.Since(start)
		}
		if time.Since(start) > within {
			l.t.Fatalf("still %s after %v (%s), want %s", got, within, why, mode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSurvival: sipedge on the NAT gateway, baresip phones alice and bob
// in the LAN registered through it with the provider (Kamailio in the
// WAN). bob calls alice through the provider; the provider is stopped in
// the middle of the call. sipedge switches to survival within its probe
// thresholds; the call goes on with RTP both ways and bob's BYE reaches
// alice past the dead provider. In survival a phone sipedge has never
// seen registers from the LAN and gets a short expiry, a new LAN-to-LAN
// call connects directly, and a number goes to the fallback route. The
// provider comes back: sipedge returns to normal by itself and the next
// REGISTERs reach the provider again.
func TestSurvival(t *testing.T) {
	t.Parallel()
	l := startLab(t, "gateway")
	kam := l.provider("kamailio")
	l.sipedge("gw", survivalConfig)
	alice := l.baresip("alice", "--ns", l.ns("lan"), "--ip", "10.77.0.10", "--user", "alice",
		"--outbound", "sip:10.77.0.1:5060", "--source", "sine:660")
	bob := l.baresip("bob", "--ns", l.ns("lan"), "--ip", "10.77.0.11", "--user", "bob",
		"--outbound", "sip:10.77.0.1:5060", "--source", "sine:440")
	td, _ := filepath.Abs("testdata")
	sip := filepath.Join(l.dir, "sip")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if mode, _ := l.survivalState(); mode != "normal" {
		t.Fatalf("mode %s at start, want normal", mode)
	}

	// A call through the provider, cut in the middle.
	bob.run("ctl", bob.dir, "dial", "sip:alice@203.0.113.10", "--wait", "CALL_ESTABLISHED", "--timeout", "15")
	if !strings.Contains(l.logFile("kamailio"), "INVITE for sip:alice@203.0.113.10") {
		t.Fatalf("the first call did not go through the provider:\n%s", l.logFile("kamailio"))
	}
	aliceClosed := make(chan string, 1)
	go func() {
		out, _ := exec.Command("bash", filepath.Join(l.dir, "baresip", "labphone.sh"), "ctl", alice.dir,
			"--wait", "CALL_CLOSED", "--timeout", "40").CombinedOutput()
		aliceClosed <- string(out)
	}()
	time.Sleep(500 * time.Millisecond)
	kam.Process.Signal(syscall.SIGTERM)
	waitGone(t, l)
	// 3 failed probes, 500 ms apart, each given 400 ms: about 1.5 s.
	if d := l.waitMode("survival", 5*time.Second); d > 4*time.Second {
		t.Errorf("survival after %v, want within the probe thresholds", d)
	}
	time.Sleep(time.Second)
	select {
	case out := <-aliceClosed:
		t.Fatalf("the call ended at the switch: %s", out)
	default:
	}
	bob.run("ctl", bob.dir, "hangup", "--wait", "CALL_CLOSED", "--timeout", "10")
	select {
	case out := <-aliceClosed:
		if !strings.Contains(out, "CALL_CLOSED") {
			t.Fatalf("alice: %s", out)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("bob's BYE did not reach alice")
	}
	btx, brx := bob.stats()
	t.Logf("call across the switch: bob tx=%d rx=%d", btx, brx)
	if btx < 100 || brx < btx*8/10 {
		t.Errorf("RTP did not flow both ways across the switch: bob tx=%d rx=%d", btx, brx)
	}

	// In survival: a phone sipedge has never seen registers from the LAN
	// and gets a short expiry.
	l.sipp(ctx, "reg-carol", "lan", "10.77.0.1:5060", "-sf", filepath.Join(td, "reg_short.xml"), "-s", "carol",
		"-key", "dom", "203.0.113.10", "-i", "10.77.0.12", "-p", "5060", "-m", "1")
	// A new LAN-to-LAN call, connected by sipedge alone: alice's binding
	// is the one sipedge mirrored from the provider.
	bob.run("ctl", bob.dir, "dial", "sip:alice@203.0.113.10", "--wait", "CALL_ESTABLISHED", "--timeout", "10")
	time.Sleep(2 * time.Second)
	bob.run("ctl", bob.dir, "hangup", "--wait", "CALL_CLOSED", "--timeout", "10")
	if btx, brx := bob.stats(); btx < 50 || brx < btx*8/10 {
		t.Errorf("RTP of the call in survival: bob tx=%d rx=%d", btx, brx)
	}
	// A number without a local phone: the fallback route (a sipp UAS on
	// .12; the provider would have sent it to .11).
	call2000(t, ctx, l, bob, "203.0.113.12")
	for _, m := range []string{"sipedge_survival_registers_total 1", "sipedge_survival_routes_skipped_total 1",
		"sipedge_survival_local_routes_total 1", "sipedge_survival_fallback_routes_total 1", "sipedge_survival_active 1"} {
		if !strings.Contains(l.metrics(), m+"\n") {
			t.Errorf("metrics: want %q", m)
		}
	}

	// The provider comes back: normal by itself, and the next REGISTERs
	// go to it.
	l.provider("kamailio2")
	l.waitMode("normal", 4*time.Second)
	l.sipp(ctx, "reg-carol2", "lan", "10.77.0.1:5060", "-sf", filepath.Join(sip, "reg.xml"), "-s", "carol",
		"-key", "dom", "203.0.113.10", "-i", "10.77.0.12", "-p", "5060", "-m", "1")
	deadline := time.Now().Add(8 * time.Second)
	for _, who := range []string{"carol"} {
		re := regexp.MustCompile(`REGISTER sip:` + who + `@203\.0\.113\.10 contact=`)
		for !re.MatchString(l.logFile("kamailio2")) {
			if time.Now().After(deadline) {
				t.Fatalf("no REGISTER of %s at the provider after it came back:\n%s", who, l.logFile("kamailio2"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// And calls go through it again: 2000 reaches the provider's .11.
	call2000(t, ctx, l, bob, "203.0.113.11")
	if log := l.logFile("sipedge"); strings.Count(log, "survival mode:") != 1 || strings.Count(log, "normal mode:") != 1 {
		t.Errorf("want one log line per switch:\n%s", log)
	}
}

// waitGone waits until the stopped provider has released its port.
func waitGone(t *testing.T, l *lab) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := l.cmd("wan", "ss", "-Hlun", "src", "203.0.113.10:5060").Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio still listening after SIGTERM: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call2000 has bob call 2000@203.0.113.10 for a second, answered by a
// sipp UAS at ip in the WAN.
func call2000(t *testing.T, ctx context.Context, l *lab, bob *phone, ip string) {
	t.Helper()
	uas := make(chan error, 1)
	go func() {
		uas <- runIn(ctx, l, "wan", "sipp", "-sf", filepath.Join(l.dir, "sip", "uas_rtp.xml"), "-i", ip, "-p", "5060",
			"-key", "me", "u2000", "-mi", ip, "-mp", "20000", "-m", "1", "-nostdin", "-timeout", "20s")
	}()
	time.Sleep(500 * time.Millisecond)
	bob.run("ctl", bob.dir, "dial", "sip:2000@203.0.113.10", "--wait", "CALL_ESTABLISHED", "--timeout", "10")
	time.Sleep(time.Second)
	bob.run("ctl", bob.dir, "hangup", "--wait", "CALL_CLOSED", "--timeout", "10")
	if err := <-uas; err != nil {
		t.Fatalf("UAS 2000 at %s: %v", ip, err)
	}
}

// metrics reads GET /metrics from sipedge in the gw namespace.
func (l *lab) metrics() string {
	l.t.Helper()
	out, err := l.cmd("gw", "curl", "-sf", "http://127.0.0.1:8080/metrics").Output()
	if err != nil {
		l.t.Fatalf("GET /metrics: %v", err)
	}
	return string(out)
}
