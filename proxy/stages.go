package proxy

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"sipedge/nat"
	"sipedge/registrar"
	"sipedge/sip"
	"sipedge/transport"
)

// The core's stages, in the order of stageOrder (pipeline.go).

// ackStage absorbs the ACK of a non-2xx final response in its server
// transaction (§17.2.1). Any other ACK (for a 2xx, a new transaction end to
// end) goes on to be forwarded statelessly; an ACK is never answered.
func ackStage(r *Request) bool {
	if r.msg.MethodKind() != sip.ACK {
		return false
	}
	st, _ := r.core.txn.ServerFor(&r.msg, &r.via, r.pkt.Proto, r.pkt.Src)
	return st != nil
}

// accessStage refuses requests from sources outside the trusted networks
// with 403, unless a feature authenticates such sources (the "auth"
// stage, next): then they go on, and what they may reach is the relay
// stage's business. Without users to authenticate, the source address is
// the only credential: this is what keeps a zero-configuration sipedge
// from being an open relay or an open registrar.
func accessStage(r *Request) bool {
	if r.pol.AllowSources == nil || r.Trusted() || r.core.authStage {
		return false
	}
	if r.msg.MethodKind() == sip.ACK {
		return true // never answered (§17.1.1.3)
	}
	r.core.stats.Refused.Add(1)
	r.Respond(403, "Forbidden", nil)
	return true
}

// schemeStage: a proxy that does not understand the Request-URI scheme
// answers 416 (RFC 3261 §16.3 step 1; RFC 4475 §3.3.2, §3.3.3).
func schemeStage(r *Request) bool {
	u, err := r.msg.RequestURI()
	if err == nil && (u.IsSIP() || u.Kind == sip.SchemeTel) {
		return false
	}
	r.Respond(416, "Unsupported URI Scheme", nil)
	return true
}

// maxFwdStage: Max-Forwards 0 is answered 483 (RFC 3261 §16.3 step 3),
// except an OPTIONS for sipedge itself, which a proxy may answer as the
// final recipient (RFC 4475 §3.3.11).
func maxFwdStage(r *Request) bool {
	n, ok := r.msg.MaxForwards()
	if !ok || n > 0 {
		return false
	}
	if r.msg.MethodKind() == sip.OPTIONS && r.ForSelf() {
		return false
	}
	r.Respond(483, "Too Many Hops", nil)
	return true
}

// loopStage answers 482 when a Via of ours carries this request's loop
// hash (§16.3 step 4); spirals pass.
func loopStage(r *Request) bool {
	if r.msg.MethodKind() == sip.ACK || r.msg.MethodKind() == sip.CANCEL || !r.core.looped(&r.msg) {
		return false
	}
	r.core.stats.Loops.Add(1)
	r.Respond(482, "Loop Detected", nil)
	return true
}

// proxyReqStage: sipedge supports no Proxy-Require extension, so every
// listed option tag is returned in Unsupported with 420 (RFC 3261 §16.3
// step 6, §20.29; RFC 4475 §3.3.5).
func proxyReqStage(r *Request) bool {
	if r.msg.Find(sip.KindProxyRequire) < 0 {
		return false
	}
	r.Respond(420, "Bad Extension", r.unsupportedHeader(sip.KindProxyRequire))
	return true
}

