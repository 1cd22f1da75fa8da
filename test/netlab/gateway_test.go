package netlab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gatewayConfig runs sipedge on the NAT gateway (siproxd's deployment):
// inside 10.77.0.1, outside 203.0.113.1. The provider's domain
// (203.0.113.10) is not sipedge's: phones register there through sipedge.
const gatewayConfig = `listen: [udp:10.77.0.1:5060, udp:203.0.113.1:5060]
domains: [10.77.0.1]
trusted_networks: [loopback, private, 203.0.113.0/24]
media:
  ports: 10000-10999
`

// kamailio starts the lab's provider (registrar + record-routing proxy on
// 203.0.113.10; users 2xxx go to 203.0.113.11).
func (l *lab) kamailio() {
	l.t.Helper()
	if _, err := os.Stat("/usr/sbin/kamailio"); err != nil {
		l.t.Skip("kamailio not installed (./test.sh installs it)")
	}
	run := filepath.Join(l.tmp, "kamailio")
	os.MkdirAll(run, 0o755)
	l.bg("kamailio", "wan", "/usr/sbin/kamailio", "-f", filepath.Join(l.dir, "sip", "kamailio-provider.cfg"),
		"-DD", "-E", "-Y", run, "-m", "64", "-M", "16")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.logFile("kamailio"), "INFO") {
		if time.Now().After(deadline) {
			l.t.Fatalf("kamailio did not start:\n%s", l.logFile("kamailio"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
}

// TestGateway: sipedge on the NAT gateway, phones on the LAN registered
// with the provider in the WAN through it (the passive registrar), and
// media relayed between the inside and the outside. Outgoing, incoming and
// LAN-to-LAN calls, each with RTP both ways; with a cone and with a
// symmetric NAT on the gateway.
func TestGateway(t *testing.T) {
	for _, natType := range []string{"cone", "symmetric"} {
		t.Run(natType, func(t *testing.T) {
			t.Parallel()
			testGateway(t, natType)
		})
	}
}

func testGateway(t *testing.T, natType string) {
	l := startLab(t, "gateway", "NETLAB_NAT="+natType)
	l.kamailio()
	l.sipedge("gw", gatewayConfig)
	alice := l.baresip("alice", "--ns", l.ns("lan"), "--ip", "10.77.0.10", "--user", "alice",
		"--outbound", "sip:10.77.0.1:5060", "--source", "sine:660")
	sip := filepath.Join(l.dir, "sip")

	t.Run("outgoing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		capLAN := l.capture("lan", "udp portrange 11000-11099")
		capWAN := l.captureOn("wan", "br0", "udp port 20000")
		uas := make(chan error, 1)
		go func() {
			uas <- runIn(ctx, l, "wan", "sipp", "-sf", filepath.Join(sip, "uas_rtp.xml"), "-i", "203.0.113.11", "-p", "5060",
				"-key", "me", "u2000", "-mi", "203.0.113.11", "-mp", "20000", "-m", "1", "-nostdin", "-timeout", "30s")
		}()
		time.Sleep(500 * time.Millisecond)
		alice.run("ctl", alice.dir, "dial", "sip:2000@203.0.113.10", "--wait", "CALL_ESTABLISHED", "--timeout", "15")
		time.Sleep(3 * time.Second)
		alice.run("ctl", alice.dir, "hangup", "--wait", "CALL_CLOSED", "--timeout", "10")
		if err := <-uas; err != nil {
			t.Fatalf("sipp UAS 2000: %v", err)
		}
		capLAN.stop()
		capWAN.stop()
		checkFlow(t, capLAN.file, "10.77.0.1:", "10.77.0.10", 100)
		checkFlow(t, capWAN.file, "203.0.113.1:", "203.0.113.11", 100)
	})

	t.Run("incoming", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		capLAN := l.capture("lan", "udp portrange 11000-11099")
		capWAN := l.captureOn("wan", "br0", "udp port 30000")
		l.sipp(ctx, "uac-in", "wan", "203.0.113.10:5060", "-sf", uacRTP, "-s", "alice",
			"-key", "dom", "203.0.113.10", "-key", "me", "carol", "-i", "203.0.113.12", "-p", "5060",
			"-mi", "203.0.113.12", "-mp", "30000", "-m", "1", "-d", "3000")
		capLAN.stop()
		capWAN.stop()
		checkFlow(t, capLAN.file, "10.77.0.1:", "10.77.0.10", 100)
		checkFlow(t, capWAN.file, "203.0.113.1:", "203.0.113.12", 100)
	})

	t.Run("lan-to-lan", func(t *testing.T) {
		bob := l.baresip("bob", "--ns", l.ns("lan"), "--ip", "10.77.0.11", "--user", "bob",
			"--outbound", "sip:10.77.0.1:5060", "--source", "tone:4:440")
		capLAN := l.capture("lan", "udp portrange 11000-11199")
		bob.run("ctl", bob.dir, "dial", "sip:alice@203.0.113.10", "--wait", "CALL_ESTABLISHED", "--timeout", "15")
		bob.run("ctl", bob.dir, "--wait", "CALL_CLOSED", "--timeout", "20")
		capLAN.stop()
		// The call went out to the provider and came back in: one side
		// of the relay is the gateway's outside address. baresip sends
		// its RTP from the namespace's primary address whatever it
		// announces (../shared/netlab/baresip/README.md), so the phones
		// are told apart by their RTP ports: alice 110xx, bob 111xx.
		checkFlow(t, capLAN.file, "", "10.77.0.1?:110", 150)
		checkFlow(t, capLAN.file, "", "10.77.0.1?:111", 150)
		btx, brx := bob.stats()
		t.Logf("bob tx=%d rx=%d", btx, brx)
	})
}

// checkFlow asserts RTP from a relay address prefix to host (any port)
// without gaps.
func checkFlow(t *testing.T, pcap, fromPrefix, host string, min int) {
	t.Helper()
	key, f := flowToHost(t, rtpFlows(t, pcap), host)
	if fromPrefix == "" && !strings.HasPrefix(key, "10.77.0.1:") && !strings.HasPrefix(key, "203.0.113.1:") {
		t.Errorf("RTP %s does not come from the gateway's relay", key)
	}
	if !strings.HasPrefix(key, fromPrefix) || f.packets < min || f.missing != 0 {
		t.Errorf("RTP %s: %d packets, %d missing; want >= %d from %s with no gap", key, f.packets, f.missing, min, fromPrefix)
		return
	}
	t.Logf("RTP %s: %d packets, seq %d..%d, 0 missing", key, f.packets, f.firstSeq, f.lastSeq)
}
