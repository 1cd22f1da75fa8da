// Package dialogs follows the dialogs whose end sipedge may have to bring
// about itself, and runs their session timers (RFC 4028).
//
// A dialog is made from the 2xx to a dialog-creating INVITE when the call
// has a session timer or a stage asked for it (proxy.Request.WantDialog:
// relayed media). It learns, for each side, where requests to that side go
// (its Contact, the Record-Route entries between sipedge and it, the
// address it was reached at) and the highest CSeq that side has used. With
// a session timer, every 2xx to a re-INVITE or UPDATE starts the interval
// again; when a refresh does not come (RFC 4028 §10), or when the media
// relay reports that the media stopped in both directions, sipedge sends a
// BYE to each side as the other side would have and tells the other
// features (proxy.Core.DialogEnded). A BYE from either side ends it too.
//
// Hooks: stages "session-min" (422) and "dialog" (in-dialog requests),
// branch hook "session-expires", reply hook "dialog". Session timers run on
// the transaction layer's timing wheel.
package dialogs

import (
	"bytes"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/nat"
	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/txn"
)

// Config is what may change while sipedge runs.
type Config struct {
	// MinSE is the smallest session interval sipedge accepts (RFC 4028
	// Min-SE); an INVITE asking for less gets 422. 0: no check.
	MinSE time.Duration
	// Interval, when not 0, is put into an INVITE that asks for no session
	// timer (RFC 4028 §8.1), so dead calls end even between phones that
	// would not ask. 0: not inserted.
	Interval time.Duration
}

// Feature is the dialog table of one core.
type Feature struct {
	core *proxy.Core
	log  *slog.Logger
	cfg  atomic.Pointer[Config]

	mu     sync.Mutex
	m      map[string]*dialog // Call-ID, caller tag, callee tag
	byCall map[string]string  // Call-ID, caller tag → key
	closed bool
	shared Shared // a cluster's, or nil (SetShared)
	rec    []byte // record being saved (mu held)

	stats counters
}

// counters are the feature's live counters.
type counters struct {
	Dialogs   atomic.Uint64
	Ended     atomic.Uint64
	TooSmall  atomic.Uint64
	Refreshes atomic.Uint64
	Adopted   atomic.Uint64
}

// Stats is a snapshot of the feature's counters (the metrics convention
// of package metrics).
type Stats struct {
	Dialogs   uint64 // dialogs followed
	Ended     uint64 // calls sipedge ended (session timer, dead media)
	TooSmall  uint64 // 422 answered
	Refreshes uint64 // session refreshes seen
	Adopted   uint64 // dialogs of instances that died, followed here (cluster)
	Active    int    // dialogs followed now
}

type dialog struct {
	key, callKey string
	callID       string
	from, to     string // caller's From and callee's To, with their tags
	legs         [2]leg
	timer        *txn.Timer
	interval     time.Duration
	expires      time.Time // when the session ends without a refresh
	owner        string    // adopted from this instance, which died (cluster)
}

// leg is one side: index 0 the caller, 1 the callee.
type leg struct {
	target proxy.Target // next hop towards the side
	ruri   string       // its remote target (Contact URI)
	routes []string     // Route values between sipedge and the side, in order
	cseq   uint32       // highest CSeq of a request the side sent
}

// New returns the feature for core.
func New(core *proxy.Core, cfg Config) *Feature {
	f := &Feature{core: core, log: core.Logger(), m: map[string]*dialog{}, byCall: map[string]string{}}
	f.cfg.Store(&cfg)
	return f
}

// SetConfig replaces the configuration (reload): new calls use it, the
// timers of calls in progress run on.
func (f *Feature) SetConfig(cfg Config) { f.cfg.Store(&cfg) }

