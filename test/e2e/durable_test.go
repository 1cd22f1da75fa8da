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

// TestRegistrationsSurviveKill9: sipp registers 500 users through sipedge;
// sipedge is killed with SIGKILL and started again on the same data
// directory; every binding is still there (a REGISTER query lists it) and
// routable (an INVITE reaches the registered contact).
func TestRegistrationsSurviveKill9(t *testing.T) {
	sipp := needSipp(t)
	const users = 500
	data := t.TempDir()
	port := freePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	s := start(t, "--listen", listen, "--data-dir", data)
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

	// kill -9: no shutdown, no flush.
	s.cmd.Process.Kill()
	<-s.exited
	s2 := start(t, "--listen", listen, "--data-dir", data)
	s2.port = port
	if !strings.Contains(s2.logs(), fmt.Sprintf("bindings=%d", users)) {
		t.Fatalf("restart did not load %d bindings:\n%s", users, s2.logs())
	}

	c, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp4", listen)
	buf := make([]byte, 8192)
	for i := 0; i < users; i++ {
		q := fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKq%d;rport\r\n"+
			"From: <sip:user%d@127.0.0.1>;tag=q\r\nTo: <sip:user%d@127.0.0.1>\r\nCall-ID: q%d\r\nCSeq: 1 REGISTER\r\n"+
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", c.LocalAddr(), i, i, i, i)
		c.WriteTo([]byte(q), dst)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("query user%d: %v", i, err)
		}
		r, _ := parseResponse(buf[:n])
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
