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
}

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

// writeScript writes one AoR's record: version + 1, record, expiry, and
// the message to the other instances ("node version keylen key record").
const writeScript = `
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'r', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. ' ' .. v .. ' ' .. string.len(KEYS[1]) .. ' ' .. KEYS[1] .. ARGV[2])
return v`

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

// Available implements registrar.Availability.
func (l *Locations) Available() bool { return l.c.Available() }

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
	for i := range batch {
		if d := batch[i].done; d != nil {
			d.Stored(err)
		}
	}
}

// exec runs one pipeline of writes; vs are the new versions.
func (l *Locations) exec(ctx context.Context, batch []op) ([]int64, error) {
	p := l.c.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	ttl := l.ttl.Load()
	ch := l.c.key("aor")
	for i := range batch {
		o := &batch[i]
		k := l.c.key("aor:") + string(o.key)
		exp := ttl
		if o.del {
			exp = versionIdle.Milliseconds() * 6 // a tombstone keeps the version a while
		}
		cmds[i] = l.script.EvalSha(ctx, p, []string{k}, l.c.cfg.Node, o.val, exp, ch)
	}
	var wait *redis.Cmd
	if n := l.c.cfg.WaitReplicas; n > 0 {
		wait = p.Do(ctx, "WAIT", n, 2000)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, err
	}
	vs := make([]int64, len(batch))
	for i, c := range cmds {
		v, err := c.Int64()
		if err != nil {
			return nil, err
		}
		vs[i] = v
	}
	if wait != nil {
		if n, err := wait.Int64(); err != nil || n < int64(l.c.cfg.WaitReplicas) {
			return nil, fmt.Errorf("%d of %d replicas have the writes (%v)", n, l.c.cfg.WaitReplicas, err)
		}
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

// parseWrite splits a message of the aor channel: "node version keylen
// key record" (the record may be empty: the AoR was removed).
func parseWrite(payload string) (node string, v int64, key, val string, ok bool) {
	node, rest, ok1 := strings.Cut(payload, " ")
	vs, rest, ok2 := strings.Cut(rest, " ")
	kl, rest, ok3 := strings.Cut(rest, " ")
	v, err1 := strconv.ParseInt(vs, 10, 64)
	n, err2 := strconv.Atoi(kl)
	if !ok1 || !ok2 || !ok3 || err1 != nil || err2 != nil || n < 0 || n > len(rest) || node == "" || v < 1 {
		return "", 0, "", "", false
	}
	return node, v, rest[:n], rest[n:], true
}

// remote installs another instance's write.
func (l *Locations) remote(payload string) {
	node, v, k, val, ok := parseWrite(payload)
	if !ok {
		return
	}
	if node == l.c.cfg.Node {
		return // this instance's own write: already in memory
	}
	key, ok := strings.CutPrefix(k, l.c.key("aor:"))
	if !ok {
		return
	}
	l.amu.Lock()
	defer l.amu.Unlock()
	l.mu.Lock()
	if e := l.vers[key]; e != nil {
		if v <= e.v {
			l.mu.Unlock()
			l.stats.Stale.Add(1)
			return
		}
		e.v, e.at = v, time.Now()
		e.remote++
	}
	l.mu.Unlock()
	if l.reg != nil {
		if err := l.reg.Replace([]byte(key), []byte(val)); err != nil {
			l.stats.Bad.Add(1)
			return
		}
	}
	l.stats.Remote.Add(1)
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
