//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"sipedge/media"
)

type relayOpts struct {
	calls, portMin, workers int
	latch                   string
	tick                    time.Duration
	addrA, addrB            string
	peerA, peerB            string
	noSDP                   bool
	kernel                  bool
	ready, cpuprofile       string
}

// layout is the ready file: what the generator needs to load the relay.
type layout struct {
	PID   int      `json:"pid"`
	Calls int      `json:"calls"`
	PeerA string   `json:"peer_a"` // where the generator's A endpoints must be
	PeerB string   `json:"peer_b"`
	A     []string `json:"a"` // relay RTP address of side A, by call
	B     []string `json:"b"`
}

func runRelay(o relayOpts) error {
	mode, err := media.ParseLatchMode(o.latch)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(o.addrA)
	if err != nil {
		return err
	}
	b, err := netip.ParseAddr(o.addrB)
	if err != nil {
		return err
	}
	pa, err := netip.ParseAddrPort(o.peerA)
	if err != nil {
		return err
	}
	pb, err := netip.ParseAddrPort(o.peerB)
	if err != nil {
		return err
	}
	// One address needs 4 ports per call, two need 2 of each; the slack
	// covers ports other processes hold.
	need := 2 * o.calls
	if a == b {
		need = 4 * o.calls
	}
	portMax := min(o.portMin+need+2000-1, 65535)
	r, err := media.New(media.Config{
		PortMin: o.portMin, PortMax: portMax, Workers: o.workers, Latch: mode, Tick: o.tick,
		Inactivity: -1, MaxStreamsPerCall: 1, Kernel: o.kernel,
	})
	if err != nil {
		return err
	}
	defer r.Close()
	if ks := r.Kernel(); o.kernel && !ks.Active {
		return fmt.Errorf("-kernel: the in-kernel path is not available: %s", ks.Reason)
	}
	var streams []*media.Stream
	l := layout{PID: os.Getpid(), Calls: o.calls, PeerA: pa.String(), PeerB: pb.String()}
	for i := 0; i < o.calls; i++ {
		c, err := r.Call(strconv.Itoa(i))
		if err != nil {
			return err
		}
		s, err := c.Stream(0, a, b)
		if err != nil {
			return fmt.Errorf("call %d: %w", i, err)
		}
		if !o.noSDP {
			if err := s.SetPeer(media.SideA, pa, netip.AddrPort{}); err != nil {
				return err
			}
			if err := s.SetPeer(media.SideB, pb, netip.AddrPort{}); err != nil {
				return err
			}
		}
		streams = append(streams, s)
		ra, _ := s.Local(media.SideA)
		rb, _ := s.Local(media.SideB)
		l.A = append(l.A, ra.String())
		l.B = append(l.B, rb.String())
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := writeReady(o.ready, &l); err != nil {
		return err
	}
	if o.kernel {
		// A progress line a second: how many directions the kernel has
		// taken over so far.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			start := time.Now()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					k := r.Kernel()
					fmt.Fprintf(os.Stderr, "%4.0fs kernel: %d directions, %d handed over, %d back, %d refused\n",
						time.Since(start).Seconds(), k.Directions, k.Added, k.Removed, k.Failed)
				}
			}
		}()
	}
	<-sig
	pprof.StopCPUProfile()
	// With the in-kernel path the relay thread sees only samples: the
	// streams' counters (kernel counts as last polled) say what crossed.
	var kern, total uint64
	for _, s := range streams {
		st := s.Stats()
		kern += st.AtoB.Kernel + st.BtoA.Kernel
		total += st.AtoB.Forwarded + st.BtoA.Forwarded
	}
	out, _ := json.Marshal(struct {
		media.RelayStats
		StreamsForwarded uint64 `json:"streams_forwarded"`
		KernelForwarded  uint64 `json:"kernel_forwarded"`
	}{r.Stats(), total, kern})
	fmt.Println(string(out))
	return nil
}

// writeReady writes the layout atomically, so the generator never reads
// half of it.
func writeReady(path string, l *layout) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
