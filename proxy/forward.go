package proxy

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"time"

	"sipedge/nat"
	"sipedge/sip"
	"sipedge/transport"
)

// Target is one destination a request is forwarded to.
type Target struct {
	URI   []byte          // new Request-URI; nil keeps the received one
	Proto transport.Proto // transport to the next hop
	Addr  netip.AddrPort  // next hop
	Path  [][]byte        // Route values to push, in order (RFC 3327 Path)
	Q     int             // q-value in thousandths (for logs; groups carry the order)
	// NAT: the target is a registered UA behind NAT (location service):
	// the Contact of its responses gets an alias (features/natalias).
	NAT bool
	// Host is the SIP domain the next hop was resolved from: the host (or
	// maddr) of the URI routed to, not an SRV target (RFC 5922 §4.1).
	// Over TLS the certificate is verified against it and it is sent as
	// SNI (RFC 6066 §3). "" for IP literals (verified against the address).
	Host string
	// HideVias: the next hop gets only sipedge's own Via (topology
	// hiding, set by a branch hook of features/topohide). The core
	// removes the Vias below its own when it builds the request and puts
	// the request's Vias back on each response of the branch (proxy/topo.go).
	// Ignored for stateless routes, whose responses carry no state to
	// restore them from.
	HideVias bool
	// Auth answers a 401 or 407 of this next hop with credentials sipedge
	// holds for it (a trunk to a provider, RFC 3261 §22.2): the challenge
	// is not relayed; the request goes again on a new branch with the
	// credentials and the next CSeq number (respctx.go, retryAuth). nil:
	// challenges are relayed like any response.
	Auth Authenticator
	// authName and authValue are the credentials header of a retried
	// branch; cseq the CSeq number it is sent with (0: the request's).
	authName  string
	authValue []byte
	cseq      uint32
	// NoAnswer, when set, is how long the target has to answer anything
	// (a 100 Trying will do) before the branch counts as timed out (408)
	// and the next group is tried, instead of waiting for Timer B or F
	// (64·T1, 32 s): a PBX that is down over UDP answers nothing, and a
	// caller does not wait half a minute for the next one. It applies
	// only while a later group is left to try: the last target gets the
	// transaction's whole time. A late provisional response gets the
	// branch cancelled (RFC 3261 §9.1); a late 2xx is still relayed
	// (§16.7 step 5).
	NoAnswer time.Duration
	// Observer, when set, is told when a branch to the target starts and
	// how it ends: the owner of a destination (a pool) keeps load and
	// health from it without a hook on every request.
	Observer BranchObserver
}

// Authenticator answers the challenge of a next hop whose credentials
// sipedge holds. Authorize gets the method and Request-URI of the request
// as it was sent and the 401/407 response; it returns the header to add
// ("Authorization" or "Proxy-Authorization", RFC 3261 §22.2, §22.3) and
// its value, or ok false to relay the challenge. It is called with the
// response context's lock held: it must not block or send.
type Authenticator interface {
	Authorize(method, uri []byte, resp *sip.Message) (name string, value []byte, ok bool)
}

// BranchObserver follows the branches sent to the targets that name it
// (Target.Observer). Its methods run under the response context's lock:
// they take only a lock of their own, briefly, and send nothing.
type BranchObserver interface {
	// BranchStarted: a copy of req is about to be sent to t.
	BranchStarted(t *Target, req *sip.Message)
	// BranchEnded: the branch ended with code: the status of the
	// target's final response, or (local) 408 when the target answered
	// nothing in time (NoAnswer, Timer B or F), 503 after a transport
	// error. Called once per started branch.
	BranchEnded(t *Target, req *sip.Message, code int, local bool)
}

// Decision is what a Router answers: either a local response, or groups of
// targets tried one group after the other (sequential forking by q-value),
// the targets of a group in parallel (RFC 3261 §16.6).
type Decision struct {
	Code   int
	Reason string
	Groups [][]Target
	// Failover: the groups are alternatives for one destination (RFC 3263
	// §4.3): the next is tried only after a timeout, a transport error or
	// a 503, not after other failures.
	Failover bool
	// Blocked: the answer needs a DNS lookup that is not cached and ctx
	// forbade waiting (see WithoutBlocking). The lookup has been started;
	// the core asks again from a goroutine of its own.
	Blocked bool
}

