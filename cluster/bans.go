package cluster

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Bans shares the guard's bans: a source banned on one instance is
// dropped by every other within the pub/sub delay (milliseconds), and an
// instance that starts, or comes back after losing Redis, loads the bans
// in force from the bans hash.
type Bans struct {
	c       *Cluster
	g       BanTarget
	out     chan string
	dropped atomic.Uint64
}

// BanTarget is the guard as Bans drives it (*guard.Guard).
type BanTarget interface {
	Impose(a netip.Addr, reason string, until time.Time)
	LiftShared(p netip.Prefix) int
}

// Bans returns the shared bans, installed in g. Call before Start.
func (c *Cluster) Bans(g BanTarget) *Bans {
	b := &Bans{c: c, g: g, out: make(chan string, 1024)}
	c.bans = b
	c.wg.Add(1)
	go b.sender()
	return b
}

// Publish tells the other instances of a ban (lift false) or a lift made
// here. It never blocks (it is called on the request path): the message
// is queued for a goroutine of its own, and dropped, counted, if a
// thousand are already waiting.
func (b *Bans) Publish(lift bool, p netip.Prefix, reason string, until time.Time) {
	op := "ban"
	if lift {
		op = "lift"
	}
	msg := b.c.cfg.Node + " " + op + " " + p.String() + " " + strconv.FormatInt(until.UnixMilli(), 10) + " " + reason
	select {
	case b.out <- msg:
	default:
		b.dropped.Add(1)
	}
}

func (b *Bans) sender() {
	defer b.c.wg.Done()
	for {
		var msg string
		select {
		case <-b.c.ctx.Done():
			return
		case msg = <-b.out:
		}
		m, ok := parseBan(msg)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(b.c.ctx, 3*time.Second)
		p := b.c.rdb.Pipeline()
		if !m.lift {
			p.HSet(ctx, b.c.key("bans"), m.p.Addr().String(), strconv.FormatInt(m.until.UnixMilli(), 10)+" "+m.reason)
		} else if all, err := b.c.rdb.HKeys(ctx, b.c.key("bans")).Result(); err == nil {
			// Every ban inside the lifted prefix goes.
			for _, k := range all {
				if a, err := netip.ParseAddr(k); err == nil && m.p.Contains(a) {
					p.HDel(ctx, b.c.key("bans"), k)
				}
			}
		}
		p.Publish(ctx, b.c.key("ban"), msg)
		_, err := p.Exec(ctx)
		cancel()
		if err != nil {
			b.dropped.Add(1)
			b.c.log.Warn("cluster: a ban could not be shared", "ban", msg, "err", err)
		}
	}
}

// banMsg is a message of the ban channel: "node ban|lift prefix
// until-unix-ms reason".
type banMsg struct {
	node   string
	lift   bool
	p      netip.Prefix
	until  time.Time
	reason string
}

func parseBan(payload string) (banMsg, bool) {
	f := strings.Fields(payload)
	if len(f) < 4 || len(f) > 5 || (f[1] != "ban" && f[1] != "lift") {
		return banMsg{}, false
	}
	p, err := netip.ParsePrefix(f[2])
	if err != nil {
		return banMsg{}, false
	}
	ms, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return banMsg{}, false
	}
	m := banMsg{node: f[0], lift: f[1] == "lift", p: p, until: time.UnixMilli(ms)}
	if len(f) == 5 {
		m.reason = f[4]
	}
	if !m.lift && !p.IsSingleIP() {
		return banMsg{}, false // bans are of one address
	}
	return m, true
}

// remote installs another instance's ban or lift.
func (b *Bans) remote(payload string) {
	m, ok := parseBan(payload)
	if !ok || m.node == b.c.cfg.Node {
		return
	}
	if m.lift {
		b.g.LiftShared(m.p)
		return
	}
	b.g.Impose(m.p.Addr(), m.reason, m.until)
}

// load installs the bans in force (at start, and after a lost
// subscription) and removes those that ran out from the hash.
func (b *Bans) load() {
	ctx, cancel := context.WithTimeout(b.c.ctx, 5*time.Second)
	defer cancel()
	all, err := b.c.rdb.HGetAll(ctx, b.c.key("bans")).Result()
	if err != nil {
		return
	}
	now := time.Now()
	for k, v := range all {
		ms, reason, _ := strings.Cut(v, " ")
		n, err := strconv.ParseInt(ms, 10, 64)
		a, perr := netip.ParseAddr(k)
		if err != nil || perr != nil || !time.UnixMilli(n).After(now) {
			b.c.rdb.HDel(ctx, b.c.key("bans"), k)
			continue
		}
		b.g.Impose(a, reason, time.UnixMilli(n))
	}
}

// Dropped is how many bans or lifts could not be shared.
func (b *Bans) Dropped() uint64 { return b.dropped.Load() }
