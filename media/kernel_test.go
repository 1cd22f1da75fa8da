//go:build linux

package media

import (
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
)

// The in-kernel path changes the host's nftables ruleset, so its tests run
// in a network namespace of their own: TestKernelPathInNetns creates one
// and runs this test binary inside it, where the tests named
// TestKernelPath* do the work. They need root (CAP_NET_ADMIN) and ip(8).
const kernelNSEnv = "SIPEDGE_MEDIA_KERNEL_NETNS"

func TestKernelPathInNetns(t *testing.T) {
	if os.Getenv(kernelNSEnv) != "" {
		t.Skip("inside the namespace")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and nftables")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8)")
	}
	ns := "sipedge-media-" + strconv.Itoa(os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "set", "lo", "up")
	run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestKernelPath", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), kernelNSEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestKernelPathForwards") || !strings.Contains(string(out), "--- PASS: TestKernelPathForwardPolicy") ||
		!strings.Contains(string(out), "--- PASS: TestKernelPathLoss") {
		t.Fatalf("in namespace %s: %v\n%s", ns, err, out)
	}
	t.Logf("in namespace %s:\n%s", ns, out)
}

func inKernelNS(t *testing.T) {
	if os.Getenv(kernelNSEnv) == "" {
		t.Skip("runs inside the namespace TestKernelPathInNetns makes")
	}
}

// kernelTable returns the fast path's table, or nil.
func kernelTable(t *testing.T) (*nftables.Conn, *nftables.Table) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tb, err := c.ListTableOfFamily(kernelTablePrefix+"41000_41999", nftables.TableFamilyIPv4)
	if err != nil {
		return c, nil
	}
	return c, tb
}

// kernelChains lists the chains in the table other than its three base
// chains (a table left by an older sipedge had one per direction).
func kernelChains(t *testing.T) []string {
	t.Helper()
	c, tb := kernelTable(t)
	if tb == nil {
		return nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name == kernelTablePrefix+"41000_41999" && ch.Name != "pre" && ch.Name != "post" && ch.Name != "in" {
			out = append(out, ch.Name)
		}
	}
	return out
}

// kernelElements counts the elements of the streams and out maps: one
// each per direction in the kernel.
func kernelElements(t *testing.T) (streams, out int) {
	t.Helper()
	c, tb := kernelTable(t)
	if tb == nil {
		return 0, 0
	}
	for _, m := range []struct {
		name string
		n    *int
	}{{"streams", &streams}, {"out", &out}} {
		set, err := c.GetSetByName(tb, m.name)
		if err != nil {
			t.Fatalf("map %s: %v", m.name, err)
		}
		els, err := c.GetSetElements(set)
		if err != nil {
			t.Fatalf("map %s: %v", m.name, err)
		}
		*m.n = len(els)
	}
	return streams, out
}

// exchange sends n RTP packets each way, in turns, each checked on arrival
// (content and source: the relay's port of the other side), and returns
// the next sequence number.
func exchange(t *testing.T, x *setup, a, b *endpoint, seq uint16, n int, ssrcA, ssrcB uint32) uint16 {
	t.Helper()
	aRTP, _ := x.local(SideA)
	bRTP, _ := x.local(SideB)
	for i := 0; i < n; i++ {
		p := rtpPacket(0, seq, uint32(seq)*160, ssrcA, 160)
		a.send(aRTP, p)
		b.expect(p, bRTP)
		q := rtpPacket(0, seq, uint32(seq)*160, ssrcB, 160)
		b.send(bRTP, q)
		a.expect(q, aRTP)
		seq++
	}
	return seq
}

