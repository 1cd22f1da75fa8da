package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"sipedge/sip"
	"sipedge/txn"
)

// Dialogs and session timers (RFC 4028).
//
// sipedge tracks the dialogs whose end it may have to bring about itself:
// calls whose media it relays and calls with a session timer. A dialog is
// made from the 2xx to its INVITE; it learns, for each side, where
// requests to that side go (its Contact, the Record-Route entries between
// sipedge and it, the address it was reached at) and the highest CSeq that
// side has used. With a session timer, every 2xx to a re-INVITE or UPDATE
// starts the interval again; when a refresh does not come (RFC 4028 §10),
// or when the relay reports that the media stopped in both directions,
// sipedge sends a BYE to each side as the other side would have, frees the
// media, and forgets the dialog. A BYE from either side ends it too.

type dialog struct {
	key      string
	callID   string
	from, to string // caller's From and callee's To, with their tags
	legs     [2]dialogLeg
	mediaKey string
	timer    *time.Timer
	interval time.Duration
}

// dialogLeg is one side: index 0 the caller, 1 the callee.
type dialogLeg struct {
	target Target   // next hop towards the side
	ruri   string   // its remote target (Contact URI)
	routes []string // Route values between sipedge and the side, in order
	cseq   uint32   // highest CSeq of a request the side sent
}

type dialogTable struct {
	mu sync.Mutex
	m  map[string]*dialog
}

func dialogKey(callID, fromTag, toTag []byte) string {
	var buf [128]byte
	return string(appendKey(buf[:0], callID, fromTag, toTag))
}

// appendKey writes parts separated by NUL: the keys of the dialog and
// media tables. A lookup with m[string(key)] does not allocate, which
// matters because every in-dialog request is looked up.
func appendKey(dst []byte, parts ...[]byte) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, 0)
		}
		dst = append(dst, p...)
	}
	return dst
}

// lookup finds the dialog of a request in either direction: side 0 when
// the caller sent it (its tag in From), 1 when the callee did. dialogs.mu
// is held.
func (t *dialogTable) lookup(callID, fromTag, toTag []byte) (*dialog, int) {
	if len(t.m) == 0 {
		return nil, 0
	}
	var buf [128]byte
	if d := t.m[string(appendKey(buf[:0], callID, fromTag, toTag))]; d != nil {
		return d, 0
	}
	if d := t.m[string(appendKey(buf[:0], callID, toTag, fromTag))]; d != nil {
		return d, 1
	}
	return nil, 0
}

