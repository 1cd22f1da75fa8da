package netlab

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestKeepAliveHoldsNATMapping: the NATs forget an idle UDP mapping after
// 10 s (NETLAB_UDP_TIMEOUT=10). alice (baresip, UDP) registers once and
// then stays quiet for 60 s; sipedge's keep-alives (OPTIONS every 5 s)
// keep her mapping open, so bob's call still reaches her and the media
// flows.
func TestKeepAliveHoldsNATMapping(t *testing.T) {
	t.Parallel()
	l := startLab(t, "farend", "NETLAB_UDP_TIMEOUT=10")
	if out, _ := l.cmd("gw", "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout").Output(); strings.TrimSpace(string(out)) != "10" {
		t.Fatalf("the NAT's UDP timeout is %q, not 10 s: the test would prove nothing", out)
	}
	l.sipedge("wan", farEndConfig+"nat:\n  keepalive: options\n  keepalive_interval: 5s\n")
	sigCap := l.capture("lan", "udp port 5060")
	l.baresip("alice", "--ns", l.ns("lan"), "--ip", "10.77.0.10", "--user", "alice", "--regint", "3600", "--source", "sine:660")
	time.Sleep(keepAliveWait)

	rtpCap := l.capture("lan", "udp portrange 11000-11099")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l.sipp(ctx, "uac-bob", "lan2", "203.0.113.10:5060", "-sf", uacRTP, "-s", "alice",
		"-key", "dom", "203.0.113.10", "-key", "me", "bob", "-i", "10.78.0.10", "-p", "5060",
		"-mi", "10.78.0.10", "-mp", "30000", "-m", "1", "-d", "3000")
	rtpCap.stop()
	sigCap.stop()
	key, f := flowToHost(t, rtpFlows(t, rtpCap.file), "10.77.0.10")
	t.Logf("RTP %s: %d packets, seq %d..%d, %d missing", key, f.packets, f.firstSeq, f.lastSeq, f.missing)
	if f.packets < 100 || f.missing != 0 {
		t.Errorf("RTP to alice after %v: %d packets, %d missing", keepAliveWait, f.packets, f.missing)
	}
	pcap, _ := os.ReadFile(sigCap.file)
	want := int(keepAliveWait/(5*time.Second)) - 2
	if n := bytes.Count(pcap, []byte("OPTIONS sip:alice")); n < want {
		t.Errorf("alice saw %d keep-alive OPTIONS in %v, want at least %d", n, keepAliveWait, want)
	} else {
		t.Logf("alice answered %d keep-alives in %v; the call reached her", n, keepAliveWait)
	}
}

// keepAliveWait is how long alice stays quiet: six times the NAT timeout.
var keepAliveWait = 60 * time.Second
