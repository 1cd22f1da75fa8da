package netlab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procStats reads what sipedge holds: threads, resident memory (KiB) and
// open file descriptors (sockets included).
func (l *lab) procStats() (threads, rssKiB, fds int) {
	l.t.Helper()
	pid := l.se.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		l.t.Fatal(err)
	}
	num := func(key string) int {
		m := regexp.MustCompile(key + `:\s+(\d+)`).FindSubmatch(b)
		if m == nil {
			l.t.Fatalf("no %s in /proc/%d/status", key, pid)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		l.t.Fatal(err)
	}
	return num("Threads"), num("VmRSS"), len(ents)
}

// TestNoLeakAfterCalls: calls with SDP between two phones behind NATs, each
// relayed (ports taken and given back), at 500 calls/s, in two rounds of
// 10 000. After each round (and the 32 s transactions wait after a 2xx)
// sipedge holds no relay socket and its descriptors and threads are back
// to their baseline; its resident memory after the second round is no
// larger than after the first (Go keeps freed heap for reuse, so RSS only
// shows a leak as growth from round to round). Goroutines and heap are
// checked from inside the process by proxy/TestNoLeakAfterManyCalls, which
// also sends RTP through every call.
func TestNoLeakAfterCalls(t *testing.T) {
	t.Parallel()
	l := startLab(t, "farend")
	// sipp answers calls, not keep-alive OPTIONS; no media inactivity.
	// A port range for 1 000 calls at once (4 000 ports), not the 250 of
	// farEndConfig: on a loaded machine calls at 500/s can pile up, and
	// "503 Media Relay Busy" would say nothing about leaks.
	l.sipedge("wan", strings.Replace(farEndConfig, "ports: 30000-30999", "ports: 30000-33999", 1)+"  inactivity: 300s\nnat:\n  keepalive: none\n")
	ctx, cancel := context.WithTimeout(context.Background(), 220*time.Second)
	defer cancel()
	td, _ := filepath.Abs("testdata")
	l.registerSipp(ctx, "alice", "lan", "10.77.0.10")
	const warm, calls = 200, 10000
	uas := make(chan error, 1)
	go func() {
		uas <- runIn(ctx, l, "lan", "sipp", "-sf", filepath.Join(td, "uas_sdp.xml"), "-i", "10.77.0.10", "-p", "5060",
			"-key", "me", "alice", "-mi", "10.77.0.10", "-mp", "20000", "-m", strconv.Itoa(warm+2*calls),
			"-nostdin", "-timeout", "200s")
	}()
	time.Sleep(500 * time.Millisecond)
	run := func(name string, n, rate int) {
		l.sipp(ctx, name, "lan2", "203.0.113.10:5060", "-sf", filepath.Join(td, "uac_sdp.xml"), "-s", "alice",
			"-key", "dom", "203.0.113.10", "-key", "me", "bob", "-i", "10.78.0.10", "-p", "5060",
			"-mi", "10.78.0.10", "-mp", "30000", "-m", strconv.Itoa(n), "-r", strconv.Itoa(rate), "-l", "1000")
	}
	run("uac-warm", warm, 200)
	time.Sleep(time.Second)
	t0, rss0, fd0 := l.procStats()
	var rss [2]int
	for round := 0; round < 2; round++ {
		start := time.Now()
		run(fmt.Sprintf("uac-round%d", round), calls, 500)
		elapsed := time.Since(start)
		time.Sleep(35 * time.Second) // Timer L: 32 s after a 2xx
		th, r, fd := l.procStats()
		rss[round] = r
		t.Logf("round %d: %d calls in %v; threads %d → %d, RSS %d → %d KiB, descriptors %d → %d, relay sockets %d",
			round+1, calls, elapsed.Round(time.Second), t0, th, rss0, r, fd0, fd, l.relaySockets())
		if n := l.relaySockets(); n != 0 {
			t.Errorf("round %d: %d relay sockets left after the calls", round+1, n)
		}
		if fd > fd0 {
			t.Errorf("round %d: descriptors grew from %d to %d", round+1, fd0, fd)
		}
		if th > t0+2 {
			t.Errorf("round %d: threads grew from %d to %d", round+1, t0, th)
		}
	}
	if err := <-uas; err != nil {
		// Every call succeeded at the caller (run fails the test
		// otherwise). The callee may still count one as failed on a
		// loaded machine: an ACK dropped from a full socket buffer
		// between the namespaces, then the BYE before the ACK's
		// retransmission ("unexpected BYE"; 12 of 20 200 in one CI run
		// beside the other tests). A few in a thousand is not what this
		// test is about; a leak would fail the checks above.
		m := regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`).FindStringSubmatch(err.Error())
		if m == nil {
			t.Fatalf("alice (sipp UAS): %v", err)
		}
		if n, _ := strconv.Atoi(m[1]); n > 50 {
			t.Fatalf("alice (sipp UAS): %d calls failed at the callee: %v", n, err)
		} else {
			t.Logf("alice (sipp UAS) counted %d of %d calls as failed; the caller completed all of them", n, warm+2*calls)
		}
	}
	if rss[1] > rss[0]+16*1024 {
		t.Errorf("RSS grew from %d KiB after 10 000 calls to %d KiB after 20 000", rss[0], rss[1])
	}
}
