//go:build linux

package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The in-kernel fast path (Config.Kernel). Once a direction of a stream
// has latched and its SSRC has held still for kernelAfter packets, its
// packets are rewritten and forwarded by nftables, statelessly, without
// reaching the relay thread:
//
//	table ip sipedge_media_PORTMIN_PORTMAX
//	  map streams  { ip saddr . udp sport . udp dport . RTP SSRC : mark . PEER . PEERPORT }
//	  map out      { meta mark . ip daddr . udp dport : LOCAL . LOCALPORT }   (per-element counter)
//	  chain pre    hook prerouting, priority raw (-300):
//	                 meta l4proto udp  RTP seq & 31 != 31  <key> map @streams:
//	                 meta mark set, ip daddr set, udp dport set, notrack
//	  chain post   hook postrouting: mark tagged  meta mark . ip daddr . udp dport map @out:
//	                 ip saddr set, udp sport set, meta mark set 0
//	  chain in     hook input: the same, for a peer on this host
//
// Why this shape (docs/DESIGN.md, "In-kernel media path"):
//
//   - Stateless rewriting with notrack, not conntrack DNAT/SNAT: rules take
//     effect at once in both directions (a NAT rule only applies to the
//     first packet of a conntrack flow, and the userspace phase has already
//     made that flow), removing a rule stops forwarding at once, and there is
//     no conntrack table to fill or flush.
//   - Data maps, not a chain per direction reached through a verdict map:
//     a transaction that adds a jump to a chain makes the kernel validate
//     every chain reachable from the table's base chains (every element of
//     a verdict map), so with a chain per direction each hand-over cost
//     time in proportion to the directions already in the kernel; at 6 000
//     directions the validation took most of a core while calls arrived.
//     A data map lookup writes the rewrite's values into registers, and
//     adding its elements validates nothing: a hand-over costs the same
//     with ten directions in the kernel or ten thousand, and a packet walks
//     three rules instead of a jump to a chain of its own.
//   - The destination is rewritten before routing (prerouting), the source
//     after it (postrouting, or input for a peer on this host): rewriting the
//     source to one of our own addresses before routing makes the kernel
//     drop the packet as a martian.
//   - The key includes the SSRC and the latched source: a packet from any
//     other source or with a new SSRC does not match and reaches the relay
//     thread as before, which forwards it and hands the direction back to
//     userspace (re-latch, SSRC change). Nothing is lost while that happens.
//   - The packets whose RTP sequence number ends in five 1 bits (one in
//     kernelSample, every 0.64 s of 20 ms audio) skip the rewrite and reach
//     the relay thread, which forwards and measures them: jitter keeps being
//     estimated from those samples, loss from the sequence numbers they carry
//     against the exact count of everything forwarded, and the call's
//     inactivity timer keeps seeing packets. Chosen by sequence number, the
//     samples are evenly spaced in every stream without a counter per
//     stream.
//   - The out map's element counter counts exactly the packets the kernel
//     rewrote (samples are not marked, so never looked up there). It is read
//     after the streams element is removed, when nothing can add to it any
//     more, so per-stream counters stay exact across every hand-over.
//   - Every change goes through one goroutine (kernel.run) in batches: the
//     relay threads only queue requests and never wait for netlink.
const (
	// kernelTablePrefix: the table is named after the relay's port
	// range, so that sipedge instances sharing a host (on different
	// ranges) keep their own, and a restart finds the table its killed
	// predecessor left.
	kernelTablePrefix = "sipedge_media_"
	// kernelTag marks the packets the fast path rewrote, in the high byte
	// of the packet mark; the low 24 bits carry the direction's ID.
	kernelTag  = 0x5e000000
	kernelMask = 0xff000000
	kernelIDs  = 1 << 24
	// kernelAfter is how many RTP packets in a row, from the latched
	// source with one SSRC, a direction must show before it is handed to
	// the kernel: about a second of 20 ms audio, long enough that a
	// phone's first packets (comfort noise, SSRC restarts, NAT rebinding)
	// have settled.
	kernelAfter = 50
	// kernelSample: one packet in this many goes through the relay thread
	// while a direction is kernel-forwarded: those whose RTP sequence
	// number modulo kernelSample is kernelSample-1 (a power of two, so the
	// rule is a mask and a compare).
	kernelSample = 32
	// kernelPoll is how often the live counters are read for Stats.
	kernelPoll = 2 * time.Second
)

