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
