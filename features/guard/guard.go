// Package guard protects a sipedge exposed to the Internet from scanners,
// floods and password guessing, the way Kamailio's pike and a fail2ban
// jail do together:
//
//   - a per-source request rate: a source that sends more than Requests
//     requests in a Window is banned for Ban (the first stage of the
//     pipeline, "guard");
//   - authentication failures, counted per source and per user (the
//     authentication feature reports them through AuthFailed and
//     AuthSucceeded): too many from one source bans it; too many against
//     one user from anywhere locks that user for the sources it has not
//     recently authenticated from;
//   - a banned source's requests are dropped without an answer: answering
//     a flood would amplify it, and a scanner learns nothing from silence.
//
// Every authentication failure, ban and lifted ban is one log line of a
// fixed form that names the source address, so a fail2ban jail (the filter
// ships in contrib/fail2ban) can carry a ban into the firewall:
//
//	auth failure from 203.0.113.7:5060 user="alice" realm="sip.example.com" reason=wrong-password
//	ban 203.0.113.7 reason=rate requests=100 window=2s for=5m0s
//	ban 203.0.113.7 reason=auth-failures failures=10 window=1m0s for=15m0s
//	unban 203.0.113.7 reason=expired
//
// Sources in the trusted networks are exempt unless LimitTrusted is set.
// Memory is bounded: at most MaxTrackedSources sources and as many users
// are tracked (see table.go for what happens when the table is full).
package guard

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/proxy"
)

// Config configures the guard. Every field may change while it runs
// (SetConfig).
type Config struct {
	// RateRequests requests from one source within RateWindow are served;
	// one more bans the source for RateBan. 0: no rate limit.
	RateRequests int
	RateWindow   time.Duration
	RateBan      time.Duration
	// AuthPerSource failed authentications from one source within
	// AuthWindow ban it for AuthBan; AuthPerUser failures against one user
	// from any sources lock the user for AuthBan, except for the sources
	// it authenticated from recently. 0: that count is off.
	AuthPerSource int
	AuthPerUser   int
	AuthWindow    time.Duration
	AuthBan       time.Duration
	// LimitTrusted applies the rate limit to trusted sources too.
	LimitTrusted bool
	// MaxTrackedSources bounds the source table and the user table, each.
	MaxTrackedSources int
}

// Defaults are pike's order of magnitude (Kamailio pike samples 2 s) with
// bans long enough to make a scanner move on.
func Defaults() Config {
	return Config{RateRequests: 100, RateWindow: 2 * time.Second, RateBan: 5 * time.Minute,
		AuthPerSource: 10, AuthPerUser: 20, AuthWindow: time.Minute, AuthBan: 15 * time.Minute,
		MaxTrackedSources: 100000}
}

// normalize fills what would make the arithmetic meaningless (a zero
// window) with the defaults.
func (c Config) normalize() Config {
	d := Defaults()
	if c.RateWindow <= 0 {
		c.RateWindow = d.RateWindow
	}
	if c.RateBan <= 0 {
		c.RateBan = d.RateBan
	}
	if c.AuthWindow <= 0 {
		c.AuthWindow = d.AuthWindow
	}
	if c.AuthBan <= 0 {
		c.AuthBan = d.AuthBan
	}
	if c.MaxTrackedSources <= 0 {
		c.MaxTrackedSources = d.MaxTrackedSources
	}
	if c.RateRequests < 0 {
		c.RateRequests = 0
	}
	return c
}

// Ban is a banned source as Bans lists it.
type Ban struct {
	Source netip.Addr
	Reason string // "rate" or "auth-failures"
	Since  time.Time
	Until  time.Time
	// Count is how many requests were dropped during this ban.
	Count uint64
}

// Guard is the feature: the source and user tables and the "guard" stage.
type Guard struct {
	cfg     atomic.Pointer[Config]
	log     *slog.Logger
	sources *sourceTable
	users   *userTable
	stats   counters
	// clock returns nanoseconds since epoch (monotonic); tests replace it.
	epoch time.Time
	clock func() int64

	stop chan struct{}
	done chan struct{}
	once sync.Once

	onChange atomic.Pointer[func(Change)] // OnChange
}

