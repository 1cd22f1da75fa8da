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

// sipPeer is a raw UDP SIP endpoint on loopback: a caller or a callee of
// the lifecycle tests.
type sipPeer struct {
	t        *testing.T
	c        *net.UDPConn
	lastSent string
}

func newSIPPeer(t *testing.T) *sipPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sipPeer{t: t, c: c}
}

func (p *sipPeer) addr() string { return p.c.LocalAddr().String() }

func (p *sipPeer) send(to string, msg string) {
	p.t.Helper()
	a, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.c.WriteTo([]byte(msg), a); err != nil {
		p.t.Fatal(err)
	}
	p.lastSent = msg
}

// next returns the next message whose first line starts with prefix
// ("INVITE ", "SIP/2.0 200") and whose Call-ID is callID, skipping others,
// and where it came from; "" after wait.
func (p *sipPeer) next(prefix, callID string, wait time.Duration) (string, string) {
	p.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		p.c.SetReadDeadline(deadline)
		n, from, err := p.c.ReadFrom(buf)
		if err != nil {
			return "", ""
		}
		m := string(buf[:n])
		if strings.HasPrefix(m, prefix) && callID == field([]byte(m), "call-id", "i") {
			return m, from.String()
		}
	}
}

func (p *sipPeer) expect(prefix, callID string) (string, string) {
	p.t.Helper()
	m, from := p.next(prefix, callID, 5*time.Second)
	if m == "" {
		p.t.Fatalf("%s: no %q for %s", p.addr(), prefix, callID)
	}
	return m, from
}

// reply answers req with code from the callee: Vias, Record-Route, From,
// To with a tag, Call-ID, CSeq copied; extra header lines added.
func reply(req string, code int, contact string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, map[int]string{200: "OK", 180: "Ringing", 486: "Busy Here"}[code])
	for _, line := range strings.Split(req, "\r\n") {
		l := strings.ToLower(line)
		switch {
		case strings.HasPrefix(l, "via:"), strings.HasPrefix(l, "record-route:"), strings.HasPrefix(l, "from:"),
			strings.HasPrefix(l, "call-id:"), strings.HasPrefix(l, "cseq:"):
			b.WriteString(line + "\r\n")
		case strings.HasPrefix(l, "to:"):
			if strings.Contains(l, "tag=") {
				b.WriteString(line + "\r\n")
			} else {
				b.WriteString(line + ";tag=callee\r\n")
			}
		}
	}
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Contact: <sip:callee@" + contact + ">\r\nContent-Length: 0\r\n\r\n")
	return b.String()
}

// call is a dialog a test set up: what the caller needs for its ACK and BYE.
type call struct {
	id, routes, to string
	cseq           int
}

// invite sends an INVITE for ruri from caller through s; the callee
// answers 200 (with extra headers), the caller ACKs. It returns the dialog.
func invite(t *testing.T, s *server, caller, callee *sipPeer, ruri, callID string, extra ...string) *call {
	t.Helper()
	caller.send(s.addr(), fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:caller@example.com>;tag=caller\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:caller@%s>\r\nContent-Length: 0\r\n\r\n", ruri, caller.addr(), callID, ruri, callID, caller.addr()))
	req, from := callee.expect("INVITE ", callID)
	callee.send(from, reply(req, 200, callee.addr(), extra...))
	ok, _ := caller.expect("SIP/2.0 200", callID)
	r, _ := parseResponse([]byte(ok))
	var routes strings.Builder
	rr := r.headers["record-route"]
	for i := len(rr) - 1; i >= 0; i-- { // the caller's route set is the reverse (RFC 3261 §12.1.2)
		routes.WriteString("Route: " + rr[i] + "\r\n")
	}
	c := &call{id: callID, routes: routes.String(), to: r.get("to"), cseq: 1}
	caller.send(s.addr(), c.request("ACK", caller, callee, 1))
	if m, _ := callee.expect("ACK ", callID); m == "" {
		t.Fatal("no ACK")
	}
	return c
}

// request is an in-dialog request of the caller (to the callee's Contact,
// through the Record-Route set).
func (c *call) request(method string, caller, callee *sipPeer, cseq int) string {
	return fmt.Sprintf("%s sip:callee@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s%s%d;rport\r\nMax-Forwards: 70\r\n%s"+
		"From: <sip:caller@example.com>;tag=caller\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
		method, callee.addr(), caller.addr(), c.id, method, cseq, c.routes, c.to, c.id, cseq, method)
}

// hangUp sends the caller's BYE, which must reach the callee; the callee's
// 200 must reach the caller.
func (c *call) hangUp(t *testing.T, s *server, caller, callee *sipPeer) {
	t.Helper()
	caller.send(s.addr(), c.request("BYE", caller, callee, 2))
	bye, from := callee.expect("BYE ", c.id)
	callee.send(from, reply(bye, 200, callee.addr()))
	caller.expect("SIP/2.0 200", c.id)
}

// reload writes cfg, sends SIGHUP and waits for the log line that says
// whether the file was taken.
func (s *server) reload(t *testing.T, file, cfg, want string) {
	t.Helper()
	before := strings.Count(s.logs(), want)
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Count(s.logs(), want) > before {
			return
		}
	}
	t.Fatalf("no %q after SIGHUP:\n%s", want, s.logs())
}

