// Package callmedia relays the media of calls through sipedge (RFC 3264
// offer/answer as it crosses sipedge), gluing the SDP rewriter (package
// sdp) to the RTP relay (package media).
//
// When a call's media must go through sipedge (Mode), the first offer
// creates a media.Call keyed by Call-ID and the caller's From tag; every
// SDP body that crosses sipedge in either direction (INVITE, 183/200,
// re-INVITE, UPDATE, ACK with a late answer) then updates the sender's
// side of each stream (SetPeer: where that side said it receives) and is
// rewritten to name the relay's ports on the other side. Side A is the
// caller, side B the callee. The call is freed on BYE, when the INVITE
// fails (any final non-2xx, CANCEL included), when the dialog feature ends
// the dialog, and on relay inactivity.
//
// A forked INVITE (several branches at once, or one after the other) gets
// relay streams per branch (media.Call.Fork): the first branch uses the
// call's own streams, every further one a fork with ports of its own on
// both sides, offered in that branch's copy of the INVITE. Each callee's
// early media thus reaches the caller from the relay ports its own
// provisional answer advertised, and the caller's media to those ports
// reaches that callee only (RFC 3960 §3). The first 2xx settles the call
// on its branch's streams (media.Call.Keep) and frees the others; a branch
// that fails frees its fork at once. The To tag of each early dialog names
// its fork, so an offer inside one (UPDATE, PRACK) reaches its streams. A
// call that does not fork keeps exactly one set of streams. Forks beyond
// sipedge (a downstream proxy forking one branch) cannot be told apart by
// port: they share their branch's streams, which latch to whichever callee
// sends first.
//
// CallMedia tells what the relay saw of a call, per stream and per leg,
// and why audio does not flow (Diagnose), for calls in progress and the
// last 1 000 that ended (docs/DESIGN.md, "Media quality and diagnosis").
//
// Hooks: stages "media-ack" and "media", branch and reply hooks
// "media-sdp", failure hook "media".
package callmedia

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/media"
	"sipedge/metrics"
	"sipedge/nat"
	"sipedge/proxy"
	"sipedge/sdp"
	"sipedge/sip"
)

// Mode says which calls have their media relayed.
type Mode uint8

const (
	// Auto relays a call when either side is behind NAT, when the caller's
	// SDP names a private address it could not be reached at, or when the
	// two sides are reached over different local addresses (a gateway's
	// inside and outside).
	Auto Mode = iota
	// Always relays every call with SDP.
	//
	// In both modes a call with a WebSocket client on a side (WebRTC) is
	// not relayed: see webSocketCall.
	Always
	// Never leaves SDP untouched.
	Never
)

// ParseMode reads "auto", "always" or "never".
func ParseMode(s string) (Mode, bool) {
	switch s {
	case "auto", "":
		return Auto, true
	case "always":
		return Always, true
	case "never":
		return Never, true
	}
	return 0, false
}

// Config is what may change while sipedge runs.
type Config struct {
	Mode Mode
	// MaxCallsPerUser limits the relayed calls a caller (From user@host)
	// has at once; more are answered 403. 0: no limit.
	MaxCallsPerUser int
}

// Feature is the media relay glue of one core.
type Feature struct {
	core  *proxy.Core
	relay *media.Relay
	log   *slog.Logger
	cfg   atomic.Pointer[Config]
	note  proxy.Note

	mu    sync.Mutex
	calls map[string]*call
	users map[string]int   // relayed calls per caller (user@host of From)
	ids   map[string]*call // the calls by Call-ID alone, for CallMedia
	// settling: calls ended whose media is not final yet (the kernel's
	// counters are being read), with what waits for it (WhenFinal).
	settling map[string]*settling
	ended    endedCalls // the media of the last calls that ended
	// onEnd, when set, gets each relayed call's media once it ended
	// (the HEP quality report); it runs on the goroutine that ended the
	// call, outside mu.
	onEnd atomic.Pointer[func(callID string, m Media)]

	stats counters
	grace time.Duration // Facts.Grace of the diagnosis; 0: Grace (tests shorten it)
}

