package proxy

import (
	"net/netip"

	"sipedge/sip"
	"sipedge/transport"
)

// respond sends a locally generated response to the request (RFC 3261
// §8.2.6): through its server transaction when one exists (so
// retransmissions are answered from it), else statelessly.
func (r *Request) Respond(code int, reason string, extra []byte) {
	c := r.core
	if r.msg.MethodKind() == sip.ACK {
		return // an ACK is never answered (§17.1.1.3)
	}
	r.out = c.localResponse(r.out[:0], r, code, reason, r.extraWithServer(extra))
	if r.amplifies(len(r.out)) {
		// A spoofed UDP source would have sipedge send a victim more
		// than the attacker sent: no answer (RFC 3261 §26.3.2.4's
		// concern, made a hard rule for strangers).
		c.stats.Amplification.Add(1)
		return
	}
	c.countLocal(code)
	if r.capture != nil {
		r.capture(code, append([]byte(nil), r.out...))
		return
	}
	if r.st != nil {
		r.st.Respond(r.out, code)
		return
	}
	if err := c.send(r, r.out); err != nil {
		c.stats.SendErrors.Add(1)
		c.log.Warn("response not sent", "dst", r.pkt.Src, "proto", r.pkt.Proto, "status", code, "err", err)
	}
}

// MaxAmplification bounds, as a ratio to the request's size, what sipedge
// answers to an unauthenticated request over UDP from outside the trusted
// networks (whose source address may be forged).
const MaxAmplification = 1.5

// amplifies reports whether an answer of n bytes would exceed it.
func (r *Request) amplifies(n int) bool {
	return r.pkt != nil && r.pkt.Proto == transport.UDP && !r.authed &&
		float64(n) > MaxAmplification*float64(len(r.pkt.Data)) && !r.Trusted()
}

// localResponse builds a response to the request: Via (the top one with
// received and rport, §18.2.1), From, To, Call-ID and CSeq copied, a To tag
// derived from the request (the same for a retransmission, §8.2.6.2),
// extra header lines, Content-Length: 0.
func (c *Core) localResponse(dst []byte, r *Request, code int, reason string, extra []byte) []byte {
	return c.responseTo(dst, &r.msg, &r.via, r.pkt.Src, code, reason, extra)
}

// responseTo is localResponse for a request m with top Via via from src.
func (c *Core) responseTo(dst []byte, m *sip.Message, via *sip.Via, src netip.AddrPort, code int, reason string, extra []byte) []byte {
	var tag [16]byte
	toTag := c.toTag(tag[:0], m, via)
	return sip.AppendResponseFrom(dst, m, src, code, reason, toTag, extra)
}

// extraWithServer appends the Server header to the caller's extra header
// lines, in a buffer the pooled request keeps.
func (r *Request) extraWithServer(extra []byte) []byte {
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
func (c *Core) send(r *Request, b []byte) error {
	l, pkt := r.layer, r.pkt
	if pkt.Proto.Reliable() {
		return l.Reply(pkt, b)
	}
	dst := responseTarget(pkt.Src, &r.via, r.pol.SymmetricResponses, r.Trusted())
	if dst == pkt.Src {
		return l.Reply(pkt, b)
	}
	return l.Send(transport.UDP, dst, b)
}

// responseDest is where a server transaction sends its responses: the
// connection's peer for TCP/TLS (the transport reuses that connection), else
// the §18.2.2 target.
func (c *Core) responseDest(r *Request) netip.AddrPort {
	if r.pkt.Proto.Reliable() {
		return r.pkt.Src
	}
	return responseTarget(r.pkt.Src, &r.via, r.pol.SymmetricResponses, r.Trusted())
}

// responseTarget applies RFC 3261 §18.2.2 and RFC 3581 §4 to a response for a
// request received over UDP from src with top Via via:
//
//   - from outside the trusted networks: src, always: a stranger's Via
//     (maddr, sent-by port) must not point sipedge's answers at a third
//     party (reflection);
//   - maddr present (an IP literal): maddr, sent-by port or 5060;
//   - rport present, or symmetric: src address and port;
//   - otherwise: src address (the "received" address) and the sent-by port
//     or 5060.
//
// A Via that could not be parsed (zero Via) falls back to src.
func responseTarget(src netip.AddrPort, via *sip.Via, symmetric, trusted bool) netip.AddrPort {
	if !trusted || via == nil || len(via.Host) == 0 {
		return src
	}
	port := uint16(via.Port)
	if port == 0 {
		port = sip.DefaultPort(false)
	}
	if len(via.Maddr) > 0 {
		if a, ok := sip.ParseIP(via.Maddr); ok {
			return netip.AddrPortFrom(a, port)
		}
	}
	if via.HasRPort || symmetric {
		return src
	}
	return netip.AddrPortFrom(src.Addr(), port)
}

// Fits reports whether a local answer with these extra header lines may
// be sent to the request: false when it would exceed the amplification
// bound for a stranger over UDP (a feature then answers with less).
func (r *Request) Fits(code int, reason string, extra []byte) bool {
	r.out = r.core.localResponse(r.out[:0], r, code, reason, r.extraWithServer(extra))
	return !r.amplifies(len(r.out))
}
