package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool returns the path of a program the test needs; missing, it skips
// on a developer machine and fails in CI (test.sh installs it).
func needTool(t *testing.T, name, pkg string, paths ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	return ""
}

// daemon runs a helper process for the length of the test.
func daemon(t *testing.T, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	log, _ := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", name, tail(b))
		}
	})
	return cmd
}

func waitTCP(t *testing.T, addr string) {
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never accepted connections", addr)
}

// TestCallToOtherDomainViaKamailio: a call for sip:callee@remote.test
// leaves sipedge (which serves only local.test) by RFC 3263: dnsmasq
// answers NAPTR → SRV _sip._tcp.remote.test with two targets, the first
// down (connection refused), the second Kamailio. sipedge fails over to
// Kamailio, which routes to the callee registered there. 10 calls complete
// INVITE…BYE through both proxies.
func TestCallToOtherDomainViaKamailio(t *testing.T) {
	sipp := needSipp(t)
	kam := needTool(t, "kamailio", "kamailio", "/usr/sbin/kamailio")
	dnsmasq := needTool(t, "dnsmasq", "dnsmasq-base", "/usr/sbin/dnsmasq")
	td := mustAbs(t, "testdata")
	dir := t.TempDir()

	kamPort := freePort(t)
	downPort := freePort(t) // nothing listens here
	dnsPort := freePort(t)
	daemon(t, dnsmasq, "--no-daemon", "--port="+strconv.Itoa(dnsPort), "--listen-address=127.0.0.1",
		"--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--log-facility=-",
		"--naptr-record=remote.test,10,10,s,SIP+D2T,,_sip._tcp.remote.test",
		fmt.Sprintf("--srv-host=_sip._tcp.remote.test,down.remote.test,%d,10,10", downPort),
		fmt.Sprintf("--srv-host=_sip._tcp.remote.test,kam.remote.test,%d,20,10", kamPort),
		"--host-record=down.remote.test,127.0.0.1", "--host-record=kam.remote.test,127.0.0.1")
	daemon(t, kam, "-DD", "-E", "-f", filepath.Join(td, "kamailio-far.cfg"), "-A", "KAM_PORT="+strconv.Itoa(kamPort),
		"-m", "64", "-M", "8", "-Y", dir)
	waitTCP(t, "127.0.0.1:"+strconv.Itoa(kamPort))
	time.Sleep(200 * time.Millisecond)

	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("domains: [local.test]\ndns:\n  servers: [\"127.0.0.1:%d\"]\n", dnsPort)), 0o644)
	s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"))

	// The callee: a sipp UAS registered at Kamailio for remote.test.
	os.WriteFile(filepath.Join(dir, "callee.csv"), []byte("SEQUENTIAL\ncallee;x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
	uasPort := strconv.Itoa(freePort(t))
	uas := exec.Command(sipp, "-sf", filepath.Join(td, "call-uas.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", uasPort, "-m", "10", "-nostdin", "-timeout", "40s")
	uas.Dir = dir
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	defer uas.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	reg := strings.ReplaceAll(readText(t, filepath.Join(td, "register.xml")), "@[remote_ip]>", "@remote.test>")
	os.WriteFile(filepath.Join(dir, "register-remote.xml"), []byte(reg), 0o644)
	r := exec.Command(sipp, "-sf", filepath.Join(dir, "register-remote.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-inf", filepath.Join(dir, "callee.csv"), "-key", "cport", uasPort, "-m", "1", "-nostdin", "-timeout", "10s",
		"127.0.0.1:"+strconv.Itoa(kamPort))
	r.Dir = dir
	if out, err := r.CombinedOutput(); err != nil {
		t.Fatalf("register at Kamailio: %v\n%s", err, tail(out))
	}

	// The caller asks sipedge for sip:callee@remote.test.
	uac := strings.ReplaceAll(readText(t, filepath.Join(td, "call-uac.xml")), "sip:[service]@[remote_ip]:[remote_port]", "sip:[service]@remote.test")
	os.WriteFile(filepath.Join(dir, "call-remote.xml"), []byte(uac), 0o644)
	c := exec.Command(sipp, "-sf", filepath.Join(dir, "call-remote.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-inf", filepath.Join(dir, "caller.csv"), "-s", "callee", "-m", "10", "-r", "5", "-d", "100",
		"-nostdin", "-timeout", "30s", "-trace_stat", "-stf", filepath.Join(dir, "uac.csv"), s.addr())
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("calls: %v\n%s", err, tail(out))
	}
	expectCalls(t, "calls", filepath.Join(dir, "uac.csv"), 10)
	// The first SRV target (lower priority value) was tried and failed over.
	if !strings.Contains(s.logs(), `msg="forwarding failed" dst=127.0.0.1:`+strconv.Itoa(downPort)+" proto=TCP") {
		t.Fatalf("the down SRV target was never tried:\n%s", s.logs())
	}
}

func readText(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
