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
// One Redis string per AoR holds its record. A Lua script writes a whole
// batch (up to 256 records), numbers it from the cluster's sequence (one
// INCR per batch) and publishes it in one message, so every instance sees
// the writes in the order Redis made them, and each write has a version:
// batch number × 1024 + its place in the batch. An instance applies its
// own writes to memory before Redis has them (the registrar does) and
// skips their echo; a write of another instance that Redis ordered before
// its own but that arrives after it is recognised by its lower version and
// ignored, and its own record is put back when another instance's write
// was applied while its own was on the way (versions, below). What was
// loaded from Redis is as new as the sequence read before the load
// (floor): older messages still in the subscription are ignored.
type Locations struct {
	c     *Cluster
	space string       // "aor": the registrar's bindings; "passive": the gateway's
	ttl   atomic.Int64 // ms
	reg   Target

	mu     sync.Mutex
	queue  []op
	wakeC  chan struct{}
	vers   map[string]*version
	epoch  uint64 // bumped by each resync
	floor  int64  // versions at or below it are older than what was loaded
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

// Target is where other instances' records go: *registrar.Registrar for
// the bindings, *gateway.Feature for the passive bindings.
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
	done     store.Done
	remote   uint64 // version.remote when queued
	epoch    uint64
}

type locStats struct {
	Writes, Failed, Remote, Stale, PutBack, Resyncs, Bad atomic.Uint64
}

// maxBatch is the most writes sent in one pipeline.
const maxBatch = 256

// writeScript writes a batch of AoR records and publishes it (parseBatch):
// KEYS[1] is the sequence, KEYS[2..] the AoRs; ARGV[1] the channel,
// ARGV[2] the message the writer built (node "\n" { keylen " " key " "
// reclen " " record }), then record and expiry (ms) per AoR (an empty
// record: the AoR has no binding any more). The message goes out as
// "batch-number " + ARGV[2]. One script call and one message per batch,
// not per REGISTER: Redis's cost per call and the subscribers' per message
// are what a cluster pays for sharing.
const writeScript = `
local g = redis.call('INCR', KEYS[1])
for i = 2, #KEYS do
  local rec = ARGV[2*i - 1]
  if rec == '' then
    redis.call('DEL', KEYS[i])
  else
    redis.call('SET', KEYS[i], rec, 'PX', ARGV[2*i])
  end
end
redis.call('PUBLISH', ARGV[1], g .. ' ' .. ARGV[2])
return g`

// batchSpan is the room each batch has in the versions: a batch holds at
// most maxBatch writes.
const batchSpan = 1024

// Locations returns the shared location service; ttl is how long an AoR
// outlives its last write in Redis (the registrar's max_expires and a
// margin). Call before Start.
func (c *Cluster) Locations(ttl time.Duration) *Locations {
	l := c.newSpace(spaceAOR, ttl)
	c.loc = l
	return l
}

// Passive returns the shared passive bindings of the gateway deployment
// (a phone registered with an outside provider through one instance is
// reached through any other): the same records, versions and messages as
// Locations, under passive:<token> and on the passive channel. ttl is the
// longest registration the provider grants and a margin. Call before
// Start.
func (c *Cluster) Passive(ttl time.Duration) *Locations {
	l := c.newSpace(spacePassive, ttl)
	c.passive = l
	return l
}

// The key spaces of records: each has its keys (<space>:<key>) and its
// channel (<space>).
const (
	spaceAOR     = "aor"
	spacePassive = "passive"
)

// what names the space's records in log lines.
func (l *Locations) what() string {
	if l.space == spacePassive {
		return "passive bindings"
	}
	return "bindings"
}

