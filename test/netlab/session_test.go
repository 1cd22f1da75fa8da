package netlab

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestSessionTimerEndsCall: two phones behind NATs agree on a 90 s session
// timer (RFC 4028) with the caller as refresher, and the caller never
// refreshes. sipedge ends the call: both phones get a BYE (each sipp
// scenario waits for it and answers 200), and sipedge's relay sockets for
// the call are closed.
func TestSessionTimerEndsCall(t *testing.T) {
	t.Parallel()
	l := startLab(t, "farend")
	// Media inactivity would end the call first (sipp sends no RTP here).
	// Both phones register so that keep-alives hold their NAT mappings
	// open for the BYE 90 s later; CRLF ones, which sipp ignores (it
	// would take an OPTIONS for a new call).
	l.sipedge("wan", farEndConfig+"  inactivity: 300s\nnat:\n  keepalive: crlf\n  keepalive_interval: 10s\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Second)
	defer cancel()
	td, _ := filepath.Abs("testdata")
	l.registerSipp(ctx, "alice", "lan", "10.77.0.10")
	l.registerSipp(ctx, "bob", "lan2", "10.78.0.10")
	uas := make(chan error, 1)
	go func() {
		uas <- runIn(ctx, l, "lan", "sipp", "-sf", filepath.Join(td, "uas_session_timer.xml"), "-i", "10.77.0.10", "-p", "5060",
			"-key", "me", "alice", "-mi", "10.77.0.10", "-mp", "20000", "-m", "1", "-nostdin", "-timeout", "170s")
	}()
	time.Sleep(500 * time.Millisecond)
	uac := make(chan error, 1)
	go func() {
		uac <- runIn(ctx, l, "lan2", "sipp", "203.0.113.10:5060", "-sf", filepath.Join(td, "uac_session_timer.xml"), "-s", "alice",
			"-key", "dom", "203.0.113.10", "-key", "me", "bob", "-i", "10.78.0.10", "-p", "5060",
			"-mi", "10.78.0.10", "-mp", "30000", "-m", "1", "-nostdin", "-timeout", "170s",
			"-trace_err", "-error_file", filepath.Join(l.tmp, "uac-st-errors.log"))
	}()
	// While the call is up, sipedge holds the stream's relay sockets.
	time.Sleep(5 * time.Second)
	if n := l.relaySockets(); n != 4 {
		t.Errorf("relay sockets during the call: %d, want 4 (RTP and RTCP, both sides)", n)
	}
	start := time.Now()
	if err := <-uac; err != nil {
		t.Fatalf("caller: %v\n%s", err, l.logFile("uac-st-errors"))
	}
	if err := <-uas; err != nil {
		t.Fatalf("callee: %v", err)
	}
	t.Logf("both sides got the BYE %v after the check", time.Since(start).Round(time.Second))
	time.Sleep(500 * time.Millisecond)
	if n := l.relaySockets(); n != 0 {
		t.Errorf("relay sockets after the session ended: %d, want 0", n)
	}
}

// relaySockets counts UDP sockets bound in sipedge's media range in wan.
func (l *lab) relaySockets() int {
	out, err := exec.Command("ip", "netns", "exec", l.ns("wan"), "ss", "-Hlun").Output()
	if err != nil {
		l.t.Fatalf("ss: %v", err)
	}
	return len(regexp.MustCompile(`203\.0\.113\.10:30\d\d\d\s`).FindAll(out, -1))
}
