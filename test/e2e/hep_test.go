package e2e

import (
	"fmt"
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

// sngrepCollector is sngrep run as a HEP collector (-L) writing what it
// receives to a pcap (-O), read back with tcpdump.
type sngrepCollector struct {
	port int
	pcap string
	cmd  *exec.Cmd
}

func startSngrep(t *testing.T, dir, name string) *sngrepCollector {
	t.Helper()
	if _, err := exec.LookPath("sngrep"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sngrep not installed (test.sh installs it)")
		}
		t.Skip("sngrep not installed")
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (reads the pcap)")
	}
	c := &sngrepCollector{port: freePort(t), pcap: filepath.Join(dir, name+".pcap")}
	c.cmd = exec.Command("sngrep", "-N", "-q", "-L", "udp:127.0.0.1:"+strconv.Itoa(c.port), "-O", c.pcap)
	c.cmd.Stdout, c.cmd.Stderr = os.Stderr, os.Stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
	})
	return c
}

func (c *sngrepCollector) collector() string { return "udp:127.0.0.1:" + strconv.Itoa(c.port) }

// read is the pcap as tcpdump -n -A prints it.
func (c *sngrepCollector) read() string {
	b, _ := exec.Command("tcpdump", "-r", c.pcap, "-n", "-A").CombinedOutput()
	return string(b)
}

// sngrep, the operators' ladder tool, as the HEP collector (-L) of the
// running binary: it receives the OPTIONS and its 200 OK and writes them to
// a pcap, with source and destination the right way round. The
// configuration uses the former keys (collector, id), which still work.
func TestHEPSngrep(t *testing.T) {
	dir := t.TempDir()
	sng := startSngrep(t, dir, "hep")
	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\nhep:\n  collector: %s\n  id: 77\n", sng.collector())), 0o644)
	s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	time.Sleep(300 * time.Millisecond) // sngrep binds its port
	p := newSIPPeer(t)
	p.send(s.addr(), fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKhep1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:probe@example.com>;tag=h\r\nTo: <sip:%s>\r\nCall-ID: hep-e2e-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		s.addr(), p.addr(), s.addr()))
	p.expect("SIP/2.0 200", "hep-e2e-1")
	var out string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out = sng.read()
		if strings.Count(out, "hep-e2e-1") >= 2 {
			break
		}
	}
	_, port, _ := strings.Cut(p.addr(), ":")
	in := fmt.Sprintf("127.0.0.1.%s > 127.0.0.1.%d", port, s.port)
	back := fmt.Sprintf("127.0.0.1.%d > 127.0.0.1.%s", s.port, port)
	if !strings.Contains(out, in) || !strings.Contains(out, back) || !strings.Contains(out, "OPTIONS sip:") || !strings.Contains(out, "SIP/2.0 200 OK") {
		t.Fatalf("sngrep's capture (want %q and %q):\n%s", in, back, out)
	}
}

// capturedMsg is one SIP message of sngrep's pcap.
type capturedMsg struct {
	flow   string // "SRC > DST" as tcpdump prints it
	kind   string // the method, or "STATUS/METHOD" for a response: "200/BYE"
	callID string
}

