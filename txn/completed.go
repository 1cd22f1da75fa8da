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
// destination, expiry, the response's place in a chunk of bytes) and a
// map[uint64]uint64, neither of which the collector scans.
type completed struct {
	shards [32]completedShard
	now    func() time.Time
}

type completedShard struct {
	mu   sync.Mutex
	idx  map[uint64]uint64 // key → sequence number of its row
	rows []compRow         // rows in expiry order; rows[0] has sequence base
	base uint64
	// The responses, in row order, in fixed-size chunks: a growing table
	// never copies the bytes it holds (one growing slab did, hundreds of
	// megabytes under the shard lock at 40 000 REGISTERs a second), and
	// expired chunks are reused or given back. The chunks are mapped
	// outside the Go heap where the system allows (chunk_unix.go): they
	// hold most of the table's memory (about 500 MB at 30 000 REGISTERs a
	// second), and in the heap they would double the collector's target
	// and so the process's size.
	chunks    []chunk
	chunkBase uint64  // absolute number of chunks[0]
	spare     []chunk // emptied chunks kept for reuse
	closed    bool    // released by close: nothing is stored any more
}

// chunk is a byte buffer of the table, from allocChunk (mapped) or from
// the Go heap (a response larger than a chunk, or where mapping failed).
type chunk struct {
	b      []byte
	mapped bool
}

// chunkSize holds a few hundred responses; a response larger than a chunk
// (the message limit allows 64 KiB) gets a chunk of its own size.
const chunkSize = 256 << 10

// maxSpare bounds the empty chunks a shard keeps (1 MiB).
const maxSpare = 4

// compRow is one completed transaction; no pointers.
type compRow struct {
	key    uint64
	expiry int64 // unix ns
	addr   [16]byte
	port   uint16
	is4    bool
	proto  transport.Proto
	chunk  uint64 // absolute number of the chunk holding the response
	off, n uint32 // the response's place in that chunk
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
	if sh.closed {
		return
	}
	sh.expire(c.now().UnixNano())
	last := len(sh.chunks) - 1
	if last < 0 || cap(sh.chunks[last].b)-len(sh.chunks[last].b) < len(resp) {
		sh.chunks = append(sh.chunks, sh.newChunk(len(resp)))
		last++
	}
	ch := &sh.chunks[last]
	r := compRow{key: key, expiry: expiry.UnixNano(), port: dst.Port(), proto: proto,
		chunk: sh.chunkBase + uint64(last), off: uint32(len(ch.b)), n: uint32(len(resp))}
	ch.b = append(ch.b, resp...)
	a := dst.Addr()
	r.is4 = a.Is4()
	r.addr = a.As16()
	sh.idx[key] = sh.base + uint64(len(sh.rows))
	sh.rows = append(sh.rows, r)
}

func (sh *completedShard) newChunk(need int) chunk {
	if need > chunkSize {
		return chunk{b: make([]byte, 0, need)}
	}
	if n := len(sh.spare); n > 0 {
		ch := sh.spare[n-1]
		sh.spare[n-1] = chunk{}
		sh.spare = sh.spare[:n-1]
		return ch
	}
	if b, ok := allocChunk(chunkSize); ok {
		return chunk{b: b[:0], mapped: true}
	}
	return chunk{b: make([]byte, 0, chunkSize)}
}

// release gives a chunk back: to the spares, or to the system.
func (sh *completedShard) release(ch chunk) {
	switch {
	case cap(ch.b) == chunkSize && len(sh.spare) < maxSpare && !sh.closed:
		sh.spare = append(sh.spare, chunk{b: ch.b[:0], mapped: ch.mapped})
	case ch.mapped:
		freeChunk(ch.b)
	}
}

// lookup returns the response and destination of a completed transaction.
// The bytes are copied into dst: the chunk is reused once the row expires.
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
	ch := sh.chunks[r.chunk-sh.chunkBase].b
	resp = append(dst, ch[r.off:r.off+r.n]...)
	a := netip.AddrFrom16(r.addr)
	if r.is4 {
		a = a.Unmap()
	}
	return resp, netip.AddrPortFrom(a, r.port), r.proto, true
}

// expire drops the rows whose time is up (the ring is in expiry order:
// Timer J is the same for every row) and the chunks before the first live
// row's.
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
	dead := len(sh.chunks) // every chunk, when no row is left
	if len(sh.rows) > 0 {
		dead = int(sh.rows[0].chunk - sh.chunkBase)
	}
	for i := range dead {
		sh.release(sh.chunks[i])
		sh.chunks[i] = chunk{}
	}
	sh.chunks = sh.chunks[dead:]
	sh.chunkBase += uint64(dead)
	if len(sh.rows) == 0 {
		sh.rows = nil
		return
	}
	if cap(sh.rows) > 4096 && len(sh.rows) < cap(sh.rows)/4 {
		// Let go of the popped prefix after a burst.
		sh.rows = append(make([]compRow, 0, 2*len(sh.rows)), sh.rows...)
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

// close drops every row and gives all chunks back; later adds store
// nothing and lookups find nothing (Layer.Close).
func (c *completed) close() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.closed = true
		for _, ch := range sh.chunks {
			sh.release(ch)
		}
		for _, ch := range sh.spare {
			sh.release(ch)
		}
		sh.chunks, sh.spare, sh.rows = nil, nil, nil
		clear(sh.idx)
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