func TestKernelPathForwards(t *testing.T) {
	inKernelNS(t)
	// A table left by a sipedge that was killed is replaced.
	c, _ := kernelTable(t)
	stale := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: kernelTablePrefix + "41000_41999"})
	c.AddChain(&nftables.Chain{Table: stale, Name: "s999"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	x := newSetup(t, Config{Kernel: true})
	if ks := x.r.Kernel(); !ks.Active {
		t.Fatalf("kernel path not active: %s", ks.Reason)
	}
	if ch := kernelChains(t); len(ch) != 0 {
		t.Fatalf("stale chains left: %v", ch)
	}

	// Both directions latch and settle, then move to the kernel.
	var sentA, sentB int
	seq := uint16(1)
	// until exchanges packets until cond holds (a hand-over is
	// asynchronous, and the relay thread acts on the next packet).
	until := func(what string, a *endpoint, ssrcA uint32, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; kernel %+v", what, x.r.Kernel())
			}
			seq = exchange(t, x, a, x.b, seq, 1, ssrcA, 0xb)
			sentA++
			sentB++
			time.Sleep(time.Millisecond)
		}
	}
	more := func(a *endpoint, ssrcA uint32, n int) {
		t.Helper()
		seq = exchange(t, x, a, x.b, seq, n, ssrcA, 0xb)
		sentA += n
		sentB += n
	}
	until("both directions in the kernel", x.a, 0xa, func() bool { return x.r.Kernel().Directions == 2 })
	more(x.a, 0xa, 300)
	st := x.s.Stats()
	if !st.AtoB.InKernel || !st.BtoA.InKernel {
		t.Fatalf("stats: in kernel A→B %v B→A %v", st.AtoB.InKernel, st.BtoA.InKernel)
	}
	if n, o := kernelElements(t); n != 2 || o != 2 {
		t.Fatalf("map elements: streams %d, out %d: want one each per direction", n, o)
	}
	if ch := kernelChains(t); len(ch) != 0 {
		t.Fatalf("chains %v: want the base chains only", ch)
	}
	// While the kernel forwards, the counts are polled (every
	// kernelPoll).
	until("live kernel counts", x.a, 0xa, func() bool {
		st := x.s.Stats()
		return st.AtoB.Kernel > 0 && st.BtoA.Kernel > 0 && st.AtoB.Packets+5 >= uint64(sentA)-kernelSample
	})

	// A new SSRC from A: it reaches B at once (through the relay thread),
	// the direction comes back from the kernel and goes again once the
	// new SSRC has settled.
	added := x.r.Kernel().Added
	until("A→B back in the kernel with the new SSRC", x.a, 0xc, func() bool {
		k := x.r.Kernel()
		return k.Added > added && k.Directions == 2
	})
	more(x.a, 0xc, 100)

	// A re-INVITE moves A to a new address: both directions come back
	// from the kernel (a netlink round trip later: until then B's packets
	// still go to A's old address, as they would have before the
	// re-INVITE), then B's packets go to the new one.
	a2 := newEndpoint(t, "udp4", lo4)
	removed := x.r.Kernel().Removed
	if err := x.s.SetPeer(SideA, a2.addr, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both directions back from the kernel", func() bool { return x.r.Kernel().Removed >= removed+2 })
	until("both directions in the kernel after the move", a2, 0xd, func() bool {
		return x.r.Kernel().Directions == 2
	})
	more(a2, 0xd, 100)

	// The call ends: counters are exact once the kernel's are read, and
	// nothing of the stream stays in the ruleset.
	done := make(chan struct{})
	x.c.Close()
	// The function reads the stream's stats, as the call's media report
	// does: it must not run under the relay thread's lock.
	x.c.AfterRelease(func() { _ = x.s.Stats(); close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("AfterRelease never ran")
	}
	st = x.s.Stats()
	if int(st.AtoB.Packets) != sentA || int(st.AtoB.Forwarded) != sentA || int(st.BtoA.Packets) != sentB || int(st.BtoA.Forwarded) != sentB {
		t.Fatalf("after close: A→B %d/%d B→A %d/%d packets/forwarded, want %d and %d", st.AtoB.Packets, st.AtoB.Forwarded,
			st.BtoA.Packets, st.BtoA.Forwarded, sentA, sentB)
	}
	if st.AtoB.Kernel == 0 || st.BtoA.Kernel == 0 || st.AtoB.InKernel || st.BtoA.InKernel {
		t.Fatalf("after close: kernel counts %d/%d, in kernel %v/%v", st.AtoB.Kernel, st.BtoA.Kernel, st.AtoB.InKernel, st.BtoA.InKernel)
	}
	if st.AtoB.Bytes != uint64(sentA*172) || st.BtoA.Bytes != uint64(sentB*172) {
		t.Fatalf("after close: bytes %d/%d, want %d/%d", st.AtoB.Bytes, st.BtoA.Bytes, sentA*172, sentB*172)
	}
	if st.AtoB.Lost != 0 || st.BtoA.Lost != 0 {
		t.Fatalf("after close: lost %d/%d, want 0", st.AtoB.Lost, st.BtoA.Lost)
	}
	if n, o := kernelElements(t); n != 0 || o != 0 {
		t.Fatalf("map elements left after the call: streams %d, out %d", n, o)
	}
	k := x.r.Kernel()
	if k.Directions != 0 || k.Added != k.Removed || k.Failed != 0 {
		t.Fatalf("kernel status after the call: %+v", k)
	}
	t.Logf("kernel: %+v; A→B %d packets, %d by the kernel; B→A %d, %d by the kernel", k,
		st.AtoB.Packets, st.AtoB.Kernel, st.BtoA.Packets, st.BtoA.Kernel)

	x.r.Close()
	if _, tb := kernelTable(t); tb != nil {
		t.Fatal("table left after Close")
	}
}

// Loss while the kernel forwards: the samples' sequence numbers show the
// gap once the direction is back in userspace, and the kernel's exact
// count says how many of the rest arrived. A stream that ends in the
// kernel may hide at most the packets after its last sample.
func TestKernelPathLoss(t *testing.T) {
	inKernelNS(t)
	x := newSetup(t, Config{Kernel: true})
	if ks := x.r.Kernel(); !ks.Active {
		t.Fatalf("kernel path not active: %s", ks.Reason)
	}
	seq := uint16(1)
	deadline := time.Now().Add(10 * time.Second)
	for x.r.Kernel().Directions != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for both directions in the kernel; %+v", x.r.Kernel())
		}
		seq = exchange(t, x, x.a, x.b, seq, 1, 0xa, 0xb)
		time.Sleep(time.Millisecond)
	}
	seq = exchange(t, x, x.a, x.b, seq, 40, 0xa, 0xb)
	seq += 7 // lost on the way, both directions
	seq = exchange(t, x, x.a, x.b, seq, 100, 0xa, 0xb)
	if st := x.s.Stats(); !st.AtoB.InKernel || !st.BtoA.InKernel {
		t.Fatalf("not in the kernel: %+v", st)
	}

	// B moves (a re-INVITE): both directions come back to the relay
	// thread, whose next packets carry the sequence numbers on.
	b2 := newEndpoint(t, "udp4", lo4)
	removed := x.r.Kernel().Removed
	if err := x.s.SetPeer(SideB, b2.addr, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both directions back from the kernel", func() bool { return x.r.Kernel().Removed >= removed+2 })
	seq = exchange(t, x, x.a, b2, seq, 5, 0xa, 0xb)
	// (The relay thread may hand the directions over again at once: the
	// SSRC has held still. Their loss is then the one it found.)
	st := x.s.Stats()
	if st.AtoB.Lost != 7 || st.BtoA.Lost != 7 {
		t.Fatalf("lost A→B %d, B→A %d: want 7 each", st.AtoB.Lost, st.BtoA.Lost)
	}

	// Back in the kernel, a gap, and the call ends there: the count is
	// exact, the loss no more than the gaps and no less than them less
	// what came after the last sample.
	for k := x.r.Kernel(); k.Added < removed+4 || k.Directions != 2; k = x.r.Kernel() {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("timed out waiting for the kernel again; %+v", k)
		}
		seq = exchange(t, x, x.a, b2, seq, 1, 0xa, 0xb)
		time.Sleep(time.Millisecond)
	}
	seq = exchange(t, x, x.a, b2, seq, 40, 0xa, 0xb)
	seq += 3
	seq = exchange(t, x, x.a, b2, seq, 50, 0xa, 0xb)
	done := make(chan struct{})
	x.c.Close()
	x.c.AfterRelease(func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("AfterRelease never ran")
	}
	st = x.s.Stats()
	sent := uint64(seq - 1 - 10)
	if st.AtoB.Packets != sent || st.BtoA.Packets != sent {
		t.Fatalf("after close: packets %d/%d, want %d", st.AtoB.Packets, st.BtoA.Packets, sent)
	}
	for _, lost := range []int64{st.AtoB.Lost, st.BtoA.Lost} {
		if lost < 7+3-(kernelSample-1) || lost > 10 {
			t.Fatalf("after close: lost %d/%d, want 10 less at most %d", st.AtoB.Lost, st.BtoA.Lost, kernelSample-1)
		}
	}
	t.Logf("after close: lost %d/%d of 10 (A→B %d packets, %d by the kernel)", st.AtoB.Lost, st.BtoA.Lost, st.AtoB.Packets, st.AtoB.Kernel)
}

