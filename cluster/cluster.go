// Package cluster shares what several sipedge instances must agree on
// through Redis: the bindings of the location service (Locations, the
// registrar's persister), the gateway's passive bindings (Passive), the
// dialogs with a session timer, for another instance to end when theirs
// dies (Dialogs), the bans of the guard (Bans), the secret that signs
// nonces, Record-Route and flow tokens (Secret), and which instances are
// alive (the node registry). Each instance keeps the whole
// state in memory, as a single one does, routes from it, and learns the
// other instances' changes from Redis pub/sub within milliseconds; Redis
// is on the path of a REGISTER (the 200 waits for it, as it waits for the
// embedded store's fsync) and never on the path of a call.
//
// Keys, all under Config.Prefix ("sipedge:" by default; docs/DESIGN.md has
// the table):
//
//	aor:<AoR key>   one AoR's binding set in the registrar's record
//	                encoding; expires MaxExpires + a margin after its last
//	                write, deleted when the AoR has no binding
//	dlg:<node>:<dialog key>  a dialog with a session timer that node
//	                follows (dialogs' record encoding); expires a minute
//	                after its session would; taken by another instance
//	                when node dies (Dialogs)
//	passive:<token> one passive binding of the gateway deployment (a phone
//	                registered with an outside provider through sipedge)
//	                in the gateway's record encoding; same expiry rule
//	seq             the number of the last batch of binding writes
//	nodes           sorted set: node name → last heartbeat (unix ms)
//	bans            hash: address → "until-unix-ms reason"
//	secret          the cluster's shared secret (hex), set once
//
// and the channels <prefix>aor (one message per batch of binding-set
// writes), <prefix>passive (the same for passive bindings) and
// <prefix>ban (bans and lifts).
//
// Lock order: Locations.mu is taken under the registrar's shard locks
// (Put and Delete are called with one held), never the other way round;
// the writer and subscriber goroutines call the registrar without it.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config says how to reach Redis and who this instance is.
type Config struct {
	// Addrs: one address is one Redis server; with MasterName they are
	// the Sentinels that know the master of that name. (A Redis Cluster
	// is not supported: a batch of writes and its sequence number are one
	// script call, which needs its keys on one server.)
	Addrs      []string
	MasterName string
	Password   string
	DB         int
	// Prefix starts every key and channel; default "sipedge:". Two
	// clusters may share a Redis server with different prefixes.
	Prefix string
	// Node is this instance's SIP address as the others reach it
	// (host:port, UDP): the name its bindings are owned by, where the
	// others send requests for the flows it holds.
	Node string
	// WaitReplicas, when above 0, makes each batch of writes wait until
	// that many replicas have it (Redis WAIT) before the REGISTERs are
	// answered: a Sentinel failover then loses no acknowledged binding.
	WaitReplicas int
	Logger       *slog.Logger
}

// Heartbeat is how often an instance tells the others it is alive;
// an instance not heard from for DeadAfter is taken for dead: its flows
// are reached directly and its bindings taken over.
const (
	Heartbeat = time.Second
	DeadAfter = 3 * time.Second
)

// Cluster is one instance's connection to the others.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	rdb  redis.UniversalClient
	self netip.AddrPort

	// live is the live nodes other than this one, by name.
	live atomic.Pointer[map[string]netip.AddrPort]
	// peerIPs are their addresses (IsPeer).
	peerIPs atomic.Pointer[map[netip.Addr]struct{}]

	up     atomic.Bool // Redis answered the last command
	downMu sync.Mutex  // serialises the up/down log lines

	loc     *Locations // the registrar's bindings (aor)
	passive *Locations // the gateway's passive bindings
	dlg     *Dialogs   // dialogs with a session timer
	bans    *Bans
	ps      *redis.PubSub // subscribed in Open, read from Start

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// quiet drops the client library's own log lines: the cluster logs Redis
// going away and coming back once each (setUp), not every failed dial.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...interface{}) {}

func init() { redis.SetLogger(quiet{}) }

// Open connects to Redis (it must answer within 5 s) and registers this
// node. Start begins the heartbeat and the subscription.
func Open(cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sipedge:"
	}
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("no Redis address")
	}
	if len(cfg.Addrs) > 1 && cfg.MasterName == "" {
		return nil, errors.New("several Redis addresses are the Sentinels of sentinel.master (a Redis Cluster is not supported)")
	}
	self, err := netip.ParseAddrPort(cfg.Node)
	if err != nil || self.Addr().IsUnspecified() {
		return nil, fmt.Errorf("node %q is not an address other instances can reach (ip:port)", cfg.Node)
	}
	opt := &redis.UniversalOptions{
		Addrs: cfg.Addrs, MasterName: cfg.MasterName, Password: cfg.Password, DB: cfg.DB,
		DialTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second,
		MaxRetries: 1,
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, rdb: redis.NewUniversalClient(opt), self: self}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	empty := map[string]netip.AddrPort{}
	c.live.Store(&empty)
	noIPs := map[netip.Addr]struct{}{}
	c.peerIPs.Store(&noIPs)
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		c.rdb.Close()
		return nil, fmt.Errorf("Redis at %v does not answer: %v", cfg.Addrs, err)
	}
	c.up.Store(true)
	if err := c.beat(ctx); err != nil {
		c.rdb.Close()
		return nil, err
	}
	// Subscribed before anything is loaded: a change made between the
	// load and the first read waits in the subscription, and the
	// versions read with the records tell which ones are older.
	c.ps = c.rdb.Subscribe(c.ctx, channels(c)...)
	for n := 0; n < len(channels(c)); {
		msg, err := c.ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			c.ps.Close()
			c.rdb.Close()
			return nil, fmt.Errorf("Redis: subscribing: %v", err)
		}
		if _, ok := msg.(*redis.Subscription); ok {
			n++
		}
	}
	return c, nil
}

