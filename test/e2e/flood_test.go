package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// legitConn is the legitimate client's socket and the sipedge it
// registers with.
type legitConn struct {
	c      *net.UDPConn
	dst    netip.AddrPort
	server string // host:port of sipedge, its domain
}

// legitRegister sends the i-th REGISTER of the legitimate client (one
// Call-ID, CSeq i+1, as a phone refreshing its binding does, RFC 3261
// §10.2.4) and waits for its final response: ok when it is 200.
func legitRegister(t *testing.T, conn *legitConn, i int) (ok bool, rtt time.Duration) {
	t.Helper()
	cseq := i + 1
	msg := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKlegit%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:legit@%s>;tag=l1\r\nTo: <sip:legit@%s>\r\nCall-ID: legit-reg@%s\r\nCSeq: %d REGISTER\r\n"+
		"Contact: <sip:legit@%s>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		conn.server, conn.c.LocalAddr(), i, conn.server, conn.server, conn.c.LocalAddr(), cseq, conn.c.LocalAddr())
	start := time.Now()
	if _, err := conn.c.WriteToUDPAddrPort([]byte(msg), conn.dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	deadline := start.Add(2 * time.Second)
	want := "CSeq: " + strconv.Itoa(cseq) + " REGISTER"
	for {
		conn.c.SetReadDeadline(deadline)
		n, err := conn.c.Read(buf)
		if err != nil {
			return false, time.Since(start)
		}
		r, err := parseResponse(buf[:n])
		if err != nil || r.code < 200 || !strings.Contains(r.raw, want) {
			continue // a provisional, or a late answer to an earlier one
		}
		return r.code == 200, time.Since(start)
	}
}

// procStatus reads VmRSS (KiB) and Threads of a process.
func procStatus(t *testing.T, pid int) (rssKiB, threads int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the process's status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rssKiB, _ = strconv.Atoi(f[1])
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return rssKiB, threads
}

func udpOn(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Skipf("cannot bind %s on loopback: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestFlood: a flooder on 127.0.0.2 sends 2000 INVITEs a second with fresh
// Call-IDs for 10 s while a phone on 127.0.0.3 registers 20 times a second.
// The flooder is banned at its 101st request (security.rate: 100 in 2 s)
// and from then on hears nothing; the phone, counted too (limit_trusted)
// but under the rate, keeps registering; the process stays small. A
// SIGHUP with lift_bans lifts the ban.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s flood")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "sipedge.yaml")
	cfg := func(extra string) string {
		return "dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: " + filepath.Join(dir, "data") + "\n" +
			"trusted_networks: [\"127.0.0.3/32\"]\n" +
			"security:\n  rate: {requests: 100, window: 2s, ban: 5m}\n  limit_trusted: true\n" + extra
	}
	if err := os.WriteFile(file, []byte(cfg("")), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file)
	pid := s.cmd.Process.Pid
	dst := netip.MustParseAddrPort(s.addr())

	legit := &legitConn{c: udpOn(t, "127.0.0.3"), dst: dst, server: s.addr()}
	flooder := udpOn(t, "127.0.0.2")

	// Warm up: the phone registers and the process settles before the
	// baseline is taken.
	for i := range 5 {
		if ok, _ := legitRegister(t, legit, i); !ok {
			t.Fatalf("REGISTER %d before the flood failed", i)
		}
	}
	rss0, threads0 := procStatus(t, pid)

	// The flooder's ears: when each answer came.
	var (
		mu      sync.Mutex
		answers []time.Time
	)
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, err := flooder.Read(buf); err != nil {
				return // closed at cleanup
			}
			mu.Lock()
			answers = append(answers, time.Now())
			mu.Unlock()
		}
	}()

	const floodFor = 10 * time.Second
	var sent atomic.Int64
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		// 20 INVITEs every 10 ms: 2000 a second, paced so that a slow
		// tick is made up for, not skipped.
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		begin := time.Now()
		n := 0
		for time.Since(begin) < floodFor {
			<-tk.C
			due := int(time.Since(begin) / (500 * time.Microsecond))
			for ; n < due; n++ {
				msg := fmt.Sprintf("INVITE sip:victim@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKflood%d;rport\r\n"+
					"Max-Forwards: 70\r\nFrom: \"friendly-scanner\" <sip:100@%s>;tag=f%d\r\nTo: <sip:victim@%s>\r\n"+
					"Call-ID: flood-%d@scanner\r\nCSeq: 1 INVITE\r\nContact: <sip:100@%s>\r\nUser-Agent: friendly-scanner\r\n"+
					"Content-Length: 0\r\n\r\n", s.addr(), flooder.LocalAddr(), n, s.addr(), n, s.addr(), n, flooder.LocalAddr())
				if _, err := flooder.WriteToUDPAddrPort([]byte(msg), dst); err == nil {
					sent.Add(1)
				}
			}
		}
	}()

	// The phone registers 20 times a second while the flood lasts.
	var rtts []time.Duration
	failed := 0
	maxRSS, maxThreads := rss0, threads0
	tk := time.NewTicker(50 * time.Millisecond)
	for i := 5; ; i++ {
		select {
		case <-floodDone:
		case <-tk.C:
			ok, rtt := legitRegister(t, legit, i)
			if ok {
				rtts = append(rtts, rtt)
			} else {
				failed++
			}
			if i%20 == 0 {
				rss, th := procStatus(t, pid)
				maxRSS, maxThreads = max(maxRSS, rss), max(maxThreads, th)
			}
			continue
		}
		break
	}
	tk.Stop()

	const banLine = "ban 127.0.0.2 reason=rate requests=100 window=2s for=5m0s"
	if n := strings.Count(s.logs(), banLine); n != 1 {
		t.Fatalf("%d lines %q in sipedge's log, want 1", n, banLine)
	}
	total := len(rtts) + failed
	slices.Sort(rtts)
	p99 := time.Duration(0)
	if len(rtts) > 0 {
		p99 = rtts[min(len(rtts)-1, len(rtts)*99/100)]
	}
	t.Logf("flood: %d INVITEs sent; phone: %d REGISTERs, %d failed, p50 %v p99 %v; RSS %d→%d KiB (max), threads %d→%d (max)",
		sent.Load(), total, failed, rtts[len(rtts)/2], p99, rss0, maxRSS, threads0, maxThreads)
	if total < 100 {
		t.Errorf("only %d REGISTERs in 10 s", total)
	}
	if failed*100 > total {
		t.Errorf("%d of %d REGISTERs failed, want at least 99 %% answered 200", failed, total)
	}
	if p99 >= 200*time.Millisecond {
		t.Errorf("REGISTER p99 %v, want < 200ms", p99)
	}
	if sent.Load() < 15000 {
		t.Errorf("the flooder sent only %d INVITEs", sent.Load())
	}
	if grown := maxRSS - rss0; grown > 50*1024 {
		t.Errorf("RSS grew by %d KiB during the flood, want < 50 MiB", grown)
	}
	if maxThreads > threads0+16 {
		t.Errorf("threads went from %d to %d during the flood", threads0, maxThreads)
	}

	// The flooder heard the 403s of its first 100 requests (it is not in
	// trusted_networks; the 101st banned it) and nothing after: any
	// 101st answer would be one sent to a banned source. A second for
	// the last answers to arrive, then count.
	time.Sleep(time.Second)
	mu.Lock()
	got := slices.Clone(answers)
	mu.Unlock()
	if len(got) == 0 || len(got) > 100 {
		t.Errorf("the flooder got %d answers, want its first 100 requests answered (403) and nothing after the ban", len(got))
	}

	// A reload with lift_bans lifts the ban: the flooder is answered
	// again (403: it is still not trusted).
	s.reload(t, file, cfg("  lift_bans: [127.0.0.2]\n"), "unban 127.0.0.2 reason=lifted")
	before := len(got)
	msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKafter;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:probe@example.com>;tag=p1\r\nTo: <sip:%s>\r\nCall-ID: after-lift\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		s.addr(), flooder.LocalAddr(), s.addr())
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := flooder.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(answers)
		mu.Unlock()
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the flooder is still unanswered after lift_bans and SIGHUP")
		}
	}
}
