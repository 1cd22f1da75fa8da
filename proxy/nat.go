package proxy

import (
	"net/netip"

	"sipedge/nat"
	"sipedge/sip"
	"sipedge/transport"
)

// NAT handling in signalling (package nat explains the rules):
//
//   - a request that comes straight from a UA (one Via) whose Contact is
//     not where the packet came from gets ;alias=<source> appended to its
//     Contact URI before it is forwarded;
//   - a response from a UA reached through the location service gets the
//     same, with the address the UA was reached at;
//   - a request whose Request-URI carries an alias is sent to the aliased
//     address, and the parameter is removed before it leaves.
//
// With the alias in the remote target, the other side's in-dialog requests
// (which come back through sipedge: it record-routes) find the NATed phone.

// contactAddr returns the first Contact's address as an IP and port (port
// 0 when absent), the header's index and the parsed address. ok is false
// when there is no usable Contact (none, '*', a host name).
func contactAddr(m *sip.Message) (ap netip.AddrPort, i int, a sip.Address, ok bool) {
	i = m.Find(sip.KindContact)
	if i < 0 {
		return ap, -1, a, false
	}
	v := m.HeaderValue(i)
	v = v[:sip.SplitComma(v)]
	a, err := sip.ParseAddress(v)
	if err != nil || a.Wildcard || !a.URI.IsSIP() {
		return ap, i, a, false
	}
	if _, has := a.URI.Param(nat.AliasParam); has {
		return ap, i, a, false // already aliased (by us or a proxy before)
	}
	ip, isIP := parseIP(a.URI.Host)
	if !isIP {
		return ap, i, a, false
	}
	return netip.AddrPortFrom(ip, uint16(a.URI.Port)), i, a, true
}

// behindNAT applies nat.Detect to a request that came straight from its
// UA: top Via sent-by and first Contact against the packet source.
func behindNAT(m *sip.Message, via *sip.Via, src netip.AddrPort) bool {
	var sentBy netip.AddrPort
	if ip, ok := parseIP(via.Host); ok {
		port := via.Port
		if port == 0 {
			port = 5060
		}
		sentBy = netip.AddrPortFrom(ip, uint16(port))
	}
	contact, _, _, _ := contactAddr(m)
	return nat.Detect(sentBy, contact, src)
}

// aliasContact schedules the edit that appends ;alias=src to the first
// Contact URI (a UA behind NAT, reached at src). A Contact written without
// angle brackets gets them, so the parameter belongs to the URI and not to
// the header (RFC 3261 §20.10).
func aliasContact(m *sip.Message, src netip.AddrPort, proto transport.Proto) {
	_, _, a, ok := contactAddr(m)
	if !ok {
		return
	}
	start := m.Offset(a.RawURI)
	if start < 0 {
		return
	}
	end := start + len(a.RawURI)
	if len(a.URI.Headers) > 0 {
		end = m.Offset(a.URI.Headers) - 1 // before '?'
	}
	var buf [80]byte
	alias := nat.AppendAlias(buf[:0], src, proto)
	if a.Angle {
		_ = m.Insert(end, alias)
		return
	}
	_ = m.Insert(start, []byte{'<'})
	_ = m.Insert(end, append(alias, '>'))
}

// fromUA reports whether a request comes straight from the UA that wrote
// it: only its own Via. Behind a proxy, Contact and source differ for
// reasons that have nothing to do with NAT.
func fromUA(m *sip.Message) bool {
	it := m.Values(sip.KindVia)
	_, ok := it.Next()
	_, more := it.Next()
	return ok && !more
}

// aliasTarget returns the next hop named by an alias parameter in u.
func aliasTarget(u *sip.URI) (Target, bool) {
	v, ok := u.Param(nat.AliasParam)
	if !ok {
		return Target{}, false
	}
	ap, proto, ok := nat.ParseAlias(v)
	if !ok {
		return Target{}, false
	}
	return Target{Proto: proto, Addr: ap}, true
}

// stripRURIAlias schedules the removal of the alias parameter from the
// Request-URI: the UA gets back the Contact it wrote.
func stripRURIAlias(m *sip.Message) {
	u, err := m.RequestURI()
	if err != nil {
		return
	}
	v, ok := u.Param(nat.AliasParam)
	if !ok {
		return
	}
	end := m.Offset(v)
	if end < 0 {
		return
	}
	start := end - len(";"+nat.AliasParam+"=")
	if v == nil || start < 0 {
		return
	}
	_ = m.Delete(start, end+len(v))
}