// kstate is where a direction of a stream is forwarded.
type kstate uint8

const (
	kUser        kstate = iota // by the relay thread; may be handed to the kernel
	kPending                   // handed over, not in the kernel yet
	kActive                    // forwarded by the kernel
	kWithdrawing               // being taken back
	kOff                       // never again (stream closed, or the kernel refused it)
)

// kreq is a request to the kernel goroutine.
type kreq struct {
	add  bool
	st   *Stream
	side Side // the direction: packets from side
	e    kentry
}

// kentry is one direction in the kernel.
type kentry struct {
	id           uint32
	key          [16]byte // saddr . sport . dport . ssrc, as the map's key
	out          [12]byte // outKey, once the ID is known (stage)
	daddr, saddr [4]byte
	dport, sport uint16
	st           *Stream
	side         Side
}

// kernel owns the nftables table of the fast path.
type kernel struct {
	name    string // of the table; also the accept rules' user data
	conn    *nftables.Conn
	get     *netlink.Conn // reads elements' counters (kernel_counters_linux.go)
	table   *nftables.Table
	streams *nftables.Set
	out     *nftables.Set
	accepts []*nftables.Rule // in the firewall's forward chains

	mu    sync.Mutex // guards queue; taken under a worker's mu, never the reverse
	queue []kreq
	kick  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup

	// Owned by run.
	entries map[*dirState]*kentry
	free    []uint32
	next    uint32

	// Counts, read by Relay.Stats under mu.
	added, removed, failed uint64
	lastErr                string
}

// openKernel sets the fast path up: a fresh table (a table left by a
// sipedge that was killed is deleted first, so nothing stale stays), and
// the accept rule in the forward chains of the firewall's table when
// firewall names one. It fails with the reason when nftables or
// CAP_NET_ADMIN is missing or IPv4 forwarding is off.
func openKernel(portMin, portMax int, firewall string, force bool) (*kernel, error) {
	name := kernelTablePrefix + strconv.Itoa(portMin) + "_" + strconv.Itoa(portMax)
	// One lasting socket, with room for a transaction's acknowledgements:
	// every message of a transaction (two map elements per direction) is
	// acknowledged, and a default-sized buffer overflows (ENOBUFS) at a
	// few hundred of them.
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		_ = c.SetOption(netlink.CapAcknowledge, true) // acknowledgements without the request echoed
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		return rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		})
	}))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	if _, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		return nil, fmt.Errorf("nftables not usable (sipedge needs CAP_NET_ADMIN): %w", err)
	}
	removeKernelTable(conn, name)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/forwarding"); err != nil || strings.TrimSpace(string(b)) != "1" {
		return nil, errors.New("IPv4 forwarding is off (sysctl net.ipv4.ip_forward=1 turns it on)")
	}
	if !force {
		if err := forwardDrops(conn, firewall); err != nil {
			return nil, err
		}
		if legacyFilter() {
			return nil, errors.New("a legacy iptables filter table is loaded (/proc/net/ip_tables_names), whose FORWARD policy sipedge cannot read: " +
				"kernel-forwarded media is untracked and a DROP policy there would drop it; use media.kernel: on if that chain accepts it")
		}
	}
	get, err := dialCounters()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	k := &kernel{
		name:    name,
		conn:    conn,
		get:     get,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		entries: make(map[*dirState]*kentry),
	}
	if err := k.build(); err != nil {
		removeKernelTable(conn, name)
		get.Close()
		return nil, err
	}
	if firewall != "" {
		if err := k.acceptForward(firewall); err != nil {
			k.remove()
			return nil, err
		}
	}
	k.wg.Add(1)
	go k.run()
	return k, nil
}

// forwardDrops refuses the fast path when a forward chain drops by default
// in a table other than the firewall's (where sipedge adds its accept
// rule): the rewritten packets are untracked, so such a firewall, which
// lets through only the flows it knows, would drop them and the media
// would stop as soon as it left userspace.
func forwardDrops(conn *nftables.Conn, firewall string) error {
	chains, err := conn.ListChains()
	if err != nil {
		return fmt.Errorf("nftables: listing chains: %w", err)
	}
	fw := strings.Fields(firewall)
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		if ch.Table.Family != nftables.TableFamilyINet && ch.Table.Family != nftables.TableFamilyIPv4 {
			continue
		}
		if len(fw) == 3 && fw[0] == familyName(ch.Table.Family) && fw[1] == ch.Table.Name {
			continue
		}
		return fmt.Errorf("the forward chain %s of table %s %s drops by default, and kernel-forwarded media is untracked: "+
			"set media.firewall to a chain of that table (e.g. \"%s %s input\") so sipedge accepts its packets there, "+
			"or media.kernel: on if the firewall accepts them already", ch.Name, familyName(ch.Table.Family), ch.Table.Name,
			familyName(ch.Table.Family), ch.Table.Name)
	}
	return nil
}