// counters are the feature's live counters.
type counters struct {
	Calls        atomic.Uint64
	Refused      atomic.Uint64
	NotRewritten atomic.Uint64
	WebSocket    atomic.Uint64
	// Streams judged when their call ended (report.go).
	StreamsEnded, OneWay, ZeroPacket atomic.Uint64
	loss, mos                        *metrics.Distribution
	jitter                           metrics.Histogram
}

// Stats is a snapshot of the feature's counters (the metrics convention
// of package metrics).
type Stats struct {
	Calls        uint64 // relayed calls set up
	Refused      uint64 // offers answered 400/403/488/503
	NotRewritten uint64 // SDP of a response or ACK left as it was (unreadable)
	WSCalls      uint64 // new calls with a WebSocket (WebRTC) client on a side, left unrelayed whatever the mode
	Active       int    // relayed calls now

	// Streams are judged when their call ends; the distributions count
	// each direction of an ended stream that carried RTP, as measured on
	// its arrival at the relay.

	StreamsEnded      uint64                       // relayed streams of calls that ended
	OneWayStreams     uint64                       // ended streams with packets from one side only
	ZeroPacketStreams uint64                       // ended streams without a packet from either side
	StreamLossPercent metrics.DistributionSnapshot // per direction of an ended stream: RTP packets lost, percent of those expected
	StreamJitter      metrics.HistogramSnapshot    // per direction of an ended stream: RFC 3550 interarrival jitter
	StreamMOS         metrics.DistributionSnapshot // per direction of an ended stream: G.107 E-model MOS estimate
}

// call is one relayed call.
type call struct {
	key   string
	user  string        // the caller, for the per-user limit
	local [2]netip.Addr // our address towards side A and side B
	rc    *media.Call

	mu       sync.Mutex        // guards the fields below; a leaf
	sig      [2]netip.AddrPort // where each side's signalling came from
	answered time.Time         // the first 2xx to the INVITE
	streams  map[int]*streamInfo
	forks    *forks // nil until the INVITE goes out on a branch
}

// forks is what a call knows of the branches of its INVITE until the
// first 2xx settles it. Fork key "" is the call's own streams (rc).
type forks struct {
	byTarget map[branchKey]string   // a branch's target → its fork
	byTag    map[string]string      // the To tag of an early dialog → its fork
	rcs      map[string]*media.Call // the forks' handles, by key
	n        int                    // forks made
	settled  bool                   // a 2xx came: only kept remains
	kept     string                 // the fork of the 2xx
}

// branchKey names a branch by what both its branch hook and its replies
// see of its target (the reply's may have moved to TCP, §18.1.1).
type branchKey struct {
	addr netip.AddrPort
	uri  string
}

func keyOf(t *proxy.Target) branchKey { return branchKey{t.Addr, string(t.URI)} }

// reqMedia is what the stages leave for the hooks of one request.
type reqMedia struct {
	call    *call
	side    media.Side  // who sent the request
	created bool        // this INVITE created the call: a failure ends it
	body    []byte      // the rewritten SDP to forward, nil: unchanged
	rc      *media.Call // the fork the request's SDP went to; nil: call.rc
}

// New returns the feature for core, relaying through relay.
func New(core *proxy.Core, relay *media.Relay, cfg Config) *Feature {
	f := &Feature{core: core, relay: relay, log: core.Logger(), note: core.NewNote(),
		calls: map[string]*call{}, users: map[string]int{}, ids: map[string]*call{}, ended: newEndedCalls(),
		settling: map[string]*settling{}}
	f.stats.loss = metrics.NewDistribution(lossBuckets[:]...)
	f.stats.mos = metrics.NewDistribution(mosBuckets[:]...)
	f.cfg.Store(&cfg)
	return f
}