// sessionExpires reads a Session-Expires header: the interval in seconds
// (RFC 4028 §4), 0 when absent or unreadable.
func sessionExpires(m *sip.Message) int {
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

// sessionTooSmall answers 422 to an INVITE whose session interval is below
// sipedge's minimum (RFC 4028 §8.1): the UAC retries with the Min-SE given.
func sessionTooSmall(r *request) bool {
	min := r.core.cfg.MinSE
	if min <= 0 || r.msg.MethodKind() != sip.INVITE {
		return false
	}
	se := sessionExpires(&r.msg)
	if se == 0 || time.Duration(se)*time.Second >= min {
		return false
	}
	r.respond(422, "Session Interval Too Small", []byte("Min-SE: "+strconv.Itoa(int(min/time.Second))+"\r\n"))
	return true
}

// dialogAnswered makes the dialog of a 2xx to a dialog-creating INVITE
// when sipedge must be able to end it (relayed media or a session timer).
func (c *Core) dialogAnswered(ctx *respCtx, b *branch, m *sip.Message) {
	se := sessionExpires(m)
	if ctx.mediaCall == nil && se == 0 {
		return
	}
	req := &ctx.msg
	from, err1 := req.From()
	to, err2 := m.To()
	if err1 != nil || err2 != nil || len(to.Tag) == 0 {
		return
	}
	d := &dialog{
		key: dialogKey(req.CallID(), from.Tag, to.Tag), callID: string(req.CallID()),
		from: string(req.Get(sip.KindFrom)), to: string(m.Get(sip.KindTo)),
	}
	if ctx.mediaCall != nil {
		d.mediaKey = ctx.mediaCall.key
	}
	// Record-Route of the 2xx: entries above ours lead to the callee
	// (nearest us last), entries below ours to the caller (nearest us
	// first) (RFC 3261 §12.1.1, §12.1.2).
	var above, below []string
	ours := false
	self := c.self.Load()
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
	caller := dialogLeg{routes: below, cseq: n, target: Target{Proto: ctx.inProto, Addr: ctx.src}}
	if a, err := sip.ParseAddress(req.Get(sip.KindContact)); err == nil {
		caller.ruri = string(a.RawURI)
		if t, ok := uriTarget(&a.URI); ok && !behindNAT(req, &ctx.via, ctx.src) && len(below) == 0 {
			caller.target = t
		}
	}
	callee := dialogLeg{routes: above, target: b.target, cseq: 0}
	callee.target.URI, callee.target.Path = nil, nil
	if a, err := sip.ParseAddress(m.Get(sip.KindContact)); err == nil {
		callee.ruri = string(a.RawURI)
	}
	for i, leg := range []*dialogLeg{&caller, &callee} {
		if len(leg.routes) > 0 {
			if a, err := sip.ParseAddress([]byte(leg.routes[0])); err == nil {
				if t, ok := uriTarget(&a.URI); ok {
					leg.target = t
				}
			}
		}
		d.legs[i] = *leg
	}
	c.dialogs.mu.Lock()
	c.dialogs.m[d.key] = d
	if se > 0 {
		c.armSessionTimer(d, time.Duration(se)*time.Second)
	}
	c.dialogs.mu.Unlock()
}

// armSessionTimer (re)starts the session interval (dialogs.mu held).
func (c *Core) armSessionTimer(d *dialog, interval time.Duration) {
	d.interval = interval
	if d.timer != nil {
		d.timer.Stop()
	}
	key := d.key
	d.timer = time.AfterFunc(interval, func() { c.endDialog(key, 408, "Session timer expired") })
}

// dialogRequest follows an in-dialog request on its way through: the
// sender's CSeq, and BYE ending the dialog.
func (c *Core) dialogRequest(m *sip.Message) {
	from, err1 := m.From()
	to, err2 := m.To()
	if err1 != nil || err2 != nil || len(to.Tag) == 0 {
		return
	}
	c.dialogs.mu.Lock()
	defer c.dialogs.mu.Unlock()
	d, side := c.dialogs.lookup(m.CallID(), from.Tag, to.Tag)
	if d == nil {
		return
	}
	if n, _ := m.CSeq(); n > d.legs[side].cseq {
		d.legs[side].cseq = n
	}
	if m.MethodKind() == sip.BYE {
		if d.timer != nil {
			d.timer.Stop()
		}
		delete(c.dialogs.m, d.key)
	}
}

// dialogRefreshed restarts the session timer on a 2xx to a re-INVITE or
// UPDATE (RFC 4028 §10: each such 2xx is a refresh).
func (c *Core) dialogRefreshed(req, resp *sip.Message) {
	if k := req.MethodKind(); k != sip.INVITE && k != sip.UPDATE {
		return
	}
	from, err1 := req.From()
	to, err2 := req.To()
	if err1 != nil || err2 != nil || len(to.Tag) == 0 {
		return
	}
	c.dialogs.mu.Lock()
	defer c.dialogs.mu.Unlock()
	d, _ := c.dialogs.lookup(req.CallID(), from.Tag, to.Tag)
	if d == nil || d.interval == 0 {
		return
	}
	interval := d.interval
	if se := sessionExpires(resp); se > 0 {
		interval = time.Duration(se) * time.Second
	}
	c.armSessionTimer(d, interval)
}

// endDialog ends a dialog sipedge must tear down: a BYE to each side as
// the other side would send it (with a Reason, RFC 3326), then the media.
func (c *Core) endDialog(key string, cause int, text string) {
	c.dialogs.mu.Lock()
	d := c.dialogs.m[key]
	delete(c.dialogs.m, key)
	c.dialogs.mu.Unlock()
	if d == nil {
		return
	}
	c.stats.DialogsEnded.Add(1)
	c.log.Info("ending the call", "call_id", d.callID, "reason", text)
	// To the caller, as from the callee; to the callee, as from the caller.
	c.sendBYE(&d.legs[0], d.callID, d.to, d.from, d.legs[1].cseq+1, cause, text)
	c.sendBYE(&d.legs[1], d.callID, d.from, d.to, d.legs[0].cseq+1, cause, text)
	if d.mediaKey != "" {
		c.endMedia(d.mediaKey)
	}
}

// endDialogByMedia ends the dialog of a relayed call whose media stopped.
func (c *Core) endDialogByMedia(mediaKey string) bool {
	c.dialogs.mu.Lock()
	var key string
	for k, d := range c.dialogs.m {
		if d.mediaKey == mediaKey {
			key = k
			break
		}
	}
	c.dialogs.mu.Unlock()
	if key == "" {
		return false
	}
	c.endDialog(key, 408, "Media stopped")
	return true
}

func (c *Core) sendBYE(leg *dialogLeg, callID, from, to string, cseq uint32, cause int, text string) {
	if leg.ruri == "" || !leg.target.Addr.IsValid() {
		return
	}
	local, ok := c.local.forDest(leg.target.Proto, leg.target.Addr.Addr())
	if !ok {
		return
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	branch := sip.MagicCookie + "bye" + hex.EncodeToString(rnd[:])
	b := make([]byte, 0, 600)
	b = append(b, "BYE "...)
	b = append(b, leg.ruri...)
	b = append(b, " SIP/2.0\r\nVia: SIP/2.0/"...)
	b = append(b, leg.target.Proto.String()...)
	b = append(b, ' ')
	b = appendHostPort(b, local)
	b = append(b, ";branch="...)
	b = append(b, branch...)
	b = append(b, ";rport\r\nMax-Forwards: 70\r\n"...)
	for _, r := range leg.routes {
		b = append(b, "Route: "...)
		b = append(b, r...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "From: "...)
	b = append(b, from...)
	b = append(b, "\r\nTo: "...)
	b = append(b, to...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, callID...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(cseq), 10)
	b = append(b, " BYE\r\nReason: SIP ;cause="...)
	b = strconv.AppendInt(b, int64(cause), 10)
	b = append(b, ";text=\""...)
	b = append(b, text...)
	b = append(b, "\"\r\nContent-Length: 0\r\n\r\n"...)
	if _, err := c.txn.NewClient(sip.BYE, []byte("BYE"), []byte(branch), b, leg.target.Proto, leg.target.Addr, byeSink{}, nil); err != nil {
		c.stats.SendErrors.Add(1)
	}
}

// byeSink absorbs what comes back for a BYE sipedge sent.
type byeSink struct{}

func (byeSink) OnResponse(*txn.Client, *sip.Message) {}
func (byeSink) OnTimeout(*txn.Client, bool)          {}
func (byeSink) OnTransportError(*txn.Client, error)  {}
