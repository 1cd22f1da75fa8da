// Package topohide hides the inside network from configured peers
// (topology_hiding in the configuration): the next hops in the peer
// networks see sipedge as the far end of every dialog.
//
// Towards a peer, on each forwarded request (branch hook):
//   - Via: only sipedge's own Via goes (Target.HideVias); the core puts
//     the request's Vias back on each response of the branch, from its
//     response context (RFC 3261 §16.7 step 3 needs them). An ACK of a
//     2xx, which gets no response, loses them too.
//   - Contact: a URI naming an inside address becomes
//     sip:th.<token>@<sipedge towards the peer>; requests the peer sends
//     to it are routed to the original (URIResolver).
//   - Record-Route: entries of inside proxies in a dialog-creating
//     request go, replaced by one of sipedge's carrying them as a token
//     (;th=); an in-dialog request that comes back through it gets them
//     back as its Route set (stage "topo-route").
//   - Call-ID: "local@inside-address" becomes "th.<token>"; requests
//     coming back with it get the original, and each response gets the
//     Call-ID of the request it answers back.
//
// Responses going to a peer (to requests that came from one) lose inside
// Contacts and the Record-Route entries of inside proxies in the same way.
// Every token is an encryption under sipedge's key (token.go): no state
// is kept per dialog, so dialogs survive a restart.
package topohide

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"

	"sipedge/nat"
	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/transport"
)

// Config says towards whom and what is hidden.
type Config struct {
	Peers                             []netip.Prefix
	Via, Contact, RecordRoute, CallID bool
}

// Feature is topology hiding plugged into the core.
type Feature struct {
	core  *proxy.Core
	cfg   Config
	codec *codec
	note  proxy.Note // the Route set decoded by "topo-route"
	// localFor is sipedge's address towards a destination (the core's,
	// replaced in tests).
	localFor func(transport.Proto, netip.Addr) (netip.AddrPort, bool)
}

// Prefixes of what sipedge writes in place of hidden values.
const (
	userPrefix   = "th." // user part of a hidden Contact
	callIDPrefix = "th." // a hidden Call-ID
	rrParam      = "th"  // Record-Route URI parameter with the hidden Route set
)

// New builds the feature with the key from LoadKey.
func New(core *proxy.Core, cfg Config, key []byte) (*Feature, error) {
	c, err := newCodec(key)
	if err != nil {
		return nil, err
	}
	return &Feature{core: core, cfg: cfg, codec: c, note: core.NewNote(), localFor: core.LocalFor}, nil
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	h := proxy.Hooks{
		Branch:   []proxy.BranchHook{{Name: "topo-hide", Run: f.branch}},
		Reply:    []proxy.ReplyHook{{Name: "topo-restore", Run: f.reply}},
		Resolver: []proxy.URIResolver{f.resolve},
	}
	if f.cfg.RecordRoute {
		h.Stages = []proxy.Stage{{Name: "topo-route", Run: f.routeStage}}
	}
	return h
}