// TestReload: SIGHUP applies a changed configuration to the next
// transaction and leaves calls in progress alone; a file with an error,
// or one that changes a key that needs a restart, is refused with one
// line and the configuration in force keeps serving.
func TestReload(t *testing.T) {
	a, b := newSIPPeer(t), newSIPPeer(t)
	caller := newSIPPeer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "sipedge.yaml")
	base := "dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: " + filepath.Join(dir, "data") + "\n"
	routeTo := func(p *sipPeer, trusted string) string {
		return base + "trusted_networks: [" + trusted + "]\nroutes:\n  - name: pbx\n    prefix: \"1\"\n    to: sip:" + p.addr() + "\n"
	}
	if err := os.WriteFile(file, []byte(routeTo(a, "loopback")), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file)

	c1 := invite(t, s, caller, a, "sip:100@pbx.example.com", "reload-1")
	s.reload(t, file, routeTo(b, "loopback"), "configuration reloaded")
	// The call set up before the reload ends normally after it.
	c1.hangUp(t, s, caller, a)
	// The changed route applies to the next call.
	c2 := invite(t, s, caller, b, "sip:101@pbx.example.com", "reload-2")
	c2.hangUp(t, s, caller, b)

	// A file with an error: one line, the running configuration stays.
	s.reload(t, file, routeTo(a, "loopback")+"registrar:\n  max_expire: 1h\n", "configuration not reloaded")
	if line := lastLine(s.logs(), "configuration not reloaded"); !strings.Contains(line, "max_expire: unknown key") {
		t.Fatalf("refusal does not name the key: %s", line)
	}
	c3 := invite(t, s, caller, b, "sip:102@pbx.example.com", "reload-3")
	c3.hangUp(t, s, caller, b)

	// A key that cannot change while running: named, refused.
	s.reload(t, file, strings.Replace(routeTo(a, "loopback"), "dir: "+filepath.Join(dir, "data"), "dir: "+filepath.Join(dir, "other"), 1), "configuration not reloaded")
	if line := lastLine(s.logs(), "configuration not reloaded"); !strings.Contains(line, "store.dir") {
		t.Fatalf("refusal does not name store.dir: %s", line)
	}
	c4 := invite(t, s, caller, b, "sip:103@pbx.example.com", "reload-4")
	c4.hangUp(t, s, caller, b)

	// trusted_networks: the next request from loopback is refused.
	s.reload(t, file, routeTo(b, "192.0.2.0/24"), "configuration reloaded")
	u := newUDPClient(t, s)
	if r := u.final(u.request("OPTIONS", "sip:"+s.addr(), "reload-trust", 70), 3*time.Second); r == nil || r.code != 403 {
		t.Fatalf("OPTIONS from loopback after trusted_networks lost it: %v, want 403", r)
	}
	s.reload(t, file, routeTo(b, "loopback"), "configuration reloaded")
	if r := u.final(u.request("OPTIONS", "sip:"+s.addr(), "reload-trust2", 70), 3*time.Second); r == nil || r.code != 200 {
		t.Fatalf("OPTIONS after trusting loopback again: %v, want 200", r)
	}
	if !strings.Contains(s.logs(), "sipedge started") || strings.Count(s.logs(), "sipedge started") != 1 {
		t.Fatal("sipedge restarted instead of reloading")
	}
}

func lastLine(logs, substr string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return lines[i]
		}
	}
	return ""
}

