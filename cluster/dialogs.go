package cluster

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dialogs keeps the dialogs with a session timer in Redis
// (dialogs.Shared), one key per dialog under the node that follows it:
// dlg:<node>:<dialog key>, expiring a minute after the session would. When
// a node's heartbeat stops, the live instances take its keys (each key by
// exactly one, takeScript) and adopt the dialogs: the adopter ends each
// call with a BYE to both sides when its session expires without a refresh
// — the calls whose signalling path went through the dead instance are
// torn down instead of hanging.
//
// Saving is asynchronous (a writer goroutine, as for the bindings): a
// dialog's record is a safety net for its end, not something a request
// waits for. What is lost while Redis is down is a dialog another instance
// will not end; nothing else depends on it.
type Dialogs struct {
	c      *Cluster
	target atomic.Pointer[DialogTarget]

	mu    sync.Mutex
	queue []dialogOp
	wakeC chan struct{}

	take *redis.Script
	// known: the nodes alive at the last heartbeat, to see which died.
	known map[string]struct{}

	saved, removed, adopted, lost atomic.Uint64
}

// DialogTarget is where adopted dialogs go: *dialogs.Feature.
type DialogTarget interface {
	Adopt(owner string, rec []byte) error
}

type dialogOp struct {
	key string
	rec []byte // nil: delete
	ttl time.Duration
}

// dialogMargin: a dialog's key outlives its session by this much, so the
// adopter still finds one whose instance died just before it expired.
const dialogMargin = time.Minute

// takeScript returns the records of the keys given and deletes them, in
// one step: of several instances taking a dead node's dialogs, each gets
// each dialog at most once.
const takeScript = `
local out = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then
    redis.call('DEL', KEYS[i])
    out[#out + 1] = KEYS[i]
    out[#out + 1] = v
  end
end
return out`

// Dialogs returns the shared dialogs. Call before Start.
func (c *Cluster) Dialogs() *Dialogs {
	d := &Dialogs{c: c, wakeC: make(chan struct{}, 1), take: redis.NewScript(takeScript), known: map[string]struct{}{}}
	c.dlg = d
	return d
}

// Bind names where adopted dialogs go.
func (d *Dialogs) Bind(t DialogTarget) { d.target.Store(&t) }

func (d *Dialogs) prefix(node string) string { return d.c.key("dlg:" + node + ":") }

// Save implements dialogs.Shared.
func (d *Dialogs) Save(key string, rec []byte, expires time.Time) {
	ttl := time.Until(expires) + dialogMargin
	d.enqueue(dialogOp{key: key, rec: append([]byte(nil), rec...), ttl: ttl})
}

// Remove implements dialogs.Shared.
func (d *Dialogs) Remove(key string) { d.enqueue(dialogOp{key: key}) }

// Alive implements dialogs.Shared: an adopted dialog's instance is alive
// again. This instance's own name counts as dead: what it adopts under it
// was left by its previous run.
func (d *Dialogs) Alive(node string) bool {
	if node == d.c.cfg.Node {
		return false
	}
	_, ok := d.c.Alive(node)
	return ok
}

// maxDialogQueue bounds the saves waiting for Redis: beyond it (Redis
// down for long under load) saves are dropped and counted.
const maxDialogQueue = 65536

func (d *Dialogs) enqueue(op dialogOp) {
	d.mu.Lock()
	if len(d.queue) >= maxDialogQueue {
		d.mu.Unlock()
		d.lost.Add(1)
		return
	}
	d.queue = append(d.queue, op)
	d.mu.Unlock()
	select {
	case d.wakeC <- struct{}{}:
	default:
	}
}

