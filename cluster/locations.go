package cluster

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"sipedge/registrar"
	"sipedge/store"
)

// Locations keeps the registrar's binding sets in Redis
// (registrar.Persister) and installs the other instances' writes in this
// instance's registrar (Bind).
//
// One Redis hash per AoR holds the record and a version that every write
// increments; a Lua script writes, sets the expiry and publishes the new
// record in one step, so every instance sees the writes of an AoR in the
// order Redis made them. An instance applies its own writes to memory
// before Redis has them (the registrar does) and skips their echo; a
// write of another instance that Redis ordered before its own but that
// arrives after it is recognised by its lower version and ignored, and
// its own record is put back when another instance's write was applied
// while its own was on the way (versions, below).
type Locations struct {
	c   *Cluster
	ttl atomic.Int64 // ms
	reg Target

	mu     sync.Mutex
	queue  []op
	wakeC  chan struct{}
	vers   map[string]*version
	epoch  uint64 // bumped by each resync
	script *redis.Script

	// amu serialises installing records in the registrar (remote writes,
	// own writes put back, resync). Never taken under a shard lock.
	amu sync.Mutex

	stats locStats
	hooks atomic.Pointer[store.BatchHooks]
	depth atomic.Int64 // writes queued or on the way
}

// maxDepth is how many writes may wait for Redis: beyond it the instance
// is overloaded (Redis cannot keep up) and answers REGISTER 503 at once
// rather than queueing until phones retransmit.
const maxDepth = 8192

// Target is where other instances' records go: *registrar.Registrar.
type Target interface {
	Replace(key, val []byte) error
	Forget(keep func(aorKey string) bool) int
}

// version follows one AoR while this instance writes it and for a while
// after (pruned when idle for versionIdle).
type version struct {
	v       int64  // highest version installed in memory
	pending int    // own writes on the way
	remote  uint64 // other instances' writes installed
	at      time.Time
}

const versionIdle = 10 * time.Second

type op struct {
	key, val []byte
	del      bool
	done     store.Done
	remote   uint64 // version.remote when queued
	epoch    uint64
}

type locStats struct {
	Writes, Failed, Remote, Stale, PutBack, Resyncs, Bad atomic.Uint64
}

// maxBatch is the most writes sent in one pipeline.
const maxBatch = 256

// writeScript writes a batch of AoR records — for each: version + 1,
// record, expiry — and publishes them to the other instances in one
// message (parseBatch):
//
//	node "\n" { version " " keylen " " key " " reclen " " record }
//
// One script call and one message per batch, not per REGISTER: Redis's
// cost per call and the subscribers' per message are what a cluster pays
// for sharing. ARGV: node, channel, then record and expiry (ms) per key.
const writeScript = `
local out = {}
local vs = {}
for i = 1, #KEYS do
  local rec = ARGV[1 + 2*i]
  local v = redis.call('HINCRBY', KEYS[i], 'v', 1)
  redis.call('HSET', KEYS[i], 'r', rec)
  redis.call('PEXPIRE', KEYS[i], ARGV[2 + 2*i])
  vs[i] = v
  out[i] = v .. ' ' .. string.len(KEYS[i]) .. ' ' .. KEYS[i] .. ' ' .. string.len(rec) .. ' ' .. rec
end
redis.call('PUBLISH', ARGV[2], ARGV[1] .. '\n' .. table.concat(out))
return vs`

// Locations returns the shared location service; ttl is how long an AoR
// outlives its last write in Redis (the registrar's max_expires and a
// margin). Call before Start.
func (c *Cluster) Locations(ttl time.Duration) *Locations {
	l := &Locations{c: c, wakeC: make(chan struct{}, 1), vers: map[string]*version{}, script: redis.NewScript(writeScript)}
	l.SetTTL(ttl)
	c.loc = l
	return l
}

// SetTTL changes the expiry of the records written from now on.
func (l *Locations) SetTTL(ttl time.Duration) { l.ttl.Store(max(ttl, time.Minute).Milliseconds()) }

// Bind names the registrar the other instances' writes go to (after
// registrar.New, which loads the records through Load).
func (l *Locations) Bind(t Target) {
	l.amu.Lock()
	l.reg = t
	l.amu.Unlock()
}

