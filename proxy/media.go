package proxy

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"sync"

	"sipedge/media"
	"sipedge/nat"
	"sipedge/sdp"
	"sipedge/sip"
)

// Media relay in the proxy (RFC 3264 offer/answer as it crosses sipedge).
//
// When a call's media must go through sipedge (RelayMode), the first offer
// creates a media.Call keyed by Call-ID and the caller's From tag; every
// SDP body that crosses sipedge in either direction (INVITE, 183/200,
// re-INVITE, UPDATE, ACK with a late answer) then updates the sender's
// side of each stream (SetPeer: where that side said it receives) and is
// rewritten to name the relay's ports on the other side. Side A is the
// caller, side B the callee. The call is freed on BYE, when the INVITE
// fails (any final non-2xx, CANCEL included), and on relay inactivity.
//
// Forked calls share one media call: the streams latch to whichever callee
// sends, and the last answer's address wins until then.

// RelayMode says which calls have their media relayed.
type RelayMode uint8

const (
	// RelayAuto relays a call when either side is behind NAT, when the
	// caller's SDP names a private address it could not be reached at, or
	// when the two sides are reached over different local addresses (a
	// gateway's inside and outside).
	RelayAuto RelayMode = iota
	// RelayAlways relays every call with SDP.
	RelayAlways
	// RelayNever leaves SDP untouched.
	RelayNever
)

// ParseRelayMode reads "auto", "always" or "never".
func ParseRelayMode(s string) (RelayMode, bool) {
	switch s {
	case "auto", "":
		return RelayAuto, true
	case "always":
		return RelayAlways, true
	case "never":
		return RelayNever, true
	}
	return 0, false
}

// mediaCalls is the proxy's table of relayed calls.
type mediaCalls struct {
	mu    sync.Mutex
	calls map[string]*mediaCall
	users map[string]int // relayed calls per caller (user@host of From)
}

// mediaCall is one relayed call.
type mediaCall struct {
	key   string
	user  string        // the caller, for the per-user limit
	aTag  string        // the caller's From tag: who is side A
	local [2]netip.Addr // our address towards side A and side B
	rc    *media.Call
}

var sdpPool = sync.Pool{New: func() any { return new(sdp.Session) }}

func mediaKey(callID, aTag []byte) string {
	var buf [128]byte
	return string(appendKey(buf[:0], callID, aTag))
}

// find returns the call a message belongs to and which side sent it: the
// caller sends with its tag in From, the callee with it in To.
func (mc *mediaCalls) find(callID, fromTag, toTag []byte) (*mediaCall, media.Side) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if len(mc.calls) == 0 {
		return nil, 0
	}
	var buf [128]byte
	if c := mc.calls[string(appendKey(buf[:0], callID, fromTag))]; c != nil {
		return c, media.SideA
	}
	if len(toTag) > 0 {
		if c := mc.calls[string(appendKey(buf[:0], callID, toTag))]; c != nil {
			return c, media.SideB
		}
	}
	return nil, 0
}

