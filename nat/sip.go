package nat

import (
	"net/netip"

	"sipedge/sip"
	"sipedge/transport"
)

// The rules above applied to SIP messages: what the proxy core, the
// registrar and the feature packages ask of a request or a URI.

// ContactAddr returns the first Contact's address as an IP and port (port
// 0 when absent) and the parsed address. ok is false when there is no
// usable Contact (none, '*', a host name) or it is already aliased.
func ContactAddr(m *sip.Message) (ap netip.AddrPort, a sip.Address, ok bool) {
	i := m.Find(sip.KindContact)
	if i < 0 {
		return ap, a, false
	}
	v := m.HeaderValue(i)
	v = v[:sip.SplitComma(v)]
	a, err := sip.ParseAddress(v)
	if err != nil || a.Wildcard || !a.URI.IsSIP() {
		return ap, a, false
	}
	if _, has := a.URI.Param(AliasParam); has {
		return ap, a, false // already aliased (by us or a proxy before)
	}
	ip, isIP := sip.ParseIP(a.URI.Host)
	if !isIP {
		return ap, a, false
	}
	return netip.AddrPortFrom(ip, uint16(a.URI.Port)), a, true
}

// BehindRequest applies Detect to a request that came straight from its
// UA: top Via sent-by and first Contact against the packet source.
func BehindRequest(m *sip.Message, via *sip.Via, src netip.AddrPort) bool {
	var sentBy netip.AddrPort
	if ip, ok := sip.ParseIP(via.Host); ok {
		port := uint16(via.Port)
		if port == 0 {
			port = sip.DefaultPort(false)
		}
		sentBy = netip.AddrPortFrom(ip, port)
	}
	contact, _, _ := ContactAddr(m)
	return Detect(sentBy, contact, src)
}

// FromUA reports whether a request comes straight from the UA that wrote
// it: only its own Via. Behind a proxy, Contact and source differ for
// reasons that have nothing to do with NAT.
func FromUA(m *sip.Message) bool {
	it := m.Values(sip.KindVia)
	_, ok := it.Next()
	_, more := it.Next()
	return ok && !more
}

// AliasContact schedules the edit that appends ;alias=src to the first
// Contact URI (a UA behind NAT, reached at src). A Contact written without
// angle brackets gets them, so the parameter belongs to the URI and not to
// the header (RFC 3261 §20.10).
func AliasContact(m *sip.Message, src netip.AddrPort, proto transport.Proto) error {
	_, a, ok := ContactAddr(m)
	if !ok {
		return nil
	}
	return aliasURI(m, a, src, proto)
}

// AliasWebSocketContact is AliasContact for a WebSocket client (proto WS
// or WSS), whatever its Contact's host: such a client cannot accept
// connections and names a host nobody can reach (RFC 7118: typically a
// random name under .invalid), so a request inside its dialog can only
// get to it on the connection it opened, at src.
func AliasWebSocketContact(m *sip.Message, src netip.AddrPort, proto transport.Proto) error {
	i := m.Find(sip.KindContact)
	if i < 0 || !proto.WebSocket() {
		return nil
	}
	v := m.HeaderValue(i)
	a, err := sip.ParseAddress(v[:sip.SplitComma(v)])
	if err != nil || a.Wildcard || !a.URI.IsSIP() {
		return nil
	}
	if _, has := a.URI.Param(AliasParam); has {
		return nil
	}
	return aliasURI(m, a, src, proto)
}

// aliasURI schedules ;alias=src after the URI of Contact address a.
func aliasURI(m *sip.Message, a sip.Address, src netip.AddrPort, proto transport.Proto) error {
	start := m.Offset(a.RawURI)
	if start < 0 {
		return nil
	}
	end := start + len(a.RawURI)
	if len(a.URI.Headers) > 0 {
		end = m.Offset(a.URI.Headers) - 1 // before '?'
	}
	var buf [80]byte
	alias := AppendAlias(buf[:0], src, proto)
	if a.Angle {
		return m.Insert(end, alias)
	}
	if err := m.Insert(start, []byte{'<'}); err != nil {
		return err
	}
	return m.Insert(end, append(alias, '>'))
}

// AliasTarget returns the next hop named by an alias parameter in u.
func AliasTarget(u *sip.URI) (netip.AddrPort, transport.Proto, bool) {
	v, ok := u.Param(AliasParam)
	if !ok {
		return netip.AddrPort{}, 0, false
	}
	return ParseAlias(v)
}

// StripRURIAlias schedules the removal of the alias parameter from the
// Request-URI: the UA gets back the Contact it wrote.
func StripRURIAlias(m *sip.Message) error {
	u, err := m.RequestURI()
	if err != nil {
		return nil
	}
	v, ok := u.Param(AliasParam)
	if !ok || v == nil {
		return nil
	}
	end := m.Offset(v)
	start := end - len(";"+AliasParam+"=")
	if end < 0 || start < 0 {
		return nil
	}
	return m.Delete(start, end+len(v))
}
