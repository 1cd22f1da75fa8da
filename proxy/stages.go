package proxy

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"sipedge/registrar"
	"sipedge/sip"
	"sipedge/transport"
)

// stage is one step a request walks through. run returns true when the
// stage has dealt with the request (answered, forwarded or absorbed it).
type stage struct {
	name string
	run  func(r *request) bool
}

// stages is the order every request follows, the one list to read to know
// what sipedge does with a request. Later capabilities (authentication,
// NAT handling, media) each add one named stage here.
var stages = []stage{
	{"ack", ackStage},                 // ACK of a non-2xx: absorbed by its transaction
	{"access", accessStage},           // sources allowed to use sipedge
	{"scheme", schemeStage},           // RFC 3261 §16.3 step 1: 416
	{"max-forwards", maxFwdStage},     // §16.3 step 3: 483
	{"loop", loopStage},               // §16.3 step 4: 482
	{"proxy-require", proxyReqStage},  // §16.3 step 6: 420
	{"route", routeStage},             // §16.4: our own Route entries
	{"stateless-route", slRouteStage}, // §16.11: routes configured stateless
	{"stateless", statelessStage},     // ACK of a 2xx: forwarded without a transaction
	{"transaction", txnStage},         // retransmissions absorbed; server transaction; 100 Trying
	{"cancel", cancelStage},           // §16.10
	{"passive", passiveStage},         // calls for phones registered elsewhere through sipedge
	{"registrar", registrarStage},     // REGISTER for a local domain (§10.3)
	{"self", selfStage},               // requests for sipedge itself
	{"forward", forwardStage},         // §16.5–16.6: targets, branches, response context
}

// ackStage absorbs the ACK of a non-2xx final response in its server
// transaction (§17.2.1). Any other ACK (for a 2xx, a new transaction end to
// end) goes on to be forwarded statelessly; an ACK is never answered.
func ackStage(r *request) bool {
	if r.msg.MethodKind() != sip.ACK {
		return false
	}
	st, _ := r.core.txn.ServerFor(&r.msg, &r.via, r.pkt.Proto, r.pkt.Src)
	return st != nil
}

// accessStage refuses requests from sources outside the allowed networks
// with 403. Without users to authenticate, the source address is the only
// credential: this is what keeps a zero-configuration sipedge from being an
// open relay or an open registrar.
func accessStage(r *request) bool {
	nets := r.core.cfg.AllowSources
	if len(nets) == 0 {
		return false
	}
	src := r.pkt.Src.Addr()
	for _, p := range nets {
		if p.Contains(src) {
			return false
		}
	}
	r.core.stats.Refused.Add(1)
	r.respond(403, "Forbidden", nil)
	return true
}

// registrarStage hands REGISTER requests for a local domain to the
// registrar. The 200 is sent only once the binding is durable: the
// registrar's Commit calls back from the store's committer.
func registrarStage(r *request) bool {
	c := r.core
	if r.msg.MethodKind() != sip.REGISTER || c.cfg.Registrar == nil || r.hasFurtherRoute() {
		return false
	}
	u, _ := r.msg.RequestURI()
	if !c.cfg.Domains.local(u.Host) && !r.forSelf() {
		return false
	}
	var conn uint64
	if r.pkt.Conn != nil {
		conn = r.pkt.Conn.ID()
	}
	res := c.cfg.Registrar.Register(registrar.Request{Msg: &r.msg, Source: r.pkt.Src, Local: r.pkt.Local, Proto: r.pkt.Proto, ConnID: conn,
		NAT: behindNAT(&r.msg, &r.via, r.pkt.Src)})
	if res.Commit == nil {
		r.respond(res.Code, res.Reason, res.Extra)
		return true
	}
	ok := c.localResponse(nil, &r.msg, &r.via, res.Code, res.Reason, r.extraWithServer(res.Extra))
	st, code := r.st, res.Code
	c.stats.LocalResponses.Add(1)
	// Then runs on the store's committer when the fsync is done: the
	// response is queued for the transaction layer's sender, which sends
	// the whole batch's 200s together, so the committer can start the next
	// fsync at once.
	res.Commit.Then(func(err error) {
		if err != nil {
			c.log.Error("registration not stored", "err", err)
			st.RespondQueued(c.failedResponse(ok), 500)
			return
		}
		st.RespondQueued(ok, code)
	})
	return true
}

