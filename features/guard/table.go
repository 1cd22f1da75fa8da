package guard

import (
	"hash/maphash"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
)

// The source table: one entry per source address, in shards, each a map
// and a list in order of last activity. The per-request path is one shard
// lock, one map lookup, moving the entry to the front of its list and a
// little arithmetic: no allocation for a source already tracked.
//
// When a shard is full, a new source takes the place of the least recently
// active source of that shard that is not banned (looking at most
// evictScan entries from the old end). When all of those are banned, the
// new source is served without being tracked (counted in Untracked): a
// full table never bans anyone, and never lifts a ban to make room.

const (
	maxShards = 64
	// minPerShard keeps small tables in few shards, so that the cap is
	// the cap and not a rounding of it.
	minPerShard = 256
	evictScan   = 16
)

// Ban reasons as they appear in log lines and Stats.
const (
	reasonRate = "rate"
	reasonAuth = "auth-failures"
)

type banReason uint8

const (
	noBan banReason = iota
	banRate
	banAuth
)

func (r banReason) String() string {
	switch r {
	case banRate:
		return reasonRate
	case banAuth:
		return reasonAuth
	}
	return ""
}

// window counts events over a sliding window approximated by two fixed
// buckets (as pike and common rate limiters do): the count of the
// previous bucket, weighted by how much of it still lies within the
// window, plus the count of the current one.
type window struct {
	start     int64 // start of the current bucket (clock nanoseconds)
	cur, prev uint32
}

// add counts one event at now and returns the estimate times w (integer
// arithmetic: compare with limit*w). Windows are at most an hour and
// counts at most a million (config validation), so nothing overflows.
func (c *window) add(now, w int64) int64 {
	if c.cur == 0 && c.prev == 0 {
		// An empty window starts with its first event: a burst is never
		// split by a bucket boundary that happened to fall inside it.
		c.start = now
	}
	el := now - c.start
	if el >= w || el < 0 {
		n := el / w
		if n == 1 {
			c.prev = c.cur
		} else {
			c.prev = 0
		}
		c.cur = 0
		if el < 0 { // the clock cannot go back; a changed window can
			c.start, el = now, 0
		} else {
			c.start += n * w
			el -= n * w
		}
	}
	if c.cur < 1<<31 {
		c.cur++
	}
	return int64(c.cur)*w + int64(c.prev)*(w-el)
}

func (c *window) reset() { *c = window{} }

// entry is one tracked source.
type entry struct {
	addr       netip.Addr
	prev, next *entry // activity list of the shard, most recent first
	last       int64  // last request or report
	rate, auth window
	// A ban: until is 0 when there is none.
	since, until int64
	reason       banReason
	dropped      uint64
}

type shard struct {
	mu   sync.Mutex
	m    map[netip.Addr]*entry
	head entry // sentinel: head.next is the most recent, head.prev the least
	free *entry
	_    [64]byte // keep shards' locks off each other's cache lines
}

type sourceTable struct {
	shards   []shard
	mask     uint64
	seed     maphash.Seed
	perShard atomic.Int64
	n        atomic.Int64
}

func newSourceTable(limit int) *sourceTable {
	n := 1
	for n < maxShards && limit/(n*2) >= minPerShard {
		n *= 2
	}
	t := &sourceTable{shards: make([]shard, n), mask: uint64(n - 1), seed: maphash.MakeSeed()}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.m = map[netip.Addr]*entry{}
		sh.head.next, sh.head.prev = &sh.head, &sh.head
	}
	t.setCap(limit)
	return t
}

// setCap sets the cap (a reload): the shard count stays what it was, each
// shard's share changes. A lower cap takes effect as sources come and go.
func (t *sourceTable) setCap(limit int) {
	t.perShard.Store(int64(max(1, limit/len(t.shards))))
}

func (t *sourceTable) shard(a netip.Addr) *shard {
	if t.mask == 0 {
		return &t.shards[0]
	}
	b := a.As16()
	// The seed is random, so nobody can choose addresses that crowd
	// one shard.
	h := maphash.Bytes(t.seed, b[:])
	return &t.shards[h&t.mask]
}

func (t *sourceTable) len() int { return int(t.n.Load()) }