// TestDrain: the first SIGTERM refuses new calls with 503 and Retry-After,
// keeps answering REGISTER and OPTIONS, routes the BYE of the call in
// progress, and exits 0 as soon as that call is over (well before the
// drain deadline); every binding is there after a restart.
func TestDrain(t *testing.T) {
	callee, caller := newSIPPeer(t), newSIPPeer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "sipedge.yaml")
	data := filepath.Join(dir, "data")
	cfg := "dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: " + data + "\nroutes:\n  - name: pbx\n    prefix: \"1\"\n    to: sip:" + callee.addr() + "\n"
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file)
	u := newUDPClient(t, s)
	if r := u.register(s, "frank", "drain-reg", 1, "<sip:frank@"+u.addr()+">"); r.code != 200 {
		t.Fatalf("REGISTER: %d", r.code)
	}
	// A call with a session timer: sipedge follows its dialog.
	c := invite(t, s, caller, callee, "sip:100@pbx.example.com", "drain-1", "Session-Expires: 1800;refresher=uac", "Require: timer")

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(s.logs(), "draining"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no drain:\n%s", s.logs())
		}
	}
	// A new call: 503 with Retry-After.
	caller.send(s.addr(), fmt.Sprintf("INVITE sip:101@pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKdrain2;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=c2\r\nTo: <sip:101@pbx.example.com>\r\nCall-ID: drain-2\r\n"+
		"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", caller.addr()))
	m, _ := caller.expect("SIP/2.0 503", "drain-2")
	if r, _ := parseResponse([]byte(m)); r.get("retry-after") == "" {
		t.Fatalf("503 without Retry-After:\n%s", m)
	}
	if m, _ := callee.next("INVITE ", "drain-2", 300*time.Millisecond); m != "" {
		t.Fatal("a new call was forwarded while draining")
	}
	// REGISTER and OPTIONS are still served.
	if r := u.register(s, "frank", "drain-reg", 2, "<sip:frank@"+u.addr()+">"); r.code != 200 {
		t.Fatalf("REGISTER while draining: %d", r.code)
	}
	if r := u.final(u.request("OPTIONS", "sip:"+s.addr(), "drain-opt", 70), 3*time.Second); r == nil || r.code != 200 {
		t.Fatalf("OPTIONS while draining: %v", r)
	}
	// The call in progress ends normally; then sipedge exits 0 at once.
	select {
	case err := <-s.exited:
		t.Fatalf("sipedge exited with a call in progress: %v", err)
	default:
	}
	c.hangUp(t, s, caller, callee)
	hungUp := time.Now()
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		if d := time.Since(hungUp); d > 3*time.Second {
			t.Fatalf("exited %v after the last call ended", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("sipedge did not exit after the last call (drain deadline 30 s):\n%s", s.logs())
	}

	// Every binding is there after a restart.
	s2 := start(t, "--config", file, "--listen", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	if !strings.Contains(s2.logs(), "aors=1 bindings=1") {
		t.Fatalf("bindings after the restart:\n%s", s2.logs())
	}
}

// sippUAS starts a sipp UAS (call-uas.xml: 180, 200, waits for ACK and
// BYE) for n calls on a free port and returns it with its address.
func sippUAS(t *testing.T, sipp, dir string, n int) (*exec.Cmd, string) {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	uas := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), "call-uas.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", port, "-m", strconv.Itoa(n), "-nostdin", "-timeout", "40s")
	uas.Dir = dir
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uas.Process.Kill() })
	return uas, "127.0.0.1:" + port
}

// TestReloadSipp: the reload, end to end with sipp on both sides: a call
// set up before SIGHUP (sipp holds it 3 s) continues and ends normally
// with its BYE at the first callee after the reload; the changed static
// route sends the next call to the second callee; a changed
// trusted_networks refuses sipp's next OPTIONS with 403; a file with an
// error is refused and that configuration keeps serving.
func TestReloadSipp(t *testing.T) {
	sipp := needSipp(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
	first, firstAddr := sippUAS(t, sipp, dir, 1)
	second, secondAddr := sippUAS(t, sipp, dir, 1)
	file := filepath.Join(dir, "sipedge.yaml")
	cfg := func(to string) string {
		return "dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: " + filepath.Join(dir, "data") +
			"\nroutes:\n  - name: pbx\n    prefix: \"svc\"\n    to: sip:" + to + "\n"
	}
	if err := os.WriteFile(file, []byte(cfg(firstAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file)
	time.Sleep(200 * time.Millisecond) // the UASes are listening

	long := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), "call-uac.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-inf", filepath.Join(dir, "caller.csv"), "-s", "svc1", "-m", "1", "-d", "3000", "-nostdin", "-timeout", "30s",
		"-trace_stat", "-stf", filepath.Join(dir, "long.csv"), s.addr())
	long.Dir = dir
	var out strings.Builder
	long.Stdout, long.Stderr = &out, &out
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1 * time.Second) // the call is up and in its 3 s hold
	s.reload(t, file, cfg(secondAddr), "configuration reloaded")
	if err := long.Wait(); err != nil {
		t.Fatalf("the call set up before the reload failed: %v\n%s", err, out.String())
	}
	expectCalls(t, "call across the reload", filepath.Join(dir, "long.csv"), 1)
	waitUAS(t, "first callee (call across the reload)", first)
	sippRun(t, sipp, dir, "call-uac.xml", "u1", "svc2", 1, s.addr())
	waitUAS(t, "second callee (route changed by the reload)", second)

	options := func(scenario string) {
		t.Helper()
		stats := filepath.Join(dir, scenario+".csv")
		c := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), scenario), "-t", "u1", "-i", "127.0.0.1",
			"-m", "1", "-timeout", "10s", "-trace_stat", "-stf", stats, "-nostdin", s.addr())
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", scenario, err, tail(out))
		}
		expectCalls(t, scenario, stats, 1)
	}
	untrusted := strings.Replace(cfg(secondAddr), "routes:", "trusted_networks: [192.0.2.0/24]\nroutes:", 1)
	s.reload(t, file, untrusted, "configuration reloaded")
	options("options-403.xml")
	s.reload(t, file, cfg(secondAddr)+"registrar:\n  max_expire: 1h\n", "configuration not reloaded")
	options("options-403.xml") // the refused file changed nothing
	s.reload(t, file, cfg(secondAddr), "configuration reloaded")
	options("options-uac.xml")
}
