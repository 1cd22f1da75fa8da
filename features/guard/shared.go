package guard

import (
	"net/netip"
	"time"
)

// Bans shared by several instances (package cluster): a source banned on
// one is dropped by every other. The guard tells an observer of the bans
// and lifts it decides itself (OnChange), and takes the others' through
// Impose and LiftShared, which it does not report back (no echo).

// Change is a ban made or lifted on this instance.
type Change struct {
	Lift   bool
	Source netip.Prefix // a ban: one address; a lift: what was lifted
	Reason string       // ban: "rate" or "auth-failures"
	Until  time.Time    // ban: when it ends
}

// OnChange sets the observer of this instance's bans and lifts (expiry is
// not reported: every instance ends a ban at the same time). fn runs
// without the guard's locks held and must not block.
func (g *Guard) OnChange(fn func(Change)) { g.onChange.Store(&fn) }

func (g *Guard) changed(c Change) {
	if fn := g.onChange.Load(); fn != nil {
		(*fn)(c)
	}
}

// Impose bans a from now until until, as another instance decided: the
// same drop as a ban made here, written to the log as shared (the
// fail2ban line is the deciding instance's). Trusted networks stay exempt
// (the stage checks them first).
func (g *Guard) Impose(a netip.Addr, reason string, until time.Time) {
	a = a.Unmap()
	now := g.clock()
	end := now + int64(time.Until(until))
	if end <= now {
		return
	}
	r := banRate
	if reason == reasonAuth {
		r = banAuth
	}
	t := g.sources
	sh := t.shard(a)
	sh.mu.Lock()
	e := t.lookup(g, sh, a, now, true)
	if e == nil {
		sh.mu.Unlock()
		return
	}
	fresh := e.until == 0 || now >= e.until
	if fresh {
		if e.until != 0 {
			g.stats.ActiveBans.Add(-1) // ran out, not swept yet
		}
		e.since, e.dropped = now, 0
		g.stats.ActiveBans.Add(1)
		g.stats.SharedBans.Add(1)
	}
	e.until, e.reason = max(e.until, end), r
	sh.mu.Unlock()
	if fresh {
		g.log.Info("ban " + a.String() + " shared by another instance reason=" + r.String() + " until=" + until.UTC().Format(time.RFC3339))
	}
}

// LiftShared lifts the bans in p as another instance did (not reported
// to OnChange).
func (g *Guard) LiftShared(p netip.Prefix) int { return g.lift(p, false) }