// SetConfig replaces the configuration (reload); calls in progress keep
// their ports.
func (f *Feature) SetConfig(cfg Config) { f.cfg.Store(&cfg) }

// Stats returns a snapshot of the counters.
func (f *Feature) Stats() Stats {
	return Stats{Calls: f.stats.Calls.Load(), Refused: f.stats.Refused.Load(), NotRewritten: f.stats.NotRewritten.Load(), Active: f.Calls(),
		WSCalls:      f.stats.WebSocket.Load(),
		StreamsEnded: f.stats.StreamsEnded.Load(), OneWayStreams: f.stats.OneWay.Load(), ZeroPacketStreams: f.stats.ZeroPacket.Load(),
		StreamLossPercent: f.stats.loss.Snapshot(), StreamJitter: f.stats.jitter.Snapshot(), StreamMOS: f.stats.mos.Snapshot()}
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{
		Stages: []proxy.Stage{
			{Name: "media-ack", Run: f.ackStage},
			{Name: "media", Run: f.stage},
		},
		Branch:      []proxy.BranchHook{{Name: "media-sdp", Run: f.branch}},
		Reply:       []proxy.ReplyHook{{Name: "media-sdp", Run: f.reply}},
		Failure:     []proxy.FailureHook{{Name: "media", Run: f.failure}},
		DialogEnded: []func(callID, fromTag string){f.dialogEnded},
	}
}

var sdpPool = sync.Pool{New: func() any { return new(sdp.Session) }}

func key(callID, aTag []byte) string {
	var buf [128]byte
	return string(proxy.AppendKey(buf[:0], callID, aTag))
}

// find returns the call a message belongs to and which side sent it: the
// caller sends with its tag in From, the callee with it in To.
func (f *Feature) find(callID, fromTag, toTag []byte) (*call, media.Side) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil, 0
	}
	var buf [128]byte
	if c := f.calls[string(proxy.AppendKey(buf[:0], callID, fromTag))]; c != nil {
		return c, media.SideA
	}
	if len(toTag) > 0 {
		if c := f.calls[string(proxy.AppendKey(buf[:0], callID, toTag))]; c != nil {
			return c, media.SideB
		}
	}
	return nil, 0
}

// add registers a new call unless its caller is at the limit; the check
// and the count are one step, so concurrent INVITEs cannot pass it
// together.
func (f *Feature) add(c *call, limit int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if limit > 0 && f.users[c.user] >= limit {
		return false
	}
	f.calls[c.key] = c
	f.users[c.user]++
	return true
}

func (f *Feature) remove(key string) *call {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls[key]
	if c != nil {
		delete(f.calls, key)
		if f.users[c.user]--; f.users[c.user] <= 0 {
			delete(f.users, c.user)
		}
	}
	return c
}

// End frees a relayed call's ports and keeps what its media was
// (CallMedia, the stream metrics).
func (f *Feature) End(key string) {
	if c := f.remove(key); c != nil {
		c.rc.Close()
		end := time.Now()
		id := c.callID()
		f.mu.Lock()
		if _, ok := f.settling[id]; !ok {
			f.settling[id] = &settling{}
		}
		f.mu.Unlock()
		// Streams the kernel forwarded have their exact counts a netlink
		// round trip later; until then CallMedia shows the call in
		// progress, with the counts last polled.
		c.rc.AfterRelease(func() {
			m := f.finish(c, end)
			// The call leaves ids only now, so that CallMedia finds it
			// either in progress or ended.
			f.mu.Lock()
			f.ended.put(id, m)
			if f.ids[id] == c {
				delete(f.ids, id)
			}
			var waiting []func()
			if st := f.settling[id]; st != nil {
				waiting = st.fns
				if st.limit != nil {
					st.limit.Stop()
				}
			}
			delete(f.settling, id)
			f.mu.Unlock()
			if fn := f.onEnd.Load(); fn != nil {
				(*fn)(id, m)
			}
			for _, fn := range waiting {
				fn()
			}
		})
	}
}