// legacyFilter reports whether a legacy (x_tables) iptables filter table
// exists in this network namespace: Docker and many firewalls put a FORWARD
// chain with policy DROP there, which nftables does not show.
func legacyFilter() bool {
	b, err := os.ReadFile("/proc/net/ip_tables_names")
	if err != nil {
		return false
	}
	for _, name := range strings.Fields(string(b)) {
		if name == "filter" {
			return true
		}
	}
	return false
}

// removeKernelTable deletes the fast path's table if it exists.
func removeKernelTable(conn *nftables.Conn, name string) {
	if t, err := conn.ListTableOfFamily(name, nftables.TableFamilyIPv4); err == nil && t != nil {
		conn.DelTable(t)
		_ = conn.Flush()
	}
}

var (
	keyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService,
		nftables.TypeInetService, nftables.TypeMark)
	// streams' data: the mark (tag and ID), the peer's address and port.
	fwdType    = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIPAddr, nftables.TypeInetService)
	outKeyType = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIPAddr, nftables.TypeInetService)
	// out's data: the relay's own address and port on the peer's side.
	backType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
)

// markBytes is a 32-bit value as nftables holds it in a register (host
// byte order): a packet mark.
func markBytes(v uint32) []byte {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return b[:]
}

// addrPort is an address and a port as a concatenation holds them: the
// port in network byte order, padded to 4 bytes.
func addrPort(b []byte, addr [4]byte, port uint16) []byte {
	b = append(b, addr[:]...)
	return append(b, byte(port>>8), byte(port), 0, 0)
}

// outKey is the out map's key, mark . daddr . dport: also the streams
// map's value (the mark set and the destination written).
func outKey(id uint32, daddr [4]byte, dport uint16) (k [12]byte) {
	binary.NativeEndian.PutUint32(k[:4], kernelTag|id)
	addrPort(k[4:4], daddr, dport)
	return k
}

// Registers: NFT_REG32_00 and up hold a lookup's key, the four after it
// the data the lookup wrote.
const (
	reg32 = 8
	regV  = reg32 + 4
)

// seqLow masks the RTP sequence number (UDP header 8 + RTP bytes 2-3) to
// its low bits, all of which are set in a sample.
var seqLow = []byte{0, kernelSample - 1}

func (k *kernel) build() error {
	c := k.conn
	k.table = c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: k.name})
	k.streams = &nftables.Set{Table: k.table, Name: "streams", IsMap: true, Concatenation: true,
		KeyType: keyType, DataType: fwdType}
	if err := c.AddSet(k.streams, nil); err != nil {
		return err
	}
	// The out map's key is the mark and the rewritten destination: the
	// mark alone could be another instance's (same tag, same ID).
	k.out = &nftables.Set{Table: k.table, Name: "out", IsMap: true, Concatenation: true,
		KeyType: outKeyType, DataType: backType, Counter: true}
	if err := c.AddSet(k.out, nil); err != nil {
		return err
	}
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Table: k.table, Name: "pre", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: k.table, Chain: pre, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		// Not a sample. A packet too short to hold an RTP header fails
		// this load, or the SSRC's, and so the rule.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 10, Len: 2},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: seqLow, Xor: []byte{0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: seqLow},
		&expr.Payload{DestRegister: reg32, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: reg32 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: reg32 + 2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		// The SSRC: UDP header (8) + RTP bytes 8-11.
		&expr.Payload{DestRegister: reg32 + 3, Base: expr.PayloadBaseTransportHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: reg32, SetName: k.streams.Name, SetID: k.streams.ID, DestRegister: regV, IsDestRegSet: true},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: regV},
		ipWrite(16, regV+1),
		udpWrite(2, regV+2),
		&expr.Notrack{},
	}})
	back := []expr.Any{
		// Only packets the pre chain marked go on to the lookup: every
		// other packet sent or received by this host passes these hooks
		// too, and a tag check is much cheaper than a hash lookup.
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: markBytes(kernelMask), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: markBytes(kernelTag)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg32},
		&expr.Payload{DestRegister: reg32 + 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: reg32 + 2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg32, SetName: k.out.Name, SetID: k.out.ID, DestRegister: regV, IsDestRegSet: true},
		ipWrite(12, regV),
		udpWrite(0, regV+1),
		&expr.Immediate{Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
	srcnat := *nftables.ChainPriorityNATSource
	post := c.AddChain(&nftables.Chain{Table: k.table, Name: "post", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: &srcnat, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: k.table, Chain: post, Exprs: back})
	in := c.AddChain(&nftables.Chain{Table: k.table, Name: "in", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: k.table, Chain: in, Exprs: back})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: creating table ip %s: %w", k.name, err)
	}
	return nil
}

