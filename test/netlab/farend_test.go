package netlab

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// farEndConfig runs sipedge as the public server of the far-end deployment
// (../shared/docs/PRODUCT.md): in wan on 203.0.113.10, phones behind the
// two NATs. Until users are configured, the sources allowed to register are
// named here (the NATs' public side).
const farEndConfig = `listen: [udp:203.0.113.10:5060, tcp:203.0.113.10:5060]
trusted_networks: [loopback, private, 203.0.113.0/24]
media:
  ports: 30000-30999
`

// checkRTP asserts that the capture at a phone shows RTP from the relay
// (sipedge's address) to the phone's RTP port, with no gap in the sequence
// numbers and at least min packets.
func checkRTP(t *testing.T, pcap, to string, min int) {
	t.Helper()
	key, f := flowTo(t, rtpFlows(t, pcap), to)
	if !strings.HasPrefix(key, "203.0.113.10:") {
		t.Errorf("RTP to %s came from %s, not through the relay at 203.0.113.10", to, key)
	}
	if f.packets < min || f.missing != 0 {
		t.Errorf("RTP %s: %d packets, %d missing (want >= %d, 0 missing)", key, f.packets, f.missing, min)
	}
	t.Logf("RTP %s: %d packets, seq %d..%d, %d missing", key, f.packets, f.firstSeq, f.lastSeq, f.missing)
}

// TestFarEndUDP: two phones behind two NATs (cone) register with sipedge
// over UDP and call each other; the media goes through sipedge's relay and
// flows both ways without loss. alice answers (sipp UAS with RTP) in lan,
// bob calls (sipp UAC with RTP, 3 s) from lan2. A symmetric NAT gives each
// destination its own public port: the media then comes from other ports
// than the signalling, which only latching finds.
func TestFarEndUDP(t *testing.T) {
	for _, natType := range []string{"cone", "symmetric"} {
		t.Run(natType, func(t *testing.T) {
			t.Parallel()
			testFarEndUDP(t, natType)
		})
	}
}

func testFarEndUDP(t *testing.T, natType string) {
	l := startLab(t, "farend", "NETLAB_NAT="+natType)
	l.sipedge("wan", farEndConfig)
	sip := filepath.Join(l.dir, "sip")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	l.registerSipp(ctx, "alice", "lan", "10.77.0.10")
	l.registerSipp(ctx, "bob", "lan2", "10.78.0.10")

	capA := l.capture("lan", "udp port 20000")
	capB := l.capture("lan2", "udp port 30000")
	uas := make(chan error, 1)
	go func() {
		c := runIn(ctx, l, "lan", "sipp", "-sf", filepath.Join(sip, "uas_rtp.xml"), "-i", "10.77.0.10", "-p", "5060",
			"-key", "me", "alice", "-mi", "10.77.0.10", "-mp", "20000", "-m", "1", "-nostdin", "-timeout", "30s")
		uas <- c
	}()
	time.Sleep(500 * time.Millisecond)
	l.sipp(ctx, "uac-bob", "lan2", "203.0.113.10:5060", "-sf", uacRTP, "-s", "alice",
		"-key", "dom", "203.0.113.10", "-key", "me", "bob", "-i", "10.78.0.10", "-p", "5060",
		"-mi", "10.78.0.10", "-mp", "30000", "-m", "1", "-d", "3000")
	if err := <-uas; err != nil {
		t.Fatalf("alice (sipp UAS): %v", err)
	}
	capA.stop()
	capB.stop()
	// 3 s at 50 packets/s; the first packets before the far side's NAT
	// mapping exists cannot arrive (no phone behind NAT can receive before
	// it has sent), so the count is a little below 150 — but no gap.
	checkRTP(t, capA.file, "10.77.0.10:20000", 100)
	checkRTP(t, capB.file, "10.78.0.10:30000", 100)
}

// runIn runs a command in a namespace and returns its error with output.
func runIn(ctx context.Context, l *lab, ns, name string, args ...string) error {
	c := l.cmd(ns, name, args...)
	out, err := c.CombinedOutput()
	if err != nil {
		// Both ends: sipp's scenario screen (which message came, which
		// was unexpected) is at the start of its output, its statistics
		// at the end.
		if len(out) > 4000 {
			out = append(append(out[:2500:2500], "\n[...]\n"...), tail(out, 1500)...)
		}
		return &cmdError{err: err, out: string(out)}
	}
	_ = ctx
	return nil
}

type cmdError struct {
	err error
	out string
}

func (e *cmdError) Error() string { return e.err.Error() + "\n" + e.out }