// Stats returns a snapshot of the counters.
func (f *Feature) Stats() Stats {
	return Stats{Dialogs: f.stats.Dialogs.Load(), Ended: f.stats.Ended.Load(), TooSmall: f.stats.TooSmall.Load(), Refreshes: f.stats.Refreshes.Load(), Adopted: f.stats.Adopted.Load(), Active: f.Active()}
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{
		Stages: []proxy.Stage{
			{Name: "session-min", Run: f.sessionMin},
			{Name: "dialog", Run: f.request},
		},
		Branch:    []proxy.BranchHook{{Name: "session-expires", Run: f.sessionExpires}},
		Reply:     []proxy.ReplyHook{{Name: "dialog", Run: f.reply}},
		EndDialog: f.EndCall,
	}
}

// Close stops the session timers (implements proxy.Closer).
func (f *Feature) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, d := range f.m {
		if d.timer != nil {
			d.timer.Stop()
		}
	}
}

// Active returns the number of dialogs followed (calls in progress that
// sipedge knows of; a graceful shutdown waits for them).
func (f *Feature) Active() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

func dialogKey(callID, fromTag, toTag []byte) string {
	var buf [128]byte
	return string(proxy.AppendKey(buf[:0], callID, fromTag, toTag))
}

// lookup finds the dialog of a request in either direction: side 0 when
// the caller sent it (its tag in From), 1 when the callee did. f.mu is
// held.
func (f *Feature) lookup(callID, fromTag, toTag []byte) (*dialog, int) {
	if len(f.m) == 0 {
		return nil, 0
	}
	var buf [128]byte
	if d := f.m[string(proxy.AppendKey(buf[:0], callID, fromTag, toTag))]; d != nil {
		return d, 0
	}
	if d := f.m[string(proxy.AppendKey(buf[:0], callID, toTag, fromTag))]; d != nil {
		return d, 1
	}
	return nil, 0
}