// Router finds the targets of a request that is not for sipedge itself.
// A Router that may wait (for DNS) must honour WithoutBlocking.
type Router interface {
	Route(ctx context.Context, m *sip.Message, src netip.AddrPort, proto transport.Proto) Decision
}

// ErrWouldBlock is what a Resolver returns under WithoutBlocking when the
// answer is not at hand.
var ErrWouldBlock = errors.New("proxy: lookup would block")

// ErrDNSUnavailable is what a Resolver returns when the DNS servers did not
// answer usefully (timeout, SERVFAIL): the destination may well exist, so
// the caller gets 503, not 404.
var ErrDNSUnavailable = errors.New("proxy: DNS unavailable")

type noBlockKey struct{}

// WithoutBlocking marks ctx for code running on a message reader: a lookup
// that would wait for the network returns ErrWouldBlock (Resolver) or a
// Decision with Blocked set (Router) instead, after starting it.
func WithoutBlocking(ctx context.Context) context.Context {
	return context.WithValue(ctx, noBlockKey{}, true)
}

// NonBlocking reports whether ctx was made by WithoutBlocking.
func NonBlocking(ctx context.Context) bool { return ctx.Value(noBlockKey{}) != nil }

// loopHash combines what identifies a request for loop detection (RFC 3261
// §16.6 step 8, §16.3 step 4): To tag, From tag, Call-ID, the Request-URI as
// received, CSeq number, Proxy-Require and Proxy-Authorization. A spiral
// (the Request-URI changed) hashes differently; a loop hashes the same.
func loopHash(m *sip.Message) uint64 { return requestHash(m, true) }

// statelessHash is loopHash without what differs between an INVITE, its
// CANCEL and the ACK of its non-2xx answer (To tag, Proxy-Require,
// Proxy-Authorization): a stateless proxy must give all three the same
// branch so the next hop can match them (RFC 3261 §16.11, §9.1, §17.1.1.3).
func statelessHash(m *sip.Message) uint64 { return requestHash(m, false) }

func requestHash(m *sip.Message, full bool) uint64 {
	h := sip.NewHash()
	if full {
		if to, err := m.To(); err == nil {
			h = h.Add(to.Tag)
		}
	}
	if from, err := m.From(); err == nil {
		h = h.Add(from.Tag)
	}
	n, _ := m.CSeq()
	h = h.Add(m.CallID()).Add(m.RequestURIBytes()).AddUint64(uint64(n))
	if full {
		h = h.Add(m.Get(sip.KindProxyRequire)).Add(m.Get(sip.KindProxyAuthorization))
	}
	return uint64(h)
}

// branchPrefix marks branches sipedge generated: "z9hG4bK" + "Se" + 16 hex
// digits of the loop hash + "." + 16 hex digits unique to the branch.
const branchPrefix = sip.MagicCookie + "Se"

// statelessPrefix marks branches of statelessly forwarded requests: the
// same layout with the stateless hash.
const statelessPrefix = sip.MagicCookie + "Sl"

// statelessIdx, as buildRequest's branch index, asks for a stateless
// branch.
const statelessIdx = -1

func appendHex(b []byte, v uint64) []byte {
	const hexd = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hexd[(v>>uint(i))&0xf])
	}
	return b
}

// appendBranch writes a branch for one forwarded copy of a request: the
// loop hash and a per-branch value derived from the incoming transaction
// (its top Via branch and sent-by) and the branch index, so a retransmitted
// request maps to the same branch.
func (c *Core) appendBranch(dst []byte, m *sip.Message, via *sip.Via, idx int) []byte {
	if idx == statelessIdx {
		dst = append(dst, statelessPrefix...)
		dst = appendHex(dst, statelessHash(m))
		idx = 0
	} else {
		dst = append(dst, branchPrefix...)
		dst = appendHex(dst, loopHash(m))
	}
	dst = append(dst, '.')
	return appendHex(dst, c.branchSig(via.Branch, via.Host, m.CallID())+uint64(idx))
}

// branchSig is the keyed part of the branches sipedge generates for a
// request with this top Via branch and sent-by host: the branch index is
// added to it, so a response can be checked against the Via below ours
// (sigIndex) without state.
func (c *Core) branchSig(branch, host, callID []byte) uint64 {
	return c.branchKey.sum(branch, host, callID)
}

// branchLen is the length of every branch appendBranch writes.
const branchLen = len(branchPrefix) + 16 + 1 + 16

