package netlab

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKernelPath: sipedge on the gateway with media.kernel: on. A call
// from the provider side (sipp with RTP) to alice on the LAN (baresip)
// moves to nftables once both sides have latched: the gateway's ruleset
// holds one element per direction in its streams map during the call, RTP flows both ways
// through the firewall (whose forward chain accepts only established flows
// and sipedge's rule), the call log's per-leg packet counts equal what each
// phone sent as the captures saw it, and nothing of the call is left in
// the ruleset after BYE. Then sipedge is killed (kill -9) during a second
// kernel-forwarded call and restarted: the new sipedge starts with a clean
// table.
func TestKernelPath(t *testing.T) {
	t.Parallel()
	l := startLab(t, "gateway")
	l.kamailio()
	callLog := filepath.Join(l.tmp, "calls.jsonl")
	cfg := gatewayConfig + "  firewall: inet netlab input\n  kernel: on\ncall_log:\n  file: " + callLog + "\n"
	l.sipedge("gw", cfg)
	if !strings.Contains(l.logFile("sipedge"), "in-kernel path on") {
		t.Fatalf("the in-kernel path did not start:\n%s", l.logFile("sipedge"))
	}
	l.baresip("alice", "--ns", l.ns("lan"), "--ip", "10.77.0.10", "--user", "alice",
		"--outbound", "sip:10.77.0.1:5060", "--source", "sine:660")

	call := func(ctx context.Context, hold string) <-chan error {
		done := make(chan error, 1)
		go func() {
			done <- runIn(ctx, l, "wan", "sipp", "203.0.113.10:5060", "-sf", uacRTP, "-s", "alice",
				"-key", "dom", "203.0.113.10", "-key", "me", "carol", "-i", "203.0.113.12", "-p", "5060",
				"-mi", "203.0.113.12", "-mp", "30000", "-m", "1", "-d", hold, "-nostdin", "-timeout", "30s",
				"-trace_msg", "-message_file", filepath.Join(l.tmp, "carol-messages.log"))
		}()
		return done
	}
	waitDirections := func(want int) int {
		t.Helper()
		n := 0
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if n = l.kernelDirections("gw"); n >= want {
				return n
			}
		}
		return n
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	capLAN := l.capture("lan", "udp portrange 10000-11099")
	capWAN := l.captureOn("wan", "br0", "udp port 30000 or udp port 30001 or udp portrange 10000-10999")
	done := call(ctx, "6000")
	if n := waitDirections(2); n != 2 {
		// alice's log says whether the INVITE reached her and what she
		// answered: the call has been seen still running here.
		alice, _ := os.ReadFile(filepath.Join(l.tmp, "alice", "log"))
		carol, _ := os.ReadFile(filepath.Join(l.tmp, "carol-messages.log"))
		t.Fatalf("directions in the kernel during the call: %d, want 2 (the call: %s)\n%s\nsipedge log:\n%s\n"+
			"alice's baresip log:\n%s\ncarol's messages (sipp):\n%s",
			n, callState(done), l.kernelRuleset("gw"), tail([]byte(l.logFile("sipedge")), 4000), tail(alice, 3000), tail(carol, 4000))
	}
	if err := <-done; err != nil {
		t.Fatalf("call: %v", err)
	}
	capLAN.stop()
	capWAN.stop()
	checkFlow(t, capLAN.file, "10.77.0.1:", "10.77.0.10", 250)
	checkFlow(t, capWAN.file, "203.0.113.1:", "203.0.113.12", 250)
	time.Sleep(500 * time.Millisecond)
	if n := l.kernelDirections("gw"); n != 0 {
		t.Fatalf("directions left in the kernel after BYE: %d\n%s", n, l.kernelRuleset("gw"))
	}

	// What each phone sent to the relay, as captured, against the call
	// log's legs (RTP packets: Packets less RTCP).
	_, fromCarol := flowToHost(t, rtpFlows(t, capWAN.file), "203.0.113.1:10")
	_, fromAlice := flowToHost(t, rtpFlows(t, capLAN.file), "10.77.0.1:10")
	legs := lastCallLegs(t, callLog)
	caller, callee := legs["caller"], legs["callee"]
	if caller.Kernel == 0 || callee.Kernel == 0 {
		t.Fatalf("call log: kernel-forwarded packets %d/%d, want both > 0", caller.Kernel, callee.Kernel)
	}
	matchSent(t, "caller leg (carol)", caller, fromCarol.packets)
	matchSent(t, "callee leg (alice)", callee, fromAlice.packets)
	t.Logf("caller %d packets (%d by the kernel), callee %d (%d by the kernel); captured from carol %d, from alice %d",
		caller.Packets, caller.Kernel, callee.Packets, callee.Kernel, fromCarol.packets, fromAlice.packets)

	// kill -9 during a kernel-forwarded call leaves the table; a restart
	// replaces it.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel2()
	done = call(ctx2, "20000")
	if n := waitDirections(2); n != 2 {
		t.Fatalf("directions in the kernel during the second call: %d, want 2 (the call: %s)\n%s\nsipedge log:\n%s",
			n, callState(done), l.kernelRuleset("gw"), tail([]byte(l.logFile("sipedge")), 4000))
	}
	l.se.Process.Kill()
	l.se.Wait()
	if n := l.kernelDirections("gw"); n <= 0 {
		t.Fatal("the killed sipedge's directions vanished by themselves: the restart check proves nothing")
	}
	l.sipedge("gw", cfg)
	if n := l.kernelDirections("gw"); n != 0 {
		t.Fatalf("directions in the kernel after the restart: %d, want none\n%s", n, l.kernelRuleset("gw"))
	}
	cancel2()
	<-done
}