// Available implements registrar.Availability: Redis answers and is not
// too far behind.
func (l *Locations) Available() bool { return l.c.Available() && l.depth.Load() < maxDepth }

// SetBatchHooks brackets the results of each batch (store.BatchHooks):
// the 200s of one batch leave together.
func (l *Locations) SetBatchHooks(h store.BatchHooks) { l.hooks.Store(&h) }

// Put implements registrar.Persister.
func (l *Locations) Put(key, val []byte, done store.Done) { l.enqueue(key, val, false, done) }

// Delete implements registrar.Persister.
func (l *Locations) Delete(key []byte, done store.Done) { l.enqueue(key, nil, true, done) }

// Own implements registrar.Persister: Redis keeps the data itself.
func (l *Locations) Own(func(emit func(key, val []byte) error) error) {}

func (l *Locations) enqueue(key, val []byte, del bool, done store.Done) {
	o := op{key: bytes.Clone(key), val: bytes.Clone(val), del: del, done: done}
	l.mu.Lock()
	e := l.vers[string(key)]
	if e == nil {
		e = &version{}
		l.vers[string(o.key)] = e
	}
	e.pending++
	o.remote, o.epoch = e.remote, l.epoch
	l.queue = append(l.queue, o)
	l.mu.Unlock()
	l.depth.Add(1)
	l.wake()
}

func (l *Locations) wake() {
	select {
	case l.wakeC <- struct{}{}:
	default:
	}
}

// writer sends the queued writes to Redis, a pipeline at a time, and tells
// each its result.
func (l *Locations) writer() {
	defer l.c.wg.Done()
	prune := time.NewTicker(versionIdle)
	defer prune.Stop()
	var batch []op
	for {
		select {
		case <-l.c.ctx.Done():
			l.failAll()
			return
		case <-prune.C:
			l.prune()
			continue
		case <-l.wakeC:
		}
		for {
			l.mu.Lock()
			n := min(len(l.queue), maxBatch)
			batch = append(batch[:0], l.queue[:n]...)
			l.queue = append(l.queue[:0], l.queue[n:]...)
			l.mu.Unlock()
			if n == 0 {
				break
			}
			l.write(batch)
			clear(batch)
		}
	}
}

// failAll fails what is still queued at Close.
func (l *Locations) failAll() {
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, o := range q {
		if o.done != nil {
			o.done.Stored(fmt.Errorf("%w: shutting down", registrar.ErrUnavailable))
		}
	}
	l.depth.Add(-int64(len(q)))
}

func (l *Locations) write(batch []op) {
	ctx, cancel := context.WithTimeout(l.c.ctx, 3*time.Second)
	defer cancel()
	vs, err := l.exec(ctx, batch)
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		// Redis restarted and lost its script cache.
		if err = l.script.Load(ctx, l.c.rdb).Err(); err == nil {
			vs, err = l.exec(ctx, batch)
		}
	}
	l.c.setUp(err == nil, err)
	type putBack struct{ key, val []byte }
	var back []putBack
	l.mu.Lock()
	for i := range batch {
		o := &batch[i]
		e := l.vers[string(o.key)]
		if e == nil { // cannot happen: pending keeps it
			continue
		}
		e.pending--
		e.at = time.Now()
		if err != nil {
			continue
		}
		if v := vs[i]; v > e.v {
			e.v = v
			if e.remote != o.remote || l.epoch != o.epoch {
				// Another instance's write was installed while this
				// one was on the way, and Redis ordered this one
				// last: memory must hold this one.
				back = append(back, putBack{o.key, o.val})
			}
		}
	}
	l.mu.Unlock()
	if len(back) > 0 {
		l.amu.Lock()
		for _, b := range back {
			if l.reg != nil {
				l.reg.Replace(b.key, b.val)
			}
		}
		l.amu.Unlock()
		l.stats.PutBack.Add(uint64(len(back)))
	}
	if err != nil {
		l.stats.Failed.Add(uint64(len(batch)))
		err = fmt.Errorf("%w: %v", registrar.ErrUnavailable, err)
	} else {
		l.stats.Writes.Add(uint64(len(batch)))
	}
	h := l.hooks.Load()
	if h != nil && h.Begin != nil {
		h.Begin()
	}
	for i := range batch {
		if d := batch[i].done; d != nil {
			d.Stored(err)
		}
	}
	if h != nil && h.End != nil {
		h.End()
	}
	l.depth.Add(-int64(len(batch)))
}