// maxBranchIdx bounds the branch index a signature may carry.
const maxBranchIdx = 1 << 12

// signedBranch reports whether a branch of ours (top Via of a response)
// was generated for a request whose top Via was next (the response's
// second Via), with this Call-ID.
func (c *Core) signedBranch(ours []byte, next *sip.Via, callID []byte) bool {
	if len(ours) != branchLen {
		return false
	}
	if p := string(ours[:len(branchPrefix)]); p != branchPrefix && p != statelessPrefix {
		return false
	}
	got, ok := parseHex64(ours[len(ours)-16:])
	return ok && got-c.branchSig(next.Branch, next.Host, callID) < maxBranchIdx
}

func parseHex64(b []byte) (uint64, bool) {
	var v uint64
	for _, ch := range b {
		switch {
		case ch >= '0' && ch <= '9':
			v = v<<4 | uint64(ch-'0')
		case ch >= 'a' && ch <= 'f':
			v = v<<4 | uint64(ch-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// looped reports whether a Via sipedge added carries the loop hash of this
// request: the same request came back (RFC 3261 §16.3 step 4). A Via of
// ours with another hash is a spiral and is allowed.
func (c *Core) looped(m *sip.Message) bool {
	self := c.self.Load()
	var full, sl [16]byte
	var fb, sb []byte // computed when a Via of that kind turns up
	for it := m.Values(sip.KindVia); ; {
		v, ok := it.Next()
		if !ok {
			return false
		}
		via, err := sip.ParseVia(v)
		if err != nil || len(via.Branch) < len(branchPrefix)+16 {
			continue
		}
		var want []byte
		switch string(via.Branch[:len(branchPrefix)]) {
		case branchPrefix:
			if fb == nil {
				fb = appendHex(full[:0], loopHash(m))
			}
			want = fb
		case statelessPrefix:
			if sb == nil {
				sb = appendHex(sl[:0], statelessHash(m))
			}
			want = sb
		default:
			continue
		}
		if !self.Is(via.Host, via.Port, false) && !self.Is(via.Host, via.Port, true) {
			continue
		}
		if string(via.Branch[len(branchPrefix):len(branchPrefix)+16]) == string(want) {
			return true
		}
	}
}

// buildRequest applies the RFC 3261 §16.6 edits for the branch's target
// and writes the request: new Request-URI, Max-Forwards decremented, our
// Route entries removed (§16.4) and Path pushed as Route, received/rport
// added to the top Via (§18.2.1, RFC 3581), then the branch hooks
// (pipeline.go), then Record-Route (twice when the request changes
// transport or address family, §16.6 step 4) and our Via on top. It
// returns the message and the branch parameter it carries. An edit that
// fails drops the branch.
func (c *Core) buildRequest(dst, branch []byte, b *Branch, routes int, idx int) (outMsg, outBranch []byte, ok bool) {
	m, via, t := b.Msg, b.Via, b.Target
	m.ResetEdits()
	secure := b.RecordRoute && sipsNext(m, routes, t.URI)
	if cap(branch) < branchLen {
		branch = make([]byte, 0, branchLen) // one allocation, not append's steps
	}
	branch = c.appendBranch(branch[:0], m, via, idx)
	if t.URI != nil {
		s, e := m.RequestURISpan()
		if m.Replace(s, e, t.URI) != nil {
			return nil, nil, false
		}
	}
	mf, has := m.MaxForwards()
	if !has {
		mf = 71
	}
	if m.SetMaxForwards(mf-1) != nil {
		return nil, nil, false
	}
	if t.URI == nil && len(t.Path) == 0 && strictNextHop(m, routes) {
		if !toStrictRouter(m, routes) {
			return nil, nil, false
		}
	} else {
		if removeRoutes(m, routes) != nil {
			return nil, nil, false
		}
		if _, more := routeValue(m, routes); t.URI == nil && !more {
			// The UA gets back the Contact it wrote.
			if nat.StripRURIAlias(m) != nil {
				return nil, nil, false
			}
		}
	}
	outAddr, ok := c.LocalFor(t.Proto, t.Addr.Addr())
	if !ok {
		return nil, nil, false
	}
	b.Local = outAddr
	for i := range c.pipe.branch {
		h := &c.pipe.branch[i]
		c.pipe.branchRuns[i].Add(1)
		if err := h.Run(b); err != nil {
			c.stats.HookErrors.Add(1)
			c.log.Warn("branch dropped: edit failed", "hook", h.Name, "call_id", string(m.CallID()), "err", err)
			return nil, nil, false
		}
	}
	if t.authName != "" {
		// A retried branch (Target.Auth): the credentials, and the next
		// CSeq number (RFC 3261 §22.2, §8.1.3.5).
		at := m.Find(sip.KindCSeq)
		if m.InsertHeader(at, t.authName, t.authValue) != nil || setCSeq(m, t.cseq) != nil {
			return nil, nil, false
		}
	}
	// The top Via is fixed after the hooks, since a hook may ask for the
	// Vias to be hidden (Target.HideVias): then they are removed whole and
	// the fix would edit bytes that are not sent.
	if t.HideVias && idx != statelessIdx {
		if deleteVias(m) != nil {
			return nil, nil, false
		}
	} else if fixTopVia(m, via, b.Src) != nil {
		return nil, nil, false
	}
	var buf [256]byte
	firstVia := m.Find(sip.KindVia)
	if b.RecordRoute {
		inAddr, ok2 := c.LocalFor(b.InProto, b.Src.Addr())
		at := m.Find(sip.KindRecordRoute)
		if at < 0 {
			at = firstVia
		}
		if ok2 && (b.InProto != t.Proto || inAddr != outAddr) {
			// Double Record-Route: the first entry (nearest the callee)
			// names the outgoing side, the second the incoming side, so each
			// side routes back through the interface it knows.
			if m.InsertHeader(at, "Record-Route", c.appendRR(buf[:0], outAddr, t.Proto, secure, m.CallID())) != nil ||
				m.InsertHeader(at, "Record-Route", c.appendRR(buf[:0], inAddr, b.InProto, secure, m.CallID())) != nil {
				return nil, nil, false
			}
		} else if m.InsertHeader(at, "Record-Route", c.appendRR(buf[:0], outAddr, t.Proto, secure, m.CallID())) != nil {
			return nil, nil, false
		}
	}
	if len(t.Path) > 0 {
		at := m.Find(sip.KindRoute)
		if at < 0 || routes > 0 {
			at = firstVia
		}
		for _, p := range t.Path {
			if m.InsertHeader(at, "Route", p) != nil {
				return nil, nil, false
			}
		}
	}
	v := append(buf[:0], "SIP/2.0/"...)
	v = append(v, t.Proto.String()...)
	v = append(v, ' ')
	v = AppendHostPort(v, outAddr)
	v = append(v, ";branch="...)
	v = append(v, branch...)
	v = append(v, ";rport"...)
	if m.InsertHeader(firstVia, "Via", v) != nil {
		return nil, nil, false
	}
	return m.AppendTo(dst), branch, true
}

// strictNextHop reports whether the Route value after our own n entries
// names a strict router: its URI has no lr parameter (RFC 3261 §16.6 step
// 6; RFC 2543 routing).
func strictNextHop(m *sip.Message, n int) bool {
	v, ok := routeValue(m, n)
	if !ok {
		return false
	}
	a, err := sip.ParseAddress(v)
	if err != nil {
		return false
	}
	_, lr := a.URI.Param("lr")
	return !lr
}

// routeValue returns the i-th Route value (0-based, over every Route
// header field in order).
func routeValue(m *sip.Message, i int) ([]byte, bool) {
	for it := m.Values(sip.KindRoute); ; i-- {
		v, ok := it.Next()
		if !ok {
			return nil, false
		}
		if i == 0 {
			return v, true
		}
	}
}

// toStrictRouter applies §16.6 step 6 for a strict next hop: the
// Request-URI goes to the end of the Route set, the strict router's URI
// becomes the Request-URI and leaves the Route set (together with our own
// n entries).
func toStrictRouter(m *sip.Message, n int) bool {
	v, _ := routeValue(m, n)
	a, err := sip.ParseAddress(v)
	if err != nil {
		return false
	}
	last := -1
	for i := m.Find(sip.KindRoute); i >= 0; i = m.FindNext(sip.KindRoute, i) {
		last = i
	}
	var buf [512]byte
	old := append(append(append(buf[:0], '<'), m.RequestURIBytes()...), '>')
	s, e := m.RequestURISpan()
	if m.Replace(s, e, a.RawURI) != nil || m.InsertHeader(last+1, "Route", old) != nil {
		return false
	}
	return removeRoutes(m, n+1) == nil
}

// removeRoutes deletes the first n Route values (those naming sipedge,
// RFC 3261 §16.4): whole header fields when all their values go, else the
// leading values and their commas.
func removeRoutes(m *sip.Message, n int) error {
	for i := m.Find(sip.KindRoute); i >= 0 && n > 0; i = m.FindNext(sip.KindRoute, i) {
		v := m.HeaderValue(i)
		vals := 0
		for rest := v; ; {
			k := sip.SplitComma(rest)
			vals++
			if k == len(rest) {
				break
			}
			rest = rest[k+1:]
		}
		if n >= vals {
			if err := m.DeleteHeader(i); err != nil {
				return err
			}
			n -= vals
			continue
		}
		rest := v
		for j := 0; j < n; j++ {
			rest = skipSpace(rest[sip.SplitComma(rest)+1:])
		}
		s, _ := m.HeaderValueSpan(i)
		if off := m.Offset(rest); off > s {
			return m.Delete(s, off)
		}
		return nil
	}
	return nil
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

// fixTopVia adds received (when the source address differs from sent-by,
// or rport is present) and fills an empty rport (RFC 3261 §18.2.1, RFC
// 3581 §4).
func fixTopVia(m *sip.Message, via *sip.Via, src netip.AddrPort) error {
	if via.HasRPort && via.RPort == 0 {
		// Find "rport" in the parameter list and append "=port".
		for rest := via.Params; ; {
			name, val, r, ok, _ := rest.Next()
			if !ok {
				break
			}
			if sip.EqualFold(name, "rport") && val == nil {
				if off := m.Offset(name); off >= 0 {
					var b [8]byte
					if err := m.Insert(off+len(name), strconv.AppendUint(append(b[:0], '='), uint64(src.Port()), 10)); err != nil {
						return err
					}
				}
				break
			}
			rest = r
		}
	}
	if !via.NeedsReceived(src.Addr()) {
		return nil
	}
	// Append ;received=IP at the end of the top Via value.
	_, e, ok := m.TopViaSpan()
	if !ok {
		return nil
	}
	var b [64]byte
	r := append(b[:0], ";received="...)
	r = src.Addr().Unmap().AppendTo(r)
	return m.Insert(e, r)
}

// AppendHostPort writes ap as a SIP host:port (IPv6 in brackets, an
// IPv4-mapped address as IPv4).
func AppendHostPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	if a.Is6() && !a.Is4In6() {
		b = append(b, '[')
		b = a.AppendTo(b)
		b = append(b, ']')
	} else {
		b = a.Unmap().AppendTo(b)
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}

// appendRR writes a Record-Route value for sipedge's side at ap, signed
// for the Call-ID (access.go). For a SIPS request (secure) the side reached
// over TLS is a sips URI (RFC 3261 §16.6 step 4), which implies TLS; a side
// the request did not use TLS on stays sip: with its transport, or its peer
// could not reach it.
func (c *Core) appendRR(b []byte, ap netip.AddrPort, proto transport.Proto, secure bool, callID []byte) []byte {
	if secure && proto == transport.TLS {
		b = append(b, "<sips:"...)
		b = AppendHostPort(b, ap)
		b = c.appendRRSig(b, callID)
		return append(b, ";lr>"...)
	}
	b = append(b, "<sip:"...)
	b = AppendHostPort(b, ap)
	// The side facing a WebSocket client says ;transport=ws or wss, as in
	// RFC 7118's examples: the client keeps sending on its connection
	// whatever the URI, but the entry names the hop it is connected to.
	if tp := proto.Param(); tp != "" {
		b = append(append(b, ";transport="...), tp...)
	}
	b = c.appendRRSig(b, callID)
	return append(b, ";lr>"...)
}

// setCSeq schedules the replacement of the CSeq number of m with n.
func setCSeq(m *sip.Message, n uint32) error {
	i := m.Find(sip.KindCSeq)
	if i < 0 {
		return nil
	}
	s, e := m.HeaderValueSpan(i)
	d := s
	for d < e && m.Bytes()[d] >= '0' && m.Bytes()[d] <= '9' {
		d++
	}
	var b [10]byte
	return m.Replace(s, d, strconv.AppendUint(b[:0], uint64(n), 10))
}
