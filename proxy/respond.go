package proxy

import (
	"bytes"
	"net/netip"

	"sipedge/sip"
	"sipedge/transport"
)

// respond sends a locally generated response to the request (RFC 3261
// §8.2.6): through its server transaction when one exists (so
// retransmissions are answered from it), else statelessly.
func (r *request) respond(code int, reason string, extra []byte) {
	c := r.core
	if r.msg.MethodKind() == sip.ACK {
		return // an ACK is never answered (§17.1.1.3)
	}
	r.out = c.localResponse(r.out[:0], &r.msg, &r.via, code, reason, r.extraWithServer(extra))
	c.stats.LocalResponses.Add(1)
	if r.st != nil {
		r.st.Respond(r.out, code)
		return
	}
	if err := c.send(r.layer, r.pkt, &r.via, r.out); err != nil {
		c.stats.SendErrors.Add(1)
		c.log.Warn("response not sent", "dst", r.pkt.Src, "proto", r.pkt.Proto, "status", code, "err", err)
	}
}

// localResponse builds a response to m: Via, From, To, Call-ID and CSeq
// copied, a To tag derived from the request (the same for a retransmission,
// §8.2.6.2), extra header lines, Content-Length: 0.
func (c *Core) localResponse(dst []byte, m *sip.Message, via *sip.Via, code int, reason string, extra []byte) []byte {
	var tag [16]byte
	toTag := c.toTag(tag[:0], m, via)
	return sip.AppendResponse(dst, m, code, reason, toTag, extra)
}

// extraWithServer appends the Server header to the caller's extra header
// lines, in a buffer the pooled request keeps.
func (r *request) extraWithServer(extra []byte) []byte {
	r.extra = append(r.extra[:0], extra...)
	if ua := r.core.cfg.UserAgent; ua != "" {
		r.extra = append(r.extra, "Server: "...)
		r.extra = append(r.extra, ua...)
		r.extra = append(r.extra, '\r', '\n')
	}
	return r.extra
}

// toTag derives a To tag from the request's Call-ID, From tag and top Via
// branch: a retransmitted request gets the same tag, so a stateless answer
// is still consistent (RFC 3261 §8.2.6.2, §16.11 for stateless proxies).
func (c *Core) toTag(dst []byte, m *sip.Message, via *sip.Via) []byte {
	h := sip.NewHash().AddUint64(c.tagKey).Add(m.CallID()).Add(m.Get(sip.KindFrom)).Add(via.Branch)
	return appendHex(dst, uint64(h))
}

// send delivers a response to where RFC 3261 §18.2.2 says: back over the
// connection for TCP/TLS, else for UDP to maddr (when an IP literal), else to
// the source address with the rport port (RFC 3581 §4) or the sent-by port.
func (c *Core) send(l *transport.Layer, pkt *transport.Packet, via *sip.Via, b []byte) error {
	if pkt.Proto.Reliable() {
		return l.Reply(pkt, b)
	}
	dst := ResponseTarget(pkt.Src, via, c.cfg.SymmetricResponses)
	if dst == pkt.Src {
		return l.Reply(pkt, b)
	}
	return l.Send(transport.UDP, dst, b)
}

// responseDest is where a server transaction sends its responses: the
// connection's peer for TCP/TLS (the transport reuses that connection), else
// the §18.2.2 target.
func (c *Core) responseDest(pkt *transport.Packet, via *sip.Via) netip.AddrPort {
	if pkt.Proto.Reliable() {
		return pkt.Src
	}
	return ResponseTarget(pkt.Src, via, c.cfg.SymmetricResponses)
}

// ResponseTarget applies RFC 3261 §18.2.2 and RFC 3581 §4 to a response for a
// request received over UDP from src with top Via via:
//
//   - maddr present (an IP literal): maddr, sent-by port or 5060;
//   - rport present, or symmetric: src address and port;
//   - otherwise: src address (the "received" address) and the sent-by port
//     or 5060.
//
// A Via that could not be parsed (zero Via) falls back to src.
func ResponseTarget(src netip.AddrPort, via *sip.Via, symmetric bool) netip.AddrPort {
	if via == nil || len(via.Host) == 0 {
		return src
	}
	port := uint16(via.Port)
	if port == 0 {
		port = 5060
	}
	if len(via.Maddr) > 0 {
		if a, ok := parseIP(via.Maddr); ok {
			return netip.AddrPortFrom(a, port)
		}
	}
	if via.HasRPort || symmetric {
		return src
	}
	return netip.AddrPortFrom(src.Addr(), port)
}

// parseIP parses an IPv4 or (bracketed) IPv6 literal without allocating
// (it runs several times per forwarded request: Via, Contact, targets).
// Only an IPv6 address with a zone, which SIP has no syntax for but which
// was accepted before, goes through netip.
func parseIP(b []byte) (netip.Addr, bool) {
	if len(b) > 2 && b[0] == '[' && b[len(b)-1] == ']' {
		b = b[1 : len(b)-1]
	}
	if len(b) == 0 || len(b) > 45 {
		return netip.Addr{}, false
	}
	if a, ok := sip.ParseIPv4(b); ok {
		return a, true
	}
	if a, ok := sip.ParseIPv6(b); ok {
		return a.Unmap(), true
	}
	if bytes.IndexByte(b, '%') < 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
