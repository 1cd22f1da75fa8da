// Package proxy is sipedge's request core (RFC 3261 §16): it takes every
// message the transport layer framed, parses it, and walks requests
// through an ordered list of stages until one of them answers or forwards
// it. Forwarding is transaction stateful: each forwarded request gets a
// response context that collects the answers of its branches.
//
// Features (NAT aliasing, media relay, dialogs and session timers, the
// passive registrar, keep-alives) are packages of their own under
// features/ that plug stages and branch, reply and failure hooks into the
// lists of pipeline.go; proxy imports none of them.
//
// Lock order (what may be held while sending): respCtx.mu may be held while
// a branch's client transaction is created or a response is handed to the
// server transaction (which sends under its own lock: txn.Server.mu, then
// the transport's socket). Nothing in proxy holds a lock across a DNS
// lookup: requests that need one leave the reader goroutine (deferRequest)
// and hold no lock while they wait. Feature tables (media calls, dialogs,
// passive bindings) are leaves: no other lock is taken while one is held,
// and nothing is sent under them.
package proxy

import (
	"sipedge/metrics"
	"strconv"

	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// Config configures the parts of the core that are fixed while it runs.
type Config struct {
	Logger *slog.Logger
	// Self lists the addresses and names a Request-URI may carry to mean
	// sipedge itself (RFC 3261 §16.4, §16.5): listen addresses, local
	// interface addresses when listening on a wildcard, configured domains.
	Self *Self
	// UserAgent is the Server header of locally generated responses and
	// the User-Agent of the requests sipedge sends ("": "sipedge").
	UserAgent string
	// NoUserAgent leaves both headers out; UserAgent is then ignored.
	NoUserAgent bool
	// Txn configures transaction timers (zero values: RFC 3261 defaults).
	Txn txn.Config
	// Registrar handles REGISTER for the local Domains; nil: REGISTER is
	// routed like any request.
	Registrar Location
	// Resolver resolves next hops given as host names (RFC 3263) for
	// requests routed by Route or Request-URI; nil: such requests get 404.
	Resolver Resolver
	// Policy is the first Policy (SetPolicy replaces it).
	Policy Policy
	// Secret signs the Record-Route entries sipedge adds (access.go), so
	// in-dialog requests from untrusted sources can be told from relay
	// attempts. It should survive restarts (the app keeps it in the
	// store); nil: Record-Route is not signed and untrusted in-dialog
	// requests are refused.
	Secret []byte
}

// Policy is the part of the configuration that may change while sipedge
// runs (SIGHUP): each request reads the snapshot once, when it arrives,
// and keeps it to the end of its walk.
type Policy struct {
	Limits *sip.Limits
	// Router finds the targets of requests that are not for sipedge
	// itself. nil: every such request is answered 480.
	Router  Router
	Domains *Domains
	// AllowSources are the trusted networks: requests from them are
	// served without authentication; others get 403 unless a feature
	// (digest authentication) lets them on. nil: every source is trusted
	// (a core built without configuration); an empty, non-nil list: none.
	AllowSources []netip.Prefix
	// SymmetricResponses sends UDP responses to the port a request came
	// from even without rport, as if every request carried it (RFC 3581
	// §4). Phones behind NAT need it; false follows RFC 3261 §18.2.2 to the
	// letter (the Via sent-by port).
	SymmetricResponses bool
}

// Core is the transport.Handler of sipedge.
type Core struct {
	cfg   Config
	log   *slog.Logger
	stats counters
	pool  sync.Pool // *Request: parse state and output buffers, reused
	pipe  *pipeline
	notes int
	// deferred holds a token per request waiting for DNS off the reader.
	deferred chan struct{}
	tagKey   uint64
	policy   atomic.Pointer[Policy]
	self     atomic.Pointer[Self]
	peers    atomic.Pointer[Peers] // SetPeers
	layer    atomic.Pointer[transport.Layer]
	txn      *txn.Layer
	features []Feature
	// draining: new dialogs are refused with 503 (graceful shutdown).
	draining atomic.Bool
	// pending counts forwarded requests without a final response yet.
	pending atomic.Int64
	// rrd is the registration request delay of stored REGISTERs.
	rrd metrics.Histogram
	// rrKey signs Record-Route entries (signRR: Config.Secret was given).
	rrKey  macKey
	signRR bool
	// branchKey signs the branches sipedge generates, so a response
	// matching no transaction is relayed only when sipedge sent the
	// request it answers (response.go).
	branchKey macKey
	// authStage: a feature authenticates untrusted sources, so the access
	// stage lets them on and the relay stage guards what they may reach.
	authStage bool
}

// counters are the core's live counters. Every dropped message is counted
// in one of them, so a silent drop always shows up somewhere.
type counters struct {
	Requests, Responses, BadRequests, BadResponses, Unanswerable, StrayResponses atomic.Uint64
	StatelessForwards, LocalResponses, Originated, Deferred, DeferredRefused     atomic.Uint64
	Forwarded, Loops, Refused, Draining, HookErrors, SendErrors, SIPSRefused     atomic.Uint64
	RelayDenied, Amplification, ForgedResponses, Redirects                       atomic.Uint64
	AuthRetries                                                                  atomic.Uint64
	// byMethod counts received requests by sip.Method; respIn received
	// responses and respLocal sipedge's own, by class (index 1-6).
	byMethod          [16]atomic.Uint64
	respIn, respLocal [7]atomic.Uint64
}

// Stats is a snapshot of the core's counters (the metrics convention of
// package metrics).
type Stats struct {
	Requests          uint64
	Responses         uint64
	BadRequests       uint64 // answered with the parser's 4xx/5xx
	BadResponses      uint64 // malformed responses, dropped
	Unanswerable      uint64 // malformed beyond answering (no start line or no Via), dropped
	StrayResponses    uint64 // responses matching no transaction and not ours to forward, dropped
	StatelessForwards uint64 // responses and ACKs forwarded without a transaction
	LocalResponses    uint64 // responses generated by sipedge
	Originated        uint64 // requests sipedge sent as a UAC (keep-alives, BYE, probes)
	Deferred          uint64 // requests that waited for DNS off the reader
	DeferredRefused   uint64 // answered 503: too many waiting for DNS
	Forwarded         uint64 // requests forwarded statefully (per branch)
	Loops             uint64 // 482 answered
	Refused           uint64 // 403 to sources outside AllowSources
	SIPSRefused       uint64 // SIPS requests answered 480: no target reachable over TLS
	RelayDenied       uint64 // 403 (or drop) to strangers' requests for a destination that is not local
	Amplification     uint64 // answers to strangers not sent: larger than 1.5x their request
	ForgedResponses   uint64 // responses with sipedge's Via on top but not its signature, dropped
	Draining          uint64 // new dialogs answered 503 while draining
	HookErrors        uint64 // branches dropped, responses relayed without an edit: a hook's edit failed
	Redirects         uint64 // 3xx responses recursed on (their contacts became targets) instead of relayed
	SendErrors        uint64
	AuthRetries       uint64 // requests sent again with sipedge's credentials after a next hop's 401/407
	Pending           int    // forwarded requests waiting for their final response
	// RegistrationDelay is the registration request delay: a REGISTER
	// that changed bindings, from the registrar stage to its 200 OK (the
	// fsync included).
	RegistrationDelay metrics.HistogramSnapshot
	// RequestsByMethod counts received requests by method ("other":
	// extension methods).
	RequestsByMethod map[string]uint64 `label:"method"`
	// ResponsesByClass counts received responses by class (1xx ... 6xx);
	// LocalResponsesByClass the final responses sipedge generated itself
	// (a 100 Trying is the transaction layer's, counted there).
	ResponsesByClass      map[string]uint64 `label:"class"`
	LocalResponsesByClass map[string]uint64 `label:"class"`
	// Stages counts the requests each stage dealt with (ended the walk).
	Stages map[string]uint64 `label:"stage"`
	// BranchHooks and ReplyHooks count the messages each hook saw.
	BranchHooks map[string]uint64 `label:"hook"`
	ReplyHooks  map[string]uint64 `label:"hook"`
}

// Stats returns a snapshot of the counters.
func (c *Core) Stats() Stats {
	s := &c.stats
	st := Stats{
		Requests: s.Requests.Load(), Responses: s.Responses.Load(), BadRequests: s.BadRequests.Load(),
		BadResponses: s.BadResponses.Load(), Unanswerable: s.Unanswerable.Load(), StrayResponses: s.StrayResponses.Load(),
		StatelessForwards: s.StatelessForwards.Load(), LocalResponses: s.LocalResponses.Load(), Originated: s.Originated.Load(),
		Deferred: s.Deferred.Load(), DeferredRefused: s.DeferredRefused.Load(), Forwarded: s.Forwarded.Load(),
		Loops: s.Loops.Load(), Refused: s.Refused.Load(), SIPSRefused: s.SIPSRefused.Load(), Draining: s.Draining.Load(), HookErrors: s.HookErrors.Load(),
		RelayDenied: s.RelayDenied.Load(), Amplification: s.Amplification.Load(), ForgedResponses: s.ForgedResponses.Load(), Redirects: s.Redirects.Load(),
		SendErrors: s.SendErrors.Load(), AuthRetries: s.AuthRetries.Load(), Pending: c.Pending(), RegistrationDelay: c.rrd.Snapshot(),
		Stages: map[string]uint64{}, BranchHooks: map[string]uint64{}, ReplyHooks: map[string]uint64{},
	}
	st.RequestsByMethod = make(map[string]uint64, 16)
	for m := sip.MethodOther; m <= sip.UPDATE; m++ {
		name := m.String()
		if m == sip.MethodOther {
			name = "other"
		}
		st.RequestsByMethod[name] = s.byMethod[m].Load()
	}
	st.ResponsesByClass, st.LocalResponsesByClass = make(map[string]uint64, 6), make(map[string]uint64, 6)
	for k := 1; k <= 6; k++ {
		class := strconv.Itoa(k) + "xx"
		st.ResponsesByClass[class] = s.respIn[k].Load()
		st.LocalResponsesByClass[class] = s.respLocal[k].Load()
	}
	p := c.pipe
	for i := range p.stages {
		st.Stages[p.stages[i].Name] = p.handled[i].Load()
	}
	for i := range p.branch {
		st.BranchHooks[p.branch[i].Name] = p.branchRuns[i].Load()
	}
	for i := range p.reply {
		st.ReplyHooks[p.reply[i].Name] = p.replyRuns[i].Load()
	}
	return st
}

// Transactions is a snapshot of the transaction layer's counters.
func (c *Core) Transactions() txn.Stats { return c.txn.Stats() }

// New returns a Core with the features' hooks in the order of pipeline.go.
// A feature that names an entry missing from the order lists is refused.
func New(cfg Config, features ...Feature) (*Core, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Self == nil {
		cfg.Self = NewSelf(nil, nil)
	}
	switch {
	case cfg.NoUserAgent:
		cfg.UserAgent = ""
	case cfg.UserAgent == "":
		cfg.UserAgent = "sipedge"
	}
	c := &Core{cfg: cfg, log: cfg.Logger, tagKey: randomKey(), deferred: make(chan struct{}, maxDeferred)}
	if len(cfg.Secret) > 0 {
		c.rrKey, c.signRR = newMACKey(cfg.Secret), true
	}
	var bk [16]byte
	binary.LittleEndian.PutUint64(bk[:8], randomKey())
	binary.LittleEndian.PutUint64(bk[8:], randomKey())
	c.branchKey = newMACKey(bk[:])
	c.self.Store(cfg.Self)
	pol := cfg.Policy
	c.policy.Store(&pol)
	c.pool.New = func() any { return &Request{out: make([]byte, 0, 2048)} }
	tc := cfg.Txn
	tc.Sender = c
	if tc.Logger == nil {
		tc.Logger = cfg.Logger
	}
	c.txn = txn.New(tc)
	if err := c.Use(features...); err != nil {
		c.txn.Close()
		return nil, err
	}
	return c, nil
}

// Use compiles the pipeline with these features (features are usually
// built with the Core they serve: New(cfg), then Use). Call it before the
// core serves.
func (c *Core) Use(features ...Feature) error {
	all := append(append([]Feature(nil), c.features...), features...)
	p, err := compile(c.coreHooks(), all)
	if err != nil {
		return err
	}
	c.features, c.pipe, c.authStage = all, p, p.authStage
	return nil
}

// coreHooks are the RFC 3261 §16 stages the core itself provides.
func (c *Core) coreHooks() Hooks {
	return Hooks{Stages: []Stage{
		{"ack", ackStage},
		{"access", accessStage},
		{"scheme", schemeStage},
		{"max-forwards", maxFwdStage},
		{"loop", loopStage},
		{"proxy-require", proxyReqStage},
		{"route", routeStage},
		{"relay", relayStage},
		{"stateless-route", slRouteStage},
		{"stateless", statelessStage},
		{"transaction", txnStage},
		{"cancel", cancelStage},
		{"drain", drainStage},
		{"registrar", registrarStage},
		{"self", selfStage},
		{"locate", locateStage},
		{"sips", sipsStage},
		{"forward", forwardStage},
	}}
}

// SetPolicy replaces the reloadable configuration: new requests use it,
// requests already on their way keep the snapshot they started with.
func (c *Core) SetPolicy(p Policy) { c.policy.Store(&p) }

// Policy returns the current snapshot.
func (c *Core) Policy() *Policy { return c.policy.Load() }

// Pending returns the number of forwarded requests still waiting for a
// final response (a graceful shutdown waits for them).
func (c *Core) Pending() int { return int(c.pending.Load()) }

// Drain starts a graceful shutdown: new dialogs (an INVITE, SUBSCRIBE or
// REFER outside a dialog) are answered 503 with Retry-After; requests
// inside dialogs, REGISTER and OPTIONS are served as before.
func (c *Core) Drain() { c.draining.Store(true) }

// Draining reports whether Drain was called.
func (c *Core) Draining() bool { return c.draining.Load() }

// Attach gives the core the started transport layer it sends through and
// the addresses it listens on (their real ports are known once bound),
// then starts the features that have work of their own.
func (c *Core) Attach(l *transport.Layer, names []string) {
	c.layer.Store(l)
	addrs := l.Addrs()
	var bound []netip.AddrPort
	for _, a := range addrs {
		bound = append(bound, a.Addr)
	}
	c.self.Store(NewSelf(bound, names))
	for _, f := range c.features {
		if s, ok := f.(Starter); ok {
			s.Start()
		}
	}
}

// Close stops the features' own work (keep-alives, session timers), then
// the transaction timers.
func (c *Core) Close() {
	for i := len(c.features) - 1; i >= 0; i-- {
		if cl, ok := c.features[i].(Closer); ok {
			cl.Close()
		}
	}
	c.txn.Close()
}

// Logger is the core's logger, for features.
func (c *Core) Logger() *slog.Logger { return c.log }

// IsSelfURI reports whether a SIP URI's host and port name sipedge.
func (c *Core) IsSelfURI(u *sip.URI) bool {
	return u.IsSIP() && c.self.Load().Is(u.Host, u.Port, u.Kind == sip.SchemeSIPS)
}

// Self returns what names sipedge itself.
func (c *Core) Self() *Self { return c.self.Load() }

// LocalFor is sipedge's address towards dst over proto (what a Via or
// Record-Route names). The transport sends from the socket of that address,
// so the datagram's source and the Via agree (on a gateway: the outside
// address towards the outside).
func (c *Core) LocalFor(proto transport.Proto, dst netip.Addr) (netip.AddrPort, bool) {
	l := c.layer.Load()
	if l == nil {
		return netip.AddrPort{}, false
	}
	return l.LocalFor(proto, dst)
}

// SourceFor is the local address the kernel sends from towards dst (where
// the media relay binds a side).
func (c *Core) SourceFor(dst netip.Addr) netip.Addr {
	l := c.layer.Load()
	if l == nil {
		// No transport attached (tests of hooks): loopback of the family.
		if dst.Unmap().Is4() {
			return netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		return netip.IPv6Loopback()
	}
	return l.RouteSource(dst)
}

// TagKey is the per-process secret that To tags, branches and feature
// tokens are derived from.
func (c *Core) TagKey() uint64 { return c.tagKey }

// DialogEnded tells the features that follow dialogs that one is over.
func (c *Core) DialogEnded(callID, fromTag string) {
	for _, fn := range c.pipe.dialogEnded {
		fn(callID, fromTag)
	}
}

// EndDialog asks the dialog feature to end a call as sipedge (a BYE to
// each side); false when no feature knows the dialog.
func (c *Core) EndDialog(callID, fromTag string, cause int, text string) bool {
	if c.pipe.endDialog == nil {
		return false
	}
	return c.pipe.endDialog(callID, fromTag, cause, text)
}

var errNoLayer = errors.New("proxy: transport not attached")

// Send implements txn.Sender.
func (c *Core) Send(proto transport.Proto, dst netip.AddrPort, b []byte) error {
	l := c.layer.Load()
	if l == nil {
		return errNoLayer
	}
	return l.Send(proto, dst, b)
}

// SendDest implements txn.DestSender: a send to a named TLS next hop.
func (c *Core) SendDest(d transport.Dest, b []byte) error {
	l := c.layer.Load()
	if l == nil {
		return errNoLayer
	}
	return l.SendDest(d, b)
}

// HasConnDest implements txn.DestSender.
func (c *Core) HasConnDest(d transport.Dest) bool {
	l := c.layer.Load()
	return l != nil && l.HasConnDest(d)
}

// HasConn implements txn.ConnChecker: a send over an open connection does
// not wait for a connect.
func (c *Core) HasConn(proto transport.Proto, dst netip.AddrPort) bool {
	l := c.layer.Load()
	return l != nil && l.HasConn(proto, dst)
}

// sendNoWait is Send for the core's stateless forwards, which run on
// message readers: a send that must open a TCP/TLS connection first leaves
// the reader (the transaction layer's bounded dialer does it).
func (c *Core) sendNoWait(proto transport.Proto, dst netip.AddrPort, b []byte) error {
	return c.txn.SendNoWait(transport.Dest{Proto: proto, Addr: dst}, b)
}

// SendBatch implements txn.BatchSender.
func (c *Core) SendBatch(out []transport.Outgoing) int {
	l := c.layer.Load()
	if l == nil {
		return len(out)
	}
	return l.SendBatch(out)
}

// maxDeferred bounds the requests waiting for DNS at once; more are
// answered 503 (a flood of requests to uncached domains must not turn
// into a flood of goroutines).
const maxDeferred = 1024

// deferRequest continues a request's walk at its current stage on a
// goroutine of its own, because routing it needs a DNS answer that is not
// cached: the reader goes back to the messages behind it at once (a slow or
// dead DNS server would otherwise stall every call). The lookup was already
// started by the non-blocking attempt. The packet is copied; the server
// transaction, the Route count, the decision and the notes carry over, so
// the earlier stages do not run again.
func (c *Core) deferRequest(r *Request) {
	select {
	case c.deferred <- struct{}{}:
	default:
		c.stats.DeferredRefused.Add(1)
		r.Respond(503, "Service Unavailable", []byte("Retry-After: 5\r\n"))
		return
	}
	c.stats.Deferred.Add(1)
	pkt := *r.pkt
	pkt.Data = append([]byte(nil), r.msg.Bytes()...)
	layer, pol, st, routes, stage := r.layer, r.pol, r.st, r.routes, r.stage
	dec, decided, wantDialog, nts, redirects := r.decision, r.decided, r.wantDialog, r.notes, r.redirects
	if r.one.holds(dec.Groups) {
		// The decision is r's own storage, and r goes back to the pool.
		dec.Groups = [][]Target{{r.one.target[0]}}
	}
	go func() {
		defer func() { <-c.deferred }()
		d := c.pool.Get().(*Request)
		d.core, d.layer, d.pkt, d.pol, d.st, d.routes = c, layer, &pkt, pol, st, routes
		d.decision, d.decided, d.notes, d.wantDialog, d.deferred, d.redirects = dec, decided, nts, wantDialog, true, redirects
		if d.msg.Parse(pkt.Data, d.pol.Limits) == nil {
			d.via, _ = d.msg.TopVia()
			c.walk(d, stage)
		}
		d.reset()
		c.pool.Put(d)
	}()
}

// HandleMessage implements transport.Handler. It runs on the transport's
// reader goroutine and must not keep pkt.Data after it returns.
func (c *Core) HandleMessage(l *transport.Layer, pkt *transport.Packet) {
	r := c.pool.Get().(*Request)
	r.core, r.layer, r.pkt, r.pol = c, l, pkt, c.policy.Load()
	c.handle(r)
	r.reset()
	c.pool.Put(r)
}

func (c *Core) handle(r *Request) {
	m := &r.msg
	err := m.Parse(r.pkt.Data, r.pol.Limits)
	if err == nil && r.pkt.FrameErr != nil {
		err = r.pkt.FrameErr
	}
	if err != nil {
		c.malformed(r, err)
		return
	}
	if !m.IsRequest() {
		c.stats.Responses.Add(1)
		if k := m.StatusCode() / 100; k >= 1 && k <= 6 {
			c.stats.respIn[k].Add(1)
		}
		c.response(r)
		return
	}
	c.stats.Requests.Add(1)
	c.stats.byMethod[m.MethodKind()&15].Add(1)
	r.via, _ = m.TopVia()
	c.walk(r, 0)
}

// walk runs the stages from index from until one deals with the request.
func (c *Core) walk(r *Request, from int) {
	stages := c.pipe.stages
	for i := from; i < len(stages); i++ {
		if r.decided && i <= c.pipe.locateIdx {
			// A stage made the routing decision (the passive
			// registrar, the dial plan): go on with the stages after
			// "locate", which must not route the request again.
			i = c.pipe.locateIdx
			continue
		}
		r.stage = i
		if stages[i].Run(r) {
			c.pipe.handled[i].Add(1)
			return
		}
	}
}

// malformed answers a request the parser refused with the status it named,
// or drops what cannot be answered (responses, no Via to answer to).
func (c *Core) malformed(r *Request, err error) {
	m := &r.msg
	pe, ok := err.(*sip.ParseError)
	if !ok {
		pe = &sip.ParseError{Code: 400, Reason: "Bad Request"}
	}
	if !m.IsRequest() || m.Find(sip.KindVia) < 0 {
		if m.IsRequest() || m.StatusCode() == 0 {
			c.stats.Unanswerable.Add(1)
		} else {
			c.stats.BadResponses.Add(1)
		}
		c.log.Info("malformed message dropped", "src", r.pkt.Src, "proto", r.pkt.Proto, "err", pe.Error())
		return
	}
	if m.MethodKind() == sip.ACK {
		c.stats.Unanswerable.Add(1) // an ACK is never answered (RFC 3261 §17.2.3)
		return
	}
	c.stats.BadRequests.Add(1)
	c.log.Info("bad request answered", "src", r.pkt.Src, "proto", r.pkt.Proto,
		"status", pe.Code, "err", pe.Error())
	r.via, _ = m.TopVia()
	r.Respond(pe.Code, pe.Reason, nil)
}

// randomKey seeds To-tags and branches so two sipedge processes never
// generate the same.
func randomKey() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("proxy: no randomness: " + err.Error())
	}
	return binary.LittleEndian.Uint64(b[:])
}

// noBlock is the context of every request on a message reader: nothing on
// it waits for DNS (WithoutBlocking).
var noBlock = WithoutBlocking(context.Background())

// BeginQueued and EndQueued bracket one batch of responses queued with
// RespondQueued (the store's group commit, store.BatchHooks): the batch
// then leaves in one send from the committer (txn.Layer.BeginQueued).
func (c *Core) BeginQueued() { c.txn.BeginQueued() }

// EndQueued: see BeginQueued.
func (c *Core) EndQueued() { c.txn.EndQueued() }

// countLocal counts a response sipedge generated itself.
func (c *Core) countLocal(code int) {
	c.stats.LocalResponses.Add(1)
	if k := code / 100; k >= 1 && k <= 6 {
		c.stats.respLocal[k].Add(1)
	}
}
