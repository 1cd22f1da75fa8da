package guard

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Authentication failures. The authentication feature reports each
// challenge answered wrongly (AuthFailed) and each success
// (AuthSucceeded), and asks before checking credentials whether the user
// is locked for the source (UserLocked). It does not import this package:
// cmd hands it the guard through an interface of its own with these three
// methods.
//
// Per source: AuthPerSource failures within AuthWindow ban the source for
// AuthBan; a success resets its count (a phone that mistyped once is not
// carried towards a ban by later slips).
//
// Per user: AuthPerUser failures within AuthWindow from any sources lock
// the user for AuthBan — a brute force spread over many addresses stops —
// except for the sources the user authenticated from within goodFor (at
// most maxGood of them, the most recent kept): the user's own phone keeps
// working while the lock lasts.

const (
	maxGood = 4
	goodFor = 24 * time.Hour
	// userSample is how many users are looked at to pick one to forget
	// when the user table is full.
	userSample = 8
)

type goodSource struct {
	addr netip.Addr
	at   int64
}

type user struct {
	fails window
	until int64 // locked until; 0: not locked
	last  int64
	good  [maxGood]goodSource
}

type userShard struct {
	mu sync.Mutex
	m  map[string]*user
	_  [64]byte
}

type userTable struct {
	shards   []userShard
	mask     uint64
	seed     maphash.Seed
	perShard atomic.Int64
}

func newUserTable(limit int) *userTable {
	n := 1
	for n < maxShards && limit/(n*2) >= minPerShard {
		n *= 2
	}
	t := &userTable{shards: make([]userShard, n), mask: uint64(n - 1), seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = map[string]*user{}
	}
	t.setCap(limit)
	return t
}

func (t *userTable) setCap(limit int) { t.perShard.Store(int64(max(1, limit/len(t.shards)))) }

func (t *userTable) shard(name string) *userShard {
	return &t.shards[maphash.String(t.seed, name)&t.mask]
}

// shardBytes is shard for a name given as bytes (the same shard:
// maphash.Bytes and maphash.String agree).
func (t *userTable) shardBytes(name []byte) *userShard {
	return &t.shards[maphash.Bytes(t.seed, name)&t.mask]
}

// get returns name's entry, made when new (nil: the shard is full of
// locked users). Called with sh.mu held.
func (t *userTable) get(sh *userShard, name string, now int64) *user {
	u := sh.m[name]
	if u != nil {
		return u
	}
	if int64(len(sh.m)) >= t.perShard.Load() {
		// Forget the least recently active unlocked user of a sample
		// (map iteration starts at a random place).
		var victim string
		var oldest int64
		i := 0
		for k, v := range sh.m {
			if v.until == 0 && (victim == "" || v.last < oldest) {
				victim, oldest = k, v.last
			}
			if i++; i >= userSample {
				break
			}
		}
		if victim == "" {
			return nil
		}
		delete(sh.m, victim)
	}
	u = &user{}
	sh.m[name] = u
	return u
}

