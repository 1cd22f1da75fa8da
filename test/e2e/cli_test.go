package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(binary, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestFlags(t *testing.T) {
	out, _, code := runBinary(t, "--help")
	if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Examples:") {
		t.Fatalf("--help: exit %d\n%s", code, out)
	}
	// Every flag is listed (the flag package prints them as "  -name").
	for _, f := range []string{"listen", "tls-cert", "tls-key", "log-format", "log-level", "idle-timeout",
		"max-message-size", "symmetric-responses", "domain", "version", "config", "data-dir"} {
		if !regexp.MustCompile(`(?m)^\s+--?` + f + `\b`).MatchString(out) {
			t.Errorf("--help does not list --%s", f)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "bogus"},
		{[]string{"--listen", "nonsense"}, "--listen"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--config", "/nonexistent/sipedge.yaml"}, "/nonexistent/sipedge.yaml"},
	} {
		_, errOut, code := runBinary(t, tc.args...)
		lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v: exit %d, stderr %q: want exit 2 and one line naming %q", tc.args, code, errOut, tc.want)
		}
	}
	out, _, code = runBinary(t, "--version")
	if code != 0 || !regexp.MustCompile(`^sipedge \S+\n$`).MatchString(out) {
		t.Fatalf("--version: exit %d, %q: want one line \"sipedge <version>\"", code, out)
	}
}

// TestConfigError: a configuration mistake names file, line, key and fix.
func TestConfigError(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sipedge.yaml")
	os.WriteFile(f, []byte("listen: [udp:127.0.0.1:5999]\nregistrar:\n  max_expire: 1h\n"), 0o644)
	_, errOut, code := runBinary(t, "--config", f)
	if code != 2 || !strings.Contains(errOut, f+":3: registrar.max_expire: unknown key") {
		t.Fatalf("exit %d: %q", code, errOut)
	}
}

func TestSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		s := start(t)
		s.stop(sig)
		// The last lines reach the test through a pipe read on another
		// goroutine, possibly after the process is gone.
		if !s.hasLog("msg=stopped") {
			t.Fatalf("%v: no clean stop in the log:\n%s", sig, s.logs())
		}
	}
}

func optionsRoundTrip(t *testing.T, network, addr string, s *server) int {
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tr := "UDP"
	if strings.HasPrefix(network, "tcp") {
		tr = "TCP"
	}
	msg := strings.ReplaceAll(string(options(s, tr+" "+c.LocalAddr().String(), "v6"+network)), "sip:"+s.addr(), "sip:"+addr)
	c.Write([]byte(msg))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if tr == "TCP" {
		r, err := readStream(bufio.NewReader(c))
		if err != nil {
			t.Fatal(err)
		}
		return r.code
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseResponse(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return r.code
}

func TestIPv6(t *testing.T) {
	l, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	addr := "[::1]:" + strconv.Itoa(port)
	s := start(t, "--listen", "udp:"+addr, "--listen", "tcp:"+addr)
	s.port = port
	for _, nw := range []string{"udp6", "tcp6"} {
		if code := optionsRoundTrip(t, nw, addr, s); code != 200 {
			t.Fatalf("%s OPTIONS to sip:%s: %d", nw, addr, code)
		}
	}
}

// TestStrictResponseRouting: with --symmetric-responses=false a UDP
// response goes to the source IP and the Via sent-by port (RFC 3261
// §18.2.2), unless the Via has rport (RFC 3581 §4), in which case it goes
// back to the source port. Each time the other socket must get nothing.
func TestStrictResponseRouting(t *testing.T) {
	t.Parallel()
	s := start(t, "--symmetric-responses=false")
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dst, _ := net.ResolveUDPAddr("udp4", s.addr())
	viaB := "UDP " + b.LocalAddr().String()

	// got reads one response for callID from c, or returns nil after wait.
	got := func(c *net.UDPConn, callID string, wait time.Duration) *response {
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(wait))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return nil
			}
			if r, _ := parseResponse(buf[:n]); r != nil && r.get("call-id") == callID {
				return r
			}
		}
	}

	// Sent from A, Via names B without rport: the 200 goes to B.
	msg := strings.Replace(string(options(s, viaB, "strict1")), ";rport", "", 1)
	a.WriteTo([]byte(msg), dst)
	if r := got(b, "strict1@probe", 3*time.Second); r == nil || r.code != 200 {
		t.Fatalf("the 200 did not go to the Via sent-by port: %v", r)
	}
	if r := got(a, "strict1@probe", 300*time.Millisecond); r != nil {
		t.Fatalf("without rport the response also went to the source port")
	}

	// Sent from A, Via names B with rport: the 200 goes back to A.
	a.WriteTo(options(s, viaB, "strict2"), dst)
	if r := got(a, "strict2@probe", 3*time.Second); r == nil || r.code != 200 {
		t.Fatalf("with rport the 200 did not come back to the source port: %v", r)
	}
	if r := got(b, "strict2@probe", 300*time.Millisecond); r != nil {
		t.Fatalf("with rport the response also went to the Via sent-by port")
	}
}

// A port already in use ends the start with a message naming it, and
// nothing else: no panic from cleaning up the half-built server.
func TestListenPortInUse(t *testing.T) {
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.LocalAddr().String()
	_, stderr, code := runBinary(t, "--listen", "udp:"+addr, "--admin-listen", "off", "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "address already in use") || strings.Contains(stderr, "panic") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}
