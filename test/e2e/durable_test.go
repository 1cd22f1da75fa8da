package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRegistrationsSurviveKill9: sipp registers 500 users through sipedge
// over UDP and one phone registers over TCP; sipedge is killed with
// SIGKILL and started again on the same data directory; every binding is
// still there (a REGISTER query lists it) and routable (an INVITE reaches
// the registered contact). With store.sync: fsync (the default) the
// committer writes and fsyncs; with write the readers write the bindings
// and send the 200s themselves (store.Store.Enter), which must lose
// nothing that was acknowledged either.
func TestRegistrationsSurviveKill9(t *testing.T) {
	for _, mode := range []string{"fsync", "write"} {
		t.Run(mode, func(t *testing.T) { registrationsSurviveKill9(t, mode) })
	}
}

func registrationsSurviveKill9(t *testing.T, mode string) {
	sipp := needSipp(t)
	const users = 500
	data := t.TempDir()
	port := freePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	cfg := filepath.Join(t.TempDir(), "sipedge.yaml")
	if err := os.WriteFile(cfg, []byte("store:\n  sync: "+mode+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--listen", listen, "--data-dir", data, "--config", cfg)
	s.port = port

	contact, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer contact.Close()
	cport := contact.LocalAddr().(*net.UDPAddr).Port

	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for i := 0; i < users; i++ {
		fmt.Fprintf(&csv, "user%d;x\n", i)
	}
	os.WriteFile(filepath.Join(dir, "users.csv"), []byte(csv.String()), 0o644)
	reg := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), "register.xml"), "-t", "u1",
		"-i", "127.0.0.1", "-inf", filepath.Join(dir, "users.csv"), "-key", "cport", strconv.Itoa(cport),
		"-m", strconv.Itoa(users), "-r", "500", "-nostdin", "-timeout", "30s",
		"-trace_stat", "-stf", filepath.Join(dir, "reg.csv"), listen)
	reg.Dir = dir
	if out, err := reg.CombinedOutput(); err != nil {
		t.Fatalf("register: %v\n%s", err, tail(out))
	}
	expectCalls(t, "REGISTER", filepath.Join(dir, "reg.csv"), users)
	tp := dialTCPPhone(t, "127.0.0.1", listen)
	tp.send(fmt.Sprintf(tcpRegister("tcpuser"), tp.c.LocalAddr()))
	if r := tp.next(3 * time.Second); !strings.HasPrefix(r, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER over TCP: %q", r)
	}

	// kill -9: no shutdown, no flush.
	s.cmd.Process.Kill()
	<-s.exited
	s2 := start(t, "--listen", listen, "--data-dir", data, "--config", cfg)
	s2.port = port
	if !strings.Contains(s2.logs(), fmt.Sprintf("bindings=%d", users+1)) {
		t.Fatalf("restart did not load %d bindings:\n%s", users+1, s2.logs())
	}

	c, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp4", listen)
	buf := make([]byte, 8192)
	query := func(user string) *response {
		q := fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKq%s;rport\r\n"+
			"From: <sip:%s@127.0.0.1>;tag=q\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: q%s\r\nCSeq: 1 REGISTER\r\n"+
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", c.LocalAddr(), user, user, user, user)
		c.WriteTo([]byte(q), dst)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("query %s: %v", user, err)
		}
		r, _ := parseResponse(buf[:n])
		return r
	}
	if r := query("tcpuser"); r == nil || r.code != 200 || !strings.HasPrefix(r.get("contact"), "<sip:tcpuser@192.0.2.1;transport=tcp>") {
		t.Fatalf("the TCP phone's binding after kill -9: %v", r)
	}
	for i := 0; i < users; i++ {
		r := query(fmt.Sprintf("user%d", i))
		want := fmt.Sprintf("<sip:user%d@127.0.0.1:%d;transport=UDP>", i, cport)
		if r == nil || r.code != 200 || !strings.HasPrefix(r.get("contact"), want) {
			t.Fatalf("user%d after kill -9: %v %q", i, r, r.get("contact"))
		}
	}

	inv := fmt.Sprintf("INVITE sip:user7@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKinv;rport\r\n"+
		"From: <sip:caller@127.0.0.1>;tag=c\r\nTo: <sip:user7@127.0.0.1>\r\nCall-ID: inv7\r\nCSeq: 1 INVITE\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", c.LocalAddr())
	c.WriteTo([]byte(inv), dst)
	contact.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := contact.ReadFrom(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), fmt.Sprintf("INVITE sip:user7@127.0.0.1:%d;transport=UDP SIP/2.0", cport)) {
		t.Fatalf("INVITE did not reach the restored contact: %v %q", err, buf[:min(n, 120)])
	}
}