// WhenFinal runs fn once the media of call callID is final: at once,
// unless the call has ended and the relay is still reading the kernel's
// exact counters of its streams (media.kernel), then on the relay's
// goroutine when it has (a netlink round trip later). fn must not block
// for long.
//
// A call still in progress here (its dialog ended, but the hook that ends
// its media has not run yet) is waited for too, at most finalWait.
func (f *Feature) WhenFinal(callID string, fn func()) {
	f.mu.Lock()
	if st, ok := f.settling[callID]; ok {
		// Ended: End's release runs it.
		st.fns = append(st.fns, fn)
		f.mu.Unlock()
		return
	}
	if _, live := f.ids[callID]; !live {
		f.mu.Unlock()
		fn()
		return
	}
	defer f.mu.Unlock()
	st := &settling{fns: []func(){fn}}
	f.settling[callID] = st
	// Stopped when the media ends (End): a timer that fires for nothing
	// would start a goroutine per call.
	st.limit = time.AfterFunc(finalWait, func() {
		f.mu.Lock()
		// Still waiting: the media never ended; give up.
		var w []func()
		if f.settling[callID] == st {
			w = st.fns
			delete(f.settling, callID)
		}
		f.mu.Unlock()
		for _, fn := range w {
			fn()
		}
	})
}

// settling is a call whose media is not final yet: who waits for it, and
// the timer that stops the wait.
type settling struct {
	fns   []func()
	limit *time.Timer
}

// finalWait bounds how long WhenFinal waits for a call whose media has not
// ended yet.
const finalWait = 2 * time.Second

// OnEnd sets fn to get each relayed call's media when the call ends (for
// a per-call quality report). fn must not block.
func (f *Feature) OnEnd(fn func(callID string, m Media)) { f.onEnd.Store(&fn) }

// Inactive is the relay's report that a call's media stopped in both
// directions: the dialog feature ends the call (a BYE to each side) when
// it knows the dialog; the ports are freed either way.
func (f *Feature) Inactive(id string) {
	callID, aTag, _ := strings.Cut(id, "\x00")
	if !f.core.EndDialog(callID, aTag, 408, "Media stopped") {
		f.End(id)
	}
}

func (f *Feature) dialogEnded(callID, fromTag string) {
	f.End(callID + "\x00" + fromTag)
}

// Calls returns the number of relayed calls.
func (f *Feature) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// hasSDP reports whether m carries an SDP body (a missing Content-Type
// with a body is taken as SDP, which is what every phone sends).
func hasSDP(m *sip.Message) bool {
	if len(m.Body()) == 0 {
		return false
	}
	ct := m.Get(sip.KindContentType)
	if ct == nil {
		return true
	}
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return sip.EqualFold(bytes.TrimSpace(ct), "application/sdp")
}

// refusal is the status to answer an offer sipedge cannot relay (400/488
// for bad SDP, 503 when the relay has no room).
type refusal struct {
	code   int
	reason string
}

func (e *refusal) Error() string { return strconv.Itoa(e.code) + " " + e.reason }