// counters are the guard's live counters.
type counters struct {
	Dropped, AuthFailures, UserLocks, Lifted, Expired, Evicted, Untracked atomic.Uint64
	RateBans, AuthBans, SharedBans                                        atomic.Uint64
	ActiveBans                                                            atomic.Int64
}

// Stats is a snapshot of the guard's counters (the metrics convention of
// package metrics).
type Stats struct {
	Dropped        uint64            // requests from banned sources, dropped without an answer
	Bans           map[string]uint64 `label:"reason"` // sources banned, by reason (rate, auth-failures; shared: banned by another instance of the cluster)
	AuthFailures   uint64            // failed authentications reported
	UserLocks      uint64            // users locked after failures from many sources
	Lifted         uint64            // bans lifted by the configuration (lift_bans)
	Expired        uint64            // bans that ran out
	Evicted        uint64            // sources forgotten to make room in a full table
	Untracked      uint64            // new sources not counted (served; failures not counted): the table was full of bans
	ActiveBans     int               // sources banned now
	TrackedSources int               // sources tracked now
	LockedUsers    int               // users locked now
}

// New returns the guard with cfg, logging to log (nil: slog.Default()).
func New(cfg Config, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.normalize()
	g := &Guard{log: log, epoch: time.Now()}
	g.clock = func() int64 { return int64(time.Since(g.epoch)) }
	g.sources = newSourceTable(cfg.MaxTrackedSources)
	g.users = newUserTable(cfg.MaxTrackedSources)
	g.cfg.Store(&cfg)
	return g
}

// SetConfig replaces the configuration (reload). Counts and bans in
// progress are kept; a ban keeps the end it was given.
func (g *Guard) SetConfig(cfg Config) {
	cfg = cfg.normalize()
	g.sources.setCap(cfg.MaxTrackedSources)
	g.users.setCap(cfg.MaxTrackedSources)
	g.cfg.Store(&cfg)
}

// Hooks implements proxy.Feature: the "guard" stage, first of all.
func (g *Guard) Hooks() proxy.Hooks {
	return proxy.Hooks{Stages: []proxy.Stage{{Name: "guard", Run: g.stage}}}
}

// stage drops the requests of banned sources and counts the others'. It
// answers nothing, ever: a stage that returns true here has absorbed a
// request from a banned source.
func (g *Guard) stage(r *proxy.Request) bool {
	cfg := g.cfg.Load()
	if !cfg.LimitTrusted && r.Trusted() {
		return false
	}
	return g.request(r.Src().Addr().Unmap(), cfg)
}

// sweepEvery is how often expired bans are lifted and idle sources
// forgotten when nothing else touches them.
const sweepEvery = 5 * time.Second

// Start starts the sweeper (proxy.Starter).
func (g *Guard) Start() {
	g.stop, g.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(g.done)
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-t.C:
				g.sweep()
			}
		}
	}()
}

// Close stops the sweeper (proxy.Closer).
func (g *Guard) Close() {
	if g.stop == nil {
		return
	}
	g.once.Do(func() {
		close(g.stop)
		<-g.done
	})
}

// sweep lifts the bans and user locks that ran out and forgets sources
// and users whose counts carry no information any more.
func (g *Guard) sweep() {
	cfg := g.cfg.Load()
	now := g.clock()
	g.sources.sweep(g, cfg, now)
	g.users.sweep(g, now)
}

// Stats returns a snapshot of the counters.
func (g *Guard) Stats() Stats {
	s := &g.stats
	return Stats{
		Dropped: s.Dropped.Load(), AuthFailures: s.AuthFailures.Load(), UserLocks: s.UserLocks.Load(),
		Lifted: s.Lifted.Load(), Expired: s.Expired.Load(), Evicted: s.Evicted.Load(), Untracked: s.Untracked.Load(),
		Bans:       map[string]uint64{reasonRate: s.RateBans.Load(), reasonAuth: s.AuthBans.Load(), "shared": s.SharedBans.Load()},
		ActiveBans: int(s.ActiveBans.Load()), TrackedSources: g.sources.len(), LockedUsers: g.users.locked(g.clock()),
	}
}

// time converts a clock reading back to wall time.
func (g *Guard) time(ns int64) time.Time { return g.epoch.Add(time.Duration(ns)) }
