package digest

import (
	"hash/maphash"
	"sync"
	"time"
)

// Counter remembers, for each nonce that authenticated a request, which
// nonce counts (nc, RFC 7616 §3.4) were used with it, so that a captured
// request cannot be replayed (RFC 2617 §3.2.2: the server "should" check
// that nc increases). Per nonce it keeps the highest count and a 64-count
// window below it: counts may arrive out of order (UDP, parallel
// transactions) as long as they are within the window; a count seen before
// or below the window is refused.
//
// Counter must only see nonces whose request verified: then only users who
// know a password create entries. It works on the nonces Nonces makes,
// whose issue time it reads from the nonce itself.
//
// The table is bounded. Entries leave when their nonce is older than the
// lifetime (a nonce that old is refused anyway) or, when the table is
// full, oldest first. A nonce whose entry was evicted must not become
// usable from count 1 again, so Counter refuses any nonce it does not know
// that was issued no later than the newest nonce it evicted: the client
// gets a new challenge (answer with stale=true) and carries on with a
// fresh nonce.
type Counter struct {
	lifetime int64
	seed     maphash.Seed
	shards   []counterShard
}

// counterKey is a nonce decoded (issue time and MAC): half the bytes of
// its text, and with the entry a map of no pointers, which the garbage
// collector does not scan. A server under load remembers a nonce per
// registration for the nonces' lifetime (a million at 3 300 a second), so
// this is most of what it would otherwise have to walk at every cycle.
// The decoding is one to one: 32 base64 characters carry exactly 24
// bytes, without padding bits.
type counterKey = [8 + macLen]byte

type counterShard struct {
	mu    sync.Mutex
	max   int
	m     map[counterKey]counterEntry
	queue []counterKey // keys in insertion order, from head
	head  int
	floor int64 // newest issue time evicted; unknown nonces issued up to it are refused
	_     [40]byte
}

type counterEntry struct {
	issued int64  // the nonce's issue time, Unix nanoseconds
	max    uint32 // highest count accepted
	window uint64 // bit i: count max-i was accepted
}

// NewCounter returns a Counter of at most maxEntries nonces (at least 1)
// that forgets nonces older than lifetime, which should be the lifetime
// given to NewNonces.
func NewCounter(maxEntries int, lifetime time.Duration) *Counter {
	maxEntries = max(maxEntries, 1)
	n := 1
	for n < 16 && n*2 <= maxEntries {
		n *= 2
	}
	c := &Counter{lifetime: int64(lifetime), seed: maphash.MakeSeed(), shards: make([]counterShard, n)}
	for i := range c.shards {
		c.shards[i].max = maxEntries / n
		if i < maxEntries%n {
			c.shards[i].max++
		}
		c.shards[i].m = make(map[counterKey]counterEntry)
	}
	return c
}

// Use records that nonce was used with count nc in a request that
// verified, and reports whether that is allowed: false for a count used
// before, one below the window, a nonce that is too old, unknown and older
// than an evicted one, or not of Nonces' format. nc 0 stands for credentials
// without qop (RFC 2069), which carry no count: such a nonce may be used
// once only, and not at all after it was used with counts.
func (c *Counter) Use(nonce []byte, nc uint32, now time.Time) bool {
	issued, k, ok := decodeNonce(nonce)
	if !ok {
		return false
	}
	nowNs := now.UnixNano()
	if nowNs-issued > c.lifetime {
		return false
	}
	sh := &c.shards[maphash.Bytes(c.seed, k[:])%uint64(len(c.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.expire(nowNs - c.lifetime)
	if e, ok := sh.m[k]; ok {
		ok = e.use(nc)
		sh.m[k] = e
		return ok
	}
	if issued <= sh.floor {
		return false
	}
	for len(sh.m) >= sh.max {
		sh.evict()
	}
	e := counterEntry{issued: issued, max: nc, window: 1}
	if nc == 0 {
		// Without a count the nonce is spent: nothing is above the
		// maximum count and the whole window is taken.
		e.max, e.window = ^uint32(0), ^uint64(0)
	}
	sh.m[k] = e
	sh.queue = append(sh.queue, k)
	return true
}

// use applies one count to an entry.
func (e *counterEntry) use(nc uint32) bool {
	switch {
	case nc == 0:
		return false // RFC 2069 use of a nonce already used
	case nc > e.max:
		if d := nc - e.max; d >= 64 {
			e.window = 1
		} else {
			e.window = e.window<<d | 1
		}
		e.max = nc
		return true
	}
	d := e.max - nc
	if d >= 64 || e.window&(1<<d) != 0 {
		return false
	}
	e.window |= 1 << d
	return true
}

// expire drops entries from the head of the queue issued before oldest.
// Entries go in roughly in issue order, so this finds nearly all expired
// ones; any it leaves are refused by their issue time and leave later.
func (sh *counterShard) expire(oldest int64) {
	for sh.head < len(sh.queue) {
		if e, ok := sh.m[sh.queue[sh.head]]; ok && e.issued >= oldest {
			return
		}
		sh.pop()
	}
}

// evict drops the entry at the head of the queue and raises the floor.
func (sh *counterShard) evict() {
	if sh.head == len(sh.queue) {
		return
	}
	if e, ok := sh.m[sh.queue[sh.head]]; ok && e.issued > sh.floor {
		sh.floor = e.issued
	}
	sh.pop()
}

func (sh *counterShard) pop() {
	delete(sh.m, sh.queue[sh.head])
	sh.head++
	if sh.head == len(sh.queue) {
		sh.queue, sh.head = sh.queue[:0], 0
	} else if sh.head >= 64 && sh.head*2 >= len(sh.queue) {
		n := copy(sh.queue, sh.queue[sh.head:])
		sh.queue, sh.head = sh.queue[:n], 0
	}
}

// Len returns the number of nonces remembered.
func (c *Counter) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