// acceptForward inserts, at the top of every forward-hook base chain of
// the firewall's table, a rule accepting the packets the fast path
// rewrote: they are untracked, so a firewall that accepts only
// established flows would otherwise drop them.
func (k *kernel) acceptForward(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return fmt.Errorf("%q: want \"family table chain\"", spec)
	}
	chains, err := k.conn.ListChains()
	if err != nil {
		return fmt.Errorf("nftables: listing chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != f[1] || familyName(ch.Table.Family) != f[0] || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward {
			continue
		}
		r := k.conn.InsertRule(&nftables.Rule{Table: ch.Table, Chain: ch, UserData: []byte(k.name), Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: markBytes(kernelMask), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: markBytes(kernelTag)},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		k.accepts = append(k.accepts, r)
	}
	if err := k.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: accept rule in %s %s forward chains: %w", f[0], f[1], err)
	}
	return nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	}
	return strconv.Itoa(int(f))
}

// close stops the goroutine and removes everything the fast path added.
// The relay's streams are closed first, so their withdrawals have run.
func (k *kernel) close() {
	close(k.done)
	k.wg.Wait()
	k.remove()
}

func (k *kernel) remove() {
	for _, r := range k.accepts {
		rules, err := k.conn.GetRules(r.Table, r.Chain)
		if err != nil {
			continue
		}
		for _, x := range rules {
			if string(x.UserData) == k.name {
				_ = k.conn.DelRule(x)
			}
		}
	}
	k.accepts = nil
	_ = k.conn.Flush()
	removeKernelTable(k.conn, k.name)
	_ = k.conn.CloseLasting()
	_ = k.get.Close()
}