func (c *Cluster) key(s string) string { return c.cfg.Prefix + s }

// channels are the channels every instance subscribes to.
func channels(c *Cluster) []string {
	return []string{c.key(spaceAOR), c.key(spacePassive), c.key("ban")}
}

// spaces are the record spaces this instance shares.
func (c *Cluster) spaces() []*Locations {
	var out []*Locations
	for _, l := range []*Locations{c.loc, c.passive} {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}

// Node is this instance's name.
func (c *Cluster) Node() string { return c.cfg.Node }

// Secret returns the cluster's shared secret: the one in Redis, or local
// if none is there yet (the first instance to start sets it). Nonces,
// Record-Route signatures and flow tokens made by one instance are then
// checked by every other.
func (c *Cluster) Secret(local []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	if len(local) == 0 {
		local = make([]byte, 32)
		rand.Read(local)
	}
	if err := c.rdb.SetNX(ctx, c.key("secret"), hex.EncodeToString(local), 0).Err(); err != nil {
		return nil, fmt.Errorf("Redis: %v", err)
	}
	v, err := c.rdb.Get(ctx, c.key("secret")).Result()
	if err != nil {
		return nil, fmt.Errorf("Redis: %v", err)
	}
	s, err := hex.DecodeString(v)
	if err != nil || len(s) < 16 {
		return nil, fmt.Errorf("Redis key %s holds no secret sipedge wrote", c.key("secret"))
	}
	return s, nil
}

// Start begins the heartbeat and the subscription to the other
// instances' changes. Locations and Bans must be made before.
func (c *Cluster) Start() {
	c.wg.Add(2)
	go c.heartbeat()
	go c.subscribe()
	for _, l := range c.spaces() {
		c.wg.Add(1)
		go l.writer()
	}
	if c.dlg != nil {
		// What this node's previous run left is taken before this run
		// writes anything under the same name.
		c.dlg.adopt(c.cfg.Node)
		c.wg.Add(2)
		go c.dlg.writer()
		go func() {
			defer c.wg.Done()
			c.dlg.start()
		}()
	}
	if c.bans != nil {
		c.bans.load()
	}
}

// Close leaves the cluster: this node is removed from the registry (the
// others reach its phones directly at once) and the connection closed.
// Writes still queued are failed.
func (c *Cluster) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	c.rdb.ZRem(ctx, c.key("nodes"), c.cfg.Node)
	cancel()
	c.cancel()
	for _, l := range c.spaces() {
		l.wake()
	}
	err := c.rdb.Close()
	c.wg.Wait()
	return err
}

// Available reports whether Redis answered the last command (the
// registrar answers REGISTER 503 while it does not).
func (c *Cluster) Available() bool { return c.up.Load() }

// setUp records whether Redis answers, with one log line per change.
func (c *Cluster) setUp(ok bool, err error) {
	if c.up.Load() == ok {
		return
	}
	c.downMu.Lock()
	defer c.downMu.Unlock()
	if c.up.Swap(ok) == ok {
		return
	}
	if ok {
		c.log.Info("cluster: Redis answers again; catching up with the other instances' changes")
		return
	}
	c.log.Error("cluster: Redis does not answer; routing from memory, REGISTER answered 503 until it is back", "err", err)
}

// beat writes this node's heartbeat and reads who else is alive.
func (c *Cluster) beat(ctx context.Context) error {
	now := time.Now().UnixMilli()
	nodes := c.key("nodes")
	p := c.rdb.Pipeline()
	p.ZAdd(ctx, nodes, redis.Z{Score: float64(now), Member: c.cfg.Node})
	p.ZRemRangeByScore(ctx, nodes, "-inf", strconv.FormatInt(now-int64(time.Hour/time.Millisecond), 10))
	alive := p.ZRangeByScore(ctx, nodes, &redis.ZRangeBy{Min: strconv.FormatInt(now-int64(DeadAfter/time.Millisecond), 10), Max: "+inf"})
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("Redis: %v", err)
	}
	live := map[string]netip.AddrPort{}
	ips := map[netip.Addr]struct{}{}
	for _, n := range alive.Val() {
		if n == c.cfg.Node {
			continue
		}
		if ap, err := netip.ParseAddrPort(n); err == nil {
			live[n] = ap
			ips[ap.Addr().Unmap()] = struct{}{}
		}
	}
	c.live.Store(&live)
	c.peerIPs.Store(&ips)
	return nil
}