// SessionExpires reads a Session-Expires header: the interval in seconds
// (RFC 4028 §4), 0 when absent or unreadable.
func SessionExpires(m *sip.Message) int {
	v := m.Get(sip.KindSessionExpires)
	if v == nil {
		return 0
	}
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// sessionMin answers 422 to an initial INVITE whose session interval is
// below sipedge's minimum (RFC 4028 §8.1): the UAC retries with the Min-SE
// given.
func (f *Feature) sessionMin(r *proxy.Request) bool {
	min := f.cfg.Load().MinSE
	if min <= 0 || r.Msg().MethodKind() != sip.INVITE || r.InDialog() {
		return false
	}
	se := SessionExpires(r.Msg())
	if se == 0 || time.Duration(se)*time.Second >= min {
		return false
	}
	f.stats.TooSmall.Add(1)
	r.Respond(422, "Session Interval Too Small", []byte("Min-SE: "+strconv.Itoa(int(min/time.Second))+"\r\n"))
	return true
}

// sessionExpires asks for a session timer in an initial INVITE that has
// none (RFC 4028 §8.1: a proxy may; the UAS that supports it answers with
// the refresher in its 2xx).
func (f *Feature) sessionExpires(b *proxy.Branch) error {
	si := f.cfg.Load().Interval
	m := b.Msg
	if si <= 0 || !b.RecordRoute || m.MethodKind() != sip.INVITE || m.Find(sip.KindSessionExpires) >= 0 {
		return nil
	}
	var n [20]byte
	return m.InsertHeader(m.Find(sip.KindCallID), "Session-Expires", strconv.AppendInt(n[:0], int64(si/time.Second), 10))
}

// request follows an in-dialog request on its way through: the sender's
// CSeq, and BYE ending the dialog.
func (f *Feature) request(r *proxy.Request) bool {
	m := r.Msg()
	callID, fromTag, toTag, ok := proxy.DialogIDs(m)
	if !ok || len(toTag) == 0 {
		return false
	}
	f.mu.Lock()
	d, side := f.lookup(callID, fromTag, toTag)
	if d == nil {
		f.mu.Unlock()
		return false
	}
	ended := m.MethodKind() == sip.BYE
	if n, _ := m.CSeq(); n > d.legs[side].cseq {
		d.legs[side].cseq = n
		if !ended {
			// An instance that adopts the dialog must send a BYE
			// with a CSeq above this one.
			f.saveLocked(d)
		}
	}
	if ended {
		f.removeLocked(d)
	}
	f.mu.Unlock()
	if ended {
		f.core.DialogEnded(d.callID, callerTag(d.callKey))
	}
	return false
}

func callerTag(callKey string) string {
	for i := 0; i < len(callKey); i++ {
		if callKey[i] == 0 {
			return callKey[i+1:]
		}
	}
	return ""
}

// removeLocked forgets d (f.mu held).
func (f *Feature) removeLocked(d *dialog) {
	if d.timer != nil {
		d.timer.Stop()
	}
	if f.shared != nil && d.interval > 0 {
		f.shared.Remove(d.key)
	}
	delete(f.m, d.key)
	if f.byCall[d.callKey] == d.key {
		delete(f.byCall, d.callKey)
	}
}

// reply makes the dialog of the first 2xx to an initial INVITE, and
// restarts the session timer on a 2xx to a re-INVITE or UPDATE (RFC 4028
// §10: each such 2xx is a refresh).
func (f *Feature) reply(rp *proxy.Reply) error {
	if rp.Code < 200 || rp.Code >= 300 {
		return nil
	}
	switch k := rp.Req.MethodKind(); {
	case k == sip.INVITE && rp.Initial && rp.First2xx:
		f.answered(rp)
	case !rp.Initial && (k == sip.INVITE || k == sip.UPDATE):
		f.refreshed(rp.Req, rp.Resp)
	}
	return nil
}

// answered makes the dialog of a 2xx to a dialog-creating INVITE when
// sipedge must be able to end it (relayed media or a session timer).
func (f *Feature) answered(rp *proxy.Reply) {
	m, req := rp.Resp, rp.Req
	se := SessionExpires(m)
	if !rp.WantDialog && se == 0 {
		return
	}
	callID, fromTag, _, ok := proxy.DialogIDs(req)
	to, err := m.To()
	if !ok || err != nil || len(to.Tag) == 0 {
		return
	}
	d := &dialog{
		key: dialogKey(callID, fromTag, to.Tag), callID: string(callID),
		callKey: string(proxy.AppendKey(nil, callID, fromTag)),
		from:    string(req.Get(sip.KindFrom)), to: string(m.Get(sip.KindTo)),
	}
	// Record-Route of the 2xx: entries above ours lead to the callee
	// (nearest us last), entries below ours to the caller (nearest us
	// first) (RFC 3261 §12.1.1, §12.1.2).
	var above, below []string
	ours := false
	self := f.core.Self()
	for it := m.Values(sip.KindRecordRoute); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		a, err := sip.ParseAddress(v)
		if err == nil && a.URI.IsSIP() && self.Is(a.URI.Host, a.URI.Port, a.URI.Kind == sip.SchemeSIPS) {
			ours = true
			continue
		}
		if ours {
			below = append(below, string(v))
		} else {
			above = append([]string{string(v)}, above...)
		}
	}
	n, _ := req.CSeq()
	caller := leg{routes: below, cseq: n, target: proxy.Target{Proto: rp.InProto, Addr: rp.Src}}
	if a, err := sip.ParseAddress(req.Get(sip.KindContact)); err == nil {
		caller.ruri = string(a.RawURI)
		if t, ok := proxy.URITarget(&a.URI); ok && !nat.BehindRequest(req, rp.ReqVia, rp.Src) && len(below) == 0 {
			caller.target = t
		}
	}
	callee := leg{routes: above, target: *rp.Target}
	callee.target.URI, callee.target.Path = nil, nil
	if a, err := sip.ParseAddress(m.Get(sip.KindContact)); err == nil {
		callee.ruri = string(a.RawURI)
	}
	for i, l := range []*leg{&caller, &callee} {
		if len(l.routes) > 0 {
			if a, err := sip.ParseAddress([]byte(l.routes[0])); err == nil {
				if t, ok := proxy.URITarget(&a.URI); ok {
					l.target = t
				}
			}
		}
		d.legs[i] = *l
	}
	f.stats.Dialogs.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.m[d.key] = d
	f.byCall[d.callKey] = d.key
	if se > 0 {
		f.armLocked(d, time.Duration(se)*time.Second)
		f.saveLocked(d)
	}
}