// stage handles the SDP of a request about to be forwarded: a new call's
// relay ports, the rewritten body for the branches, BYE freeing the ports.
func (f *Feature) stage(r *proxy.Request) bool {
	cfg := f.cfg.Load()
	if cfg.Mode == Never {
		return false
	}
	m := r.Msg()
	switch m.MethodKind() {
	case sip.INVITE, sip.UPDATE, sip.BYE, sip.PRACK:
		// These start, change or end a call's media even without a body
		// (an offer may come in the 2xx).
	default:
		if !hasSDP(m) {
			return false
		}
	}
	callID, fromTag, toTag, ok := proxy.DialogIDs(m)
	if !ok {
		return false
	}
	c, side := f.find(callID, fromTag, toTag)
	if m.MethodKind() == sip.BYE {
		if c != nil {
			f.End(c.key)
		}
		return false
	}
	rm := &reqMedia{call: c, side: side}
	if c == nil {
		if m.MethodKind() != sip.INVITE || len(toTag) > 0 || !hasSDP(m) || !f.wantRelay(r, cfg) {
			return false
		}
		from, _ := m.From()
		user := string(from.URI.User) + "@" + string(from.URI.Host)
		k := key(callID, fromTag)
		c = &call{key: k, user: user}
		c.sig[media.SideA] = r.Src()
		d := r.Decision()
		c.local[media.SideA] = f.core.SourceFor(r.Src().Addr())
		c.local[media.SideB] = f.core.SourceFor(d.Groups[0][0].Addr.Addr())
		if !f.add(c, cfg.MaxCallsPerUser) {
			f.stats.Refused.Add(1)
			r.Respond(403, "Call Limit Reached", nil)
			return true
		}
		rc, err := f.relay.Call(k)
		if err != nil {
			f.remove(k)
			f.stats.Refused.Add(1)
			r.Respond(503, "Media Relay Busy", nil)
			return true
		}
		c.rc = rc
		f.mu.Lock()
		f.ids[c.callID()] = c
		f.mu.Unlock()
		f.stats.Calls.Add(1)
		rm.call, rm.side, rm.created = c, media.SideA, true
	}
	if m.MethodKind() == sip.INVITE {
		r.WantDialog() // sipedge must be able to end a relayed call
	}
	if hasSDP(m) {
		rc := c.rc
		if !rm.created {
			// An offer in an early dialog (UPDATE, PRACK) goes to
			// that dialog's fork.
			tag := toTag
			if side == media.SideB {
				tag = fromTag
			}
			if fc := c.forkOfTag(tag); fc != nil {
				rc, rm.rc = fc, fc
			}
		}
		body, err := f.rewrite(c, rc, rm.side, m.Body())
		if err != nil {
			if rm.created {
				f.End(c.key)
			}
			f.stats.Refused.Add(1)
			var rf *refusal
			if errors.As(err, &rf) {
				r.Respond(rf.code, rf.reason, nil)
			} else {
				r.Respond(500, "Server Internal Error", nil)
			}
			return true
		}
		rm.body = body
	}
	r.SetNote(f.note, rm)
	return false
}

// ackStage rewrites the SDP of an ACK for a relayed call (the answer to an
// offer in a 2xx, RFC 3264 §4 late offer).
func (f *Feature) ackStage(r *proxy.Request) bool {
	m := r.Msg()
	if m.MethodKind() != sip.ACK || !hasSDP(m) {
		return false
	}
	callID, fromTag, toTag, ok := proxy.DialogIDs(m)
	if !ok {
		return false
	}
	c, side := f.find(callID, fromTag, toTag)
	if c == nil {
		return false
	}
	body, err := f.rewrite(c, c.rc, side, m.Body())
	if err != nil {
		f.stats.NotRewritten.Add(1)
		f.log.Info("SDP of an ACK not relayed", "call_id", string(callID), "err", err)
		return false
	}
	r.SetNote(f.note, &reqMedia{call: c, side: side, body: body})
	return false
}

// wantRelay applies the Mode to a new call.
func (f *Feature) wantRelay(r *proxy.Request, cfg *Config) bool {
	if webSocketCall(r) {
		f.stats.WebSocket.Add(1)
		return false
	}
	if cfg.Mode == Always {
		return true
	}
	m := r.Msg()
	if nat.BehindRequest(m, r.Via(), r.Src()) {
		return true
	}
	if s := sdpConn(m.Body()); s.IsValid() && nat.Private(s) && !nat.Private(r.Src().Addr()) {
		return true
	}
	in := f.core.SourceFor(r.Src().Addr())
	for _, g := range r.Decision().Groups {
		for _, t := range g {
			if t.NAT || f.core.SourceFor(t.Addr.Addr()) != in {
				return true
			}
		}
	}
	return false
}

