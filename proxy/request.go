package proxy

import (
	"context"
	"net/netip"

	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// Request is the per-message context stages work on. It is pooled: a stage
// must not keep it (or anything it returns) after the walk.
type Request struct {
	core  *Core
	layer *transport.Layer
	pkt   *transport.Packet
	pol   *Policy // the configuration snapshot this request is served by
	msg   sip.Message
	via   sip.Via     // top Via, parsed when the request passed validation
	st    *txn.Server // server transaction, once created
	// routes is how many leading Route values name sipedge (RFC 3261
	// §16.4): they are removed when the request is forwarded.
	routes int
	out    []byte // response or forwarded message being built
	extra  []byte // extra header lines of a local response
	// deferred: this request left the reader for a DNS lookup (see
	// deferRequest) and may now wait for the network.
	deferred bool
	stage    int // index of the stage running
	// decision is where the request goes, once "locate" (or a feature
	// stage before it) decided.
	decision   Decision
	decided    bool
	wantDialog bool
	// redirects: how many 3xx responses the request's response context
	// may recurse on (FollowRedirects); 0 relays them.
	redirects int
	authed    bool  // a feature authenticated the request (Authenticate)
	trust     uint8 // Trusted, once worked out
	notes     notes
	branch    Branch // scratch for the branch hooks of stateless forwards
	// target and ruri are scratch for a stateless forward's target and
	// for the Request-URI handed to feature resolvers: pointers to them
	// outlive no stack frame, so neither is allocated per request.
	target Target
	ruri   sip.URI
	// one holds a decision of one target (locateStage); forward copies
	// it into the response context, which outlives the request.
	one single
	// capture, when set (TestRequest), receives local answers instead
	// of the network.
	capture func(code int, b []byte)
}

// single is the storage of a decision of one target, its one group and
// the list of that group, where it is made (the pooled request) and where
// it is kept (the response context): no allocation for the commonest
// decision, an in-dialog request's next hop.
type single struct {
	target [1]Target
	group  [1][]Target
}

// groups stores t and returns the decision's groups, which point into s.
func (s *single) groups(t Target) [][]Target {
	s.target[0] = t
	s.group[0] = s.target[:1:1]
	return s.group[:1:1]
}

// holds reports whether groups are s's own storage.
func (s *single) holds(groups [][]Target) bool {
	return len(groups) == 1 && len(groups[0]) == 1 && &groups[0][0] == &s.target[0]
}

func (r *Request) reset() {
	r.layer, r.pkt, r.pol, r.st, r.routes, r.deferred, r.stage = nil, nil, nil, nil, 0, false, 0
	r.decision, r.decided, r.wantDialog, r.authed, r.trust, r.notes, r.branch = Decision{}, false, false, false, trustUnknown, notes{}, Branch{}
	r.redirects = 0
	r.target, r.ruri, r.one = Target{}, sip.URI{}, single{}
	r.msg.Release() // drop references to the packet buffer, keep the index
}

// Msg is the parsed request.
func (r *Request) Msg() *sip.Message { return &r.msg }

// Via is its top Via.
func (r *Request) Via() *sip.Via { return &r.via }

// Src is where the request came from.
func (r *Request) Src() netip.AddrPort { return r.pkt.Src }

// Proto is the transport it came over.
func (r *Request) Proto() transport.Proto { return r.pkt.Proto }

// Policy is the configuration snapshot serving this request.
func (r *Request) Policy() *Policy { return r.pol }

// Decision is the routing decision, once made (stages after "locate").
func (r *Request) Decision() *Decision { return &r.decision }

// Decide sets the routing decision in a stage before "locate": the walk
// goes on with the stages after it (dialog, media, forward).
func (r *Request) Decide(d Decision) {
	r.decision, r.decided = d, true
}

// WantDialog asks that the dialog this request creates be followed to its
// end (sipedge must be able to end it: relayed media).
func (r *Request) WantDialog() { r.wantDialog = true }

// FollowRedirects asks the response context to recurse on the Contacts of
// up to n 3xx responses instead of relaying them (RFC 3261 §16.5, §16.7
// step 4): each contact becomes a new target, tried after the current
// ones. Contacts are followed only when their next hop is known without
// waiting for DNS (an IP address or a cached name); the others stay in the
// 3xx, which is then relayed as usual when nothing better comes.
func (r *Request) FollowRedirects(n int) {
	if n > maxRedirects {
		n = maxRedirects
	}
	r.redirects = n
}

// Rewrite lets a stage before "locate" change the request itself, for
// every stage after it, the routing decision and each branch: edit
// schedules byte edits on the message (a translated Request-URI, RFC 3261
// §16.5; a filtered SDP offer), which are then applied and the result
// parsed again. Edits that would leave an unparsable request are refused
// and the request stays as it was.
func (r *Request) Rewrite(edit func(m *sip.Message) error) error {
	m := &r.msg
	m.ResetEdits()
	if err := edit(m); err != nil {
		m.ResetEdits()
		return err
	}
	if !m.Edited() {
		return nil
	}
	buf := m.AppendTo(make([]byte, 0, m.Len()))
	m.ResetEdits()
	var nm sip.Message
	if err := nm.Parse(buf, r.pol.Limits); err != nil {
		return err
	}
	via, err := nm.TopVia()
	if err != nil {
		return err
	}
	r.msg, r.via = nm, via
	return nil
}

// Note returns a feature's value for this request.
func (r *Request) Note(n Note) any { return r.notes[n] }

// SetNote stores a feature's value for this request; its branch, reply and
// failure hooks read it back.
func (r *Request) SetNote(n Note, v any) { r.notes[n] = v }

// Ctx is the context for lookups: it forbids waiting for the network on a
// reader goroutine (WithoutBlocking), and allows it once deferred.
func (r *Request) Ctx() context.Context {
	if r.deferred {
		return context.Background()
	}
	return noBlock
}

// Defer continues the walk at the current stage on a goroutine of its own
// (a lookup it needs would block the reader).
func (r *Request) Defer() { r.core.deferRequest(r) }

// InDialog reports whether the request has a To tag (RFC 3261 §12.2).
func (r *Request) InDialog() bool {
	to, err := r.msg.To()
	return err == nil && len(to.Tag) > 0
}

// HasFurtherRoute reports whether Route values remain after ours.
func (r *Request) HasFurtherRoute() bool {
	n := 0
	for it := r.msg.Values(sip.KindRoute); ; {
		if _, ok := it.Next(); !ok {
			return n > r.routes
		}
		n++
	}
}

// OwnRoutes is the number of Route values at the top that name sipedge
// (RFC 3261 §16.4): they are removed when the request is forwarded.
func (r *Request) OwnRoutes() int { return r.routes }

// ForSelf reports whether the Request-URI names sipedge: a host that is one
// of its addresses or names, with a port it listens on (or none).
func (r *Request) ForSelf() bool {
	u, err := r.msg.RequestURI()
	if err != nil || !u.IsSIP() {
		return false
	}
	return r.core.self.Load().Is(u.Host, u.Port, u.Kind == sip.SchemeSIPS)
}

// unsupportedHeader builds "Unsupported: tag, tag" from every option tag of
// a Require or Proxy-Require header.
func (r *Request) unsupportedHeader(k sip.HeaderKind) []byte {
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

// DialogIDs returns what identifies a message's dialog (RFC 3261 §12):
// Call-ID, From tag and To tag (empty outside a dialog); ok is false when
// From or To cannot be read.
func DialogIDs(m *sip.Message) (callID, fromTag, toTag []byte, ok bool) {
	from, err1 := m.From()
	to, err2 := m.To()
	if err1 != nil || err2 != nil {
		return nil, nil, nil, false
	}
	return m.CallID(), from.Tag, to.Tag, true
}

// AppendKey writes parts separated by NUL: the keys of the feature tables
// (media calls, dialogs). A lookup with m[string(key)] does not allocate,
// which matters because every in-dialog request is looked up.
func AppendKey(dst []byte, parts ...[]byte) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, 0)
		}
		dst = append(dst, p...)
	}
	return dst
}