// armLocked (re)starts the session interval (f.mu held).
func (f *Feature) armLocked(d *dialog, interval time.Duration) { f.armForLocked(d, interval, interval) }

// armForLocked sets the session interval and ends the session left from
// now (what an adopted dialog has left of its interval) (f.mu held).
func (f *Feature) armForLocked(d *dialog, interval, left time.Duration) {
	d.interval = interval
	if d.timer == nil {
		key := d.key
		// The wheel's goroutine must not send: the BYEs go from a
		// goroutine of their own.
		d.timer = f.core.NewTimer(func() { go f.end(key, 408, "Session timer expired") })
	}
	d.timer.Reset(left)
	d.expires = time.Now().Add(left)
}

func (f *Feature) refreshed(req, resp *sip.Message) {
	callID, fromTag, toTag, ok := proxy.DialogIDs(req)
	if !ok || len(toTag) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, _ := f.lookup(callID, fromTag, toTag)
	if d == nil || d.interval == 0 || f.closed {
		return
	}
	interval := d.interval
	if se := SessionExpires(resp); se > 0 {
		interval = time.Duration(se) * time.Second
	}
	f.stats.Refreshes.Add(1)
	f.armLocked(d, interval)
	d.owner = "" // refreshed here: this instance's now
	f.saveLocked(d)
}

// EndCall ends the dialog of the call whose caller tag is fromTag (the
// media relay's inactivity report): a BYE to each side. It reports whether
// it knew the dialog.
func (f *Feature) EndCall(callID, fromTag string, cause int, text string) bool {
	f.mu.Lock()
	key, ok := f.byCall[callID+"\x00"+fromTag]
	f.mu.Unlock()
	if !ok {
		return false
	}
	f.end(key, cause, text)
	return true
}

// end ends a dialog sipedge must tear down: a BYE to each side as the
// other side would send it (with a Reason, RFC 3326), then the other
// features are told.
func (f *Feature) end(key string, cause int, text string) {
	f.mu.Lock()
	d := f.m[key]
	if d != nil {
		f.removeLocked(d)
	}
	shared := f.shared
	f.mu.Unlock()
	if d == nil {
		return
	}
	if d.owner != "" && shared != nil && shared.Alive(d.owner) {
		// The instance it was adopted from is back (it was cut off,
		// not dead): the call is its to end.
		f.log.Info("not ending an adopted call: its instance is alive", "call_id", d.callID, "instance", d.owner)
		return
	}
	f.stats.Ended.Add(1)
	f.log.Info("ending the call", "call_id", d.callID, "reason", text)
	// To the caller, as from the callee; to the callee, as from the caller.
	f.bye(&d.legs[0], d.callID, d.to, d.from, d.legs[1].cseq+1, cause, text)
	f.bye(&d.legs[1], d.callID, d.from, d.to, d.legs[0].cseq+1, cause, text)
	f.core.DialogEnded(d.callID, callerTag(d.callKey))
}

func (f *Feature) bye(l *leg, callID, from, to string, cseq uint32, cause int, text string) {
	if l.ruri == "" || !l.target.Addr.IsValid() {
		return
	}
	reason := "Reason: SIP ;cause=" + strconv.Itoa(cause) + ";text=\"" + text + "\"\r\n"
	o := &proxy.Originate{Method: "BYE", URI: l.ruri, Target: l.target, Routes: l.routes,
		From: from, To: to, CallID: callID, CSeq: cseq, Extra: []byte(reason)}
	if err := f.core.Originate(o, txn.Discard{}); err != nil {
		f.log.Info("BYE not sent", "call_id", callID, "dst", l.target.Addr, "err", err)
	}
}