// failedResponse turns the 200 built for a REGISTER into the 500 sent when
// its bindings could not be stored. It is built from the 200 (the request
// is gone by then) and only on that rare path, so a REGISTER costs one
// response, not two.
func (c *Core) failedResponse(ok []byte) []byte {
	var m sip.Message
	if m.Parse(ok, nil) != nil {
		return nil
	}
	var extra []byte
	if ua := c.cfg.UserAgent; ua != "" {
		extra = append(append(append(extra, "Server: "...), ua...), '\r', '\n')
	}
	return sip.AppendResponse(nil, &m, 500, "Server Internal Error", nil, extra)
}

// schemeStage: a proxy that does not understand the Request-URI scheme
// answers 416 (RFC 3261 §16.3 step 1; RFC 4475 §3.3.2, §3.3.3).
func schemeStage(r *request) bool {
	u, err := r.msg.RequestURI()
	if err == nil && (u.IsSIP() || u.Kind == sip.SchemeTel) {
		return false
	}
	r.respond(416, "Unsupported URI Scheme", nil)
	return true
}

// maxFwdStage: Max-Forwards 0 is answered 483 (RFC 3261 §16.3 step 3),
// except an OPTIONS for sipedge itself, which a proxy may answer as the
// final recipient (RFC 4475 §3.3.11).
func maxFwdStage(r *request) bool {
	n, ok := r.msg.MaxForwards()
	if !ok || n > 0 {
		return false
	}
	if r.msg.MethodKind() == sip.OPTIONS && r.forSelf() {
		return false
	}
	r.respond(483, "Too Many Hops", nil)
	return true
}

// loopStage answers 482 when a Via of ours carries this request's loop
// hash (§16.3 step 4); spirals pass.
func loopStage(r *request) bool {
	if r.msg.MethodKind() == sip.ACK || r.msg.MethodKind() == sip.CANCEL || !r.core.looped(&r.msg) {
		return false
	}
	r.core.stats.Loops.Add(1)
	r.respond(482, "Loop Detected", nil)
	return true
}

// proxyReqStage: sipedge supports no Proxy-Require extension, so every
// listed option tag is returned in Unsupported with 420 (RFC 3261 §16.3
// step 6, §20.29; RFC 4475 §3.3.5).
func proxyReqStage(r *request) bool {
	if r.msg.Find(sip.KindProxyRequire) < 0 {
		return false
	}
	r.respond(420, "Bad Extension", r.unsupportedHeader(sip.KindProxyRequire))
	return true
}

// routeStage counts the leading Route values that name sipedge; they are
// removed when the request is forwarded (§16.4, both entries of a double
// Record-Route).
func routeStage(r *request) bool {
	self := r.core.self.Load()
	for it := r.msg.Values(sip.KindRoute); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		a, err := sip.ParseAddress(v)
		if err != nil || !a.URI.IsSIP() || a.URI.HasUser || !self.Is(a.URI.Host, a.URI.Port, a.URI.Kind == sip.SchemeSIPS) {
			break
		}
		r.routes++
	}
	return false
}

