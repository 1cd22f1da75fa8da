package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pbx is a Kamailio instance standing in for a PBX of a pool
// (testdata/kamailio-pbx.cfg): it answers OPTIONS, INVITE and BYE, and
// logs each INVITE it takes.
type pbx struct {
	t    *testing.T
	bin  string
	addr string // ip:port
	log  string
	dir  string
	cmd  *exec.Cmd
}

func newPBX(t *testing.T, bin, ip string, port int) *pbx {
	dir := t.TempDir()
	p := &pbx{t: t, bin: bin, addr: ip + ":" + strconv.Itoa(port), log: filepath.Join(dir, "kamailio.log"), dir: dir}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("kamailio %s log:\n%s", p.addr, tail(b))
		}
	})
	return p
}

func (p *pbx) start() {
	ip, port, _ := strings.Cut(p.addr, ":")
	log, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer log.Close()
	p.cmd = exec.Command(p.bin, "-DD", "-E", "-f", filepath.Join(mustAbs(p.t, "testdata"), "kamailio-pbx.cfg"),
		"-A", "KAM_ADDR="+ip, "-A", "KAM_PORT="+port, "-m", "32", "-M", "4", "-Y", p.dir)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	// Up when it answers an OPTIONS.
	for i := 0; i < 100; i++ {
		if optionsRoundTripTo(p.addr) {
			return
		}
		time.Sleep(30 * time.Millisecond)
	}
	p.t.Fatalf("kamailio on %s does not answer", p.addr)
}

// stop kills the whole instance at once, as a crash or a power cut would.
func (p *pbx) stop() {
	if p.cmd == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cmd.Wait()
	p.cmd = nil
}

// invites counts the INVITEs the instance took.
// logText is the instance's log so far.
func (p *pbx) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *pbx) invites() int {
	b, _ := os.ReadFile(p.log)
	return strings.Count(string(b), "pool-member "+p.addr+" INVITE")
}

// optionsRoundTripTo reports whether addr answers an OPTIONS over UDP.
func optionsRoundTripTo(addr string) bool {
	dst, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return false
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return false
	}
	defer c.Close()
	msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKpoolprobe%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:test@127.0.0.1>;tag=p\r\nTo: <sip:%s>\r\nCall-ID: poolprobe-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		addr, c.LocalAddr(), time.Now().UnixNano(), addr, time.Now().UnixNano())
	if _, err := c.WriteTo([]byte(msg), dst); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFrom(buf)
	return err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 200")
}

type poolTarget struct {
	URI         string `json:"uri"`
	State       string `json:"state"`
	Since       time.Time
	ActiveCalls int64   `json:"active_calls"`
	AvgLatency  float64 `json:"avg_latency_ms"`
	LastProbe   *struct {
		OK     bool `json:"ok"`
		Status int  `json:"status"`
	} `json:"last_probe"`
}

// poolTargets reads GET /api/v1/pools: the targets of the first pool by
// URI.
func poolTargets(t *testing.T, admin string) map[string]poolTarget {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/api/v1/pools")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Pools []struct {
			Name    string       `json:"name"`
			Targets []poolTarget `json:"targets"`
		} `json:"pools"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || len(v.Pools) != 1 {
		t.Fatalf("/api/v1/pools: %v %+v", err, v)
	}
	out := map[string]poolTarget{}
	for _, tg := range v.Pools[0].Targets {
		out[tg.URI] = tg
	}
	return out
}

// TestPoolKamailio: two Kamailio instances on 127.0.0.2 and 127.0.0.3 as
// a pool behind sipedge, weights 3 and 1. Calls from sipp spread by
// weight. The first instance is killed while calls go on: every call
// started after that completes (a call sent to the dead one goes on to
// the other after answer_timeout, and counts as a failure of the dead
// one), and the dead one is down within one probe interval or so (passive
// marking) and gets nothing more. Started again, it is back after
// up_after probes and takes calls again.
func TestPoolKamailio(t *testing.T) {
	sipp := needSipp(t)
	kam := needTool(t, "kamailio", "kamailio", "/usr/sbin/kamailio")
	dir := t.TempDir()
	a := newPBX(t, kam, "127.0.0.2", freePort(t))
	b := newPBX(t, kam, "127.0.0.3", freePort(t))
	const interval = 400 * time.Millisecond
	cfgFile := filepath.Join(dir, "sipedge.yaml")
	cfg := fmt.Sprintf(`dns:
  servers: ["127.0.0.1:9"]
