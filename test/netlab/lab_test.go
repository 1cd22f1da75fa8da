// Package netlab runs sipedge with real phones (sipp, baresip) in the NAT
// lab of ../shared/netlab: network namespaces with NATing firewalls between
// a LAN and a WAN, on this machine. The tests need root; without it, or
// without the lab scripts, they are skipped.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// uacRTP is the lab's sipp UAC scenario with RTP (sip/uac_rtp.xml) with
// a late 180 or 183 allowed (testdata/uac_rtp.xml says why).
var uacRTP, _ = filepath.Abs(filepath.Join("testdata", "uac_rtp.xml"))

// labDir is ../shared/netlab beside the repository.
func labDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	d := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "netlab")
	if _, err := os.Stat(filepath.Join(d, "up.sh")); err != nil {
		t.Skipf("NAT lab not found at %s", d)
	}
	return d
}

// lab is one running netlab with its own namespace prefix.
type lab struct {
	t      *testing.T
	dir    string
	prefix string
	tmp    string
	bin    string // sipedge binary

	captures int
	se       *exec.Cmd // sipedge (ip netns exec replaces itself with it: same PID)
}

// startLab builds the lab in mode (gateway or farend) with the given
// environment knobs, and tears it down when the test ends.
func startLab(t *testing.T, mode string, env ...string) *lab {
	t.Helper()
	if testing.Short() {
		t.Skip("NAT lab tests are not short")
	}
	if os.Geteuid() != 0 {
		t.Skip("the NAT lab needs root")
	}
	for _, tool := range []string{"ip", "sipp", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (./test.sh installs it)", tool)
		}
	}
	dir := labDir(t)
	var rnd [3]byte
	rand.Read(rnd[:])
	l := &lab{t: t, dir: dir, prefix: "se" + hex.EncodeToString(rnd[:]) + "-", tmp: t.TempDir()}
	env = append(env, "NETLAB_PREFIX="+l.prefix)
	if out, err := l.script(env, "up.sh", mode); err != nil {
		t.Fatalf("netlab up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := l.script(env, "down.sh"); err != nil {
			t.Logf("netlab down: %v\n%s", err, out)
		}
	})
	l.bin = filepath.Join(l.tmp, "sipedge")
	build := exec.Command("go", "build", "-o", l.bin, "sipedge/cmd/sipedge")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// sipp's rtp_stream plays this file (PCMU silence) from its directory.
	if err := os.WriteFile(filepath.Join(l.tmp, "silence.ulaw"), bytes.Repeat([]byte{0xff}, 16000), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *lab) script(env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(l.dir, name)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}

// ns is the full name of a lab namespace.
func (l *lab) ns(name string) string { return l.prefix + name }

// cmd prepares a command inside a namespace, run in the test's directory.
func (l *lab) cmd(ns string, name string, args ...string) *exec.Cmd {
	c := exec.Command("ip", append([]string{"netns", "exec", l.ns(ns), name}, args...)...)
	c.Dir = l.tmp
	return c
}

// bg starts a command in a namespace; it is killed when the test ends. Its
// output goes to a log file named after it.
func (l *lab) bg(logName, ns, name string, args ...string) *exec.Cmd {
	l.t.Helper()
	c := l.cmd(ns, name, args...)
	f, err := os.Create(filepath.Join(l.tmp, logName+".log"))
	if err != nil {
		l.t.Fatal(err)
	}
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		l.t.Fatalf("%s: %v", name, err)
	}
	l.t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
		f.Close()
	})
	return c
}

func (l *lab) logFile(name string) string {
	b, _ := os.ReadFile(filepath.Join(l.tmp, name+".log"))
	return string(b)
}