// slRouteStage forwards a request that a stateless route matches (RFC 3261
// §16.11), before any transaction is made: the INVITE, its CANCEL and the
// ACK of a non-2xx answer all take this path and get the same branch, so
// the next hop matches them. Requests inside a dialog follow their Route
// set instead (a Record-Route is still added, so they come back here).
func slRouteStage(r *request) bool {
	c := r.core
	sr, ok := c.cfg.Router.(StatelessRouter)
	if !ok || r.routes > 0 || r.hasFurtherRoute() {
		return false
	}
	method := r.msg.MethodKind()
	if method != sip.ACK && method != sip.CANCEL && r.inDialog() {
		return false
	}
	if r.forSelf() {
		return false // sipedge's own requests and REGISTERs are answered here
	}
	if u, err := r.msg.RequestURI(); method == sip.REGISTER && c.cfg.Registrar != nil && err == nil && c.cfg.Domains.local(u.Host) {
		return false
	}
	t, ok := sr.StatelessTarget(r.ctx(), &r.msg)
	if !ok || c.self.Load().IsAddr(t.Addr) {
		return false
	}
	rr := isDialogCreating(method) && !r.inDialog()
	out, _, ok := c.buildRequest(r.out[:0], r.extra[:0], &r.msg, &r.via, r.pkt.Src, r.pkt.Proto, r.routes, &t, statelessIdx, rr)
	if !ok {
		return true
	}
	r.out = out
	c.stats.StatelessForwards.Add(1)
	if err := c.Send(t.Proto, t.Addr, out); err != nil {
		c.stats.SendErrors.Add(1)
		if method != sip.ACK && method != sip.CANCEL {
			r.respond(503, "Service Unavailable", nil)
		}
	}
	return true
}

// statelessStage forwards an ACK that no transaction absorbed (the ACK of a
// 2xx) by its Route set or Request-URI, without state (§16.11).
func statelessStage(r *request) bool {
	if r.msg.MethodKind() != sip.ACK {
		return false
	}
	c := r.core
	// An ACK addressed to sipedge itself (the ACK of a 2xx it generated, or
	// a stray one) ends here: forwarding it would send it back to us, over
	// and over until Max-Forwards runs out.
	if r.forSelf() && !r.hasFurtherRoute() {
		return true
	}
	t, ok, blocked := c.directTarget(r)
	if blocked {
		c.deferRequest(r, statelessStage)
		return true
	}
	if !ok || c.self.Load().IsAddr(t.Addr) {
		c.stats.StrayResponses.Add(1) // nowhere (else) to send it: count as dropped
		return true
	}
	m, via := &r.msg, &r.via
	if late := c.mediaACK(r); late != nil {
		m, via = &late.msg, &late.via // the ACK with the relay's SDP
	}
	out, _, ok := c.buildRequest(r.out[:0], r.extra[:0], m, via, r.pkt.Src, r.pkt.Proto, r.routes, &t, 0, false)
	if !ok {
		return true
	}
	r.out = out
	c.stats.StatelessForwards.Add(1)
	if err := c.Send(t.Proto, t.Addr, out); err != nil {
		c.stats.SendErrors.Add(1)
	}
	return true
}

// txnStage matches the request to its server transaction: a retransmission
// is answered from it and goes no further (§17.2.3). A new INVITE is answered
// 100 Trying at once, which stops the caller's retransmissions (§16.2).
func txnStage(r *request) bool {
	c := r.core
	st, created := c.txn.ServerFor(&r.msg, &r.via, r.pkt.Proto, c.responseDest(r.pkt, &r.via))
	if !created {
		return true
	}
	r.st = st
	if r.msg.MethodKind() == sip.INVITE {
		r.out = sip.AppendResponse(r.out[:0], &r.msg, 100, "Trying", nil, nil)
		st.Respond(r.out, 100)
	}
	return false
}

// cancelStage: a CANCEL that matches a proxied INVITE is answered 200 and
// cancels its pending branches; the INVITE then ends with 487 (§16.10). One
// that matches nothing is answered 481.
func cancelStage(r *request) bool {
	if r.msg.MethodKind() != sip.CANCEL {
		return false
	}
	inv := r.core.txn.FindInvite(&r.msg, &r.via)
	if inv == nil {
		r.respond(481, "Call/Transaction Does Not Exist", nil)
		return true
	}
	r.respond(200, "OK", nil)
	if ctx, ok := inv.Ctx.(*respCtx); ok {
		ctx.cancel()
	} else if !inv.Final() {
		// A locally answered INVITE still pending: end it with 487.
		r.out = r.core.localResponse(r.out[:0], &r.msg, &r.via, 487, "Request Terminated", nil)
		inv.Respond(r.out, 487)
	}
	return true
}

// Allow and Supported describe what sipedge itself answers as a UAS.
const (
	allowHeader     = "Allow: OPTIONS\r\n"
	acceptHeader    = "Accept: application/sdp\r\n"
	supportedHeader = "Supported: \r\n"
)