// Without forwarding the relay stays in userspace and says why.
func TestKernelPathNeedsForwarding(t *testing.T) {
	inKernelNS(t)
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	x := newSetup(t, Config{Kernel: true})
	ks := x.r.Kernel()
	if ks.Active || !strings.Contains(ks.Reason, "forwarding") {
		t.Fatalf("kernel status %+v: want inactive, naming forwarding", ks)
	}
	exchange(t, x, x.a, x.b, 1, kernelAfter+20, 0xa, 0xb)
	if st := x.s.Stats(); st.AtoB.InKernel || st.AtoB.Kernel != 0 {
		t.Fatalf("stats %+v: want userspace only", st.AtoB)
	}
}

// A forked call with both forks' media in the kernel: Keep withdraws the
// released fork's directions and leaves the kept one's in place; RTCP
// that one side muxes still reaches the other side's RTCP port (it stays
// with the relay thread: the kernel's key is an RTP SSRC).
func TestKernelPathForks(t *testing.T) {
	inKernelNS(t)
	x := newSetup(t, Config{Kernel: true})
	if ks := x.r.Kernel(); !ks.Active {
		t.Fatalf("kernel path not active: %s", ks.Reason)
	}
	fc, err := x.c.Fork("f")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := fc.Stream(0, lo4, lo4)
	if err != nil {
		t.Fatal(err)
	}
	y := &setup{r: x.r, c: fc, s: fs, a: x.a, b: newEndpoint(t, "udp4", lo4), aRTCP: x.aRTCP, bRTCP: newEndpoint(t, "udp4", lo4)}
	// The caller muxes on both forks; the callees do not.
	for _, z := range []*setup{x, y} {
		z.s.SetPeer(SideA, z.a.addr, z.a.addr)
		z.s.SetPeer(SideB, z.b.addr, z.bRTCP.addr)
	}
	seq := uint16(1)
	deadline := time.Now().Add(10 * time.Second)
	for x.r.Kernel().Directions != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for both forks in the kernel; %+v", x.r.Kernel())
		}
		exchange(t, x, x.a, x.b, seq, 1, 0xa, 0xb)
		exchange(t, y, y.a, y.b, seq, 1, 0xc, 0xd)
		seq++
		time.Sleep(time.Millisecond)
	}
	_, bRTCP := fs.Local(SideB)
	aRTP, _ := fs.Local(SideA)
	sr := rtcpPacket(200, 0xc)
	y.a.send(aRTP, sr)
	y.bRTCP.expect(sr, bRTCP)

	removed := x.r.Kernel().Removed
	x.c.Keep("f")
	for k := x.r.Kernel(); k.Directions != 2 || k.Removed < removed+2; k = x.r.Kernel() {
		if time.Now().After(deadline) {
			t.Fatalf("the released fork stays in the kernel: %+v", k)
		}
		time.Sleep(time.Millisecond)
	}
	if n, o := kernelElements(t); n != 2 || o != 2 {
		t.Fatalf("map elements after Keep: streams %d, out %d: want the kept fork's 2 directions", n, o)
	}
	seq = exchange(t, y, y.a, y.b, seq, 50, 0xc, 0xd)
	y.a.send(aRTP, sr)
	y.bRTCP.expect(sr, bRTCP)
	x.c.Close()
	for n, o := kernelElements(t); n != 0 || o != 0; n, o = kernelElements(t) {
		if time.Now().After(deadline) {
			t.Fatalf("map elements left after Close: streams %d, out %d", n, o)
		}
		time.Sleep(time.Millisecond)
	}
}

