package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClusterFarEnd: the far-end deployment served by two sipedge
// instances sharing their bindings through Redis (all in wan: A on
// 203.0.113.10, B on .11, Redis on .12). alice (behind NAT 1) registers
// through A; bob (behind NAT 2) calls her through B. The NAT in front of
// alice lets in only what comes from the address she sent to (endpoint-
// dependent filtering), so the call reaches her only through A's socket:
// B hands it to A with a flow token; the call is answered and RTP flows
// both ways. Over the whole test only A sends alice keep-alives: B sends
// none towards her NAT.
func TestClusterFarEnd(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not installed (./test.sh installs it)")
		}
		t.Skip("redis-server not installed")
	}
	t.Parallel()
	l := startLab(t, "farend")
	l.bg("redis", "wan", "redis-server", "--port", "6379", "--bind", "203.0.113.12", "--protected-mode", "no", "--save", "", "--appendonly", "no",
		"--dir", l.tmp, "--logfile", "")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.logFile("redis"), "Ready to accept connections") {
		if time.Now().After(deadline) {
			t.Fatalf("redis did not start:\n%s", l.logFile("redis"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Capture, on the public side, everything the two instances send
	// to the NATs.
	wanCap := l.captureOn("wan", "br0", "udp and src net 203.0.113.10/31 and dst host 203.0.113.1")
	node := func(name, ip string) {
		cfg := filepath.Join(l.tmp, name+".yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: [udp:%s:5060]
trusted_networks: [loopback, private, 203.0.113.0/24]
domains: [sip.lab]
admin:
  listen: "off"
media:
  ports: 30000-30999
nat:
  keepalive: crlf
  keepalive_interval: 2s
store:
  dir: %s
  redis:
    addrs: [203.0.113.12:6379]
`, ip, filepath.Join(l.tmp, name+"-data"))), 0o644)
		l.bg(name, "wan", l.bin, "--config", cfg)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(l.logFile(name), "sipedge started") {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not start:\n%s", name, l.logFile(name))
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log:\n%s", name, l.logFile(name))
			}
		})
	}
	node("sipedge-a", "203.0.113.10")
	node("sipedge-b", "203.0.113.11")
	time.Sleep(1500 * time.Millisecond) // a heartbeat: each knows the other

	sip := filepath.Join(l.dir, "sip")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l.sipp(ctx, "reg-alice", "lan", "203.0.113.10:5060", "-sf", filepath.Join(sip, "reg.xml"), "-s", "alice",
		"-key", "dom", "sip.lab", "-i", "10.77.0.10", "-p", "5060", "-m", "1")
	capA := l.capture("lan", "udp port 20000")
	uas := make(chan error, 1)
	go func() {
		uas <- runIn(ctx, l, "lan", "sipp", "-sf", filepath.Join(sip, "uas_rtp.xml"), "-i", "10.77.0.10", "-p", "5060",
			"-key", "me", "alice", "-mi", "10.77.0.10", "-mp", "20000", "-m", "1", "-nostdin", "-timeout", "30s")
	}()
	time.Sleep(500 * time.Millisecond)
	l.sipp(ctx, "uac-bob", "lan2", "203.0.113.11:5060", "-sf", uacRTP, "-s", "alice",
		"-key", "dom", "sip.lab", "-key", "me", "bob", "-i", "10.78.0.10", "-p", "5060",
		"-mi", "10.78.0.10", "-mp", "30000", "-m", "1", "-d", "3000")
	if err := <-uas; err != nil {
		t.Fatalf("alice (sipp UAS) did not get bob's call through B: %v", err)
	}
	capA.stop()
	checkRTP(t, capA.file, "10.77.0.10:20000", 100)
	// Keep-alives for a few more intervals.
	time.Sleep(5 * time.Second)
	wanCap.stop()
	count := func(src string) (all, keepAlives int) {
		// -q: "UDP, length N" for every packet, SIP ones too.
		out, _ := exec.Command("tcpdump", "-nn", "-q", "-r", wanCap.file, "src host "+src).Output()
		return strings.Count(string(out), "\n"), strings.Count(string(out), "UDP, length 4\n")
	}
	fromA, kaA := count("203.0.113.10")
	fromB, kaB := count("203.0.113.11")
	t.Logf("to alice's NAT: %d packets from A (%d keep-alives), %d from B (%d keep-alives)", fromA, kaA, fromB, kaB)
	if fromB != 0 || kaA < 3 {
		t.Fatalf("to alice's NAT: %d packets (%d keep-alives) from A, %d from B; want keep-alives from A only", fromA, kaA, fromB)
	}
	if !strings.Contains(l.logFile("sipedge-b"), "cluster:") {
		t.Fatal("B did not join the cluster")
	}
}
