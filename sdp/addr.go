package sdp

import "net/netip"

// Address and token syntax of RFC 8866 §9, on bytes. netip.ParseAddr takes
// a string, and converting the body to one would allocate on every parse.

// tokenChar reports the token characters of RFC 8866 §9:
// %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E.
var tokenChar = func() (t [256]bool) {
	for c := 0x21; c <= 0x7e; c++ {
		switch c {
		case 0x22, 0x28, 0x29, 0x2c, 0x2f, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x5b, 0x5c, 0x5d:
		default:
			t[c] = true
		}
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

// parseIPv4 parses a dotted-quad without leading zeros (RFC 8866 §9
// decimal-uchar; "010.0.0.1" would be read as octal by some stacks).
func parseIPv4(b []byte) (netip.Addr, bool) {
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

// parseIPv6 parses the text form of RFC 4291 §2.2 (with "::" and an
// embedded dotted-quad). Zones are refused: RFC 8866 has no syntax for them.
func parseIPv6(b []byte) (netip.Addr, bool) {
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
			v4, ok := parseIPv4(b[s:])
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

// isHostname reports a syntactically valid DNS name (RFC 1123 §2.1: labels
// of letters, digits and inner hyphens, at most 63 bytes each and 253 in
// all, one trailing dot allowed). A name whose last label is all digits is
// refused: it is a mistyped IPv4 address ("192.0.2.300"), not a host.
func isHostname(b []byte) bool {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > 253 {
		return false
	}
	start, digits := 0, true
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			l := i - start
			if l == 0 || l > 63 || b[start] == '-' || b[i-1] == '-' {
				return false
			}
			if i < len(b) {
				start, digits = i+1, true
			}
			continue
		}
		c := b[i]
		switch {
		case isDigit(c):
		case isAlpha(c) || c == '-':
			digits = false
		default:
			return false
		}
	}
	return !digits
}

// appendAddrType appends "IP4 " or "IP6 " and the address. An IPv4-mapped
// IPv6 address is written as IPv4 (callers unmap first).
func appendAddrType(dst []byte, a netip.Addr) []byte {
	if a.Is6() {
		dst = append(dst, "IP6 "...)
	} else {
		dst = append(dst, "IP4 "...)
	}
	return a.AppendTo(dst)
}
