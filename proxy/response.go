package proxy

import (
	"net/netip"

	"sipedge/sip"
	"sipedge/transport"
)

// response handles a response from downstream. One that matches a client
// transaction goes to its branch (respctx.go). Any other is forwarded
// statelessly when its top Via is ours (RFC 3261 §16.7: "process as a
// stateless proxy"), which is how retransmitted 2xx reach the caller after
// the transaction ended, provided its branch carries sipedge's signature
// for the Via below it; otherwise it is stray (or forged) and dropped. A response is
// never sent toward a broadcast or unusable Via (RFC 4475 §3.3.10).
func (c *Core) response(r *Request) {
	m := &r.msg
	if c.txn.ClientResponse(m) {
		return
	}
	top, err := m.TopVia()
	if err != nil || !c.self.Load().Is(top.Host, top.Port, false) {
		c.stats.StrayResponses.Add(1)
		c.log.Debug("stray response dropped", "src", r.pkt.Src, "proto", r.pkt.Proto,
			"code", m.StatusCode(), "call_id", string(m.CallID()))
		return
	}
	it := m.Values(sip.KindVia)
	it.Next()
	v, ok := it.Next()
	if !ok {
		c.stats.StrayResponses.Add(1)
		return
	}
	next, err := sip.ParseVia(v)
	if err != nil {
		c.stats.StrayResponses.Add(1)
		return
	}
	if !c.signedBranch(top.Branch, &next, m.CallID()) {
		// A response that names sipedge on top without its signature
		// was not caused by a request sipedge sent: relaying it would
		// bounce a stranger's traffic at whatever the next Via says.
		c.stats.ForgedResponses.Add(1)
		c.log.Debug("forged response dropped", "src", r.pkt.Src, "proto", r.pkt.Proto,
			"code", m.StatusCode(), "call_id", string(m.CallID()))
		return
	}
	dst, proto, ok := viaDest(&next)
	if !ok {
		c.stats.StrayResponses.Add(1)
		return
	}
	m.ResetEdits()
	r.out = c.stripTopVia(r.out[:0], m)
	c.stats.StatelessForwards.Add(1)
	if err := c.sendNoWait(proto, dst, r.out); err != nil {
		c.stats.SendErrors.Add(1)
	}
}

// viaDest is where a response goes according to a Via that we did not
// receive the request on (§18.2.2 for a forwarded response): received (or
// sent-by) with rport (or sent-by port, or 5060).
func viaDest(v *sip.Via) (ap netip.AddrPort, proto transport.Proto, ok bool) {
	host := v.Host
	if len(v.Received) > 0 {
		host = v.Received
	}
	a, ok := sip.ParseIP(host)
	if !ok || !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || (a.Is4() && a.As4() == [4]byte{255, 255, 255, 255}) {
		return ap, 0, false
	}
	proto, err := transport.ParseProto(string(v.Transport))
	if err != nil {
		return ap, 0, false
	}
	port := v.RPort
	if port == 0 {
		port = v.Port
	}
	if port == 0 {
		port = int(sip.DefaultPort(proto.Secure()))
	}
	return netip.AddrPortFrom(a, uint16(port)), proto, true
}