// webSocketCall reports whether a new call has a WebSocket client (RFC
// 7118) on either side: the caller came over WS/WSS, or a target is
// reached over it. Such a call is a WebRTC one: its media is DTLS-SRTP
// (RFC 5763) with ICE (RFC 8445) between the browser and the other side,
// which a relay of plain RTP, one address per stream, would break; its
// SDP is left as it is, whatever the mode (the other side must speak
// WebRTC media itself, or a media gateway must stand in between).
func webSocketCall(r *proxy.Request) bool {
	if r.Proto().WebSocket() {
		return true
	}
	for _, g := range r.Decision().Groups {
		for _, t := range g {
			if t.Proto.WebSocket() {
				return true
			}
		}
	}
	return false
}

// branch puts the relay's SDP into each forwarded copy: for a new call's
// INVITE, the first branch gets the call's own streams and every further
// one the streams of a fork of its own.
func (f *Feature) branch(b *proxy.Branch) error {
	rm, _ := b.Note(f.note).(*reqMedia)
	if rm == nil || rm.body == nil {
		return nil
	}
	if rm.created && b.Msg.MethodKind() == sip.INVITE && b.Target != nil {
		c := rm.call
		if key := c.branchFork(keyOf(b.Target)); key != "" {
			rc, err := c.rc.Fork(key)
			var body []byte
			if err == nil {
				// b.Msg.Body() is still the caller's offer: edits
				// are only scheduled.
				body, err = f.rewrite(c, rc, media.SideA, b.Msg.Body())
			}
			if err == nil {
				c.forkMade(key, rc)
				return editBody(b.Msg, body)
			}
			// No room for a fork: this branch shares the call's own
			// streams, as an unforked call would.
			if rc != nil {
				rc.Close()
			}
			c.forkFailed(keyOf(b.Target))
			f.log.Info("forked branch shares the call's media streams", "call_id", c.callID(), "err", err)
		}
	}
	return editBody(b.Msg, rm.body)
}

// reply rewrites the SDP of a response from the side opposite to the
// request's sender. For a new call's INVITE, a response goes to its
// branch's fork; the first 2xx keeps that fork and frees the others, a
// branch's failure frees its own.
func (f *Feature) reply(rp *proxy.Reply) error {
	rm, _ := rp.Note(f.note).(*reqMedia)
	if rm == nil || rm.call == nil {
		return nil
	}
	rc := rm.call.rc
	if rm.rc != nil {
		rc = rm.rc
	}
	if rm.created && rm.side == media.SideA && rp.Req.MethodKind() == sip.INVITE && rp.Target != nil {
		var ok bool
		if rc, ok = f.replyFork(rm.call, rp); !ok {
			if rp.Code < 300 && hasSDP(rp.Resp) {
				// A 2xx of a branch whose fork another 2xx already
				// freed (§16.7 step 5 forwards every 2xx): the caller
				// will end that dialog; its media has no streams.
				f.stats.NotRewritten.Add(1)
			}
			return nil
		}
	}
	if rp.Code >= 300 {
		return nil
	}
	if rm.side == media.SideA && rp.Req.MethodKind() == sip.INVITE && rp.Target != nil {
		rm.call.answering(rp.Target.Addr, rp.Code < 200)
	}
	if !hasSDP(rp.Resp) {
		return nil
	}
	from := media.SideB
	if rm.side == media.SideB {
		from = media.SideA
	}
	body, err := f.rewrite(rm.call, rc, from, rp.Resp.Body())
	if err != nil {
		f.stats.NotRewritten.Add(1)
		f.log.Info("SDP of a response not relayed", "call_id", string(rp.Resp.CallID()), "err", err)
		return nil
	}
	return editBody(rp.Resp, body)
}

// failure frees the ports of an INVITE that failed or was cancelled: no
// dialog, no media.
func (f *Feature) failure(fl *proxy.Failure) {
	if rm, _ := fl.Note(f.note).(*reqMedia); rm != nil && rm.created {
		f.End(rm.call.key)
	}
}

