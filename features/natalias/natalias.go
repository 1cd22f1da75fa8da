// Package natalias keeps calls with phones behind NAT reachable inside
// their dialogs (package nat has the rules):
//
//   - a request that comes straight from a UA (one Via) whose Contact is
//     not where the packet came from gets ;alias=<source> appended to its
//     Contact URI before it is forwarded (branch hook);
//   - a response from a UA reached through the location service as a NATed
//     binding gets the same, with the address the UA was reached at (reply
//     hook);
//   - a WebSocket client (RFC 7118) is treated as always behind NAT, since
//     only its own connection reaches it: its requests' and responses'
//     Contacts are aliased with its connection's address whatever host
//     they name (typically a random .invalid one). Unlike a NATed binding,
//     this does not mark the call for the media relay: WebRTC media stay
//     end to end (features/callmedia).
//
// With the alias in the remote target, the other side's in-dialog requests
// (which come back through sipedge: it record-routes) find the NATed phone:
// the core routes a Request-URI with an alias to the aliased address and
// removes the parameter before it leaves (proxy.URITarget).
package natalias

import (
	"sipedge/nat"
	"sipedge/proxy"
	"sipedge/sip"
)

// Feature is the NAT aliasing feature. It has no state.
type Feature struct{}

// New returns the feature.
func New() *Feature { return &Feature{} }

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{
		Branch: []proxy.BranchHook{{Name: "nat-alias", Run: f.branch}},
		Reply:  []proxy.ReplyHook{{Name: "nat-alias", Run: f.reply}},
	}
}

// branch aliases the Contact of a request straight from a NATed UA. A
// REGISTER is left alone: the registrar (or the passive registrar) keeps
// the source with the binding instead.
func (f *Feature) branch(b *proxy.Branch) error {
	m := b.Msg
	if m.MethodKind() == sip.REGISTER || !nat.FromUA(m) {
		return nil
	}
	if b.InProto.WebSocket() {
		return nat.AliasWebSocketContact(m, b.Src, b.InProto)
	}
	if !nat.BehindRequest(m, b.Via, b.Src) {
		return nil
	}
	return nat.AliasContact(m, b.Src, b.InProto)
}

// reply aliases the Contact of a provisional or 2xx response of a UA that
// the location service reached behind NAT.
func (f *Feature) reply(rp *proxy.Reply) error {
	if rp.Target == nil || rp.Code <= 100 || rp.Code >= 300 {
		return nil
	}
	if rp.Target.Proto.WebSocket() {
		return nat.AliasWebSocketContact(rp.Resp, rp.Target.Addr, rp.Target.Proto)
	}
	if !rp.Target.NAT {
		return nil
	}
	return nat.AliasContact(rp.Resp, rp.Target.Addr, rp.Target.Proto)
}