// enqueue queues a request; it never blocks (the caller holds a worker's
// mutex).
func (k *kernel) enqueue(r kreq) {
	k.mu.Lock()
	k.queue = append(k.queue, r)
	k.mu.Unlock()
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// run applies queued requests in batches and refreshes the live counters.
func (k *kernel) run() {
	defer k.wg.Done()
	t := time.NewTicker(kernelPoll)
	defer t.Stop()
	var batch []kreq
	for {
		select {
		case <-k.done:
			k.mu.Lock()
			batch = append(batch[:0], k.queue...)
			k.queue = nil
			k.mu.Unlock()
			k.apply(batch)
			return
		case <-k.kick:
		case <-t.C:
			k.poll()
			continue
		}
		k.mu.Lock()
		batch = append(batch[:0], k.queue...)
		k.queue = k.queue[:0]
		k.mu.Unlock()
		k.apply(batch)
	}
}

// apply runs one batch: the adds in one transaction, then the removals.
// Requests for one direction keep their order (an add, then its removal).
func (k *kernel) apply(batch []kreq) {
	var adds []*kentry
	var dels []kreq
	for _, r := range batch {
		if r.add {
			e := r.e
			e.st, e.side = r.st, r.side
			adds = append(adds, &e)
			continue
		}
		// A removal whose add is in this batch: the add is dropped.
		dropped := false
		for i, e := range adds {
			if e != nil && e.st == r.st && e.side == r.side {
				adds[i] = nil
				dropped = true
			}
		}
		if dropped {
			k.finish([]kdone{{st: r.st, side: r.side}})
			continue
		}
		dels = append(dels, r)
	}
	// In transactions of at most kernelChunk directions: every message of
	// a transaction is acknowledged, and thousands of acknowledgements at
	// once overflow the netlink socket's buffer (the transaction then
	// waits for answers that were dropped).
	for len(adds) > 0 {
		n := min(len(adds), kernelChunk)
		k.add(adds[:n])
		adds = adds[n:]
	}
	for len(dels) > 0 {
		n := min(len(dels), kernelChunk)
		k.del(dels[:n])
		dels = dels[n:]
	}
}

// kernelChunk is the most directions one netlink transaction adds or
// removes (a message for each of its two map elements).
const kernelChunk = 256

// add puts entries into the kernel, in one transaction; if it fails, one
// by one, so one bad entry does not keep the others in userspace.
func (k *kernel) add(adds []*kentry) {
	var ok []*kentry
	for _, e := range adds {
		if e == nil {
			continue
		}
		if e.id = k.alloc(); e.id == 0 {
			k.refuse(e, errors.New("no free IDs"))
			continue
		}
		k.stage(e)
		ok = append(ok, e)
	}
	if len(ok) == 0 {
		return
	}
	if err := k.conn.Flush(); err != nil {
		if len(ok) == 1 {
			k.free = append(k.free, ok[0].id)
			k.refuse(ok[0], err)
			return
		}
		var good []*kentry
		for _, e := range ok {
			k.stage(e)
			if err := k.conn.Flush(); err != nil {
				k.free = append(k.free, e.id)
				k.refuse(e, err)
				continue
			}
			good = append(good, e)
		}
		k.activate(good)
		return
	}
	k.activate(ok)
}

// byWorker has each item's relay thread run fn on it under its own lock,
// at the start of its next round, and then after (unless nil) once that
// lock is released. It does not wait: a thread under load holds its lock
// for whole rounds, back to back, and the kernel goroutine must not queue
// behind them.
func byWorker[T any](items []T, stream func(T) *Stream, fn func(T), after func(T)) {
	var ws []*worker
	groups := make(map[*worker][]T, 2)
	for _, it := range items {
		w := stream(it).w
		if _, ok := groups[w]; !ok {
			ws = append(ws, w)
		}
		groups[w] = append(groups[w], it)
	}
	for _, w := range ws {
		its := groups[w]
		w.post(func() func() {
			for _, it := range its {
				fn(it)
			}
			if after == nil {
				return nil
			}
			return func() {
				for _, it := range its {
					after(it)
				}
			}
		})
	}
}

func entryStream(e *kentry) *Stream { return e.st }

func (k *kernel) alloc() uint32 {
	if n := len(k.free); n > 0 {
		id := k.free[n-1]
		k.free = k.free[:n-1]
		return id
	}
	if k.next+1 >= kernelIDs {
		return 0
	}
	k.next++
	return k.next
}

// stage adds e's map elements to the pending batch.
func (k *kernel) stage(e *kentry) {
	e.out = outKey(e.id, e.daddr, e.dport)
	_ = k.conn.SetAddElements(k.out, []nftables.SetElement{{Key: e.out[:], Val: addrPort(nil, e.saddr, e.sport)}})
	_ = k.conn.SetAddElements(k.streams, []nftables.SetElement{{Key: e.key[:], Val: e.out[:]}})
}

// ipWrite rewrites the IPv4 address at offset (12 source, 16
// destination) from register reg, fixing the IP header checksum and the
// UDP checksum's pseudo-header.
func ipWrite(offset, reg uint32) *expr.Payload {
	return &expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: reg, Base: expr.PayloadBaseNetworkHeader,
		Offset: offset, Len: 4, CsumType: expr.CsumTypeInet, CsumOffset: 10, CsumFlags: unix.NFT_PAYLOAD_L4CSUM_PSEUDOHDR}
}

// udpWrite rewrites the UDP port at offset (0 source, 2 destination)
// from register reg, fixing the UDP checksum.
func udpWrite(offset, reg uint32) *expr.Payload {
	return &expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: reg, Base: expr.PayloadBaseTransportHeader,
		Offset: offset, Len: 2, CsumType: expr.CsumTypeInet, CsumOffset: 6}
}

// activate records entries the kernel accepted and tells their
// directions.
func (k *kernel) activate(es []*kentry) {
	for _, e := range es {
		k.entries[&e.st.dir[e.side]] = e
	}
	k.mu.Lock()
	k.added += uint64(len(es))
	k.mu.Unlock()
	byWorker(es, entryStream, func(e *kentry) {
		d := &e.st.dir[e.side]
		d.kLost0 = d.rtp.lost()
		d.kOwn0 = d.rtp.ownLost()
		d.kfirstExt = d.rtp.extSeq()
		d.klastExt = d.kfirstExt
		if d.k == kPending {
			d.k = kActive
		}
	}, nil)
}