// sdpConn returns the first connection address of an SDP body (invalid
// when it cannot be read).
func sdpConn(body []byte) netip.Addr {
	s := sdpPool.Get().(*sdp.Session)
	defer sdpPool.Put(s)
	if s.Parse(body) != nil {
		return netip.Addr{}
	}
	if conn := s.Conn(); conn.Addr.IsValid() {
		return conn.Addr
	}
	for i := 0; i < s.NumMedia(); i++ {
		if a := s.Media(i).Conn.Addr; a.IsValid() {
			return a
		}
	}
	return netip.Addr{}
}

// rewrite reads an SDP body sent by side from, points each relayed stream
// of rc (the call's media, or one fork of it) on that side at the
// addresses the body names, and returns the body rewritten to the relay's
// ports on the other side (decision as data, sdp.Plan, then the pure
// AppendRewrite).
func (f *Feature) rewrite(c *call, rc *media.Call, from media.Side, body []byte) ([]byte, error) {
	s := sdpPool.Get().(*sdp.Session)
	defer sdpPool.Put(s)
	if err := s.Parse(body); err != nil {
		var se *sdp.Error
		if errors.As(err, &se) {
			return nil, &refusal{se.Status(), "Bad Session Description"}
		}
		return nil, &refusal{400, "Bad Session Description"}
	}
	to := media.SideB
	if from == media.SideB {
		to = media.SideA
	}
	plan := sdp.Plan{Media: make([]sdp.MediaPlan, s.NumMedia())}
	streams := make([]*media.Stream, len(plan.Media))
	for i := range plan.Media {
		md := s.Media(i)
		if md.Rejected() || !md.Transport.Relayable() {
			continue
		}
		st, err := rc.Stream(i, c.local[media.SideA], c.local[media.SideB])
		if err != nil {
			if errors.Is(err, media.ErrNoPorts) || errors.Is(err, media.ErrTooManyStreams) {
				return nil, &refusal{503, "Media Relay Busy"}
			}
			return nil, &refusal{488, "Not Acceptable Here"}
		}
		if ownStream(st, md) {
			// Our own rewrite coming back: the call spiralled through
			// sipedge again (a LAN-to-LAN call through an outside
			// provider). It already names the relay; leave it.
			continue
		}
		streams[i] = st
		if a := md.Conn.Addr; a.IsValid() && !md.Conn.IsHold() && md.Port > 0 {
			rtp := netip.AddrPortFrom(a, uint16(md.Port))
			rtcp := netip.AddrPortFrom(a, uint16(md.Port+1))
			switch {
			case md.Has(sdp.AttrRTCPMux):
				rtcp = rtp
			case md.RTCP.Present && md.RTCP.Port > 0:
				ra := a
				if md.RTCP.Conn.Addr.IsValid() {
					ra = md.RTCP.Conn.Addr
				}
				rtcp = netip.AddrPortFrom(ra, uint16(md.RTCP.Port))
			}
			if err := st.SetPeer(from, rtp, rtcp); errors.Is(err, media.ErrFamily) {
				// IPv6 media on an IPv4 path or the reverse: the relay
				// side was bound for the signalling's family.
				return nil, &refusal{488, "Incompatible Media Address Family"}
			}
		}
		lrtp, lrtcp := st.Local(to)
		plan.Media[i] = sdp.MediaPlan{Relay: true, Addr: lrtp.Addr(), RTPPort: int(lrtp.Port()), RTCPPort: int(lrtcp.Port()), DropICE: true}
	}
	out, err := s.AppendRewrite(nil, &plan)
	if err != nil {
		return nil, &refusal{500, "Server Internal Error"}
	}
	c.describe(s, from, streams)
	return out, nil
}

// ownStream reports whether a media description names one of the relay's
// own ports of st.
func ownStream(st *media.Stream, md sdp.Media) bool {
	a := md.Conn.Addr.Unmap()
	for _, side := range []media.Side{media.SideA, media.SideB} {
		if rtp, _ := st.Local(side); rtp.Addr() == a && int(rtp.Port()) == md.Port {
			return true
		}
	}
	return false
}

