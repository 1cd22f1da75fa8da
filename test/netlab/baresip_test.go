package netlab

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// phone is a baresip phone run by the lab's labphone.sh.
type phone struct {
	l   *lab
	dir string
}

func (l *lab) baresip(name string, conf ...string) *phone {
	l.t.Helper()
	if _, err := exec.LookPath("baresip"); err != nil {
		l.t.Skip("baresip not installed (./test.sh installs it)")
	}
	p := &phone{l: l, dir: filepath.Join(l.tmp, name)}
	p.run(append([]string{"conf", p.dir}, conf...)...)
	p.run("start", p.dir)
	l.t.Cleanup(func() {
		exec.Command("bash", filepath.Join(l.dir, "baresip", "labphone.sh"), "stop", p.dir).Run()
	})
	return p
}

func (p *phone) run(args ...string) string {
	p.l.t.Helper()
	out, err := exec.Command("bash", append([]string{filepath.Join(p.l.dir, "baresip", "labphone.sh")}, args...)...).CombinedOutput()
	if err != nil {
		p.l.t.Fatalf("labphone %s: %v\n%s", strings.Join(args, " "), err, tail(out, 2000))
	}
	return string(out)
}

var statsRE = regexp.MustCompile(`tx=(\d+) rx=(\d+)`)

// stats returns the RTP packets baresip sent and received in its last call.
func (p *phone) stats() (tx, rx int) {
	p.l.t.Helper()
	m := statsRE.FindStringSubmatch(p.run("stats", p.dir))
	if m == nil {
		p.l.t.Fatalf("no RTP statistics from %s", p.dir)
	}
	tx, _ = strconv.Atoi(m[1])
	rx, _ = strconv.Atoi(m[2])
	return tx, rx
}

// TestFarEndTCPBaresip: two baresip phones behind two NATs register with
// sipedge over TCP and call each other. The INVITE reaches alice over the
// connection she registered on (the NAT lets nothing else in), the media is
// relayed over UDP both ways, and alice hears bob's 440 Hz tone.
func TestFarEndTCPBaresip(t *testing.T) {
	t.Parallel()
	l := startLab(t, "farend")
	l.sipedge("wan", farEndConfig)
	alice := l.baresip("alice", "--ns", l.ns("lan"), "--ip", "10.77.0.10", "--user", "alice",
		"--domain", "203.0.113.10;transport=tcp", "--source", "sine:660", "--record")
	bob := l.baresip("bob", "--ns", l.ns("lan2"), "--ip", "10.78.0.10", "--user", "bob",
		"--domain", "203.0.113.10;transport=tcp", "--source", "tone:4:440")
	capA := l.capture("lan", "udp portrange 11000-11099")
	capB := l.capture("lan2", "udp portrange 11000-11099")

	bob.run("ctl", bob.dir, "dial", "sip:alice@203.0.113.10;transport=tcp", "--wait", "CALL_ESTABLISHED", "--timeout", "15")
	bob.run("ctl", bob.dir, "--wait", "CALL_CLOSED", "--timeout", "20") // the tone file ends: bob hangs up
	capA.stop()
	capB.stop()

	btx, brx := bob.stats()
	atx, arx := alice.stats()
	t.Logf("bob tx=%d rx=%d, alice tx=%d rx=%d", btx, brx, atx, arx)
	if btx < 150 || atx < 150 || arx < btx*9/10 || brx < atx*9/10 {
		t.Errorf("RTP did not flow both ways: bob tx=%d rx=%d, alice tx=%d rx=%d", btx, brx, atx, arx)
	}
	for _, c := range []struct{ pcap, to string }{{capA.file, "10.77.0.10:"}, {capB.file, "10.78.0.10:"}} {
		flows := rtpFlows(t, c.pcap)
		for k, f := range flows {
			if strings.Contains(k, ">"+c.to) {
				if !strings.HasPrefix(k, "203.0.113.10:") || f.missing != 0 {
					t.Errorf("RTP %s: %d packets, %d missing; want it from the relay with no gap", k, f.packets, f.missing)
				}
				t.Logf("RTP %s: %d packets, %d missing", k, f.packets, f.missing)
			}
		}
	}
	dumps, _ := filepath.Glob(filepath.Join(alice.dir, "dump-*-dec.wav"))
	if len(dumps) == 0 {
		t.Fatal("alice recorded nothing")
	}
	heard := alice.run("tonecheck", dumps[len(dumps)-1])
	if !strings.Contains(heard, "peak_hz=440") {
		t.Errorf("alice did not hear bob's 440 Hz tone: %s", heard)
	}
}