// callState says whether a call started with call has ended, and how,
// without waiting for it (a failure message's context).
func callState(done <-chan error) string {
	select {
	case err := <-done:
		if err != nil {
			return "sipp failed: " + err.Error()
		}
		return "sipp ended without error"
	default:
		return "sipp still running"
	}
}

// matchSent compares a leg's RTP count in the call log with what the phone
// sent as captured. A phone may send a last packet or two after the BYE,
// when the relay's ports are closed: those are captured but never reach
// sipedge. Everything else must be counted exactly, whichever path
// forwarded it.
func matchSent(t *testing.T, what string, leg logLeg, sent int) {
	t.Helper()
	got := int(leg.Packets - leg.RTCP)
	if got > sent || sent-got > 2 {
		t.Errorf("%s: %d RTP packets in the call log, the phone sent %d", what, got, sent)
	}
}

// kernelDirections counts the directions in the in-kernel path's table
// in namespace ns: the elements of its streams map (one per direction;
// each has its element in the out map too). -1 when the map cannot be
// read.
func (l *lab) kernelDirections(ns string) int {
	b, err := l.cmd(ns, "nft", "-j", "list", "map", "ip", "sipedge_media_10000_10999", "streams").Output()
	if err != nil {
		return -1
	}
	var doc struct {
		Nftables []struct {
			Map *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"map"`
		} `json:"nftables"`
	}
	if json.Unmarshal(b, &doc) != nil {
		return -1
	}
	for _, x := range doc.Nftables {
		if x.Map != nil {
			return len(x.Map.Elem)
		}
	}
	return -1
}

func (l *lab) kernelRuleset(ns string) string {
	b, _ := l.cmd(ns, "nft", "list", "table", "ip", "sipedge_media_10000_10999").CombinedOutput()
	return string(b)
}

type logLeg struct {
	Packets uint64 `json:"packets"`
	RTCP    uint64 `json:"rtcp_packets"`
	Kernel  uint64 `json:"kernel_packets"`
}

// lastCallLegs reads the last call log line's first stream's legs by side.
func lastCallLegs(t *testing.T, file string) map[string]logLeg {
	t.Helper()
	var line string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		f, err := os.Open(file)
		if err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				line = sc.Text()
			}
			f.Close()
		}
		if line != "" || time.Now().After(deadline) {
			break
		}
	}
	var rec struct {
		Media struct {
			Streams []struct {
				Legs []struct {
					Side string `json:"side"`
					logLeg
				} `json:"legs"`
			} `json:"streams"`
		} `json:"media"`
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil || len(rec.Media.Streams) == 0 {
		t.Fatalf("call log line %q: %v", line, err)
	}
	out := map[string]logLeg{}
	for _, l := range rec.Media.Streams[0].Legs {
		out[l.Side] = l.logLeg
	}
	return out
}

// TestKernelPathFarEnd: sipedge as the public server (far-end deployment),
// two phones behind two NATs calling each other through the relay with
// media.kernel: on. The server forwards between two peers on its one
// interface (IPv4 forwarding turned on in its namespace, as the in-kernel
// path needs). Both directions go to the kernel, the media arrives at
// each phone from the relay with no gap, the call log's counts equal what
// each phone sent, and nothing is left in the ruleset after BYE.
func TestKernelPathFarEnd(t *testing.T) {
	t.Parallel()
	l := startLab(t, "farend")
	if out, err := l.cmd("wan", "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward: %v %s", err, out)
	}
	callLog := filepath.Join(l.tmp, "calls.jsonl")
	l.sipedge("wan", strings.Replace(farEndConfig, "  ports: 30000-30999\n", "  ports: 10000-10999\n  kernel: on\n", 1)+
		"call_log:\n  file: "+callLog+"\n")
	if !strings.Contains(l.logFile("sipedge"), "in-kernel path on") {
		t.Fatalf("the in-kernel path did not start:\n%s", l.logFile("sipedge"))
	}
	sip := filepath.Join(l.dir, "sip")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l.registerSipp(ctx, "alice", "lan", "10.77.0.10")
	l.registerSipp(ctx, "bob", "lan2", "10.78.0.10")

	capA := l.capture("lan", "udp port 20000")
	capB := l.capture("lan2", "udp port 30000")
	uas := make(chan error, 1)
	go func() {
		uas <- runIn(ctx, l, "lan", "sipp", "-sf", filepath.Join(sip, "uas_rtp.xml"), "-i", "10.77.0.10", "-p", "5060",
			"-key", "me", "alice", "-mi", "10.77.0.10", "-mp", "20000", "-m", "1", "-nostdin", "-timeout", "30s")
	}()
	time.Sleep(500 * time.Millisecond)
	uac := make(chan error, 1)
	go func() {
		uac <- runIn(ctx, l, "lan2", "sipp", "203.0.113.10:5060", "-sf", uacRTP, "-s", "alice",
			"-key", "dom", "203.0.113.10", "-key", "me", "bob", "-i", "10.78.0.10", "-p", "5060",
			"-mi", "10.78.0.10", "-mp", "30000", "-m", "1", "-d", "6000", "-nostdin", "-timeout", "30s")
	}()
	n := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && n < 2; time.Sleep(100 * time.Millisecond) {
		n = l.kernelDirections("wan")
	}
	if n != 2 {
		t.Fatalf("directions in the kernel during the call: %d, want 2", n)
	}
	if err := <-uac; err != nil {
		t.Fatalf("bob (sipp UAC): %v", err)
	}
	if err := <-uas; err != nil {
		t.Fatalf("alice (sipp UAS): %v", err)
	}
	capA.stop()
	capB.stop()
	checkRTP(t, capA.file, "10.77.0.10:20000", 250)
	checkRTP(t, capB.file, "10.78.0.10:30000", 250)
	time.Sleep(500 * time.Millisecond)
	if n := l.kernelDirections("wan"); n != 0 {
		t.Fatalf("directions left in the kernel after BYE: %d", n)
	}
	flowsA, flowsB := rtpFlows(t, capA.file), rtpFlows(t, capB.file)
	sent := func(flows map[string]*rtpFlow, from string) int {
		for k, f := range flows {
			if strings.HasPrefix(k, from+">") {
				return f.packets
			}
		}
		t.Fatalf("no RTP from %s (flows %v)", from, keys(flows))
		return 0
	}
	legs := lastCallLegs(t, callLog)
	caller, callee := legs["caller"], legs["callee"]
	if caller.Kernel == 0 || callee.Kernel == 0 {
		t.Fatalf("call log: kernel-forwarded packets %d/%d, want both > 0", caller.Kernel, callee.Kernel)
	}
	matchSent(t, "caller leg (bob)", caller, sent(flowsB, "10.78.0.10:30000"))
	matchSent(t, "callee leg (alice)", callee, sent(flowsA, "10.77.0.10:20000"))
	t.Logf("caller %d packets (%d by the kernel), callee %d (%d by the kernel)", caller.Packets, caller.Kernel, callee.Packets, callee.Kernel)
}