// editBody schedules the body replacement and the Content-Length that goes
// with it (RFC 3261 §20.14).
func editBody(m *sip.Message, body []byte) error {
	old := m.Body()
	start := m.BodyOffset()
	if len(old) > 0 {
		start = m.Offset(old)
	}
	if err := m.Replace(start, start+len(old), body); err != nil {
		return err
	}
	var n [20]byte
	cl := strconv.AppendInt(n[:0], int64(len(body)), 10)
	if i := m.Find(sip.KindContentLength); i >= 0 {
		return m.SetHeaderValue(i, cl)
	}
	return m.InsertHeader(m.NumHeaders(), "Content-Length", cl)
}

// replyFork returns the media a response to the call's INVITE belongs to:
// its branch's fork, or after the first 2xx the call's (kept) streams.
// ok is false for a response of a branch whose fork is gone. A 2xx
// settles the call on its fork (media.Call.Keep); a failure frees the
// branch's fork. Unforked calls take the call's own streams, as always.
func (f *Feature) replyFork(c *call, rp *proxy.Reply) (rc *media.Call, ok bool) {
	c.mu.Lock()
	fk := c.forks
	if fk == nil || fk.n == 0 {
		c.mu.Unlock()
		return c.rc, true
	}
	key := fk.byTarget[keyOf(rp.Target)]
	if fk.settled {
		c.mu.Unlock()
		return c.rc, key == fk.kept
	}
	if to, err := rp.Resp.To(); err == nil && len(to.Tag) > 0 && rp.Code < 300 {
		fk.byTag[string(to.Tag)] = key
	}
	rc = c.rc
	if key != "" {
		rc = fk.rcs[key]
	}
	var drop *media.Call
	switch {
	case rp.Code >= 200 && rp.Code < 300:
		fk.settled, fk.kept = true, key
		clear(fk.byTag)
	case rp.Code >= 300 && key != "":
		drop = rc
		delete(fk.rcs, key)
	}
	c.mu.Unlock()
	// The relay's lock is not taken under c.mu (feature locks are leaves).
	switch {
	case rp.Code >= 200 && rp.Code < 300:
		c.rc.Keep(key)
		rc = c.rc
	case drop != nil:
		drop.Close()
	}
	return rc, rc != nil
}

// branchFork names the fork a branch of the INVITE gets: "" (the call's
// own streams) for the first, a new fork for each further one.
func (c *call) branchFork(b branchKey) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	fk := c.forks
	if fk == nil {
		fk = &forks{byTarget: map[branchKey]string{}}
		c.forks = fk
	}
	if key, ok := fk.byTarget[b]; ok {
		return key // the same target twice: replies cannot tell them apart
	}
	key := ""
	if len(fk.byTarget) > 0 && !fk.settled {
		if fk.n == 0 {
			fk.byTag, fk.rcs = map[string]string{}, map[string]*media.Call{}
		}
		fk.n++
		key = strconv.Itoa(fk.n)
	}
	fk.byTarget[b] = key
	return key
}

// forkMade records the handle of fork key.
func (c *call) forkMade(key string, rc *media.Call) {
	c.mu.Lock()
	c.forks.rcs[key] = rc
	c.mu.Unlock()
}

// forkFailed lets branch b share the call's own streams.
func (c *call) forkFailed(b branchKey) {
	c.mu.Lock()
	c.forks.byTarget[b] = ""
	c.mu.Unlock()
}

// forkOfTag returns the fork of the early dialog with this tag; nil for
// the call's own streams (no fork, an unknown tag, or a settled call).
func (c *call) forkOfTag(tag []byte) *media.Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forks == nil || c.forks.settled || len(tag) == 0 {
		return nil
	}
	return c.forks.rcs[c.forks.byTag[string(tag)]]
}
