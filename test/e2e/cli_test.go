package e2e

import (
	"bufio"
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
	if code != 0 || !strings.Contains(out, "--listen") || !strings.Contains(out, "Examples:") {
		t.Fatalf("--help: exit %d\n%s", code, out)
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
	if code != 0 || !strings.HasPrefix(out, "sipedge ") {
		t.Fatalf("--version: %d %q", code, out)
	}
}

// TestConfigError: a configuration mistake names file, line, key and fix.
func TestConfigError(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sipedge.yaml")
	os.WriteFile(f, []byte("listen: [udp:127.0.0.1:5999]\nregistrar:\n  max_expire: 1h\n"), 0o644)
	_, errOut, code := runBinary(t, "--config", f)
	if code != 2 || !strings.Contains(errOut, f+":3: max_expire: unknown key") {
		t.Fatalf("exit %d: %q", code, errOut)
	}
}

func TestSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		s := start(t)
		s.stop(sig)
		if !strings.Contains(s.logs(), "msg=stopped") {
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
	s := start(t, "--listen", addr)
	s.port = port
	for _, nw := range []string{"udp6", "tcp6"} {
		if code := optionsRoundTrip(t, nw, addr, s); code != 200 {
			t.Fatalf("%s OPTIONS to sip:%s: %d", nw, addr, code)
		}
	}
}

// TestStrictResponseRouting: with --symmetric-responses=false a UDP
// response goes to the Via sent-by port (RFC 3261 §18.2.2), unless the Via
// has rport (RFC 3581), in which case it goes back to the source port.
func TestStrictResponseRouting(t *testing.T) {
	s := start(t, "--symmetric-responses=false")
	a, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	b, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer a.Close()
	defer b.Close()
	dst, _ := net.ResolveUDPAddr("udp4", s.addr())
	msg := strings.Replace(string(options(s, "UDP "+b.LocalAddr().String(), "strict1")), ";rport", "", 1)
	a.WriteTo([]byte(msg), dst)
	buf := make([]byte, 4096)
	b.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, _, err := b.ReadFrom(buf); err != nil {
		t.Fatal("response did not go to the Via sent-by port:", err)
	}
	a.WriteTo(options(s, "UDP "+b.LocalAddr().String(), "strict2"), dst) // with rport
	a.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, _, err := a.ReadFrom(buf); err != nil {
		t.Fatal("with rport the response did not come back to the source:", err)
	}
}