// refuse gives a direction back to userspace for good after the kernel
// refused it.
func (k *kernel) refuse(e *kentry, err error) {
	k.mu.Lock()
	k.failed++
	k.lastErr = err.Error()
	k.mu.Unlock()
	var closing bool
	byWorker([]*kentry{e}, entryStream, func(e *kentry) {
		d := &e.st.dir[e.side]
		if d.k == kPending || d.k == kWithdrawing {
			d.k = kOff
		}
		closing, d.kclose = d.kclose, false
	}, func(e *kentry) {
		if closing {
			e.st.c.withdrawn()
		}
	})
}

// del takes directions out of the kernel: first their streams elements
// (no packet is rewritten afterwards), then their exact counters, read
// from the out map's elements, then those elements.
func (k *kernel) del(dels []kreq) {
	var es []*kentry
	var back []kdone
	for _, r := range dels {
		e := k.entries[&r.st.dir[r.side]]
		if e == nil {
			// Refused, or removed already: just give it back.
			back = append(back, kdone{st: r.st, side: r.side})
			continue
		}
		es = append(es, e)
		_ = k.conn.SetDeleteElements(k.streams, []nftables.SetElement{{Key: e.key[:]}})
	}
	k.finish(back)
	if len(es) == 0 {
		return
	}
	if err := k.conn.Flush(); err != nil {
		k.setErr(err)
	}
	counts, err := k.counters(es)
	if err != nil {
		k.setErr(err)
	}
	for _, e := range es {
		_ = k.conn.SetDeleteElements(k.out, []nftables.SetElement{{Key: e.out[:]}})
		delete(k.entries, &e.st.dir[e.side])
		k.free = append(k.free, e.id)
	}
	if err := k.conn.Flush(); err != nil {
		k.setErr(err)
	}
	k.mu.Lock()
	k.removed += uint64(len(es))
	k.mu.Unlock()
	ds := make([]kdone, len(es))
	for i, e := range es {
		c := counts[e.out]
		ds[i] = kdone{st: e.st, side: e.side, ssrc: binary.BigEndian.Uint32(e.key[12:16]), pk: c[0], by: c[1]}
	}
	k.finish(ds)
}

// kdone is a direction back from the kernel with what it forwarded.
type kdone struct {
	st      *Stream
	side    Side
	ssrc    uint32
	pk, by  uint64
	closing bool
}

// finish has the directions' threads fold their kernel counters in, then
// tells the calls that wait for them (outside the threads' locks:
// AfterRelease's functions read stats).
func (k *kernel) finish(ds []kdone) {
	if len(ds) == 0 {
		return
	}
	ptrs := make([]*kdone, len(ds))
	for i := range ds {
		ptrs[i] = &ds[i]
	}
	byWorker(ptrs, func(d *kdone) *Stream { return d.st }, func(x *kdone) {
		x.closing = doneLocked(x.st, x.side, x.ssrc, x.pk, x.by)
	}, func(x *kdone) {
		if x.closing {
			x.st.c.withdrawn()
		}
	})
}

func (k *kernel) setErr(err error) {
	k.mu.Lock()
	k.lastErr = err.Error()
	k.mu.Unlock()
}

