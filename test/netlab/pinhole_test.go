package netlab

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPinholes: the gateway's firewall has no media range open
// (NETLAB_GW_UDP=5060-5061). sipedge opens each call's relay ports in the
// firewall's input chain for exactly the call's lifetime: during the call a
// packet from a new source to the relay port is accepted by sipedge's rule
// (its counter moves) and the media flows; after BYE the set is empty and
// the same probe is dropped by the firewall (dropped_input moves).
func TestPinholes(t *testing.T) {
	t.Parallel()
	l := startLab(t, "gateway", "NETLAB_GW_UDP=5060-5061")
	l.kamailio()
	l.sipedge("gw", gatewayConfig+"  firewall: inet netlab input\n")
	l.baresip("alice", "--ns", l.ns("lan"), "--ip", "10.77.0.10", "--user", "alice",
		"--outbound", "sip:10.77.0.1:5060", "--source", "sine:660")
	if ports := l.pinholes(); len(ports) != 0 {
		t.Fatalf("pinholes open before any call: %v", ports)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	capLAN := l.capture("lan", "udp portrange 11000-11099")
	done := make(chan error, 1)
	go func() {
		done <- runIn(ctx, l, "wan", "sipp", "203.0.113.10:5060", "-sf", uacRTP, "-s", "alice",
			"-key", "dom", "203.0.113.10", "-key", "me", "carol", "-i", "203.0.113.12", "-p", "5060",
			"-mi", "203.0.113.12", "-mp", "30000", "-m", "1", "-d", "4000", "-nostdin", "-timeout", "30s")
	}()
	var open []int
	for deadline := time.Now().Add(10 * time.Second); len(open) == 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		open = l.pinholes()
	}
	// The stream's RTP and RTCP ports (the inside and outside pairs have
	// the same numbers, each address having its own range).
	if len(open) != 2 || open[0]%2 != 0 || open[1] != open[0]+1 {
		t.Fatalf("pinholes during the call: %v, want the stream's RTP and RTCP port", open)
	}
	// Probe once the media flows: the relay has latched to carol by then
	// (a probe first would be taken for her: whoever sends first wins).
	time.Sleep(1500 * time.Millisecond)
	accepted0, dropped0 := l.ruleCounter(), l.droppedInput()
	l.probe(open[0])
	time.Sleep(300 * time.Millisecond)
	if got := l.ruleCounter(); got < accepted0+3 {
		t.Errorf("probe during the call: sipedge's rule accepted %d packets, want the 3 probes", got-accepted0)
	}
	if err := <-done; err != nil {
		t.Fatalf("call from the outside: %v", err)
	}
	capLAN.stop()
	checkFlow(t, capLAN.file, "10.77.0.1:", "10.77.0.10", 150)
	time.Sleep(300 * time.Millisecond)
	if ports := l.pinholes(); len(ports) != 0 {
		t.Fatalf("pinholes left after BYE: %v", ports)
	}
	dropped1 := l.droppedInput()
	l.probe(open[0])
	time.Sleep(300 * time.Millisecond)
	if got := l.droppedInput(); got < dropped1+3 {
		t.Errorf("probe after BYE: the firewall dropped %d packets, want the 3 probes (dropped before the call %d)", got-dropped1, dropped0)
	}
}

// pinholes lists the ports in sipedge's set on the gateway.
func (l *lab) pinholes() []int {
	out, _ := l.cmd("gw", "nft", "list", "set", "inet", "netlab", "sipedge_media").CombinedOutput()
	m := regexp.MustCompile(`elements = \{([^}]*)\}`).FindSubmatch(out)
	if m == nil {
		return nil
	}
	var ports []int
	for _, f := range strings.Split(string(m[1]), ",") {
		if p, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			ports = append(ports, p)
		}
	}
	return ports
}

var counterRE = regexp.MustCompile(`packets (\d+)`)

// ruleCounter reads the packet counter of sipedge's pinhole rule.
func (l *lab) ruleCounter() int {
	out, _ := l.cmd("gw", "nft", "list", "chain", "inet", "netlab", "input").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "@sipedge_media") {
			if m := counterRE.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				return n
			}
		}
	}
	return -1
}

// droppedInput reads the gateway's dropped_input counter.
func (l *lab) droppedInput() int {
	out, _ := l.cmd("gw", "nft", "list", "counter", "inet", "netlab", "dropped_input").CombinedOutput()
	if m := counterRE.FindStringSubmatch(string(out)); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return -1
}

// probe sends three UDP packets from a fresh source in wan to the
// gateway's outside address on port.
func (l *lab) probe(port int) {
	l.t.Helper()
	script := fmt.Sprintf(`import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("203.0.113.12", 0))
for i in range(3):
    s.sendto(b"probe", ("203.0.113.1", %d))`, port)
	if out, err := l.cmd("wan", "python3", "-c", script).CombinedOutput(); err != nil {
		l.t.Fatalf("probe: %v\n%s", err, out)
	}
}