// A forward chain that drops by default would drop the untracked packets
// the kernel path rewrites: in a table named by KernelForward sipedge adds
// its accept rule (and removes it at Close); in another table the relay
// stays in userspace and says why, unless KernelForce.
func TestKernelPathForwardPolicy(t *testing.T) {
	inKernelNS(t)
	c, _ := kernelTable(t)
	fw := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "fw"})
	drop := nftables.ChainPolicyDrop
	fwd := c.AddChain(&nftables.Chain{Table: fw, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	c.AddChain(&nftables.Chain{Table: fw, Name: "input", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.DelTable(fw); c.Flush() }()

	r := newRelay(t, Config{Kernel: true})
	if ks := r.Kernel(); ks.Active || !strings.Contains(ks.Reason, "forward chain forward of table inet fw drops by default") {
		t.Fatalf("with a dropping forward chain: %+v", ks)
	}
	r.Close()

	r = newRelay(t, Config{Kernel: true, KernelForward: "inet fw input"})
	if ks := r.Kernel(); !ks.Active {
		t.Fatalf("with the firewall's table named: %+v", ks)
	}
	rules, err := c.GetRules(fw, fwd)
	if err != nil || len(rules) != 1 || string(rules[0].UserData) != kernelTablePrefix+"41000_41999" {
		t.Fatalf("forward chain rules %v (%v): want sipedge's accept rule", rules, err)
	}
	r.Close()
	if rules, _ := c.GetRules(fw, fwd); len(rules) != 0 {
		t.Fatalf("accept rule left after Close: %v", rules)
	}

	r = newRelay(t, Config{Kernel: true, KernelForce: true})
	if ks := r.Kernel(); !ks.Active {
		t.Fatalf("forced: %+v", ks)
	}
}

// A legacy iptables filter table (Docker's FORWARD DROP lives there, out
// of nftables' sight) keeps auto in userspace; KernelForce overrides it.
func TestKernelPathLegacyIptables(t *testing.T) {
	inKernelNS(t)
	bin, err := exec.LookPath("iptables-legacy")
	if err != nil {
		t.Skip("no iptables-legacy")
	}
	if out, err := exec.Command(bin, "-t", "filter", "-P", "FORWARD", "DROP").CombinedOutput(); err != nil {
		t.Skipf("iptables-legacy: %v %s", err, out)
	}
	defer exec.Command(bin, "-t", "filter", "-P", "FORWARD", "ACCEPT").Run()
	r := newRelay(t, Config{Kernel: true})
	if ks := r.Kernel(); ks.Active || !strings.Contains(ks.Reason, "legacy iptables filter table") {
		t.Fatalf("with a legacy filter table: %+v", ks)
	}
	r.Close()
	r = newRelay(t, Config{Kernel: true, KernelForce: true})
	if ks := r.Kernel(); !ks.Active {
		t.Fatalf("forced: %+v", ks)
	}
}