// doneLocked folds a direction's kernel counters into its own and makes
// it eligible again (or off for good if its stream is closed); the
// thread's lock is held. IP and UDP headers are taken off the kernel's
// byte count (IPv4 without options), since the relay counts UDP payload
// bytes. It reports whether Call.Close waits for this direction.
func doneLocked(st *Stream, side Side, ssrc uint32, pk, by uint64) (closing bool) {
	d := &st.dir[side]
	d.kPackets += pk
	if by >= pk*28 {
		d.kBytes += by - pk*28
	}
	d.kLive, d.kLiveBytes = 0, 0
	// Loss (RFC 3550 A.3: expected - received). The kernel forwarded pk
	// packets of SSRC ssrc: they count as received. The relay thread saw
	// the rest: the samples (every sequence number modulo kernelSample
	// equal to kernelSample-1) and any packet that was on its way before
	// the hand-over, ksamples in all, the last with the extended sequence
	// number klastExt. Between the hand-over (kfirstExt) and that packet
	// the kernel forwarded the span less those, if none was lost; the
	// rest of pk came after the last one seen, and that tail is taken as
	// lossless. Loss since the hand-over shortens that tail by as much
	// (to no less than nothing): what this misses is at most the packets
	// after the last sample, fewer than kernelSample (0.64 s of 20 ms
	// audio) per hand-over, and a stream without loss comes out exact.
	span := d.klastExt - d.kfirstExt
	tail := uint64(0)
	if pk+d.ksamples > span {
		tail = pk + d.ksamples - span
	}
	tail = min(tail, pk)
	if d.rtp.ssrc == ssrc && d.rtp.valid {
		// Packets the relay thread has read since the withdrawal may
		// already have moved the highest sequence number past the tail.
		d.rtp.received += pk
		d.rtp.advanceTo(d.klastExt + tail)
		// Never below the loss when the hand-over began: a packet read
		// just after the hand-over but sent before it is no sample.
		if own := d.rtp.ownLost(); own < d.kOwn0 {
			d.rtp.advanceTo(d.rtp.extSeq() + uint64(d.kOwn0-own))
		}
	} else if pk > 0 {
		// The sender moved on to a new SSRC meanwhile: the old one's loss
		// was taken with the kernel's packets up to its last sample
		// missing.
		d.rtp.lostPrior -= int64(pk - tail)
	}
	d.ksamples = 0
	if st.closed.Load() {
		d.k = kOff
	} else {
		d.k = kUser
	}
	closing = d.kclose
	d.kclose = false
	return closing
}

// poll refreshes the live counters of kernel-forwarded directions from
// the out map's element counters (exactly the packets the kernel
// rewrote; the samples are the relay thread's own count).
func (k *kernel) poll() {
	if len(k.entries) == 0 {
		return
	}
	els, err := k.conn.GetSetElements(k.out)
	if err != nil {
		return
	}
	byKey := make(map[[12]byte]*kentry, len(k.entries))
	for _, e := range k.entries {
		byKey[e.out] = e
	}
	type live struct {
		e     *kentry
		pk, b uint64
	}
	var lives []live
	for _, el := range els {
		if el.Counter == nil || len(el.Key) != 12 {
			continue
		}
		if e := byKey[[12]byte(el.Key)]; e != nil {
			lives = append(lives, live{e, el.Counter.Packets, el.Counter.Bytes})
		}
	}
	byWorker(lives, func(l live) *Stream { return l.e.st }, func(l live) {
		d := &l.e.st.dir[l.e.side]
		if d.k == kActive {
			d.kLive, d.kLiveBytes = l.pk, 0
			if l.b > l.pk*28 {
				d.kLiveBytes = l.b - l.pk*28 // IPv4 and UDP headers off, as in doneLocked
			}
		}
	}, nil)
}

// status reports the fast path's state.
func (k *kernel) status() KernelStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	return KernelStatus{Active: true, Added: k.added, Removed: k.removed, Failed: k.failed, LastError: k.lastErr,
		Directions: int(k.added - k.removed)}
}

// kernelEntry builds the request that hands packets from side of st,
// arriving on s from its latched source, to the kernel: they go to dst out
// of the other side's RTP port. It reports false when the addresses are
// not all IPv4 (IPv6 stays in userspace).
func kernelEntry(st *Stream, s *sock, out *sock, dst netip.AddrPort, ssrc uint32) (kentry, bool) {
	var e kentry
	src := s.src.AddrPort()
	local := st.pairs[s.side].rtpPort
	egress := st.pairs[out.side].rtpPort
	if !src.Addr().Unmap().Is4() || !dst.Addr().Unmap().Is4() || !local.Addr().Is4() || !egress.Addr().Is4() {
		return e, false
	}
	a := src.Addr().Unmap().As4()
	copy(e.key[0:4], a[:])
	binary.BigEndian.PutUint16(e.key[4:6], src.Port())
	binary.BigEndian.PutUint16(e.key[8:10], local.Port())
	binary.BigEndian.PutUint32(e.key[12:16], ssrc)
	e.daddr = dst.Addr().Unmap().As4()
	e.dport = dst.Port()
	e.saddr = egress.Addr().As4()
	e.sport = egress.Port()
	return e, true
}
