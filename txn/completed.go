package txn

import (
	"net/netip"
	"sync"
	"time"

	"sipedge/transport"
)

// completed holds the non-INVITE server transactions over UDP that have
// sent their final response and wait out Timer J (64·T1 = 32 s, RFC 3261
// §17.2.2) only to answer a retransmitted request with the same response.
// At 30 000 REGISTERs a second that is a million transactions; kept as
// Server objects with their timers they were a million objects for the
// garbage collector to mark at every cycle, which showed up as latency.
// Here a completed transaction is a row in a pointer-free ring (key,
// destination, expiry, the response's place in a byte slab) and a
// map[uint64]uint64, neither of which the collector scans.
type completed struct {
	shards [32]completedShard
	now    func() time.Time
}

type completedShard struct {
	mu      sync.Mutex
	idx     map[uint64]uint64 // key → sequence number of its row
	rows    []compRow         // rows in expiry order; rows[0] has sequence base
	base    uint64
	buf     []byte // response bytes of the rows, in row order
	bufBase uint64 // absolute offset of buf[0]
}

// compRow is one completed transaction; no pointers.
type compRow struct {
	key    uint64
	expiry int64 // unix ns
	addr   [16]byte
	port   uint16
	is4    bool
	proto  transport.Proto
	off    uint64 // absolute offset of the response in the shard's slab
	n      uint32
}

func (c *completed) init(now func() time.Time) {
	c.now = now
	for i := range c.shards {
		c.shards[i].idx = make(map[uint64]uint64)
	}
}

// add records a completed transaction until expiry.
func (c *completed) add(key uint64, dst netip.AddrPort, proto transport.Proto, resp []byte, expiry time.Time) {
	sh := &c.shards[key%32]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.expire(c.now().UnixNano())
	r := compRow{key: key, expiry: expiry.UnixNano(), port: dst.Port(), proto: proto,
		off: sh.bufBase + uint64(len(sh.buf)), n: uint32(len(resp))}
	a := dst.Addr()
	r.is4 = a.Is4()
	r.addr = a.As16()
	sh.buf = append(sh.buf, resp...)
	sh.idx[key] = sh.base + uint64(len(sh.rows))
	sh.rows = append(sh.rows, r)
}

// lookup returns the response and destination of a completed transaction.
// The bytes are copied into dst: the slab moves.
func (c *completed) lookup(key uint64, dst []byte) (resp []byte, to netip.AddrPort, proto transport.Proto, ok bool) {
	sh := &c.shards[key%32]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.expire(c.now().UnixNano())
	seq, ok := sh.idx[key]
	if !ok {
		return nil, to, 0, false
	}
	r := &sh.rows[seq-sh.base]
	at := r.off - sh.bufBase
	resp = append(dst, sh.buf[at:at+uint64(r.n)]...)
	a := netip.AddrFrom16(r.addr)
	if r.is4 {
		a = a.Unmap()
	}
	return resp, netip.AddrPortFrom(a, r.port), r.proto, true
}

// expire drops the rows whose time is up (the ring is in expiry order:
// Timer J is the same for every row) and, now and then, the slab bytes
// before the first live row.
func (sh *completedShard) expire(now int64) {
	n := 0
	for n < len(sh.rows) && sh.rows[n].expiry <= now {
		if seq, ok := sh.idx[sh.rows[n].key]; ok && seq == sh.base+uint64(n) {
			delete(sh.idx, sh.rows[n].key)
		}
		n++
	}
	if n == 0 {
		return
	}
	sh.rows = sh.rows[n:]
	sh.base += uint64(n)
	if len(sh.rows) == 0 {
		sh.bufBase += uint64(len(sh.buf))
		sh.rows, sh.buf = nil, nil
		return
	}
	dead := sh.rows[0].off - sh.bufBase
	if dead > 1<<20 && dead > uint64(len(sh.buf))/2 {
		live := copy(sh.buf, sh.buf[dead:])
		sh.buf = sh.buf[:live]
		sh.bufBase += dead
		rows := make([]compRow, len(sh.rows), cap(sh.rows)) // let go of the popped prefix
		copy(rows, sh.rows)
		sh.rows = rows
	}
}

// sweep expires every shard (called every second, so memory goes back
// after a burst even when no request comes to trigger it).
func (c *completed) sweep() {
	now := c.now().UnixNano()
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.expire(now)
		sh.mu.Unlock()
	}
}

func (c *completed) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.idx)
		sh.mu.Unlock()
	}
	return n
}