// lookup returns a's entry, tracking it when new if create is set (nil:
// not tracked, or the shard is full of bans); the entry becomes the most
// recent. Called with sh.mu held.
func (t *sourceTable) lookup(g *Guard, sh *shard, a netip.Addr, now int64, create bool) *entry {
	e := sh.m[a]
	if e == nil {
		if !create {
			return nil
		}
		if int64(len(sh.m)) >= t.perShard.Load() && !t.evict(g, sh) {
			g.stats.Untracked.Add(1)
			return nil
		}
		if e = sh.free; e != nil {
			sh.free = nil
			*e = entry{}
		} else {
			e = &entry{}
		}
		e.addr = a
		sh.m[a] = e
		t.n.Add(1)
	} else {
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.last = now
	e.next, e.prev = sh.head.next, &sh.head
	sh.head.next.prev = e
	sh.head.next = e
	return e
}

// evict forgets the least recently active source of sh that is not
// banned, among the evictScan oldest.
func (t *sourceTable) evict(g *Guard, sh *shard) bool {
	e := sh.head.prev
	for i := 0; i < evictScan && e != &sh.head; i, e = i+1, e.prev {
		if e.until == 0 {
			t.remove(sh, e)
			sh.free = e
			g.stats.Evicted.Add(1)
			return true
		}
	}
	return false
}

func (t *sourceTable) remove(sh *shard, e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(sh.m, e.addr)
	t.n.Add(-1)
}

// event is a log line to write once the shard lock is released.
type event struct {
	kind   uint8 // evBan, evUnban
	addr   netip.Addr
	reason banReason
	lifted bool  // unban: lifted, not expired
	n      int   // ban: the threshold passed
	window int64 // ban: the window it was counted over
	dur    int64 // ban: how long
}

const (
	evNone uint8 = iota
	evBan
	evUnban
)

// ban bans e from now for d. Called with the shard lock held.
func (g *Guard) ban(e *entry, r banReason, now int64, n int, w, d int64) event {
	e.since, e.until, e.reason, e.dropped = now, now+d, r, 0
	g.stats.ActiveBans.Add(1)
	if r == banRate {
		g.stats.RateBans.Add(1)
	} else {
		g.stats.AuthBans.Add(1)
	}
	return event{kind: evBan, addr: e.addr, reason: r, n: n, window: w, dur: d}
}

// unban ends e's ban and starts its counts afresh (what it sent while
// banned was not counted). Called with the shard lock held.
func (g *Guard) unban(e *entry, lifted bool) event {
	ev := event{kind: evUnban, addr: e.addr, reason: e.reason, lifted: lifted}
	e.since, e.until, e.reason = 0, 0, noBan
	e.rate.reset()
	e.auth.reset()
	g.stats.ActiveBans.Add(-1)
	if lifted {
		g.stats.Lifted.Add(1)
	} else {
		g.stats.Expired.Add(1)
	}
	return ev
}

// request counts a request from a and reports whether it must be dropped
// (a is banned).
func (g *Guard) request(a netip.Addr, cfg *Config) bool {
	now := g.clock()
	t := g.sources
	sh := t.shard(a)
	sh.mu.Lock()
	// Without a rate limit only auth failures create entries.
	e := t.lookup(g, sh, a, now, cfg.RateRequests > 0)
	if e == nil {
		sh.mu.Unlock()
		return false
	}
	var ev event
	if e.until != 0 {
		if now < e.until {
			e.dropped++
			sh.mu.Unlock()
			g.stats.Dropped.Add(1)
			return true
		}
		ev = g.unban(e, false)
	}
	if cfg.RateRequests > 0 {
		w := int64(cfg.RateWindow)
		if e.rate.add(now, w) > int64(cfg.RateRequests)*w {
			// The request over the limit is the ban's first dropped.
			ev = g.ban(e, banRate, now, cfg.RateRequests, w, int64(cfg.RateBan))
			e.dropped = 1
		}
	}
	sh.mu.Unlock()
	if ev.kind != evNone {
		g.emit(ev)
	}
	if ev.kind == evBan {
		g.stats.Dropped.Add(1)
		return true
	}
	return false
}

// Banned reports whether requests from a are being dropped (for a
// transport that refuses connections from banned sources before reading
// them). The trusted networks' exemption is the stage's, not this.
func (g *Guard) Banned(a netip.Addr) bool {
	a = a.Unmap()
	sh := g.sources.shard(a)
	sh.mu.Lock()
	e := sh.m[a]
	banned := e != nil && e.until != 0 && g.clock() < e.until
	sh.mu.Unlock()
	return banned
}

// Bans lists the sources banned now, the oldest ban first.
func (g *Guard) Bans() []Ban {
	now := g.clock()
	var out []Ban
	for i := range g.sources.shards {
		sh := &g.sources.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			if e.until != 0 && now < e.until {
				out = append(out, Ban{Source: e.addr, Reason: e.reason.String(), Since: g.time(e.since), Until: g.time(e.until), Count: e.dropped})
			}
		}
		sh.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		return out[i].Source.Less(out[j].Source)
	})
	return out
}

// Lift lifts the bans of the sources in p and returns how many it lifted
// (bans already run out are logged as expired and not counted). Their
// counts start afresh.
func (g *Guard) Lift(p netip.Prefix) int { return g.lift(p, true) }

func (g *Guard) lift(p netip.Prefix, report bool) int {
	p = p.Masked()
	now := g.clock()
	n := 0
	var evs []event
	for i := range g.sources.shards {
		sh := &g.sources.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			if e.until == 0 || !p.Contains(e.addr) {
				continue
			}
			lifted := now < e.until
			if lifted {
				n++
			}
			evs = append(evs, g.unban(e, lifted))
		}
		sh.mu.Unlock()
	}
	for _, ev := range evs {
		g.emit(ev)
	}
	if report {
		g.changed(Change{Lift: true, Source: p})
	}
	return n
}

// sweep lifts the bans that ran out and forgets sources idle long enough
// that both buckets of their counts are empty.
func (t *sourceTable) sweep(g *Guard, cfg *Config, now int64) {
	idle := 2 * max(int64(cfg.RateWindow), int64(cfg.AuthWindow))
	var evs []event
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			switch {
			case e.until != 0 && now >= e.until:
				evs = append(evs, g.unban(e, false))
			case e.until == 0 && now-e.last > idle:
				t.remove(sh, e)
			}
		}
		sh.mu.Unlock()
	}
	for _, ev := range evs {
		g.emit(ev)
	}
}