// exec writes a batch; vs are the new versions. On a Redis Cluster the
// keys of a batch lie in different slots, so each is a script call of its
// own there.
func (l *Locations) exec(ctx context.Context, batch []op) ([]int64, error) {
	ttl := l.ttl.Load()
	if _, cluster := l.c.rdb.(*redis.ClusterClient); cluster {
		vs := make([]int64, 0, len(batch))
		p := l.c.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i := range batch {
			cmds[i] = l.call(ctx, p, batch[i:i+1], ttl)
		}
		if err := l.wait(ctx, p); err != nil {
			return nil, err
		}
		for _, c := range cmds {
			v, err := versions(c, 1)
			if err != nil {
				return nil, err
			}
			vs = append(vs, v...)
		}
		return vs, nil
	}
	p := l.c.rdb.Pipeline()
	c := l.call(ctx, p, batch, ttl)
	if err := l.wait(ctx, p); err != nil {
		return nil, err
	}
	return versions(c, len(batch))
}

// call queues one script call writing ops on p.
func (l *Locations) call(ctx context.Context, p redis.Pipeliner, ops []op, ttl int64) *redis.Cmd {
	keys := make([]string, len(ops))
	args := make([]any, 2, 2+2*len(ops))
	args[0], args[1] = l.c.cfg.Node, l.c.key("aor")
	for i := range ops {
		o := &ops[i]
		keys[i] = l.c.key("aor:") + string(o.key)
		exp := ttl
		if o.del {
			exp = versionIdle.Milliseconds() * 6 // a tombstone keeps the version a while
		}
		args = append(args, o.val, exp)
	}
	return l.script.EvalSha(ctx, p, keys, args...)
}

// wait runs the pipeline, then (wait_replicas) waits until that many
// replicas have its writes.
func (l *Locations) wait(ctx context.Context, p redis.Pipeliner) error {
	var wait *redis.Cmd
	if n := l.c.cfg.WaitReplicas; n > 0 {
		wait = p.Do(ctx, "WAIT", n, 2000)
	}
	if _, err := p.Exec(ctx); err != nil {
		return err
	}
	if wait != nil {
		if n, err := wait.Int64(); err != nil || n < int64(l.c.cfg.WaitReplicas) {
			return fmt.Errorf("%d of %d replicas have the writes (%v)", n, l.c.cfg.WaitReplicas, err)
		}
	}
	return nil
}

// versions reads a script call's reply: n versions.
func versions(c *redis.Cmd, n int) ([]int64, error) {
	vs, err := c.Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(vs) != n {
		return nil, fmt.Errorf("Redis answered %d versions for %d writes", len(vs), n)
	}
	return vs, nil
}

// prune forgets the versions of AoRs idle for a while.
func (l *Locations) prune() {
	cut := time.Now().Add(-versionIdle)
	l.mu.Lock()
	for k, e := range l.vers {
		if e.pending == 0 && e.at.Before(cut) {
			delete(l.vers, k)
		}
	}
	l.mu.Unlock()
}

// write is one record of a message of the aor channel.
type write struct {
	v        int64
	key, val string
}

// parseBatch splits a message of the aor channel (writeScript): the
// writing node and its records, in the order Redis wrote them.
func parseBatch(payload string) (node string, ws []write, ok bool) {
	node, rest, found := strings.Cut(payload, "\n")
	if !found || node == "" {
		return "", nil, false
	}
	num := func() (int64, bool) {
		s, r, found := strings.Cut(rest, " ")
		if !found || s == "" || len(s) > 18 { // 18 digits cannot overflow
			return 0, false
		}
		var n int64
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			n = n*10 + int64(s[i]-'0')
		}
		rest = r
		return n, true
	}
	str := func() (string, bool) {
		n, ok := num()
		if !ok || n > int64(len(rest)) {
			return "", false
		}
		s := rest[:n]
		rest = rest[n:]
		return s, true
	}
	for rest != "" {
		v, ok1 := num()
		key, ok2 := str()
		if !ok1 || !ok2 || v < 1 || !strings.HasPrefix(rest, " ") {
			return "", nil, false
		}
		rest = rest[1:]
		val, ok3 := str()
		if !ok3 {
			return "", nil, false
		}
		ws = append(ws, write{v, key, val})
	}
	return node, ws, len(ws) > 0
}

