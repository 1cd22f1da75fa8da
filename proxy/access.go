package proxy

import (
	"encoding/binary"

	"github.com/dchest/siphash"

	"sipedge/sip"
)

// Who may make sipedge send a request somewhere (no open relay).
//
// A request is served for one of three reasons: its source is in the
// trusted networks (Policy.AllowSources), a feature authenticated it
// (Request.Authenticate, digest in features/auth), or it is anonymous.
// Anonymous requests exist only when a feature lets untrusted sources past
// the access stage (without one, they get 403 there). The relay stage,
// right after the route stage, lets an anonymous request go on only when
// sipedge would deliver it to a local destination:
//
//   - outside a dialog: a Request-URI that names sipedge or one of its
//     configured domains, with no maddr, and no Route beyond sipedge's own;
//   - inside a dialog (To tag, or an ACK of a 2xx): one of the Route
//     entries naming sipedge (or a strict-routed Request-URI naming it)
//     carries the signature sipedge put in its Record-Route for this
//     Call-ID, so only dialogs sipedge record-routed can be continued.
//
// That covers every dress of a relay attempt: IP-literal Request-URI, a
// preloaded Route that points outside, maddr, strict routing through
// sipedge, and a local Request-URI behind a foreign Route.

// rrParam is the Record-Route URI parameter that carries the signature.
const rrParam = "ck"

// macLen is the signature's length in hex digits.
const macLen = 16

// macKey is a SipHash-2-4 key.
type macKey struct{ k0, k1 uint64 }

func newMACKey(b []byte) macKey {
	var k [16]byte
	copy(k[:], b)
	return macKey{binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])}
}

// sum is a keyed PRF over the parts: each part is hashed under a key
// mixed with the previous part's output, so parts need no buffer and
// the boundaries between them are fixed.
func (k macKey) sum(parts ...[]byte) uint64 {
	h := uint64(len(parts))
	for _, p := range parts {
		h = siphash.Hash(k.k0^h, k.k1, p)
	}
	return h
}

// appendRRSig writes ";ck=<signature>" for a Record-Route of this Call-ID.
func (c *Core) appendRRSig(b []byte, callID []byte) []byte {
	if !c.signRR {
		return b
	}
	b = append(b, ';')
	b = append(b, rrParam...)
	b = append(b, '=')
	return appendHex(b, c.rrKey.sum(callID))
}

// signedRoute reports whether the request carries, in a Route entry that
// names sipedge or in a Request-URI that does (a strict router put it
// there, RFC 3261 §16.4), the signature of a Record-Route sipedge added
// for this Call-ID.
func (r *Request) signedRoute() bool {
	c := r.core
	if !c.signRR {
		return false
	}
	var want [macLen]byte
	appendHex(want[:0], c.rrKey.sum(r.msg.CallID()))
	ok := func(u *sip.URI) bool {
		v, has := u.Param(rrParam)
		return has && len(v) == macLen && sip.EqualFold(v, string(want[:]))
	}
	n := 0
	for it := r.msg.Values(sip.KindRoute); n < r.routes; n++ {
		v, more := it.Next()
		if !more {
			break
		}
		if a, err := sip.ParseAddress(v); err == nil && ok(&a.URI) {
			return true
		}
	}
	if u, err := r.msg.RequestURI(); err == nil && r.ForSelf() && ok(&u) {
		return true
	}
	return false
}

// Authenticate marks the request as coming from a user a feature
// authenticated: it is served like one from a trusted network.
func (r *Request) Authenticate() { r.authed = true }

// Authenticated reports whether a feature authenticated the request.
func (r *Request) Authenticated() bool { return r.authed }

// Anonymous reports whether the request is neither from a trusted network
// nor authenticated.
func (r *Request) Anonymous() bool { return !r.authed && !r.Trusted() }

// IsLocal reports whether a URI names a local destination: sipedge itself
// or one of the configured domains. Unlike the registrar's rule, an empty
// domain list makes no other domain local: this is the test for requests
// from strangers.
func (r *Request) IsLocal(u *sip.URI) bool {
	if !u.IsSIP() {
		return false
	}
	if r.core.self.Load().Is(u.Host, u.Port, u.Kind == sip.SchemeSIPS) {
		return true
	}
	d := r.pol.Domains
	return d != nil && len(d.names) > 0 && d.local(u.Host)
}

// relayStage refuses anonymous requests that would leave for a
// destination that is not local (see the top of this file). ACKs are
// dropped instead of answered (§17.1.1.3); everything refused is counted.
func relayStage(r *Request) bool {
	if !r.Anonymous() || !r.core.authStage {
		return false
	}
	m := &r.msg
	k := m.MethodKind()
	if r.InDialog() || k == sip.ACK {
		if r.signedRoute() {
			return false
		}
		if k == sip.CANCEL {
			return false // matches a transaction or gets 481: never forwarded on its own
		}
		return r.refuseRelay()
	}
	if k == sip.CANCEL {
		return false
	}
	u, err := m.RequestURI()
	if err != nil || !r.IsLocal(&u) || r.HasFurtherRoute() {
		return r.refuseRelay()
	}
	if _, has := u.Param("maddr"); has {
		return r.refuseRelay()
	}
	return false
}

func (r *Request) refuseRelay() bool {
	r.core.stats.RelayDenied.Add(1)
	r.core.log.Debug("relay denied", "src", r.pkt.Src, "proto", r.pkt.Proto,
		"method", string(r.msg.Method()), "call_id", string(r.msg.CallID()))
	r.Respond(403, "Forbidden", nil)
	return true
}

// Retransmission reports whether the request belongs to a server
// transaction that exists already: the transaction stage answers it.
func (r *Request) Retransmission() bool {
	return r.core.txn.HasServer(&r.msg, &r.via)
}

// AckOfLocalResponse reports whether an ACK acknowledges a non-2xx answer
// sipedge sent without a transaction: its To tag is the one sipedge
// derives for the request it answered (same Call-ID, From and branch,
// RFC 3261 §17.1.1.3).
func (r *Request) AckOfLocalResponse() bool {
	if r.msg.MethodKind() != sip.ACK {
		return false
	}
	to, err := r.msg.To()
	if err != nil || len(to.Tag) != 16 {
		return false
	}
	var tag [16]byte
	return string(r.core.toTag(tag[:0], &r.msg, &r.via)) == string(to.Tag)
}