// sipedge starts sipedge in a namespace with a configuration (YAML body;
// the store directory is added).
func (l *lab) sipedge(ns, config string) {
	l.t.Helper()
	cfg := filepath.Join(l.tmp, "sipedge.yaml")
	config += fmt.Sprintf("store:\n  dir: %s\n", filepath.Join(l.tmp, "data"))
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.se = l.bg("sipedge", ns, l.bin, "--config", cfg)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.logFile("sipedge"), "sipedge started") {
		if time.Now().After(deadline) {
			l.t.Fatalf("sipedge did not start:\n%s", l.logFile("sipedge"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Cleanup(func() {
		if l.t.Failed() {
			l.t.Logf("sipedge log:\n%s", l.logFile("sipedge"))
		}
	})
}

// sipp runs sipp to completion in a namespace and fails the test if it
// does not succeed.
// registerSipp registers user with one sipp REGISTER from ip:5060 in
// namespace ns to sipedge's public address (the farend lab), and fails the
// test unless it gets its 200.
func (l *lab) registerSipp(ctx context.Context, user, ns, ip string) {
	l.t.Helper()
	l.sipp(ctx, "reg-"+user, ns, "203.0.113.10:5060", "-sf", filepath.Join(l.dir, "sip", "reg.xml"), "-s", user,
		"-key", "dom", "203.0.113.10", "-i", ip, "-p", "5060", "-m", "1")
}

func (l *lab) sipp(ctx context.Context, logName, ns string, args ...string) {
	l.t.Helper()
	// A provisional response may overtake a 2xx on its way through UDP
	// proxies (Kamailio's workers, sipedge's readers): a phone ignores a
	// late 180; sipp would abort the call unless told to go on.
	args = append(args, "-nostdin", "-timeout", "30s", "-default_behaviors", "all,-abortunexp",
		"-trace_err", "-error_file", filepath.Join(l.tmp, logName+"-errors.log"))
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns(ns), "sipp"}, args...)...)
	c.Dir = l.tmp
	out, err := c.CombinedOutput()
	os.WriteFile(filepath.Join(l.tmp, logName+".log"), out, 0o644)
	if err != nil {
		errs, _ := os.ReadFile(filepath.Join(l.tmp, logName+"-errors.log"))
		l.t.Fatalf("sipp %s: %v\n%s\n%s", logName, err, tail(out, 1500), tail(errs, 3000))
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// capture records UDP traffic on a namespace's eth0 to a pcap file until
// stop is called.
type capture struct {
	cmd  *exec.Cmd
	file string
}

func (l *lab) capture(ns, filter string) *capture {
	l.t.Helper()
	return l.captureOn(ns, "eth0", filter)
}

// captureOn records on a given interface of a namespace.
func (l *lab) captureOn(ns, iface, filter string) *capture {
	l.t.Helper()
	l.captures++
	name := fmt.Sprintf("tcpdump-%s-%d", ns, l.captures)
	file := filepath.Join(l.tmp, name+".pcap")
	c := l.bg(name, ns, "tcpdump", "--immediate-mode", "-U", "-n", "-i", iface, "-w", file, filter)
	// tcpdump says "listening on" once the capture runs.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(l.logFile(name), "listening on") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return &capture{cmd: c, file: file}
}

func (c *capture) stop() {
	c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		c.cmd.Process.Kill()
	}
}

// rtpFlow is what a capture saw of one direction of an RTP stream.
type rtpFlow struct {
	packets  int
	firstSeq uint16
	lastSeq  uint16
	missing  int // sequence numbers between the first and the last not seen
}

// rtpFlows reads a pcap (Ethernet, IPv4) and returns the RTP flows in it by
// "src>dst" (ip:port). Loss is counted from the sequence numbers, as a
// receiver does (RFC 3550 A.3): from the first packet seen to the last.
func rtpFlows(t *testing.T, file string) map[string]*rtpFlow {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian pcap file", file)
	}
	flows := map[string]*rtpFlow{}
	seen := map[string]map[uint16]bool{}
	for p := 24; p+16 <= len(b); {
		incl := int(binary.LittleEndian.Uint32(b[p+8:]))
		pkt := b[p+16 : min(len(b), p+16+incl)]
		p += 16 + incl
		if len(pkt) < 14+20+8+12 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8+12 {
			continue
		}
		udp := ip[ihl:]
		rtp := udp[8:]
		if rtp[0]>>6 != 2 || rtp[1]&0x7f >= 72 && rtp[1]&0x7f <= 76 { // not RTP, or RTCP
			continue
		}
		key := fmt.Sprintf("%d.%d.%d.%d:%d>%d.%d.%d.%d:%d", ip[12], ip[13], ip[14], ip[15], binary.BigEndian.Uint16(udp),
			ip[16], ip[17], ip[18], ip[19], binary.BigEndian.Uint16(udp[2:]))
		seq := binary.BigEndian.Uint16(rtp[2:])
		f := flows[key]
		if f == nil {
			f = &rtpFlow{firstSeq: seq}
			flows[key] = f
			seen[key] = map[uint16]bool{}
		}
		if !seen[key][seq] {
			seen[key][seq] = true
			f.packets++
		}
		if int16(seq-f.lastSeq) > 0 || f.packets == 1 {
			f.lastSeq = seq
		}
	}
	for key, f := range flows {
		f.missing = int(f.lastSeq-f.firstSeq) + 1 - len(seen[key])
	}
	return flows
}

// flowTo returns the one flow of the capture that goes to dst (ip:port).
func flowTo(t *testing.T, flows map[string]*rtpFlow, dst string) (string, *rtpFlow) {
	t.Helper()
	var key string
	var found *rtpFlow
	for k, f := range flows {
		if strings.HasSuffix(k, ">"+dst) {
			if found != nil {
				t.Fatalf("two RTP flows to %s: %s and %s", dst, key, k)
			}
			key, found = k, f
		}
	}
	if found == nil {
		t.Fatalf("no RTP reached %s (flows: %v)", dst, keys(flows))
	}
	return key, found
}

func keys(m map[string]*rtpFlow) []string {
	var out []string
	for k, f := range m {
		out = append(out, fmt.Sprintf("%s(%d)", k, f.packets))
	}
	return out
}

// flowToHost returns the one RTP flow of the capture to host (any port).
// host may be a pattern: "10.77.0.1?:110" is any of 10.77.0.10-19 on a
// port starting with 110.
func flowToHost(t *testing.T, flows map[string]*rtpFlow, host string) (string, *rtpFlow) {
	t.Helper()
	pat := ">" + regexp.QuoteMeta(host)
	pat = strings.ReplaceAll(pat, `\?`, `\d`)
	if !strings.Contains(host, ":") {
		pat += ":"
	}
	re := regexp.MustCompile(pat)
	// The biggest matching flow: a phone that sends from another address
	// than it announced (baresip, see its README) gets a packet or two at
	// its SDP address before the relay latches to its real source.
	best := ""
	for k, f := range flows {
		if re.MatchString(k) && (best == "" || f.packets > flows[best].packets) {
			best = k
		}
	}
	if best != "" {
		return best, flows[best]
	}
	t.Fatalf("no RTP reached %s (flows: %v)", host, keys(flows))
	return "", nil
}