// remote installs another instance's batch of writes.
func (l *Locations) remote(payload string) {
	node, ws, ok := parseBatch(payload)
	if !ok {
		l.stats.Bad.Add(1)
		return
	}
	if node == l.c.cfg.Node {
		return // this instance's own writes: already in memory
	}
	prefix := l.c.key("aor:")
	l.amu.Lock()
	defer l.amu.Unlock()
	now := time.Now()
	for _, w := range ws {
		key, ok := strings.CutPrefix(w.key, prefix)
		if !ok {
			continue
		}
		l.mu.Lock()
		if e := l.vers[key]; e != nil {
			if w.v <= e.v {
				l.mu.Unlock()
				l.stats.Stale.Add(1)
				continue
			}
			e.v, e.at = w.v, now
			e.remote++
		}
		l.mu.Unlock()
		if l.reg != nil {
			if err := l.reg.Replace([]byte(key), []byte(w.val)); err != nil {
				l.stats.Bad.Add(1)
				continue
			}
		}
		l.stats.Remote.Add(1)
	}
}

// Load implements registrar.Persister: every AoR record in Redis.
func (l *Locations) Load(fn func(key, val []byte) error) error {
	ctx, cancel := context.WithTimeout(l.c.ctx, time.Minute)
	defer cancel()
	return l.scan(ctx, fn)
}

// scan calls fn for every AoR record in Redis and notes each one's
// version: a message of the subscription older than what was read is then
// ignored.
func (l *Locations) scan(ctx context.Context, fn func(key, val []byte) error) error {
	prefix := l.c.key("aor:")
	each := func(ctx context.Context, rdb redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				p := rdb.Pipeline()
				cmds := make([]*redis.SliceCmd, len(keys))
				for i, k := range keys {
					cmds[i] = p.HMGet(ctx, k, "v", "r")
				}
				if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
					return err
				}
				now := time.Now()
				for i, k := range keys {
					vals, err := cmds[i].Result()
					if err != nil || len(vals) != 2 {
						continue
					}
					vs, _ := vals[0].(string)
					val, _ := vals[1].(string)
					key := strings.TrimPrefix(k, prefix)
					if v, err := strconv.ParseInt(vs, 10, 64); err == nil {
						l.mu.Lock()
						if e := l.vers[key]; e == nil {
							l.vers[key] = &version{v: v, at: now}
						} else if v > e.v && e.pending == 0 {
							e.v, e.at = v, now
						}
						l.mu.Unlock()
					}
					if len(val) == 0 {
						continue // removed (a tombstone keeps the version)
					}
					if err := fn([]byte(key), []byte(val)); err != nil {
						return err
					}
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := l.c.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return each(ctx, c) })
	}
	return each(ctx, l.c.rdb)
}

// resync reloads every record after the subscription was lost: what
// changed meanwhile is installed, what was removed is forgotten.
func (l *Locations) resync() {
	ctx, cancel := context.WithTimeout(l.c.ctx, time.Minute)
	defer cancel()
	l.amu.Lock()
	defer l.amu.Unlock()
	if l.reg == nil {
		return
	}
	l.mu.Lock()
	l.epoch++
	l.mu.Unlock()
	seen := map[string]struct{}{}
	err := l.scan(ctx, func(key, val []byte) error {
		seen[string(key)] = struct{}{}
		return l.reg.Replace(key, val)
	})
	if err != nil {
		l.c.log.Warn("cluster: reloading the bindings after a lost connection failed; will retry at the next", "err", err)
		return
	}
	l.mu.Lock()
	pending := map[string]struct{}{}
	for k, e := range l.vers {
		if e.pending > 0 {
			pending[k] = struct{}{}
		}
	}
	l.mu.Unlock()
	n := l.reg.Forget(func(k string) bool {
		_, ok := seen[k]
		_, p := pending[k]
		return ok || p
	})
	l.stats.Resyncs.Add(1)
	l.c.log.Info("cluster: bindings reloaded from Redis", "aors", len(seen), "forgotten", n)
}