// selfStage answers requests whose Request-URI names sipedge itself with no
// user part and that carry no further Route (RFC 3261 §16.4: the proxy is
// the final recipient): OPTIONS gets 200 with its capabilities (§11.2).
func selfStage(r *request) bool {
	if !r.forSelf() || r.hasFurtherRoute() {
		return false
	}
	u, _ := r.msg.RequestURI()
	if u.HasUser && r.msg.MethodKind() != sip.OPTIONS && r.core.cfg.Router != nil {
		return false // a user at our address: the location service decides
	}
	m := &r.msg
	// A UAS refuses Require tags it does not support (RFC 3261 §8.2.2.3).
	if m.Find(sip.KindRequire) >= 0 {
		r.respond(420, "Bad Extension", r.unsupportedHeader(sip.KindRequire))
		return true
	}
	switch m.MethodKind() {
	case sip.OPTIONS:
		r.respond(200, "OK", []byte(allowHeader+acceptHeader+supportedHeader))
	case sip.MethodOther:
		r.respond(501, "Not Implemented", []byte(allowHeader))
	default:
		r.respond(405, "Method Not Allowed", []byte(allowHeader))
	}
	return true
}

// forwardStage decides the targets and forwards (§16.5, §16.6). Requests
// routed through sipedge by a Route set (in-dialog requests, preloaded
// routes) and requests inside a dialog go to the next Route entry or the
// Request-URI directly; initial requests ask the Router (location service,
// static routes, DNS).
func forwardStage(r *request) bool {
	c := r.core
	if !r.inDialog() && sessionTooSmall(r) {
		return true
	}
	var d Decision
	if r.routes > 0 || r.hasFurtherRoute() || r.inDialog() {
		t, ok, blocked := c.directTarget(r)
		if blocked {
			c.deferRequest(r, forwardStage)
			return true
		}
		if !ok {
			r.respond(404, "Not Found", nil)
			return true
		}
		d.Groups = [][]Target{{t}}
	} else if c.cfg.Router != nil {
		d = c.cfg.Router.Route(r.ctx(), &r.msg, r.pkt.Src, r.pkt.Proto)
		if d.Blocked {
			c.deferRequest(r, forwardStage)
			return true
		}
	} else {
		d.Code, d.Reason = 480, "Temporarily Unavailable"
	}
	if len(d.Groups) == 0 {
		if d.Code == 0 {
			d.Code, d.Reason = 480, "Temporarily Unavailable"
		}
		r.respond(d.Code, d.Reason, nil)
		return true
	}
	c.forward(r, d)
	return true
}

func (r *request) inDialog() bool {
	to, err := r.msg.To()
	return err == nil && len(to.Tag) > 0
}

// hasFurtherRoute reports whether Route values remain after ours.
func (r *request) hasFurtherRoute() bool {
	n := 0
	for it := r.msg.Values(sip.KindRoute); ; {
		if _, ok := it.Next(); !ok {
			return n > r.routes
		}
		n++
	}
}

// directTarget is the next hop from the first Route value after ours
// (loose routing, §16.6 step 6), else from the Request-URI.
func (c *Core) directTarget(r *request) (t Target, ok, blocked bool) {
	n := 0
	for it := r.msg.Values(sip.KindRoute); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		if n == r.routes {
			a, err := sip.ParseAddress(v)
			if err != nil {
				return Target{}, false, false
			}
			return c.resolveTarget(r.ctx(), &a.URI)
		}
		n++
	}
	u, err := r.msg.RequestURI()
	if err != nil {
		return Target{}, false, false
	}
	return c.resolveTarget(r.ctx(), &u)
}