func (mc *mediaCalls) remove(key string) *mediaCall {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	c := mc.calls[key]
	if c != nil {
		delete(mc.calls, key)
		if mc.users[c.user]--; mc.users[c.user] <= 0 {
			delete(mc.users, c.user)
		}
	}
	return c
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

// errMediaRefused carries the status to answer an offer sipedge cannot
// relay (400/488 for bad SDP, 503 when the relay has no room).
type errMediaRefused struct {
	code   int
	reason string
}

func (e *errMediaRefused) Error() string { return strconv.Itoa(e.code) + " " + e.reason }

// mediaRequest handles the SDP of a request about to be forwarded by a
// response context (d names its targets). It returns the request bytes to
// forward instead (nil: unchanged) and the call and the sender's side for
// the responses; a refusal comes as *errMediaRefused.
func (c *Core) mediaRequest(r *request, d *Decision) (out []byte, call *mediaCall, side media.Side, err error) {
	if c.cfg.Media == nil || c.cfg.MediaMode == RelayNever {
		return nil, nil, 0, nil
	}
	m := &r.msg
	switch m.MethodKind() {
	case sip.INVITE, sip.UPDATE, sip.BYE, sip.PRACK:
		// These start, change or end a call's media even without a body
		// (an offer may come in the 2xx).
	default:
		if !hasSDP(m) {
			return nil, nil, 0, nil
		}
	}
	from, err1 := m.From()
	to, err2 := m.To()
	if err1 != nil || err2 != nil {
		return nil, nil, 0, nil
	}
	call, side = c.media.find(m.CallID(), from.Tag, to.Tag)
	if m.MethodKind() == sip.BYE {
		if call != nil {
			c.endMedia(call.key)
		}
		return nil, nil, 0, nil
	}
	created := false
	if call == nil {
		if m.MethodKind() != sip.INVITE || len(to.Tag) > 0 || !hasSDP(m) || !c.wantRelay(r, d) {
			return nil, nil, 0, nil
		}
		user := string(from.URI.User) + "@" + string(from.URI.Host)
		c.media.mu.Lock()
		over := c.cfg.MaxCallsPerUser > 0 && c.media.users[user] >= c.cfg.MaxCallsPerUser
		c.media.mu.Unlock()
		if over {
			return nil, nil, 0, &errMediaRefused{403, "Call Limit Reached"}
		}
		key := mediaKey(m.CallID(), from.Tag)
		rc, e := c.cfg.Media.Call(key)
		if e != nil {
			return nil, nil, 0, &errMediaRefused{503, "Media Relay Busy"}
		}
		call = &mediaCall{key: key, user: user, aTag: string(from.Tag), rc: rc}
		call.local[media.SideA] = c.local.sourceFor(r.pkt.Src.Addr())
		call.local[media.SideB] = c.local.sourceFor(d.Groups[0][0].Addr.Addr())
		c.media.mu.Lock()
		c.media.calls[call.key] = call
		c.media.users[user]++
		c.media.mu.Unlock()
		created, side = true, media.SideA
	}
	if !hasSDP(m) {
		return nil, call, side, nil
	}
	body, e := c.rewriteSDP(call, side, m.Body())
	if e != nil {
		if created {
			c.endMedia(call.key)
		}
		return nil, nil, 0, e
	}
	return replaceBody(m, body), call, side, nil
}

// wantRelay applies the RelayMode to a new call.
func (c *Core) wantRelay(r *request, d *Decision) bool {
	if c.cfg.MediaMode == RelayAlways {
		return true
	}
	if behindNAT(&r.msg, &r.via, r.pkt.Src) {
		return true
	}
	if s := sdpConn(r.msg.Body()); s.IsValid() && nat.Private(s) && !nat.Private(r.pkt.Src.Addr()) {
		return true
	}
	in := c.local.sourceFor(r.pkt.Src.Addr())
	for _, g := range d.Groups {
		for _, t := range g {
			if t.NAT || c.local.sourceFor(t.Addr.Addr()) != in {
				return true
			}
		}
	}
	return false
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

// rewriteSDP reads an SDP body sent by side from, points each relayed
// stream of that side at the addresses the body names, and returns the
// body rewritten to the relay's ports on the other side.
func (c *Core) rewriteSDP(call *mediaCall, from media.Side, body []byte) ([]byte, error) {
	s := sdpPool.Get().(*sdp.Session)
	defer sdpPool.Put(s)
	if err := s.Parse(body); err != nil {
		var se *sdp.Error
		if errors.As(err, &se) {
			return nil, &errMediaRefused{se.Status(), "Bad Session Description"}
		}
		return nil, &errMediaRefused{400, "Bad Session Description"}
	}
	to := media.SideB
	if from == media.SideB {
		to = media.SideA
	}
	plan := sdp.Plan{Media: make([]sdp.MediaPlan, s.NumMedia())}
	for i := range plan.Media {
		md := s.Media(i)
		if md.Rejected() || !md.Transport.Relayable() {
			continue
		}
		st, err := call.rc.Stream(i, call.local[media.SideA], call.local[media.SideB])
		if err != nil {
			if errors.Is(err, media.ErrNoPorts) || errors.Is(err, media.ErrTooManyStreams) {
				return nil, &errMediaRefused{503, "Media Relay Busy"}
			}
			return nil, &errMediaRefused{488, "Not Acceptable Here"}
		}
		if ownStream(st, md) {
			// Our own rewrite coming back: the call spiralled through
			// sipedge again (a LAN-to-LAN call through an outside
			// provider). It already names the relay; leave it.
			continue
		}
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
				return nil, &errMediaRefused{488, "Incompatible Media Address Family"}
			}
		}
		lrtp, lrtcp := st.Local(to)
		plan.Media[i] = sdp.MediaPlan{Relay: true, Addr: lrtp.Addr(), RTPPort: int(lrtp.Port()), RTCPPort: int(lrtcp.Port()), DropICE: true}
	}
	out, err := s.AppendRewrite(nil, &plan)
	if err != nil {
		return nil, &errMediaRefused{500, "Server Internal Error"}
	}
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

// replaceBody returns m with a new body and Content-Length.
func replaceBody(m *sip.Message, body []byte) []byte {
	m.ResetEdits()
	editBody(m, body)
	return m.AppendTo(nil)
}

// editBody schedules the body replacement and the Content-Length that goes
// with it (RFC 3261 §20.14).
func editBody(m *sip.Message, body []byte) {
	old := m.Body()
	start := m.BodyOffset()
	if len(old) > 0 {
		start = m.Offset(old)
	}
	_ = m.Replace(start, start+len(old), body)
	var n [20]byte
	cl := strconv.AppendInt(n[:0], int64(len(body)), 10)
	if i := m.Find(sip.KindContentLength); i >= 0 {
		_ = m.SetHeaderValue(i, cl)
	} else {
		_ = m.InsertHeader(m.NumHeaders(), "Content-Length", cl)
	}
}

// lateACK is an ACK whose SDP (the answer to an offer in a 2xx, RFC 3264
// §4 late offer) was rewritten.
type lateACK struct {
	msg sip.Message
	via sip.Via
}

// mediaACK rewrites the SDP of an ACK for a relayed call; nil: nothing to do.
func (c *Core) mediaACK(r *request) *lateACK {
	if c.cfg.Media == nil || !hasSDP(&r.msg) {
		return nil
	}
	from, err1 := r.msg.From()
	to, err2 := r.msg.To()
	if err1 != nil || err2 != nil {
		return nil
	}
	call, side := c.media.find(r.msg.CallID(), from.Tag, to.Tag)
	if call == nil {
		return nil
	}
	body, err := c.rewriteSDP(call, side, r.msg.Body())
	if err != nil {
		c.log.Info("SDP of an ACK not relayed", "call_id", string(r.msg.CallID()), "err", err)
		return nil
	}
	l := &lateACK{}
	if l.msg.Parse(replaceBody(&r.msg, body), c.cfg.Limits) != nil {
		return nil
	}
	l.via, _ = l.msg.TopVia()
	return l
}

// mediaResponse rewrites the SDP of a response from the side opposite to
// the request's sender. It returns the new body, or nil to leave it.
func (c *Core) mediaResponse(call *mediaCall, reqSide media.Side, m *sip.Message) []byte {
	if call == nil || !hasSDP(m) {
		return nil
	}
	from := media.SideB
	if reqSide == media.SideB {
		from = media.SideA
	}
	body, err := c.rewriteSDP(call, from, m.Body())
	if err != nil {
		c.log.Info("SDP of a response not relayed", "call_id", string(m.CallID()), "err", err)
		return nil
	}
	return body
}

// EndMedia ends the call whose relay call ID this is, because its media
// stopped in both directions (the relay's inactivity report): a BYE to
// each side when sipedge knows the dialog, then the ports are freed.
func (c *Core) EndMedia(id string) {
	if !c.endDialogByMedia(id) {
		c.endMedia(id)
	}
}

// endMedia frees a relayed call's ports.
func (c *Core) endMedia(key string) {
	if call := c.media.remove(key); call != nil {
		call.rc.Close()
	}
}

// MediaCalls returns the number of relayed calls (tests, metrics).
func (c *Core) MediaCalls() int {
	c.media.mu.Lock()
	defer c.media.mu.Unlock()
	return len(c.media.calls)
}