// writer sends the queued saves and removals, a pipeline at a time; a
// pipeline that fails is retried after a pause (the latest write of a key
// is the one that counts, and the queue keeps them in order).
func (d *Dialogs) writer() {
	defer d.c.wg.Done()
	var batch []dialogOp
	for {
		select {
		case <-d.c.ctx.Done():
			return
		case <-d.wakeC:
		}
		for {
			d.mu.Lock()
			n := min(len(d.queue), maxBatch)
			batch = append(batch[:0], d.queue[:n]...)
			d.mu.Unlock()
			if n == 0 {
				break
			}
			if err := d.write(batch); err != nil {
				d.c.setUp(false, err)
				select {
				case <-d.c.ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			d.mu.Lock()
			d.queue = append(d.queue[:0], d.queue[n:]...)
			d.mu.Unlock()
			clear(batch)
		}
	}
}

func (d *Dialogs) write(batch []dialogOp) error {
	ctx, cancel := context.WithTimeout(d.c.ctx, 3*time.Second)
	defer cancel()
	p := d.c.rdb.Pipeline()
	prefix := d.prefix(d.c.cfg.Node)
	for _, op := range batch {
		if op.rec == nil {
			p.Del(ctx, prefix+op.key)
		} else {
			p.Set(ctx, prefix+op.key, op.rec, max(op.ttl, time.Second))
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		return err
	}
	for _, op := range batch {
		if op.rec == nil {
			d.removed.Add(1)
		} else {
			d.saved.Add(1)
		}
	}
	return nil
}

// beat is told the live nodes after each heartbeat: the nodes that were
// alive at the previous one and are not now have died, when sure says the
// heartbeats can be trusted (Redis has been reachable long enough for
// every live node to have beaten since).
func (d *Dialogs) beat(live map[string]struct{}, sure bool) {
	var dead []string
	d.mu.Lock()
	for n := range d.known {
		if _, ok := live[n]; !ok && sure {
			dead = append(dead, n)
		} else if !ok {
			live[n] = struct{}{} // still known: judged at a sure beat
		}
	}
	d.known = live
	d.mu.Unlock()
	for _, n := range dead {
		d.c.wg.Add(1)
		go func() {
			defer d.c.wg.Done()
			d.adopt(n)
		}()
	}
}

// start adopts what nodes that died before this one started left behind
// (Start has taken this node's own previous run's).
func (d *Dialogs) start() {
	ctx, cancel := context.WithTimeout(d.c.ctx, 5*time.Second)
	defer cancel()
	now := time.Now().UnixMilli()
	dead, err := d.c.rdb.ZRangeByScore(ctx, d.c.key("nodes"), &redis.ZRangeBy{
		Min: strconv.FormatInt(now-int64(time.Hour/time.Millisecond), 10),
		Max: strconv.FormatInt(now-int64(DeadAfter/time.Millisecond), 10),
	}).Result()
	if err != nil {
		d.c.log.Warn("cluster: could not list the instances that died; their calls' session timers are not followed", "err", err)
	}
	for _, n := range dead {
		if n != d.c.cfg.Node {
			d.adopt(n)
		}
	}
}

// adopt takes the dialogs node left and hands them to the target.
func (d *Dialogs) adopt(node string) {
	t := d.target.Load()
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(d.c.ctx, 30*time.Second)
	defer cancel()
	prefix := d.prefix(node)
	var cursor uint64
	n := 0
	for {
		keys, next, err := d.c.rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			d.c.log.Warn("cluster: taking the dialogs of an instance that died failed", "instance", node, "err", err)
			return
		}
		if len(keys) > 0 {
			v, err := d.take.Run(ctx, d.c.rdb, keys).StringSlice()
			if err != nil {
				d.c.log.Warn("cluster: taking the dialogs of an instance that died failed", "instance", node, "err", err)
				return
			}
			for i := 0; i+1 < len(v); i += 2 {
				if !strings.HasPrefix(v[i], prefix) {
					continue
				}
				if err := (*t).Adopt(node, []byte(v[i+1])); err != nil {
					d.c.log.Warn("cluster: a dialog record of another instance did not decode; dropped", "instance", node, "err", err)
					continue
				}
				n++
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if n > 0 {
		d.adopted.Add(uint64(n))
		d.c.log.Info("cluster: took over the session timers of an instance that died", "instance", node, "dialogs", n)
	}
}