// routeStage counts the leading Route values that name sipedge; they are
// removed when the request is forwarded (§16.4, both entries of a double
// Record-Route).
func routeStage(r *Request) bool {
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
func slRouteStage(r *Request) bool {
	c := r.core
	sr, ok := r.pol.Router.(StatelessRouter)
	if !ok || r.routes > 0 || r.HasFurtherRoute() {
		return false
	}
	method := r.msg.MethodKind()
	if method != sip.ACK && method != sip.CANCEL && r.InDialog() {
		return false
	}
	if r.ForSelf() {
		return false // sipedge's own requests and REGISTERs are answered here
	}
	if u, err := r.msg.RequestURI(); method == sip.REGISTER && c.cfg.Registrar != nil && err == nil && r.pol.Domains.local(u.Host) {
		return false
	}
	t, ok := sr.StatelessTarget(r.Ctx(), &r.msg)
	if !ok || c.self.Load().IsAddr(t.Addr) {
		return false
	}
	if !t.Proto.Secure() && sipsNext(&r.msg, r.routes, t.URI) {
		return false // the stateful path refuses it (sipsStage)
	}
	rr := isDialogCreating(method) && !r.InDialog()
	if !c.forwardStateless(r, &t, statelessIdx, rr) {
		if method != sip.ACK && method != sip.CANCEL {
			r.Respond(503, "Service Unavailable", nil)
		}
	}
	return true
}

// forwardStateless builds the request for t (branch hooks included) and
// sends it without a transaction; false when it could not be sent.
func (c *Core) forwardStateless(r *Request, target *Target, idx int, rr bool) bool {
	r.target = *target
	t := &r.target
	r.branch = Branch{Msg: &r.msg, Via: &r.via, Src: r.pkt.Src, InProto: r.pkt.Proto, Target: t, RecordRoute: rr, notes: &r.notes}
	out, _, ok := c.buildRequest(r.out[:0], r.extra[:0], &r.branch, r.routes, idx)
	if !ok {
		return false
	}
	r.out = out
	c.stats.StatelessForwards.Add(1)
	if err := c.sendNoWait(t.Proto, t.Addr, out); err != nil {
		c.stats.SendErrors.Add(1)
		return false
	}
	return true
}

// statelessStage forwards an ACK that no transaction absorbed (the ACK of a
// 2xx) by its Route set or Request-URI, without state (§16.11).
func statelessStage(r *Request) bool {
	if r.msg.MethodKind() != sip.ACK {
		return false
	}
	c := r.core
	// An ACK addressed to sipedge itself (the ACK of a 2xx it generated,
	// or a stray one) ends here: forwarding it would send it back to us,
	// over and over until Max-Forwards runs out. An ACK for a contact a
	// feature knows (the passive registrar's, which names sipedge's
	// address) is not ours: it goes on like any other.
	if r.ForSelf() && !r.HasFurtherRoute() && !c.claimed(r) {
		return true
	}
	t, ok, blocked := c.directTarget(r)
	if blocked {
		r.Defer()
		return true
	}
	if !ok || c.self.Load().IsAddr(t.Addr) {
		c.stats.StrayResponses.Add(1) // nowhere (else) to send it: count as dropped
		return true
	}
	c.forwardStateless(r, &t, 0, false)
	return true
}

// txnStage matches the request to its server transaction: a retransmission
// is answered from it and goes no further (§17.2.3). A new INVITE is answered
// 100 Trying at once, which stops the caller's retransmissions (§16.2).
// Over the transaction cap (txn.Config.MaxServers) a new request is answered
// 503 with Retry-After without a transaction (§21.5.4): overload must not
// cost state. The refusal is counted by the transaction layer.
func txnStage(r *Request) bool {
	c := r.core
	st, created := c.txn.ServerFor(&r.msg, &r.via, r.pkt.Proto, c.responseDest(r))
	if !created {
		return true
	}
	if st == nil {
		r.Respond(503, "Service Unavailable", []byte("Retry-After: 5\r\n"))
		return true
	}
	r.st = st
	if r.msg.MethodKind() == sip.INVITE {
		// No To tag (§8.2.6.1); the top Via completed as in every
		// local response.
		r.out = sip.AppendResponseFrom(r.out[:0], &r.msg, r.pkt.Src, 100, "Trying", nil, nil)
		st.Respond(r.out, 100)
	}
	return false
}

// cancelStage: a CANCEL that matches a proxied INVITE is answered 200 and
// cancels its pending branches; the INVITE then ends with 487 (§16.10). One
// that matches nothing is answered 481.
func cancelStage(r *Request) bool {
	if r.msg.MethodKind() != sip.CANCEL {
		return false
	}
	inv := r.core.txn.FindInvite(&r.msg, &r.via)
	if inv == nil {
		r.Respond(481, "Call/Transaction Does Not Exist", nil)
		return true
	}
	r.Respond(200, "OK", nil)
	if ctx, ok := inv.Owner().(*respCtx); ok {
		ctx.cancel()
	} else if !inv.Final() {
		// A locally answered INVITE still pending (or one whose
		// forwarding is waiting for DNS: forward sees the 487 and stops).
		r.out = r.core.localResponse(r.out[:0], r, 487, "Request Terminated", nil)
		inv.Respond(r.out, 487)
	}
	return true
}

// drainStage refuses new dialogs while sipedge shuts down gracefully:
// 503 with Retry-After sends the caller to another server (RFC 3261
// §21.5.4); calls in progress, REGISTER and OPTIONS go on.
func drainStage(r *Request) bool {
	if !r.core.draining.Load() || !isDialogCreating(r.msg.MethodKind()) || r.InDialog() {
		return false
	}
	r.core.stats.Draining.Add(1)
	r.Respond(503, "Service Unavailable", []byte("Retry-After: 30\r\n"))
	return true
}

// registrarStage hands REGISTER requests for a local domain to the
// registrar. The 200 is sent only once the binding is durable: the
// registrar's Commit calls back from the store's committer.
func registrarStage(r *Request) bool {
	c := r.core
	if r.msg.MethodKind() != sip.REGISTER || c.cfg.Registrar == nil || r.HasFurtherRoute() {
		return false
	}
	u, _ := r.msg.RequestURI()
	if !r.pol.Domains.local(u.Host) && !r.ForSelf() {
		return false
	}
	var conn uint64
	if r.pkt.Conn != nil {
		conn = r.pkt.Conn.ID()
	}
	res := c.cfg.Registrar.Register(registrar.Request{Msg: &r.msg, Source: r.pkt.Src, Local: r.pkt.Local, Proto: r.pkt.Proto, ConnID: conn,
		NAT: nat.BehindRequest(&r.msg, &r.via, r.pkt.Src)})
	if res.Commit == nil {
		r.Respond(res.Code, res.Reason, res.Extra)
		return true
	}
	ok := c.localResponse(nil, r, res.Code, res.Reason, r.extraWithServer(res.Extra))
	st, code, began := r.st, res.Code, time.Now()
	c.countLocal(res.Code)
	// Then runs on the store's committer when the fsync is done: the
	// response is queued for the transaction layer's sender, which sends
	// the whole batch's 200s together, so the committer can start the next
	// fsync at once.
	res.Commit.Then(func(err error) {
		if errors.Is(err, registrar.ErrUnavailable) {
			// A shared store down or failing over: the phone tries
			// again, or another instance (logged once by the store).
			st.RespondQueued(c.failedResponse(ok, 503), 503)
			return
		}
		if err != nil {
			c.log.Error("registration not stored", "err", err)
			st.RespondQueued(c.failedResponse(ok, 500), 500)
			return
		}
		st.RespondQueued(ok, code)
		// Registration request delay: the registrar stage to the 200,
		// the store's fsync included (what a phone waits for).
		c.rrd.Observe(time.Since(began))
	})
	return true
}

// failedResponse turns the 200 built for a REGISTER into the 500 sent when
// its bindings could not be stored. It is built from the 200 (the request
// is gone by then) and only on that rare path, so a REGISTER costs one
// response, not two.
func (c *Core) failedResponse(ok []byte, code int) []byte {
	var m sip.Message
	if m.Parse(ok, nil) != nil {
		return nil
	}
	var extra []byte
	if ua := c.cfg.UserAgent; ua != "" {
		extra = append(append(append(extra, "Server: "...), ua...), '\r', '\n')
	}
	if code == 503 {
		extra = append(extra, registrar.RetryAfter...)
		return sip.AppendResponse(nil, &m, 503, "Service Unavailable", nil, extra)
	}
	return sip.AppendResponse(nil, &m, 500, "Server Internal Error", nil, extra)
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
// A request for a user at sipedge's address (OPTIONS included) is for that
// user's phones: the location service decides (§11: an OPTIONS to a user
// is answered by the user's UA).
func selfStage(r *Request) bool {
	if !r.ForSelf() || r.HasFurtherRoute() {
		return false
	}
	u, _ := r.msg.RequestURI()
	if u.HasUser && r.pol.Router != nil {
		return false
	}
	m := &r.msg
	// A UAS refuses Require tags it does not support (RFC 3261 §8.2.2.3).
	if m.Find(sip.KindRequire) >= 0 {
		r.Respond(420, "Bad Extension", r.unsupportedHeader(sip.KindRequire))
		return true
	}
	switch m.MethodKind() {
	case sip.OPTIONS:
		r.Respond(200, "OK", []byte(allowHeader+acceptHeader+supportedHeader))
	case sip.MethodOther:
		r.Respond(501, "Not Implemented", []byte(allowHeader))
	default:
		r.Respond(405, "Method Not Allowed", []byte(allowHeader))
	}
	return true
}

// locateStage decides the targets (§16.5). Requests routed through sipedge
// by a Route set (in-dialog requests, preloaded routes) and requests inside
// a dialog go to the next Route entry or the Request-URI directly; initial
// requests ask the Router (location service, static routes, DNS).
func locateStage(r *Request) bool {
	c := r.core
	var d Decision
	if r.routes > 0 || r.HasFurtherRoute() || r.InDialog() {
		t, ok, blocked := c.directTarget(r)
		if blocked {
			r.Defer()
			return true
		}
		if !ok {
			r.Respond(404, "Not Found", nil)
			return true
		}
		d.Groups = r.one.groups(t)
	} else if r.pol.Router != nil {
		d = r.pol.Router.Route(r.Ctx(), &r.msg, r.pkt.Src, r.pkt.Proto)
		if d.Blocked {
			r.Defer()
			return true
		}
	} else {
		d.Code, d.Reason = 480, "Temporarily Unavailable"
	}
	if len(d.Groups) == 0 {
		if d.Code == 0 {
			d.Code, d.Reason = 480, "Temporarily Unavailable"
		}
		r.Respond(d.Code, d.Reason, nil)
		return true
	}
	r.decision, r.decided = d, true
	return false
}

// forwardStage runs the request through a new response context (§16.6).
func forwardStage(r *Request) bool {
	r.core.forward(r)
	return true
}

// directTarget is the next hop from the first Route value after ours
// (loose routing, §16.6 step 6), else from the Request-URI: a URI that a
// feature claims (the passive registrar's contacts) goes where it says.
func (c *Core) directTarget(r *Request) (t Target, ok, blocked bool) {
	if v, more := routeValue(&r.msg, r.routes); more {
		a, err := sip.ParseAddress(v)
		if err != nil {
			return Target{}, false, false
		}
		return c.resolveTarget(r.Ctx(), &a.URI)
	}
	var err error
	r.ruri, err = r.msg.RequestURI()
	if err != nil {
		return Target{}, false, false
	}
	for _, res := range c.pipe.resolvers {
		if t, claimed, ok := res(&r.ruri); claimed {
			return t, ok, false
		}
	}
	return c.resolveTarget(r.Ctx(), &r.ruri)
}

// claimed reports whether a feature claims the Request-URI.
func (c *Core) claimed(r *Request) bool {
	if len(c.pipe.resolvers) == 0 {
		return false
	}
	var err error
	r.ruri, err = r.msg.RequestURI()
	if err != nil {
		return false
	}
	for _, res := range c.pipe.resolvers {
		if _, claimed, _ := res(&r.ruri); claimed {
			return true
		}
	}
	return false
}

// resolveTarget is URITarget with RFC 3263 for host names (the first
// target; a failover list is used only by the routing table).
func (c *Core) resolveTarget(ctx context.Context, u *sip.URI) (t Target, ok, blocked bool) {
	if t, ok := URITarget(u); ok {
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

// URITarget turns a SIP URI with an IP address into a next hop (RFC 3263
// §4.1/4.2 for numeric hosts: transport param, else UDP; port or the
// default; maddr overrides the host). An alias parameter (a NATed UA's
// real address, package nat) wins. Host names need the resolver.
func URITarget(u *sip.URI) (Target, bool) {
	if ap, proto, ok := nat.AliasTarget(u); ok {
		return Target{Proto: proto, Addr: ap}, true
	}
	host := u.Host
	if m, ok := u.Param("maddr"); ok && len(m) > 0 {
		host = m
	}
	a, ok := sip.ParseIP(host)
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
		case sip.EqualFold(tp, "ws"):
			// RFC 7118: usable only on the client's own connection
			// (the transport never dials WebSocket).
			proto = transport.WS
			if u.Kind == sip.SchemeSIPS {
				proto = transport.WSS
			}
		case sip.EqualFold(tp, "wss"):
			proto = transport.WSS
		default:
			return Target{}, false
		}
	}
	port := uint16(u.Port)
	if port == 0 {
		port = sip.DefaultPort(proto.Secure())
	}
	return Target{Proto: proto, Addr: netip.AddrPortFrom(a, port)}, true
}

func isDialogCreating(m sip.Method) bool {
	return m == sip.INVITE || m == sip.SUBSCRIBE || m == sip.REFER || m == sip.NOTIFY
}