func (c *Cluster) newSpace(space string, ttl time.Duration) *Locations {
	l := &Locations{c: c, space: space, wakeC: make(chan struct{}, 1), vers: map[string]*version{}, script: redis.NewScript(writeScript)}
	l.SetTTL(ttl)
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
func (l *Locations) Put(key, val []byte, done store.Done) { l.enqueue(key, val, done) }

// Delete implements registrar.Persister: an empty record, which the
// write script turns into a DEL.
func (l *Locations) Delete(key []byte, done store.Done) { l.enqueue(key, nil, done) }

// Own implements registrar.Persister: Redis keeps the data itself.
func (l *Locations) Own(func(emit func(key, val []byte) error) error) {}

func (l *Locations) enqueue(key, val []byte, done store.Done) {
	o := op{key: bytes.Clone(key), val: bytes.Clone(val), done: done}
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

// exec writes a batch; vs are the new versions.
func (l *Locations) exec(ctx context.Context, batch []op) ([]int64, error) {
	ttl := l.ttl.Load()
	keys := make([]string, 1, 1+len(batch))
	keys[0] = l.c.key("seq")
	args := make([]any, 2, 2+2*len(batch))
	msg := make([]byte, 0, 64*len(batch))
	msg = append(append(msg, l.c.cfg.Node...), '\n')
	prefix := l.c.key(l.space + ":")
	for i := range batch {
		o := &batch[i]
		k := prefix + string(o.key)
		keys = append(keys, k)
		args = append(args, o.val, ttl)
		msg = strconv.AppendInt(msg, int64(len(k)), 10)
		msg = append(append(append(msg, ' '), k...), ' ')
		msg = strconv.AppendInt(msg, int64(len(o.val)), 10)
		msg = append(append(msg, ' '), o.val...)
	}
	args[0], args[1] = l.c.key(l.space), msg
	p := l.c.rdb.Pipeline()
	c := l.script.EvalSha(ctx, p, keys, args...)
	if err := l.wait(ctx, p); err != nil {
		return nil, err
	}
	g, err := c.Int64()
	if err != nil {
		return nil, err
	}
	vs := make([]int64, len(batch))
	for i := range vs {
		vs[i] = g*batchSpan + int64(i)
	}
	return vs, nil
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
// writing node and its records, in the order Redis wrote them, each with
// its version.
func parseBatch(payload string) (node string, ws []write, ok bool) {
	rest := payload
	num := func(sep byte) (int64, bool) {
		i := strings.IndexByte(rest, sep)
		if i <= 0 || i > 18 { // 18 digits cannot overflow
			return 0, false
		}
		if i > 1 && rest[0] == '0' {
			// Only the writer's form: a length with leading zeros
			// would parse as the same message in two spellings.
			return 0, false
		}
		var n int64
		for _, c := range []byte(rest[:i]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int64(c-'0')
		}
		rest = rest[i+1:]
		return n, true
	}
	str := func() (string, bool) {
		n, ok := num(' ')
		if !ok || n > int64(len(rest)) {
			return "", false
		}
		s := rest[:n]
		rest = rest[n:]
		return s, true
	}
	g, ok := num(' ')
	if !ok || g < 1 || g > 1<<40 {
		return "", nil, false
	}
	node, rest, found := strings.Cut(rest, "\n")
	if !found || node == "" {
		return "", nil, false
	}
	for rest != "" && len(ws) < maxBatch {
		key, ok1 := str()
		if !ok1 || !strings.HasPrefix(rest, " ") {
			return "", nil, false
		}
		rest = rest[1:]
		val, ok2 := str()
		if !ok2 {
			return "", nil, false
		}
		ws = append(ws, write{g*batchSpan + int64(len(ws)), key, val})
	}
	return node, ws, len(ws) > 0 && rest == ""
}

// batchNode is the writing node of a message of the aor channel, read
// without parsing its records ("" when the head is malformed; parseBatch
// is the judge of the rest).
func batchNode(payload string) string {
	_, rest, ok := strings.Cut(payload, " ")
	if !ok {
		return ""
	}
	node, _, ok := strings.Cut(rest, "\n")
	if !ok {
		return ""
	}
	return node
}

// remote installs another instance's batch of writes.
func (l *Locations) remote(payload string) {
	if batchNode(payload) == l.c.cfg.Node {
		// This instance's own writes, already in memory: every batch comes
		// back to its writer on the shared channel, and parsing it (a
		// write per record) only to drop it was the writer's cost.
		return
	}
	_, ws, ok := parseBatch(payload)
	if !ok {
		l.stats.Bad.Add(1)
		return
	}
	prefix := l.c.key(l.space + ":")
	l.amu.Lock()
	defer l.amu.Unlock()
	now := time.Now()
	for _, w := range ws {
		key, ok := strings.CutPrefix(w.key, prefix)
		if !ok {
			continue
		}
		l.mu.Lock()
		if w.v <= l.floor {
			l.mu.Unlock()
			l.stats.Stale.Add(1)
			continue // older than what was loaded
		}
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

// Load implements registrar.Persister: every record of the space in Redis.
func (l *Locations) Load(fn func(key, val []byte) error) error {
	ctx, cancel := context.WithTimeout(l.c.ctx, time.Minute)
	defer cancel()
	return l.scan(ctx, fn)
}

// scan calls fn for every AoR record in Redis. It first reads the
// sequence: every batch up to it is older than what the scan reads, so its
// messages still in the subscription are ignored (floor).
func (l *Locations) scan(ctx context.Context, fn func(key, val []byte) error) error {
	g, err := l.c.rdb.Get(ctx, l.c.key("seq")).Int64()
	if err != nil && err != redis.Nil {
		return err
	}
	l.mu.Lock()
	l.floor = max(l.floor, g*batchSpan+batchSpan-1)
	l.mu.Unlock()
	prefix := l.c.key(l.space + ":")
	var cursor uint64
	for {
		keys, next, err := l.c.rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			vals, err := l.c.rdb.MGet(ctx, keys...).Result()
			if err != nil {
				return err
			}
			for i, k := range keys {
				val, _ := vals[i].(string)
				if val == "" {
					continue // removed since the scan listed it
				}
				if err := fn([]byte(strings.TrimPrefix(k, prefix)), []byte(val)); err != nil {
					return err
				}
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
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
		l.c.log.Warn("cluster: reloading the "+l.what()+" after a lost connection failed; will retry at the next", "err", err)
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
	l.c.log.Info("cluster: "+l.what()+" reloaded from Redis", "records", len(seen), "forgotten", n)
}