// AuthFailed records a failed authentication from src as user of realm
// (reason: a short token such as wrong-password, unknown-user,
// stale-nonce) and writes its log line. Enough failures ban the source or
// lock the user.
func (g *Guard) AuthFailed(src netip.AddrPort, user, realm string, reason string) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	g.stats.AuthFailures.Add(1)
	g.log.Warn(authFailureLine(src, user, realm, reason))
	cfg := g.cfg.Load()
	now := g.clock()
	if cfg.AuthPerSource > 0 {
		a := src.Addr()
		t := g.sources
		sh := t.shard(a)
		sh.mu.Lock()
		var ev event
		if e := t.lookup(g, sh, a, now, true); e != nil && (e.until == 0 || now >= e.until) {
			if e.until != 0 {
				ev = g.unban(e, false)
			}
			w := int64(cfg.AuthWindow)
			if e.auth.add(now, w) >= int64(cfg.AuthPerSource)*w {
				ev = g.ban(e, banAuth, now, cfg.AuthPerSource, w, int64(cfg.AuthBan))
			}
		}
		sh.mu.Unlock()
		if ev.kind != evNone {
			g.emit(ev)
		}
	}
	if cfg.AuthPerUser > 0 && user != "" {
		t := g.users
		sh := t.shard(user)
		sh.mu.Lock()
		locked, unlocked := false, false
		if u := t.get(sh, user, now); u != nil {
			u.last = now
			if u.until != 0 && now >= u.until {
				u.until, unlocked = 0, true
				u.fails.reset()
			}
			w := int64(cfg.AuthWindow)
			if u.until == 0 && u.fails.add(now, w) >= int64(cfg.AuthPerUser)*w {
				u.until, locked = now+int64(cfg.AuthBan), true
				g.stats.UserLocks.Add(1)
			}
		}
		sh.mu.Unlock()
		if unlocked {
			g.log.Info(unlockLine(user))
		}
		if locked {
			g.log.Warn(lockLine(user, cfg.AuthPerUser, cfg.AuthWindow, cfg.AuthBan))
		}
	}
}

// AuthSucceeded records a successful authentication from src as user: the
// source's failure count starts again, and src becomes one of the user's
// recently good sources. user is only read during the call (a view of
// the request is fine): it is copied when a new entry keeps it.
func (g *Guard) AuthSucceeded(src netip.AddrPort, user []byte) {
	a := src.Addr().Unmap()
	now := g.clock()
	t := g.sources
	sh := t.shard(a)
	sh.mu.Lock()
	if e := sh.m[a]; e != nil {
		e.auth.reset()
	}
	sh.mu.Unlock()
	if len(user) == 0 {
		return
	}
	ut := g.users
	ush := ut.shardBytes(user)
	ush.mu.Lock()
	u := ush.m[string(user)] // no copy for a lookup
	if u == nil {
		u = ut.get(ush, string(user), now)
	}
	if u != nil {
		u.last = now
		// Its own slot, else a free one, else the oldest.
		slot := -1
		for i := range u.good {
			if u.good[i].addr == a {
				slot = i
				break
			}
		}
		if slot < 0 {
			slot = 0
			for i := range u.good {
				if !u.good[i].addr.IsValid() {
					slot = i
					break
				}
				if u.good[i].at < u.good[slot].at {
					slot = i
				}
			}
		}
		u.good[slot] = goodSource{addr: a, at: now}
	}
	ush.mu.Unlock()
}

// UserLocked reports whether user is locked for src: locked after
// failures from many sources, and src is not one it authenticated from
// recently. The authentication feature refuses such a request without
// checking its credentials.
func (g *Guard) UserLocked(src netip.Addr, user []byte) bool {
	src = src.Unmap()
	now := g.clock()
	t := g.users
	sh := t.shardBytes(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u := sh.m[string(user)]
	if u == nil || u.until == 0 || now >= u.until {
		return false
	}
	for _, s := range u.good {
		if s.addr == src && s.addr.IsValid() && now-s.at < int64(goodFor) {
			return false
		}
	}
	return true
}

// locked counts the users locked now.
func (t *userTable) locked(now int64) int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, u := range sh.m {
			if u.until != 0 && now < u.until {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// sweep ends the locks that ran out and forgets users with nothing left
// to remember: no lock, no recent failure, no recently good source.
func (t *userTable) sweep(g *Guard, now int64) {
	idle := 2 * int64(g.cfg.Load().AuthWindow)
	var unlocked []string
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for name, u := range sh.m {
			if u.until != 0 && now >= u.until {
				u.until = 0
				u.fails.reset()
				unlocked = append(unlocked, name)
			}
			if u.until != 0 || now-u.last <= idle {
				continue
			}
			good := false
			for _, s := range u.good {
				good = good || s.addr.IsValid() && now-s.at < int64(goodFor)
			}
			if !good {
				delete(sh.m, name)
			}
		}
		sh.mu.Unlock()
	}
	for _, name := range unlocked {
		g.log.Info(unlockLine(name))
	}
}