pools:
  - name: pbx
    answer_timeout: 300ms
    targets:
      - {uri: "sip:%s", weight: 3}
      - {uri: "sip:%s", weight: 1}
    probe: {interval: %s, timeout: 200ms, down_after: 3, up_after: 2}
routes:
  - name: office
    to: pool:pbx
dial_plan:
  - name: outside
    prefix: "9"
    strip: 1
    add_prefix: "49"
    to: pool:pbx
`, a.addr, b.addr, interval)
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	s := start(t, "--config", cfgFile, "--data-dir", filepath.Join(dir, "data"), "--admin-listen", adminAddr)
	os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
	ua, ub := "sip:"+a.addr, "sip:"+b.addr

	calls := func(name string, n, rate int) *exec.Cmd {
		c := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), "call-uac.xml"), "-t", "u1", "-i", "127.0.0.1",
			"-inf", filepath.Join(dir, "caller.csv"), "-s", "100", "-m", strconv.Itoa(n), "-r", strconv.Itoa(rate), "-d", "0",
			"-max_non_invite_retrans", "3", "-nostdin", "-timeout", "15s", "-trace_stat", "-stf", filepath.Join(dir, name+".csv"), s.addr())
		c.Dir = dir
		return c
	}
	run := func(name string, c *exec.Cmd) {
		t.Helper()
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, tail(out))
		}
	}

	// 1. Spread by weight: 80 calls, three in four to the first.
	run("spread", calls("spread", 80, 80))
	expectCalls(t, "spread", filepath.Join(dir, "spread.csv"), 80)
	na, nb := a.invites(), b.invites()
	// Weighted random: 60 expected, σ ≈ 3.9; ±3σ keeps a correct split
	// from failing more than about once in 300 runs.
	if na+nb != 80 || na < 48 || na > 72 {
		t.Fatalf("80 calls went %d to the weight-3 target and %d to the weight-1 target, want about 60/20", na, nb)
	}
	if st := poolTargets(t, adminAddr); st[ua].State != "up" || st[ub].State != "up" || st[ua].LastProbe == nil || !st[ua].LastProbe.OK ||
		st[ua].AvgLatency <= 0 || st[ua].ActiveCalls != 0 || st[ub].ActiveCalls != 0 {
		t.Fatalf("pool state after the first calls: %+v", st)
	}

	// 1b. A number rewritten by the dial plan and routed by its prefix to
	// the pool: 9100 arrives at a PBX as 49100.
	one := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), "call-uac.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-inf", filepath.Join(dir, "caller.csv"), "-s", "9100", "-m", "1", "-d", "0", "-nostdin", "-timeout", "10s", s.addr())
	one.Dir = dir
	run("dial plan to the pool", one)
	if la, lb := a.logText(), b.logText(); !strings.Contains(la+lb, "user=49100") || strings.Contains(la+lb, "user=9100") {
		t.Fatalf("the dial-plan call did not reach a PBX as 49100")
	}

	// 2. The first instance dies while calls go on.
	c := calls("failover", 120, 40)
	out := &strings.Builder{}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(800 * time.Millisecond)
	a.stop()
	killed := time.Now()
	var downAfter time.Duration
	for time.Since(killed) < 3*time.Second {
		if poolTargets(t, adminAddr)[ua].State == "down" {
			downAfter = time.Since(killed)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if downAfter == 0 {
		t.Fatal("the dead instance is still up 3 s after it died")
	}
	// Passive marking (each call sent to it and failed over counts) takes
	// it down before three probes could.
	if downAfter > interval+500*time.Millisecond {
		t.Errorf("the dead instance went down %v after it died, want within one probe interval (%v) and the answer timeout", downAfter, interval)
	}
	if err := c.Wait(); err != nil {
		t.Logf("sipp: %v\n%s", err, tail([]byte(out.String())))
	}
	bs, _ := os.ReadFile(filepath.Join(dir, "failover.csv"))
	ok, failed := lastStat(t, string(bs))
	// Only a call whose BYE was on its way to the instance when it was
	// killed may fail (an answered call stays on its PBX): it had been
	// set up before any probe could miss. Every call started later
	// completes.
	t.Logf("instance killed: marked down after %v; calls meanwhile: %d succeeded, %d failed", downAfter, ok, failed)
	if failed > 1 || ok+failed != 120 {
		t.Fatalf("calls while an instance died: %d succeeded, %d failed, want 120 with at most one lost in its dialog", ok, failed)
	}
	if !strings.Contains(s.logs(), `msg="pool target down" pool=pbx target=`+ua) {
		t.Fatalf("no log line for the instance going down")
	}
	// Calls sent to it before the first of them had timed out could not
	// know; none is sent to it once it is down: the last call that found
	// no answer there was sent before (it timed out answer_timeout later).
	logs := s.logs()
	down := logTime(t, lastLine(logs, `msg="pool target down" pool=pbx target=`+ua))
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `msg="no answer from target" dst=`+a.addr) {
			n++
			if sent := logTime(t, l).Add(-300 * time.Millisecond); sent.After(down.Add(20 * time.Millisecond)) {
				t.Errorf("a call was sent to the instance %v after it was marked down: %s", sent.Sub(down), l)
			}
		}
	}
	if n == 0 {
		t.Error("no call was sent to the dead instance: the test did not test failover")
	}

	// 3. It comes back: up after up_after answered probes, and takes
	// calls again.
	before := a.invites()
	a.start()
	restarted := time.Now()
	for poolTargets(t, adminAddr)[ua].State != "up" {
		if time.Since(restarted) > 4*interval+time.Second {
			t.Fatalf("the instance is not back up %v after it started again", time.Since(restarted))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The log line reaches the test through a pipe, after the API shows
	// the state: hasLog waits for it.
	if !s.hasLog(`msg="pool target up" pool=pbx target=` + ua + " answered_probes=2") {
		t.Fatalf("no log line for the instance coming back")
	}
	run("rejoin", calls("rejoin", 40, 80))
	expectCalls(t, "rejoin", filepath.Join(dir, "rejoin.csv"), 40)
	if n := a.invites() - before; n < 15 {
		t.Fatalf("the instance took %d of 40 calls after it came back, want about 30", n)
	}

	// 4. A reload that changes the pool keeps the state of the targets
	// that stay; a pool a route names must exist.
	sinceA := poolTargets(t, adminAddr)[ua].Since
	reloaded := strings.Replace(cfg, "weight: 3", "weight: 1", 1)
	reloaded = strings.Replace(reloaded, "answer_timeout: 300ms", "answer_timeout: 300ms\n    algorithm: hash", 1)
	s.reload(t, cfgFile, reloaded, "configuration reloaded")
	if st := poolTargets(t, adminAddr)[ua]; st.State != "up" || !st.Since.Equal(sinceA) {
		t.Fatalf("after the reload: %+v, want up since %v", st, sinceA)
	}
	s.reload(t, cfgFile, strings.Replace(reloaded, "to: pool:pbx", "to: pool:pbz", 1), "no pool named pbz")

	// The metrics say the same.
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`sipedge_pool_up{target="pbx/` + ua + `"} 1`,
		`sipedge_pool_targets_up{pool="pbx"} 2`,
		`sipedge_pool_state_changes_total 2`,
		`sipedge_pool_active_calls{target="pbx/` + ub + `"} 0`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// logTime reads the time= field of a sipedge log line.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	f := strings.Fields(line)
	if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
		t.Fatalf("not a log line: %q", line)
	}
	tm, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return tm
}