func (c *Cluster) heartbeat() {
	defer c.wg.Done()
	t := time.NewTicker(Heartbeat)
	defer t.Stop()
	okSince := time.Now() // Open's beat succeeded
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, Heartbeat)
		err := c.beat(ctx)
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		c.setUp(err == nil, err)
		if err != nil {
			okSince = time.Time{}
		} else if okSince.IsZero() {
			okSince = time.Now()
		}
		if err == nil && c.dlg != nil {
			live := map[string]struct{}{}
			for n := range *c.live.Load() {
				live[n] = struct{}{}
			}
			// After this instance could not reach Redis, the others'
			// heartbeats look old until they have beaten again: a node
			// is taken for dead only by a beat made a whole DeadAfter
			// after the connection came back.
			c.dlg.beat(live, time.Since(okSince) > DeadAfter+Heartbeat)
		}
	}
}

// Alive returns the address of a live node other than this one.
func (c *Cluster) Alive(node string) (netip.AddrPort, bool) {
	ap, ok := (*c.live.Load())[node]
	return ap, ok
}

// Nodes lists the live nodes other than this one.
func (c *Cluster) Nodes() []string {
	m := *c.live.Load()
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	return out
}

// IsPeer reports whether a is the address of another live instance
// (proxy.Peers: they are served like a trusted network).
func (c *Cluster) IsPeer(a netip.Addr) bool {
	_, ok := (*c.peerIPs.Load())[a.Unmap()]
	return ok && a.Unmap() != c.self.Addr().Unmap()
}

// subscribe receives the other instances' changes. After a lost
// connection it resubscribes and reloads what it may have missed.
func (c *Cluster) subscribe() {
	defer c.wg.Done()
	ps := c.ps
	defer ps.Close()
	nch := len(channels(c))
	subscribed := nch // in Open
	for {
		msg, err := ps.Receive(c.ctx)
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			c.setUp(false, err)
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			subscribed++
			// Every channel was confirmed in Open; every later
			// confirmation is a resubscription after a lost
			// connection: messages were missed (once per round).
			if subscribed > nch && subscribed%nch == 1 {
				c.setUp(true, nil)
				c.resync()
			}
		case *redis.Message:
			switch m.Channel {
			case c.key(spaceAOR):
				if c.loc != nil {
					c.loc.remote(m.Payload)
				}
			case c.key(spacePassive):
				if c.passive != nil {
					c.passive.remote(m.Payload)
				}
			case c.key("ban"):
				if c.bans != nil {
					c.bans.remote(m.Payload)
				}
			}
		}
	}
}

// resync reloads the shared state after messages may have been missed.
func (c *Cluster) resync() {
	for _, l := range c.spaces() {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			l.resync()
		}()
	}
	if c.bans != nil {
		c.bans.load()
	}
}

// Stats are the cluster's counters.
type Stats struct {
	Peers     int    // other instances alive (heartbeat within 3 s)
	Available int    // 1 while Redis answers; 0 while REGISTER is answered 503
	Writes    uint64 // binding sets written to Redis
	Failed    uint64 // binding-set writes refused while Redis did not answer (REGISTER 503)
	Remote    uint64 // other instances' binding-set writes installed here
	Stale     uint64 // other instances' writes older than the one installed, ignored
	PutBack   uint64 // own writes installed again after a concurrent write of another instance
	Resyncs   uint64 // full reloads of the bindings after a lost subscription
	Bad       uint64 // binding sets from other instances that did not decode, dropped
	BansLost  uint64 // bans or lifts that could not be shared

	PassiveWrites uint64 // passive bindings written to Redis
	PassiveRemote uint64 // other instances' passive bindings installed here

	DialogsSaved   uint64 // session-timer dialog records written to Redis
	DialogsAdopted uint64 // dialogs of instances that died, taken over here
	DialogsLost    uint64 // dialog records not written (Redis too far behind)
}

// Stats returns the counters.
func (c *Cluster) Stats() Stats {
	s := Stats{Peers: len(*c.live.Load())}
	if c.Available() {
		s.Available = 1
	}
	if l := c.loc; l != nil {
		st := &l.stats
		s.Writes, s.Failed, s.Remote = st.Writes.Load(), st.Failed.Load(), st.Remote.Load()
		s.Stale, s.PutBack, s.Resyncs, s.Bad = st.Stale.Load(), st.PutBack.Load(), st.Resyncs.Load(), st.Bad.Load()
	}
	if c.bans != nil {
		s.BansLost = c.bans.Dropped()
	}
	if p := c.passive; p != nil {
		s.PassiveWrites, s.PassiveRemote = p.stats.Writes.Load(), p.stats.Remote.Load()
	}
	if d := c.dlg; d != nil {
		s.DialogsSaved, s.DialogsAdopted, s.DialogsLost = d.saved.Load(), d.adopted.Load(), d.lost.Load()
	}
	return s
}
