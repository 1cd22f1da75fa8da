// Package peerflow reaches, in a cluster of sipedge instances sharing
// their bindings (package cluster), the phones whose flow another instance
// holds.
//
// A phone behind NAT registered over UDP through instance A can be reached
// only from A's socket: its NAT lets in what comes from the address it
// sent its REGISTER to (and a TCP, TLS or WebSocket phone only over its
// own connection, which ends at A). So a call that instance B routes to
// such a binding goes through A, the way RFC 3327 Path sends it through an
// edge proxy: B pushes a Route naming A that carries a flow token —
//
//	Route: <sip:A-ip:A-port;lr;flow=0a7f000001c350.3b2f…>
//
// the transport and the address A received the REGISTER from, signed with
// the cluster's shared secret (SipHash) — and A, finding its own Route
// with a valid token, forwards the request to that flow as if it had
// looked the binding up itself (stage "peer-flow"). A record-routes, so
// the dialog's later requests come through A too. No request leaves A for
// an address a token did not name: a forged or altered token is refused
// with 403, and only the other instances are trusted to send one.
//
// Why a hop through the owner and not a handover of the socket: sockets
// cannot move between machines, and a Route is what every SIP element
// already understands; the cost is one extra hop inside the cluster for
// calls that reach a phone through another instance than the one it
// registered to. Only bindings that need their flow take the hop (NATed
// UDP, TCP, TLS, WebSocket); a phone reachable at its Contact is sent to
// directly by any instance. When the owner is dead (no heartbeat for
// cluster.DeadAfter), bindings are reached directly from the routing
// instance, which works wherever the NAT lets it, until the phone's next
// REGISTER through another instance makes that one the owner.
package peerflow

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/dchest/siphash"

	"sipedge/proxy"
	"sipedge/registrar"
	"sipedge/sip"
	"sipedge/transport"
)

// Nodes is the cluster as the feature reads it (*cluster.Cluster).
type Nodes interface {
	Node() string
	Alive(node string) (netip.AddrPort, bool)
}

// Feature is the peer-flow feature of one instance.
type Feature struct {
	nodes  Nodes
	k0, k1 uint64
	stats  struct{ Handed, Delivered, Refused atomic.Uint64 }
}

// Stats are the feature's counters.
type Stats struct {
	Handed    uint64 // requests routed through the instance that owns the flow
	Delivered uint64 // requests of other instances delivered to a flow held here
	Refused   uint64 // flow tokens refused (forged, altered, or from a stranger): 403
}

// param is the Route URI parameter of the flow token.
const param = "flow"

// New returns the feature; secret is the cluster's shared secret.
func New(nodes Nodes, secret []byte) *Feature {
	h := sha256.Sum256(append([]byte("sipedge peer flow\x00"), secret...))
	return &Feature{nodes: nodes, k0: binary.LittleEndian.Uint64(h[:8]), k1: binary.LittleEndian.Uint64(h[8:16])}
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{Stages: []proxy.Stage{{Name: "peer-flow", Run: f.stage}}}
}

// Stats returns the counters.
func (f *Feature) Stats() Stats {
	return Stats{Handed: f.stats.Handed.Load(), Delivered: f.stats.Delivered.Load(), Refused: f.stats.Refused.Load()}
}

// needsFlow: bindings only their owner's socket or connection reaches.
func needsFlow(b *registrar.Binding) bool {
	return b.Source.IsValid() && len(b.Path) == 0 && (b.NAT && b.Proto == transport.UDP || b.Proto.Reliable())
}

// Via implements proxy.Owners.
func (f *Feature) Via(b *registrar.Binding) (proxy.Target, bool) {
	if b.Owner == f.nodes.Node() || !needsFlow(b) {
		return proxy.Target{}, false
	}
	owner, ok := f.nodes.Alive(b.Owner)
	if !ok {
		return proxy.Target{}, false
	}
	route := make([]byte, 0, 96)
	route = append(route, "<sip:"...)
	route = owner.AppendTo(route)
	route = append(route, ";lr;"+param+"="...)
	route = f.appendToken(route, b.Proto, b.Source)
	route = append(route, '>')
	f.stats.Handed.Add(1)
	return proxy.Target{URI: []byte(b.URI), Proto: transport.UDP, Addr: owner, Q: b.Q, Path: [][]byte{route}}, true
}

// appendToken writes hex(proto | address | port) "." hex(MAC).
func (f *Feature) appendToken(dst []byte, p transport.Proto, src netip.AddrPort) []byte {
	var raw [1 + 16 + 2]byte
	raw[0] = byte(p)
	n := 1
	if src.Addr().Is4() {
		a := src.Addr().As4()
		n += copy(raw[n:], a[:])
	} else {
		a := src.Addr().As16()
		n += copy(raw[n:], a[:])
	}
	binary.BigEndian.PutUint16(raw[n:], src.Port())
	n += 2
	dst = hex.AppendEncode(dst, raw[:n])
	dst = append(dst, '.')
	var mac [8]byte
	binary.BigEndian.PutUint64(mac[:], siphash.Hash(f.k0, f.k1, raw[:n]))
	return hex.AppendEncode(dst, mac[:])
}

// parseToken checks a token and returns the flow it names.
func (f *Feature) parseToken(tok string) (transport.Proto, netip.AddrPort, bool) {
	var raw [1 + 16 + 2 + 1 + 8]byte
	body, sig, ok := strings.Cut(tok, ".")
	if !ok || len(body)%2 != 0 || len(sig) != 16 || len(body)/2 > 19 {
		return 0, netip.AddrPort{}, false
	}
	n, err := hex.Decode(raw[:], []byte(body))
	if err != nil || (n != 1+4+2 && n != 1+16+2) {
		return 0, netip.AddrPort{}, false
	}
	var mac [8]byte
	if _, err := hex.Decode(mac[:], []byte(sig)); err != nil {
		return 0, netip.AddrPort{}, false
	}
	if binary.BigEndian.Uint64(mac[:]) != siphash.Hash(f.k0, f.k1, raw[:n]) {
		return 0, netip.AddrPort{}, false
	}
	var addr netip.Addr
	if n == 7 {
		addr = netip.AddrFrom4([4]byte(raw[1:5]))
	} else {
		addr = netip.AddrFrom16([16]byte(raw[1:17]))
	}
	port := binary.BigEndian.Uint16(raw[n-2 : n])
	return transport.Proto(raw[0]), netip.AddrPortFrom(addr, port), true
}

// stage delivers a request another instance routed through this one to
// the flow its token names.
func (f *Feature) stage(r *proxy.Request) bool {
	own := r.OwnRoutes()
	if own == 0 {
		return false
	}
	m := r.Msg()
	var tok string
	n := 0
	for it := m.Values(sip.KindRoute); n < own; n++ {
		v, ok := it.Next()
		if !ok {
			break
		}
		a, err := sip.ParseAddress(v)
		if err != nil {
			continue
		}
		if t, has := a.URI.Param(param); has {
			tok = string(t)
			break
		}
	}
	if tok == "" {
		return false
	}
	proto, dst, ok := f.parseToken(tok)
	if !ok || !r.Trusted() {
		f.stats.Refused.Add(1)
		r.Respond(403, "Forbidden (Flow Token)", nil)
		return true
	}
	f.stats.Delivered.Add(1)
	r.Decide(proxy.Decision{Groups: [][]proxy.Target{{{Proto: proto, Addr: dst, NAT: proto == transport.UDP}}}})
	return false
}
