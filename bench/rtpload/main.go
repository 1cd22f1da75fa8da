//go:build linux

// Command rtpload measures the media relay under G.711-shaped load, the
// way docs/relay-limits.md (shared docs) measured its designs: the relay
// under test runs in a process of its own, the generator in another, both
// on this host, and the generator reports rates, loss, latency and the CPU
// both processes used.
//
//	rtpload -mode relay -calls N -ready FILE    # runs until SIGTERM, then prints its stats as JSON
//	rtpload -mode gen -ready FILE               # prints one JSON line
//	rtpload -mode rtpengine -ng ADDR -ng-pid PID -calls N -ready FILE
//	                                            # the same calls in a running rtpengine
//
// bench/relay.sh runs the pair. A call is one relayed media section with
// G.711 both ways: 2 streams, 100 packets/s through the relay.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	mode := flag.String("mode", "", "relay, gen or rtpengine")
	ready := flag.String("ready", "rtpload-ready.json", "relay: file written once the ports are bound; gen: file to read them from")
	calls := flag.Int("calls", 1000, "relay: calls to set up (each one media section, two streams)")
	portMin := flag.Int("portmin", 20000, "relay: lowest port of the relay range")
	workers := flag.Int("workers", 0, "relay: relay threads (0: GOMAXPROCS)")
	latch := flag.String("latch", "first", "relay: latch mode first|ssrc|off")
	tick := flag.Duration("tick", time.Millisecond, "relay: idle poll tick")
	addrA := flag.String("addr-a", "127.0.0.1", "relay: local address of side A")
	addrB := flag.String("addr-b", "127.0.0.1", "relay: local address of side B")
	peerA := flag.String("peer-a", "127.0.0.1:19000", "address of the generator's A endpoints (the SDP address of side A)")
	peerB := flag.String("peer-b", "127.0.0.1:19002", "address of the generator's B endpoints")
	noSDP := flag.Bool("nosdp", false, "relay: do not set SDP peers, learn them by latching only")
	kernel := flag.Bool("kernel", false, "relay: hand latched streams to the in-kernel path (needs CAP_NET_ADMIN and IPv4 forwarding)")
	cpuprofile := flag.String("cpuprofile", "", "relay: write a CPU profile of the measured run here")

	warm := flag.Duration("warm", 3*time.Second, "gen: warm-up before the window")
	ramp := flag.Duration("ramp", 0, "gen: spread the streams' starts over this long (calls arriving over time); warm-up and window follow")
	dur := flag.Duration("dur", 20*time.Second, "gen: measured window")
	drain := flag.Duration("drain", 500*time.Millisecond, "gen: wait for late packets after the senders stop")
	pps := flag.Int("pps", 50, "gen: packets per second per stream")
	size := flag.Int("size", 172, "gen: UDP payload bytes (12-byte RTP header included)")
	senders := flag.Int("sw", 1, "gen: sender threads")
	receivers := flag.Int("rw", 1, "gen: receiver threads")
	socks := flag.Int("socks", 1, "gen: SO_REUSEPORT sockets per side")
	batch := flag.Int("batch", 64, "gen: sendmmsg/recvmmsg batch")
	label := flag.String("label", "", "gen: label to put in the JSON line")

	ng := flag.String("ng", "127.0.0.1:2223", "rtpengine: the ng control address of the rtpengine to load")
	ngPID := flag.Int("ng-pid", 0, "rtpengine: pid of that rtpengine (the generator measures its CPU)")
	flag.Parse()

	var err error
	switch *mode {
	case "relay":
		err = runRelay(relayOpts{
			calls: *calls, portMin: *portMin, workers: *workers, latch: *latch, tick: *tick,
			addrA: *addrA, addrB: *addrB, peerA: *peerA, peerB: *peerB, noSDP: *noSDP,
			ready: *ready, cpuprofile: *cpuprofile, kernel: *kernel,
		})
	case "gen":
		err = runGen(genOpts{
			ready: *ready, warm: *warm, ramp: *ramp, dur: *dur, drain: *drain, pps: *pps, size: *size,
			senders: *senders, receivers: *receivers, socks: *socks, batch: *batch, label: *label,
		})
	case "rtpengine":
		err = runRtpengine(rtpengineOpts{
			calls: *calls, ng: *ng, pid: *ngPID, peerA: *peerA, peerB: *peerB, ready: *ready,
		})
	default:
		err = fmt.Errorf("-mode must be relay, gen or rtpengine")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rtpload:", err)
		os.Exit(1)
	}
}