// resolveTarget is uriTarget with RFC 3263 for host names (the first
// target; a failover list is used only by the routing table).
func (c *Core) resolveTarget(ctx context.Context, u *sip.URI) (t Target, ok, blocked bool) {
	if t, ok := uriTarget(u); ok {
		return t, true, false
	}
	if c.cfg.Resolver == nil || !u.IsSIP() {
		return Target{}, false, false
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	ts, err := c.cfg.Resolver.ResolveTargets(ctx, u)
	if errors.Is(err, ErrWouldBlock) {
		return Target{}, false, true
	}
	if err != nil || len(ts) == 0 {
		return Target{}, false, false
	}
	return ts[0], true, false
}

// uriTarget turns a SIP URI with an IP address into a next hop (RFC 3263
// §4.1/4.2 for numeric hosts: transport param, else UDP; port or 5060/5061;
// maddr overrides the host). Host names need the resolver.
func uriTarget(u *sip.URI) (Target, bool) {
	if t, ok := aliasTarget(u); ok {
		return t, true // a NATed UA's real address (proxy/nat.go)
	}
	host := u.Host
	if m, ok := u.Param("maddr"); ok && len(m) > 0 {
		host = m
	}
	a, ok := parseIP(host)
	if !ok || !u.IsSIP() {
		return Target{}, false
	}
	proto := transport.UDP
	if u.Kind == sip.SchemeSIPS {
		proto = transport.TLS
	}
	if tp, ok := u.Param("transport"); ok {
		switch {
		case sip.EqualFold(tp, "tcp"):
			proto = transport.TCP
			if u.Kind == sip.SchemeSIPS {
				proto = transport.TLS
			}
		case sip.EqualFold(tp, "tls"):
			proto = transport.TLS
		case sip.EqualFold(tp, "udp"):
			proto = transport.UDP
		default:
			return Target{}, false
		}
	}
	port := uint16(u.Port)
	if port == 0 {
		port = 5060
		if proto == transport.TLS {
			port = 5061
		}
	}
	return Target{Proto: proto, Addr: netip.AddrPortFrom(a, port)}, true
}

// forward runs the request through a new response context.
func (c *Core) forward(r *request, d Decision) {
	if r.inDialog() {
		c.dialogRequest(&r.msg)
	}
	req, call, side, err := c.mediaRequest(r, &d)
	if err != nil {
		var mr *errMediaRefused
		if errors.As(err, &mr) {
			r.respond(mr.code, mr.reason, nil)
		}
		return
	}
	if req == nil {
		req = append([]byte(nil), r.msg.Bytes()...)
	}
	ctx := &respCtx{
		core: c, st: r.st, invite: r.msg.MethodKind() == sip.INVITE,
		req: req, src: r.pkt.Src, inProto: r.pkt.Proto,
		mediaCall: call, mediaSide: side, mediaNew: call != nil && r.msg.MethodKind() == sip.INVITE && !r.inDialog(),
		routes: r.routes, groups: d.Groups, failover: d.Failover,
		// Record-Route only dialog-creating requests that are not already
		// inside a dialog: the dialog's route set is fixed by them (§16.6
		// step 4; §12.1.1).
		rr: isDialogCreating(r.msg.MethodKind()) && !r.inDialog(),
	}
	if err := ctx.msg.Parse(ctx.req, c.cfg.Limits); err != nil {
		r.respond(500, "Server Internal Error", nil)
		return
	}
	ctx.via, _ = ctx.msg.TopVia()
	r.st.Ctx = ctx
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	if !ctx.startNextGroup() {
		ctx.settle()
	}
}

func isDialogCreating(m sip.Method) bool {
	return m == sip.INVITE || m == sip.SUBSCRIBE || m == sip.REFER || m == sip.NOTIFY
}

// unsupportedHeader builds "Unsupported: tag, tag" from every option tag of
// a Require or Proxy-Require header.
func (r *request) unsupportedHeader(k sip.HeaderKind) []byte {
	h := append([]byte(nil), "Unsupported: "...)
	first := true
	for it := r.msg.Values(k); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		if len(v) == 0 {
			continue
		}
		if !first {
			h = append(h, ", "...)
		}
		first = false
		h = append(h, v...)
	}
	return append(h, '\r', '\n')
}

// forSelf reports whether the Request-URI names sipedge: a host that is one
// of its addresses or names, with a port it listens on (or none).
func (r *request) forSelf() bool {
	u, err := r.msg.RequestURI()
	if err != nil || !u.IsSIP() {
		return false
	}
	return r.core.self.Load().Is(u.Host, u.Port, u.Kind == sip.SchemeSIPS)
}
