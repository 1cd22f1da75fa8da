package sip

import "net/netip"

// ParseIPv4 parses a dotted-quad without leading zeros (RFC 8866 §9
// decimal-uchar, RFC 3261 §25.1 IPv4address; "010.0.0.1" would be read as
// octal by some stacks). It allocates nothing, unlike netip.ParseAddr on a
// []byte, which is why SIP hosts and SDP addresses are read with it.
func ParseIPv4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	i := 0
	for k := 0; k < 4; k++ {
		if k > 0 {
			if i >= len(b) || b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		s, v := i, 0
		for i < len(b) && isDigit(b[i]) && i-s < 3 {
			v = v*10 + int(b[i]-'0')
			i++
		}
		if i == s || v > 255 || (i-s > 1 && b[s] == '0') {
			return netip.Addr{}, false
		}
		a[k] = byte(v)
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

func hexVal(c byte) int {
	switch {
	case isDigit(c):
		return int(c - '0')
	case (c|0x20) >= 'a' && (c|0x20) <= 'f':
		return int(c|0x20) - 'a' + 10
	}
	return -1
}

// ParseIPv6 parses the text form of RFC 4291 §2.2 (with "::" and an
// embedded dotted-quad), without brackets. Zones are refused: neither SIP
// URIs (RFC 3261 §25.1) nor SDP (RFC 8866) have a syntax for them.
func ParseIPv6(b []byte) (netip.Addr, bool) {
	var a [16]byte
	ellipsis := -1 // byte index in a where "::" was
	i, n := 0, 0
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		ellipsis = 0
		i = 2
		if i == len(b) {
			return netip.AddrFrom16(a), true
		}
	}
	for n < 16 {
		s, v := i, 0
		for i < len(b) && i-s < 4 {
			h := hexVal(b[i])
			if h < 0 {
				break
			}
			v = v<<4 | h
			i++
		}
		if i == s {
			return netip.Addr{}, false
		}
		if i < len(b) && b[i] == '.' {
			// Embedded IPv4 in the last 32 bits.
			if n > 12 {
				return netip.Addr{}, false
			}
			v4, ok := ParseIPv4(b[s:])
			if !ok {
				return netip.Addr{}, false
			}
			q := v4.As4()
			copy(a[n:], q[:])
			n += 4
			i = len(b)
			break
		}
		a[n], a[n+1] = byte(v>>8), byte(v)
		n += 2
		if i == len(b) {
			break
		}
		if b[i] != ':' {
			return netip.Addr{}, false
		}
		i++
		if i < len(b) && b[i] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = n
			i++
			if i == len(b) {
				break
			}
		} else if i == len(b) {
			return netip.Addr{}, false // trailing single colon
		}
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	if n < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		shift := 16 - n
		for k := n - 1; k >= ellipsis; k-- {
			a[k+shift] = a[k]
		}
		for k := ellipsis + shift - 1; k >= ellipsis; k-- {
			a[k] = 0
		}
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(a), true
}

// ParseIP parses an IPv4 or (bracketed) IPv6 literal as written in a SIP
// host (RFC 3261 §25.1) without allocating: Via, Contact and Request-URI
// hosts are read several times per forwarded request. Only an IPv6
// address with a zone, which SIP has no syntax for, goes through netip.
// The address is returned unmapped.
func ParseIP(b []byte) (netip.Addr, bool) {
	if len(b) > 2 && b[0] == '[' && b[len(b)-1] == ']' {
		b = b[1 : len(b)-1]
	}
	if len(b) == 0 || len(b) > 45 {
		return netip.Addr{}, false
	}
	if a, ok := ParseIPv4(b); ok {
		return a, true
	}
	if a, ok := ParseIPv6(b); ok {
		return a.Unmap(), true
	}
	zone := false
	for _, c := range b {
		if c == '%' {
			zone = true
			break
		}
	}
	if !zone {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// DefaultPort is the port of a SIP URI or Via that names none: 5061 over
// TLS (and for sips URIs), else 5060 (RFC 3261 §19.1.2, §18.2.2; RFC 3263
// §4.2). The one place this rule is written.
func DefaultPort(tls bool) uint16 {
	if tls {
		return 5061
	}
	return 5060
}
