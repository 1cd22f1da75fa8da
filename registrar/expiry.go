package registrar

import (
	"net/netip"
	"time"

	"sipedge/transport"
)

// sweepEvery is the sweeper's period. Lookup hides expired bindings
// itself, so the period only bounds how long an expired binding keeps its
// memory and its store record. Tests shorten it.
var sweepEvery = time.Second

// expEntry schedules a look at an AoR when its earliest binding expires.
//
// Each shard keeps a min-heap of these instead of a timer or goroutine per
// binding. An AoR has one live entry, the one whose time equals aor.sched;
// a refresh that pushes the expiry later leaves that entry alone (it fires
// early, finds nothing expired and reschedules), and only an earlier expiry
// pushes a new entry, so the heap holds about one entry per AoR however
// often phones refresh. Entries whose AoR is gone or rescheduled are stale
// and skipped when popped.
type expEntry struct {
	when int64  // unix ns
	key  string // AoR key, sharing the map key's bytes
}

func (sh *shard) push(e expEntry) {
	sh.exp = append(sh.exp, e)
	h := sh.exp
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].when <= h[i].when {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (sh *shard) pop() expEntry {
	h := sh.exp
	e := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = expEntry{}
	h = h[:n]
	siftDown(h, 0)
	if cap(h) > 1024 && len(h) < cap(h)/4 {
		h = append(make([]expEntry, 0, 2*len(h)), h...) // give back memory after a mass expiry
	}
	sh.exp = h
	return e
}

func siftDown(h []expEntry, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		c := l
		if r := l + 1; r < len(h) && h[r].when < h[l].when {
			c = r
		}
		if h[i].when <= h[c].when {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

func heapify(h []expEntry) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
}

// sweep is the one expiry goroutine.
func (r *Registrar) sweep() {
	defer r.wg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-t.C:
		}
		now := r.cfg.Now().UnixNano()
		for i := range r.shards {
			r.expire(&r.shards[i], now)
		}
	}
}

// expire removes the bindings of one shard that expired by now, from
// memory and from the store (without waiting: losing such a write in a
// crash only means the binding is dropped again when it is loaded).
func (r *Registrar) expire(sh *shard, now int64) {
	st := r.cfg.Store
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for len(sh.exp) > 0 && sh.exp[0].when <= now {
		e := sh.pop()
		a := sh.aors[e.key]
		if a == nil || a.sched != e.when {
			continue // stale
		}
		live := a.bs[:0]
		for _, b := range a.bs {
			if b.expires > now {
				live = append(live, b)
			}
		}
		removed := len(a.bs) - len(live)
		clear(a.bs[len(live):])
		a.bs = live
		if len(live) == 0 {
			delete(sh.aors, e.key)
			if st != nil {
				st.Delete(bytesOf(e.key), nil)
			}
			continue
		}
		next := live[0].expires
		for i := range live {
			next = min(next, live[i].expires)
		}
		a.sched = next
		sh.push(expEntry{when: next, key: e.key})
		if removed > 0 && st != nil {
			sh.enc = r.appendSet(sh.enc[:0], live)
			st.Put(bytesOf(e.key), sh.enc, nil)
		}
	}
}

// RangeNAT calls fn for every current binding registered over UDP from
// behind a NAT: the phones whose NAT mapping sipedge keeps open with
// keep-alives; updated is when the phone last registered. It visits one
// shard at a time under the shard's read lock, so fn must be quick and
// must not call the Registrar. In a cluster (Config.Node) it visits only
// the bindings this node owns: one node keeps a phone's NAT open, not
// every node.
func (r *Registrar) RangeNAT(fn func(aor, uri string, src netip.AddrPort, updated time.Time)) {
	now := r.cfg.Now().UnixNano()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for k, a := range sh.aors {
			for j := range a.bs {
				b := &a.bs[j]
				if b.nat && b.proto == transport.UDP && b.path == "" && b.expires > now && b.owner == r.self {
					fn(k, b.uri(), b.source, time.Unix(0, b.updated))
				}
			}
		}
		sh.mu.RUnlock()
	}
}

// Remove deletes the binding of aor whose contact URI is uri, as if it had
// expired: a phone that stopped answering keep-alives is gone, and calls
// must not wait for it. The change is stored like any other. It reports
// whether the binding was there.
func (r *Registrar) Remove(aor, uri string) bool {
	sh := r.shardOf(bytesOf(aor))
	st := r.cfg.Store
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a := sh.aors[aor]
	if a == nil {
		return false
	}
	live := a.bs[:0]
	for _, b := range a.bs {
		if b.uri() != uri {
			live = append(live, b)
		}
	}
	if len(live) == len(a.bs) {
		return false
	}
	clear(a.bs[len(live):])
	a.bs = live
	if len(live) == 0 {
		delete(sh.aors, aor) // its heap entry goes stale; the sweeper skips it
		if st != nil {
			st.Delete(bytesOf(aor), nil)
		}
		return true
	}
	if st != nil {
		sh.enc = r.appendSet(sh.enc[:0], live)
		st.Put(bytesOf(aor), sh.enc, nil)
	}
	return true
}
