// Package nat holds sipedge's NAT traversal rules for signalling: when a
// phone is behind NAT, and how a request finds it there again.
//
// A phone behind NAT writes its private address into Contact (and SDP);
// the packet arrives from the NAT's public address and port. Requests to
// the phone must go to that public address and port, from which the NAT
// forwards them while its mapping lives (RFC 3581 for responses; the same
// idea for requests, as Kamailio's nathelper does it).
//
// For registrations the registrar keeps the source of each REGISTER, so the
// location service sends to it (Behind). Inside a dialog the phone's
// Contact becomes the remote target of the other side (RFC 3261 §12.1), so
// sipedge appends the real source to that Contact URI as an alias
// parameter; a request that comes back with the alias in its Request-URI
// is sent to the aliased address and the parameter is removed before it
// leaves (AppendAlias, ParseAlias).
package nat

import (
	"net/netip"
	"strconv"

	"sipedge/transport"
)

// Behind reports whether a UA that announced contact (its Contact host and
// port; port 0 means the default 5060) but whose packet came from src is
// behind a NAT: the address it can be reached at is not the one it
// announced. A contact that is not an IP literal (a host name) is taken
// at its word.
func Behind(contact netip.AddrPort, src netip.AddrPort) bool {
	if !contact.Addr().IsValid() || !src.IsValid() {
		return false
	}
	port := contact.Port()
	if port == 0 {
		port = 5060
	}
	return contact.Addr().Unmap() != src.Addr().Unmap() || port != src.Port()
}

// Detect decides whether a UA that sent a request straight to sipedge is
// behind NAT, the way RFC 3581 and Kamailio's nathelper look at it:
//
//   - its top Via sent-by (the address it thinks it sends from) is not the
//     packet's source (RFC 3261 §18.2.1 would add received/rport); or
//   - its Contact is a private address while the packet came from a
//     public one.
//
// viaSentBy or contact may be the zero value when they are host names.
// A UA that registers a contact on another port of its own host (a third
// party registration from the same machine) is not behind NAT: its Via
// matches its source.
func Detect(viaSentBy, contact, src netip.AddrPort) bool {
	if !src.IsValid() {
		return false
	}
	if viaSentBy.Addr().IsValid() && Behind(viaSentBy, src) {
		return true
	}
	return contact.Addr().IsValid() && Private(contact.Addr()) && !Private(src.Addr())
}

// privatePrefixes is the one definition of "private network" in sipedge:
// nat.Private and the "private" keyword of trusted_networks both use it.
var privatePrefixes = [...]netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),     // RFC 1918
	netip.MustParsePrefix("172.16.0.0/12"),  // RFC 1918
	netip.MustParsePrefix("192.168.0.0/16"), // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),  // RFC 6598, carrier-grade NAT
	netip.MustParsePrefix("169.254.0.0/16"), // RFC 3927, IPv4 link-local
	netip.MustParsePrefix("fc00::/7"),       // RFC 4193, unique local
	netip.MustParsePrefix("fe80::/10"),      // RFC 4291, link-local
}

// PrivatePrefixes returns the networks that are not routable on the
// Internet and that sipedge calls private: RFC 1918, RFC 6598
// (100.64.0.0/10), IPv4 link-local (169.254.0.0/16), IPv6 unique local
// (fc00::/7) and IPv6 link-local (fe80::/10). Loopback is not among them.
// The slice is a fresh copy; changing it changes nothing else.
func PrivatePrefixes() []netip.Prefix {
	return append([]netip.Prefix(nil), privatePrefixes[:]...)
}

// Private reports whether a is an address that is not routable on the
// Internet: loopback or one of PrivatePrefixes. An IPv4-mapped IPv6
// address counts as its IPv4 address. SDP carrying such an address from a
// remote phone cannot be used as is.
func Private(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() {
		return true
	}
	for _, p := range privatePrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AliasParam is the Contact URI parameter that carries a NATed UA's real
// source: alias=ADDR~PORT~T, T being 1 UDP, 2 TCP, 3 TLS, 5 WS, 6 WSS (the
// format and protocol numbers of Kamailio's nathelper, so the two
// interoperate when they share a path).
const AliasParam = "alias"

// AppendAlias appends ";alias=ADDR~PORT~T" for src over proto to dst.
func AppendAlias(dst []byte, src netip.AddrPort, proto transport.Proto) []byte {
	dst = append(dst, ';')
	dst = append(dst, AliasParam...)
	dst = append(dst, '=')
	dst = src.Addr().Unmap().AppendTo(dst)
	dst = append(dst, '~')
	dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
	dst = append(dst, '~')
	switch proto {
	case transport.TCP:
		dst = append(dst, '2')
	case transport.TLS:
		dst = append(dst, '3')
	case transport.WS:
		dst = append(dst, '5')
	case transport.WSS:
		dst = append(dst, '6')
	default:
		dst = append(dst, '1')
	}
	return dst
}

// ParseAlias reads the value of an alias parameter (without "alias=").
func ParseAlias(v []byte) (netip.AddrPort, transport.Proto, bool) {
	var parts [3][]byte
	n := 0
	start := 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == '~' {
			if n == 3 {
				return netip.AddrPort{}, 0, false
			}
			parts[n] = v[start:i]
			n++
			start = i + 1
		}
	}
	if n != 3 {
		return netip.AddrPort{}, 0, false
	}
	a, err := netip.ParseAddr(string(parts[0]))
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, 0, false
	}
	port, err := strconv.ParseUint(string(parts[1]), 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, 0, false
	}
	var proto transport.Proto
	switch string(parts[2]) {
	case "1":
		proto = transport.UDP
	case "2":
		proto = transport.TCP
	case "3":
		proto = transport.TLS
	case "5":
		proto = transport.WS
	case "6":
		proto = transport.WSS
	default:
		return netip.AddrPort{}, 0, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), proto, true
}