var (
	pcapPacketRE = regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d+ IP6? (\S+ > \S+?):`)
	startLineRE  = regexp.MustCompile(`([A-Z]+) sips?:\S+ SIP/2\.0\r?\n|SIP/2\.0 (\d\d\d) `)
	callIDRE     = regexp.MustCompile(`(?mi)^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)`)
	cseqRE       = regexp.MustCompile(`(?mi)^CSeq[ \t]*:[ \t]*\d+[ \t]+([A-Z]+)`)
)

// sipMessages splits tcpdump -A output into the SIP messages it shows.
func sipMessages(out string) []capturedMsg {
	var msgs []capturedMsg
	idx := pcapPacketRE.FindAllStringSubmatchIndex(out, -1)
	for i, m := range idx {
		end := len(out)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		text := out[m[1]:end]
		sl := startLineRE.FindStringSubmatch(text)
		cid := callIDRE.FindStringSubmatch(text)
		if sl == nil || cid == nil {
			continue
		}
		kind := sl[1]
		if sl[2] != "" {
			kind = sl[2]
			if cs := cseqRE.FindStringSubmatch(text); cs != nil {
				kind += "/" + cs[1]
			}
		}
		msgs = append(msgs, capturedMsg{flow: out[m[2]:m[3]], kind: kind, callID: cid[1]})
	}
	return msgs
}

// callCaptured checks that sngrep's pcap holds every SIP message of the
// call callID on both sides of sipedge: the INVITE, its 180 and 200, the
// ACK, the BYE and its 200 each twice (received and forwarded, with
// different addresses), and sipedge's 100 Trying. It returns what is
// missing ("" when nothing is).
func callCaptured(msgs []capturedMsg, callID string) string {
	flows := map[string]map[string]bool{}
	for _, m := range msgs {
		if m.callID != callID {
			continue
		}
		if flows[m.kind] == nil {
			flows[m.kind] = map[string]bool{}
		}
		flows[m.kind][m.flow] = true
	}
	var missing []string
	if len(flows["100/INVITE"]) < 1 {
		missing = append(missing, "100/INVITE")
	}
	for _, k := range []string{"INVITE", "180/INVITE", "200/INVITE", "ACK", "BYE", "200/BYE"} {
		if len(flows[k]) < 2 {
			missing = append(missing, fmt.Sprintf("%s (seen on %d of 2 legs)", k, len(flows[k])))
		}
	}
	return strings.Join(missing, ", ")
}

// waitCall polls a collector's pcap until the call is all there.
func waitCall(t *testing.T, c *sngrepCollector, callID string) {
	t.Helper()
	var out, missing string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		out = c.read()
		if missing = callCaptured(sipMessages(out), callID); missing == "" {
			return
		}
	}
	t.Fatalf("%s: call %s: missing %s; capture:\n%s", c.pcap, callID, missing, out)
}

// kamailioCollector is Kamailio's sipcapture module as a HEP collector
// over TCP and UDP (testdata/kamailio-hep.cfg), logging each packet.
type kamailioCollector struct {
	port int
	log  string
	cmd  *exec.Cmd
}

func newKamailioCollector(t *testing.T, dir string) *kamailioCollector {
	t.Helper()
	needTool(t, "kamailio", "kamailio", "/usr/sbin/kamailio")
	db := filepath.Join(dir, "kamailio-db")
	os.MkdirAll(db, 0o755)
	return &kamailioCollector{port: freePort(t), log: filepath.Join(dir, "kamailio-hep.log")}
}

// start runs Kamailio (a collector may be started after sipedge).
func (k *kamailioCollector) start(t *testing.T) {
	t.Helper()
	dir := filepath.Dir(k.log)
	log, err := os.Create(k.log)
	if err != nil {
		t.Fatal(err)
	}
	k.cmd = exec.Command("kamailio", "-DD", "-E", "-m", "64", "-M", "8", "-Y", dir,
		"-f", filepath.Join(mustAbs(t, "testdata"), "kamailio-hep.cfg"),
		"-A", "KAM_PORT="+strconv.Itoa(k.port), "-A", `DB_URL="text://`+filepath.Join(dir, "kamailio-db")+`"`)
	k.cmd.Stdout, k.cmd.Stderr = log, log
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-k.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { k.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		}
		log.Close()
	})
	waitTCP(t, "127.0.0.1:"+strconv.Itoa(k.port))
}

var kamailioHEPRE = regexp.MustCompile(`HEPEV proto=(\w+) id=(\d+) (\S+ > \S+) \| (.*?) \| Call-ID:\s*(\S*) \| CSeq:\s*\d+\s+([A-Z]+)`)

// messages are the SIP messages Kamailio logged, and the transports the
// HEP packets came over.
func (k *kamailioCollector) messages() (msgs []capturedMsg, protos map[string]int) {
	b, _ := os.ReadFile(k.log)
	protos = map[string]int{}
	for _, m := range kamailioHEPRE.FindAllStringSubmatch(string(b), -1) {
		protos[m[1]]++
		kind := m[6]
		if strings.HasPrefix(m[4], "SIP/2.0 ") && len(m[4]) >= 11 {
			kind = m[4][8:11] + "/" + m[6]
		}
		msgs = append(msgs, capturedMsg{flow: m[3], kind: kind, callID: m[5]})
	}
	return msgs, protos
}

// TestHEPKamailioTCP: HEP over TCP to Kamailio's sipcapture, a collector
// that is down when sipedge starts: packets sent meanwhile are counted as
// errors, the writer connects once it is up, and every message of a whole
// call then reaches it, framed (several packets per write) as a real HEP
// reader parses them.
func TestHEPKamailioTCP(t *testing.T) {
	sipp := needSipp(t)
	dir := t.TempDir()
	kam := newKamailioCollector(t, dir)
	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\nhep:\n  collectors: [tcp:127.0.0.1:%d]\n  capture_id: 42\n", kam.port)), 0o644)
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--admin-listen", adminAddr)
	p := newSIPPeer(t)
	options := func(id string) {
		p.send(s.addr(), fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:probe@example.com>;tag=h\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			s.addr(), p.addr(), id, s.addr(), id))
		p.expect("SIP/2.0 200", id)
	}
	// The collector is down: the OPTIONS and its 200 are counted, not sent.
	options("hep-tcp-down")
	metric := func(name string) float64 { return metricValue(t, adminAddr, name) }
	errors := `sipedge_hep_errors_total{collector="tcp:127.0.0.1:` + strconv.Itoa(kam.port) + `"}`
	for deadline := time.Now().Add(5 * time.Second); metric(errors) < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want 2 (the OPTIONS and its 200, collector down)", errors, metric(errors))
		}
	}

	kam.start(t)
	// The writer tries again after its backoff (1 s): OPTIONS until one
	// gets through.
	for i := 0; ; i++ {
		options(fmt.Sprintf("hep-tcp-up-%d", i))
		msgs, _ := kam.messages()
		if len(msgs) > 0 {
			break
		}
		if i == 50 {
			b, _ := os.ReadFile(kam.log)
			t.Fatalf("nothing reached Kamailio after it started; its log:\n%s", tail(b))
		}
		time.Sleep(200 * time.Millisecond)
	}

	const callID = "hep-call-tcp@127.0.0.1"
	sippCallee(t, sipp, dir, s.addr(), callID)
	var missing string
	var protos map[string]int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var msgs []capturedMsg
		msgs, protos = kam.messages()
		if missing = callCaptured(msgs, callID); missing == "" {
			break
		}
	}
	if missing != "" {
		b, _ := os.ReadFile(kam.log)
		t.Fatalf("call %s at Kamailio: missing %s; its log:\n%s", callID, missing, tail(b))
	}
	if protos["tcp"] == 0 || protos["udp"] != 0 {
		t.Fatalf("HEP packets by transport %v, want TCP only", protos)
	}
	b, _ := os.ReadFile(kam.log)
	if !strings.Contains(string(b), "id=42 ") {
		t.Errorf("capture id 42 not in Kamailio's log")
	}
}

// sippCallee registers a sipp UAS as "callee" at sipedge (addr) and makes
// one call to it from a sipp UAC with Call-ID callID (INVITE, 180, 200,
// ACK, a 100 ms hold, BYE, 200), failing the test if either fails.
func sippCallee(t *testing.T, sipp, dir, addr, callID string) {
	t.Helper()
	td := mustAbs(t, "testdata")
	os.WriteFile(filepath.Join(dir, "callee.csv"), []byte("SEQUENTIAL\ncallee;x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
	_, uasAddr := sippUAS(t, sipp, dir, 1)
	_, uasPort, _ := strings.Cut(uasAddr, ":")
	time.Sleep(300 * time.Millisecond) // the UAS binds its port
	reg := exec.Command(sipp, "-sf", filepath.Join(td, "register.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-inf", filepath.Join(dir, "callee.csv"), "-key", "cport", uasPort, "-m", "1", "-nostdin", "-timeout", "10s", addr)
	reg.Dir = dir
	if out, err := reg.CombinedOutput(); err != nil {
		t.Fatalf("register: %v\n%s", err, tail(out))
	}
	uac := exec.Command(sipp, "-sf", filepath.Join(td, "call-uac.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-inf", filepath.Join(dir, "caller.csv"), "-s", "callee", "-m", "1", "-d", "100", "-cid_str", callID,
		"-nostdin", "-timeout", "20s", addr)
	uac.Dir = dir
	if out, err := uac.CombinedOutput(); err != nil {
		t.Fatalf("call: %v\n%s", err, tail(out))
	}
}

// TestHEPCall: every SIP message of a whole call reaches the HEP
// collectors, over UDP (sipp) and over TLS (baresip): for TLS, the
// decrypted messages, which no packet capture on the wire could show.
func TestHEPCall(t *testing.T) {
	// UDP: two collectors get the same call.
	t.Run("udp", func(t *testing.T) {
		sipp := needSipp(t)
		dir := t.TempDir()
		sng1, sng2 := startSngrep(t, dir, "one"), startSngrep(t, dir, "two")
		cfg := filepath.Join(dir, "sipedge.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\nhep:\n  collectors: [%s, %s]\n  capture_id: 9\n",
			sng1.collector(), sng2.collector())), 0o644)
		s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
		time.Sleep(300 * time.Millisecond) // sngrep binds its port

		const callID = "hep-call-udp@127.0.0.1"
		sippCallee(t, sipp, dir, s.addr(), callID)
		waitCall(t, sng1, callID)
		waitCall(t, sng2, callID)
	})

	// TLS: one collector, and one that is gone (its port is closed): the
	// capture goes on regardless.
	t.Run("tls", func(t *testing.T) {
		if _, err := exec.LookPath("baresip"); err != nil {
			t.Skip("baresip not installed")
		}
		dir := t.TempDir()
		sng := startSngrep(t, dir, "tls")
		gone := freePort(t)
		ca := newCA(t, dir, "lab")
		srv := ca.issue(t, dir, "sipedge", loopback)
		_, tlsAddr, _, _ := startTLS(t, dir, srv, "  ca_file: "+ca.file+"\n",
			fmt.Sprintf("hep:\n  collectors: [udp:127.0.0.1:%d, %s]\n", gone, sng.collector()))
		time.Sleep(300 * time.Millisecond) // sngrep binds its port
		alice := startBaresip(t, dir, "alice", tlsAddr, ca, ca.issue(t, dir, "alice", loopback))
		startBaresip(t, dir, "bob", tlsAddr, ca, ca.issue(t, dir, "bob", loopback))

		events := alice.command("dial", "sip:bob@"+tlsAddr+";transport=tls", 20*time.Second, "CALL_ESTABLISHED", "CALL_CLOSED")
		if last := events[len(events)-1]; !strings.HasPrefix(last, "CALL_ESTABLISHED") {
			t.Fatalf("call not answered: %v", events)
		}
		alice.command("hangup", "", 10*time.Second, "CALL_CLOSED")
		// baresip makes the Call-ID: take the one of the INVITE alice sent.
		var callID string
		for deadline := time.Now().Add(10 * time.Second); callID == "" && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			for _, m := range sipMessages(sng.read()) {
				if m.kind == "INVITE" {
					callID = m.callID
					break
				}
			}
		}
		if callID == "" {
			t.Fatalf("no INVITE in the capture:\n%s", sng.read())
		}
		waitCall(t, sng, callID)
	})
}