// peer reports whether a is in a peer network.
func (f *Feature) peer(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range f.cfg.Peers {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// internal reports whether ap is an inside address that a peer must not
// see: a private or loopback address (nat.Private), or one of sipedge's
// own other than self (its address towards the peer). A peer's own
// addresses are never inside, even in private networks.
func (f *Feature) internal(host []byte, port int, self netip.AddrPort) bool {
	a, ok := sip.ParseIP(host)
	if !ok {
		return false
	}
	a = a.Unmap()
	if f.peer(a) {
		return false
	}
	if a == self.Addr().Unmap() && (port == int(self.Port()) || (port == 0 && self.Port() == 5060)) {
		return false
	}
	return nat.Private(a) || f.core.Self().IsAddr(netip.AddrPortFrom(a, uint16(port)))
}

// branch hides towards a peer, and puts back what a peer's request
// carries hidden.
func (f *Feature) branch(b *proxy.Branch) error {
	m := b.Msg
	if f.peer(b.Target.Addr.Addr()) {
		if f.cfg.Via {
			b.Target.HideVias = true
		}
		if f.cfg.Contact {
			if err := f.hideContacts(m, b.Local, b.Target.Proto); err != nil {
				return err
			}
		}
		if f.cfg.RecordRoute && b.RecordRoute {
			if err := f.hideRecordRoutes(m, b.Local, b.Target.Proto); err != nil {
				return err
			}
		}
		if f.cfg.CallID {
			return f.hideCallID(m, b.Local)
		}
		return nil
	}
	if err := f.revealCallID(m); err != nil {
		return err
	}
	if rs, ok := b.Note(f.note).(*routeSet); ok {
		return insertRoutes(m, rs.values)
	}
	return nil
}

// reply restores what a branch to a peer hid in the responses coming
// back, and hides in the responses going to a peer.
func (f *Feature) reply(rp *proxy.Reply) error {
	resp := rp.Resp
	// Whatever the branch did to the Call-ID, the response goes back
	// with the one of the request it answers (RFC 3261 §8.2.6.2).
	if id, rid := resp.CallID(), rp.Req.CallID(); len(rid) > 0 && !bytes.Equal(id, rid) {
		if err := setCallID(resp, rid); err != nil {
			return err
		}
	}
	if f.peer(rp.Target.Addr.Addr()) {
		if f.cfg.RecordRoute && rp.Initial && rp.Req.Find(sip.KindRecordRoute) >= 0 {
			return restoreRecordRoutes(resp, rp.Req)
		}
		return nil
	}
	if !f.peer(rp.Src.Addr()) {
		return nil
	}
	local, ok := f.localFor(rp.InProto, rp.Src.Addr())
	if !ok {
		return nil
	}
	var err error
	if f.cfg.Contact {
		err = f.hideContacts(resp, local, rp.InProto)
	}
	if err == nil && f.cfg.RecordRoute && rp.Initial {
		err = f.hideResponseRecordRoutes(resp, local, rp.InProto)
	}
	return err
}

// resolve routes a request for a hidden Contact to the original.
func (f *Feature) resolve(u *sip.URI) (proxy.Target, bool, bool) {
	if !u.HasUser || !bytes.HasPrefix(u.User, []byte(userPrefix)) || !f.cfg.Contact || !f.core.IsSelfURI(u) {
		return proxy.Target{}, false, false
	}
	orig, ok := f.codec.decode(kindContact, u.User[len(userPrefix):])
	if !ok {
		return proxy.Target{}, true, false // ours in form, not made by us: 404
	}
	ou, err := sip.ParseURI(orig)
	if err != nil {
		return proxy.Target{}, true, false
	}
	t, ok := proxy.URITarget(&ou)
	t.URI = orig
	// A caller behind NAT: natalias put ;alias= after the hidden Contact
	// (its branch hook runs first); the NAT's address is the way in.
	if ap, proto, nated := nat.AliasTarget(u); nated {
		t.Addr, t.Proto, t.NAT, ok = ap, proto, true, true
	}
	return t, true, ok
}

// appendSelfURI writes sip:[user@]host:port[;transport=x] naming sipedge
// at local over proto.
func appendSelfURI(dst []byte, local netip.AddrPort, proto transport.Proto) []byte {
	dst = proxy.AppendHostPort(dst, local)
	if tp := proto.Param(); tp != "" {
		dst = append(append(dst, ";transport="...), tp...)
	}
	return dst
}

// hideContacts replaces each Contact URI naming an inside address with
// sipedge's URI towards the peer, the original in the user part.
func (f *Feature) hideContacts(m *sip.Message, local netip.AddrPort, proto transport.Proto) error {
	var buf [512]byte
	for it := m.Values(sip.KindContact); ; {
		v, ok := it.Next()
		if !ok {
			return nil
		}
		a, err := sip.ParseAddress(v)
		if err != nil || a.Wildcard || !a.URI.IsSIP() || !f.internal(a.URI.Host, a.URI.Port, local) {
			continue
		}
		off := m.Offset(a.RawURI)
		if off < 0 {
			continue
		}
		angle := off > 0 && m.Bytes()[off-1] == '<'
		u := buf[:0]
		if !angle {
			u = append(u, '<')
		}
		u = append(u, "sip:"...)
		u = append(u, userPrefix...)
		u = f.codec.appendToken(u, kindContact, a.RawURI)
		u = append(u, '@')
		u = appendSelfURI(u, local, proto)
		if !angle {
			// An addr-spec's parameters are the header's (RFC 3261
			// §20.10): the URI in brackets keeps them so.
			u = append(u, '>')
		}
		if err := m.Replace(off, off+len(a.RawURI), u); err != nil {
			return err
		}
	}
}

// hideCallID encodes a Call-ID of the form local@inside-address.
func (f *Feature) hideCallID(m *sip.Message, local netip.AddrPort) error {
	id := m.CallID()
	at := bytes.LastIndexByte(id, '@')
	if at < 0 || !f.internal(hostOf(id[at+1:]), 0, local) {
		return nil
	}
	var buf [256]byte
	v := append(buf[:0], callIDPrefix...)
	return setCallID(m, f.codec.appendToken(v, kindCallID, id))
}

// hostOf is the host of a Call-ID's "@" part: an IPv6 reference loses its
// brackets, a host:port its port.
func hostOf(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if e := bytes.IndexByte(h, ']'); e > 0 {
			return h[:e+1]
		}
		return h
	}
	if c := bytes.IndexByte(h, ':'); c >= 0 && bytes.IndexByte(h[c+1:], ':') < 0 {
		return h[:c]
	}
	return h
}

// revealCallID puts back a Call-ID that sipedge hid.
func (f *Feature) revealCallID(m *sip.Message) error {
	id := m.CallID()
	if !bytes.HasPrefix(id, []byte(callIDPrefix)) {
		return nil
	}
	orig, ok := f.codec.decode(kindCallID, id[len(callIDPrefix):])
	if !ok {
		return nil // someone else's Call-ID that looks like ours
	}
	return setCallID(m, orig)
}

func setCallID(m *sip.Message, id []byte) error {
	i := m.Find(sip.KindCallID)
	if i < 0 {
		return errors.New("topohide: no Call-ID")
	}
	return m.SetHeaderValue(i, id)
}

// Route sets are written for a token as uvarint-length-prefixed values,
// in the order they must follow sipedge's own entry in a Route header.
func appendRouteSet(dst []byte, values [][]byte) []byte {
	for _, v := range values {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// maxRoutes bounds a decoded Route set.
const maxRoutes = 32

func parseRouteSet(b []byte) ([][]byte, bool) {
	var out [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n == 0 || n > uint64(len(b)-k) || len(out) == maxRoutes {
			return nil, false
		}
		v := b[k : k+int(n)]
		// A value that would break the header it goes into is refused
		// (a valid token holds only what sipedge wrote, but the decoder
		// must not trust that).
		if bytes.ContainsAny(v, "\r\n\x00") {
			return nil, false
		}
		if _, err := sip.ParseAddress(v); err != nil {
			return nil, false
		}
		out = append(out, v)
		b = b[k+int(n):]
	}
	return out, len(out) > 0
}

// appendHiddenRR writes sipedge's Record-Route value carrying the token
// of a Route set.
func (f *Feature) appendHiddenRR(dst []byte, local netip.AddrPort, proto transport.Proto, values [][]byte) []byte {
	dst = append(dst, "<sip:"...)
	dst = appendSelfURI(dst, local, proto)
	dst = append(dst, ";lr;"...)
	dst = append(dst, rrParam...)
	dst = append(dst, '=')
	var set [512]byte
	dst = f.codec.appendToken(dst, kindRoutes, appendRouteSet(set[:0], values))
	return append(dst, '>')
}

// hideRecordRoutes removes the Record-Route entries of a dialog-creating
// request (proxies it went through inside), leaving in their place one of
// sipedge's with the token of them; the core adds its usual entry next to
// it. The peer's route set is then [that entry, sipedge's], and the entries
// follow sipedge's in the Route order of the callee (RFC 3261 §12.1.1).
func (f *Feature) hideRecordRoutes(m *sip.Message, local netip.AddrPort, proto transport.Proto) error {
	first := m.Find(sip.KindRecordRoute)
	if first < 0 {
		return nil
	}
	var values [][]byte
	for it := m.Values(sip.KindRecordRoute); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		values = append(values, v)
	}
	for i := first; i >= 0; i = m.FindNext(sip.KindRecordRoute, i) {
		if err := m.DeleteHeader(i); err != nil {
			return err
		}
	}
	at, _ := m.HeaderLine(first)
	var buf [1024]byte
	line := append(buf[:0], "Record-Route: "...)
	line = f.appendHiddenRR(line, local, proto, values)
	line = append(line, '\r', '\n')
	return m.Insert(at, line)
}

// restoreRecordRoutes appends the Record-Route header fields of req (hidden
// from the peer) after the last of resp: the inside side gets the route
// set it would have had without hiding.
func restoreRecordRoutes(resp, req *sip.Message) error {
	var buf [1024]byte
	b := buf[:0]
	for i := req.Find(sip.KindRecordRoute); i >= 0; i = req.FindNext(sip.KindRecordRoute, i) {
		b = append(b, "Record-Route: "...)
		b = append(b, req.HeaderValue(i)...)
		b = append(b, '\r', '\n')
	}
	last := -1
	for i := resp.Find(sip.KindRecordRoute); i >= 0; i = resp.FindNext(sip.KindRecordRoute, i) {
		last = i
	}
	if last < 0 {
		// The peer sent none back: it has no dialog route set through
		// sipedge either, so there is nothing to complete.
		return nil
	}
	_, at := resp.HeaderLine(last)
	return resp.Insert(at, b)
}

// hideResponseRecordRoutes removes, in a 2xx/18x going to a peer that
// sent the dialog-creating request, the Record-Route entries before
// sipedge's own (added by inside proxies nearer the callee), leaving one
// of sipedge's with their token. The peer, as UAC, reverses the list
// (RFC 3261 §12.1.2): the token holds them in that reversed order.
func (f *Feature) hideResponseRecordRoutes(m *sip.Message, local netip.AddrPort, proto transport.Proto) error {
	var hidden [][]byte
	boundary, keepFrom := -1, []byte(nil) // header of our first entry; that entry
	for i := m.Find(sip.KindRecordRoute); i >= 0 && boundary < 0; i = m.FindNext(sip.KindRecordRoute, i) {
		v := m.HeaderValue(i)
		for rest := v; len(rest) > 0; {
			k := sip.SplitComma(rest)
			val := bytes.TrimSpace(rest[:k])
			if a, err := sip.ParseAddress(val); err == nil && !a.URI.HasUser && f.core.IsSelfURI(&a.URI) {
				boundary, keepFrom = i, val
				break
			}
			hidden = append(hidden, val)
			if k == len(rest) {
				break
			}
			rest = rest[k+1:]
		}
	}
	if boundary < 0 || len(hidden) == 0 {
		return nil // no entry of ours, or none before it
	}
	for i := m.Find(sip.KindRecordRoute); i >= 0 && i < boundary; i = m.FindNext(sip.KindRecordRoute, i) {
		if err := m.DeleteHeader(i); err != nil {
			return err
		}
	}
	s, _ := m.HeaderValueSpan(boundary)
	if off := m.Offset(keepFrom); off > s {
		if err := m.Delete(s, off); err != nil {
			return err
		}
	}
	for i, j := 0, len(hidden)-1; i < j; i, j = i+1, j-1 {
		hidden[i], hidden[j] = hidden[j], hidden[i]
	}
	at, _ := m.HeaderLine(boundary)
	var buf [1024]byte
	line := append(buf[:0], "Record-Route: "...)
	line = f.appendHiddenRR(line, local, proto, hidden)
	line = append(line, '\r', '\n')
	return m.Insert(at, line)
}

// routeSet is the note "topo-route" leaves for the branch hook.
type routeSet struct{ values [][]byte }

// routeStage finds, among the leading Route entries naming sipedge, one
// with a hidden Route set: the request goes to the first entry of that
// set (loose routing, RFC 3261 §16.6 step 6), and the branch hook puts
// the set back as the request's Route. A request whose Request-URI is a
// hidden Contact gets the original.
func (f *Feature) routeStage(r *proxy.Request) bool {
	m := r.Msg()
	if m.Find(sip.KindRoute) < 0 {
		return false
	}
	var values [][]byte
	for it := m.Values(sip.KindRoute); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		a, err := sip.ParseAddress(v)
		if err != nil || a.URI.HasUser || !f.core.IsSelfURI(&a.URI) {
			break
		}
		if tok, ok := a.URI.Param(rrParam); ok && values == nil {
			if values, ok = f.decodeRoutes(tok); !ok {
				values = nil
			}
		}
	}
	if values == nil {
		return false
	}
	next, err := sip.ParseAddress(values[0])
	if err != nil {
		return false
	}
	t, ok := proxy.URITarget(&next.URI)
	if !ok {
		return false // a host name: left to the core, towards the Request-URI
	}
	if u, err := m.RequestURI(); err == nil {
		if rt, claimed, ok := f.resolve(&u); claimed && ok {
			t.URI = rt.URI
		}
	}
	r.SetNote(f.note, &routeSet{values: values})
	r.Decide(proxy.Decision{Groups: [][]proxy.Target{{t}}})
	return false
}

func (f *Feature) decodeRoutes(tok []byte) ([][]byte, bool) {
	b, ok := f.codec.decode(kindRoutes, tok)
	if !ok {
		return nil, false
	}
	return parseRouteSet(b)
}

// insertRoutes puts a Route set before the Route entries left in m after
// the core removed sipedge's (or before the first Via when none are).
func insertRoutes(m *sip.Message, values [][]byte) error {
	i := m.Find(sip.KindRoute)
	if i < 0 {
		i = m.Find(sip.KindVia)
	}
	if i < 0 {
		return errors.New("topohide: no place for the Route set")
	}
	for _, v := range values {
		if err := m.InsertHeader(i, "Route", v); err != nil {
			return err
		}
	}
	return nil
}
