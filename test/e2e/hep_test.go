package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sngrep, the operators' ladder tool, as the HEP collector (-L) of the
// running binary: it receives the OPTIONS and its 200 OK and writes them to
// a pcap, with source and destination the right way round.
func TestHEPSngrep(t *testing.T) {
	if _, err := exec.LookPath("sngrep"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sngrep not installed (test.sh installs it)")
		}
		t.Skip("sngrep not installed")
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (reads the pcap)")
	}
	dir := t.TempDir()
	hepPort := freePort(t)
	pcap := filepath.Join(dir, "hep.pcap")
	sng := exec.Command("sngrep", "-N", "-q", "-L", "udp:127.0.0.1:"+strconv.Itoa(hepPort), "-O", pcap)
	sng.Stdout, sng.Stderr = os.Stderr, os.Stderr
	if err := sng.Start(); err != nil {
		t.Fatal(err)
	}
	defer sng.Process.Kill()
	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\nhep:\n  collector: udp:127.0.0.1:%d\n  id: 77\n", hepPort)), 0o644)
	s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	time.Sleep(300 * time.Millisecond) // sngrep binds its port
	p := newSIPPeer(t)
	p.send(s.addr(), fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKhep1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:probe@example.com>;tag=h\r\nTo: <sip:%s>\r\nCall-ID: hep-e2e-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		s.addr(), p.addr(), s.addr()))
	p.expect("SIP/2.0 200", "hep-e2e-1")
	var out string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		b, _ := exec.Command("tcpdump", "-r", pcap, "-n", "-A").CombinedOutput()
		out = string(b)
		if strings.Count(out, "hep-e2e-1") >= 2 {
			break
		}
	}
	sng.Process.Signal(syscall.SIGTERM)
	_, port, _ := strings.Cut(p.addr(), ":")
	in := fmt.Sprintf("127.0.0.1.%s > 127.0.0.1.%d", port, s.port)
	back := fmt.Sprintf("127.0.0.1.%d > 127.0.0.1.%s", s.port, port)
	if !strings.Contains(out, in) || !strings.Contains(out, back) || !strings.Contains(out, "OPTIONS sip:") || !strings.Contains(out, "SIP/2.0 200 OK") {
		t.Fatalf("sngrep's capture (want %q and %q):\n%s", in, back, out)
	}
}
