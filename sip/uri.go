package sip

import (
	"bytes"
	"errors"
)

// SchemeKind classifies a URI scheme.
type SchemeKind uint8

const (
	SchemeOther SchemeKind = iota
	SchemeSIP
	SchemeSIPS
	SchemeTel
)

// URI is a view of a URI (RFC 3261 §19.1, RFC 3966 for tel). Every field is a
// slice of the bytes parsed, in escaped form as written: %-escapes are never
// decoded here, so nothing can be unescaped twice (RFC 4475 §3.1.1.3).
// Compare with URIEqual, decode a field with Unescape.
type URI struct {
	Scheme   []byte
	Kind     SchemeKind
	User     []byte // sip/sips userinfo user part; may contain ';' (RFC 4475 §3.1.1.9)
	Password []byte
	HasUser  bool   // an '@' was present (user may still be empty)
	Host     []byte // hostname, IPv4 address, or IPv6 reference with brackets
	Port     int    // 0 when absent (HasPort tells an explicit ":0" apart)
	HasPort  bool   // a port was written, so Port is meaningful even when 0
	Params   []byte // uri-parameters after the first ';', without it
	Headers  []byte // after '?', without it
	Opaque   []byte // tel and other schemes: everything after "scheme:"
}

// Errors from the view parsers. They carry no position; Parse wraps them in
// a ParseError pointing at the header that failed.
var (
	ErrURIScheme  = errors.New("sip: bad URI scheme")
	ErrURIHost    = errors.New("sip: bad URI host")
	ErrURIPort    = errors.New("sip: bad URI port")
	ErrURIUser    = errors.New("sip: bad URI user part")
	ErrURIParams  = errors.New("sip: bad URI parameters")
	ErrURIHeaders = errors.New("sip: bad URI headers")
	ErrURIChar    = errors.New("sip: bad character in URI")
	errNoVia      = errors.New("sip: no Via")
)

// IsSIP reports whether the URI is sip: or sips:.
func (u *URI) IsSIP() bool { return u.Kind == SchemeSIP || u.Kind == SchemeSIPS }

// Param returns a uri-parameter (case-insensitive name) and whether present.
func (u *URI) Param(name string) ([]byte, bool) { return uriParam(u.Params, name) }

// ParseURI parses an absolute URI. sip and sips URIs are parsed fully;
// tel and unknown schemes (RFC 4475 §3.3.2) only have their scheme checked
// and the rest kept opaque.
func ParseURI(b []byte) (URI, error) {
	var u URI
	err := parseURI(&u, b)
	return u, err
}

func parseURI(u *URI, b []byte) error {
	i := 0
	for i < len(b) && (isAlnum(b[i]) || b[i] == '+' || b[i] == '-' || b[i] == '.') {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ':' || !isAlpha(b[0]) {
		return ErrURIScheme
	}
	u.Scheme = b[:i]
	rest := b[i+1:]
	switch {
	case equalFold(u.Scheme, "sip"):
		u.Kind = SchemeSIP
	case equalFold(u.Scheme, "sips"):
		u.Kind = SchemeSIPS
	case equalFold(u.Scheme, "tel"):
		u.Kind = SchemeTel
	}
	if !u.IsSIP() {
		if len(rest) == 0 {
			return ErrURIChar
		}
		for _, c := range rest {
			if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' {
				return ErrURIChar
			}
		}
		u.Opaque = rest
		return nil
	}
	return parseSIPURI(u, rest)
}

// parseSIPURI parses what follows "sip:" (RFC 3261 §25.1 SIP-URI).
func parseSIPURI(u *URI, b []byte) error {
	// userinfo ends at the first '@': '@' may appear nowhere else unescaped.
	at := bytes.IndexByte(b, '@')
	p := 0
	if at >= 0 {
		u.HasUser = true
		ui := b[:at]
		colon := -1
		pct := false
		for i, c := range ui {
			if charClass[c]&cUserChar == 0 {
				if c == ':' {
					colon = i
					break
				}
				return ErrURIUser
			}
			pct = pct || c == '%'
		}
		if colon >= 0 {
			u.User = ui[:colon]
			u.Password = ui[colon+1:]
			for _, c := range u.Password {
				if charClass[c]&cPassChar == 0 {
					return ErrURIUser
				}
				pct = pct || c == '%'
			}
		} else {
			u.User = ui
		}
		if pct && !validEscapes(ui) {
			return ErrURIUser
		}
		p = at + 1
	}
	// host
	hs := p
	if p < len(b) && b[p] == '[' {
		for p < len(b) && b[p] != ']' {
			p++
		}
		if p >= len(b) {
			return ErrURIHost
		}
		p++
		if !validIPv6(b[hs+1 : p-1]) {
			return ErrURIHost
		}
	} else {
		for p < len(b) && charClass[b[p]]&cHostChar != 0 {
			p++
		}
		if p == hs {
			return ErrURIHost
		}
	}
	u.Host = b[hs:p]
	if p < len(b) && b[p] == ':' {
		p++
		ps := p
		port := 0
		for p < len(b) && isDigit(b[p]) {
			port = port*10 + int(b[p]-'0')
			if port > 65535 {
				return ErrURIPort
			}
			p++
		}
		if p == ps {
			return ErrURIPort
		}
		u.Port, u.HasPort = port, true
	}
	if p < len(b) && b[p] == ';' {
		p++
		ps := p
		pct := false
		nameStart := p // empty names (";;" or ";=x") are refused
		for p < len(b) && b[p] != '?' {
			c := b[p]
			if charClass[c]&cParamChar == 0 {
				switch {
				case c == ';' && p > nameStart && b[nameStart] != '=':
					nameStart = p + 1
				case c == '=':
				default:
					return ErrURIParams
				}
			}
			pct = pct || c == '%'
			p++
		}
		if p == nameStart || b[nameStart] == '=' {
			return ErrURIParams
		}
		u.Params = b[ps:p]
		if pct && !validEscapes(u.Params) {
			return ErrURIParams
		}
	}
	if p < len(b) && b[p] == '?' {
		p++
		ps := p
		for ; p < len(b); p++ {
			c := b[p]
			if charClass[c]&cHnvChar == 0 && c != '=' && c != '&' {
				return ErrURIHeaders
			}
		}
		u.Headers = b[ps:p]
		if len(u.Headers) == 0 || !validEscapes(u.Headers) {
			return ErrURIHeaders
		}
	}
	if p != len(b) {
		return ErrURIChar
	}
	return nil
}

// validEscapes checks that every '%' starts a %HEX HEX escape.
func validEscapes(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] == '%' {
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// validIPv6 is a syntax check of an IPv6 address between brackets. It is
// deliberately tolerant of the "three colons" form RFC 5118 §4.10 says to
// accept ([2001:db8:::192.0.2.1]); routing code resolves addresses with
// net/netip, which refuses what cannot be used.
func validIPv6(b []byte) bool {
	if len(b) < 2 || len(b) > 45 {
		return false
	}
	colons := 0
	for _, c := range b {
		switch {
		case c == ':':
			colons++
		case isHex(c) || c == '.':
		default:
			return false
		}
	}
	return colons >= 2
}

// uriParam finds a parameter in "a=b;c;d=e" (no LWS: URI grammar).
func uriParam(params []byte, name string) ([]byte, bool) {
	for len(params) > 0 {
		n := 0
		for n < len(params) && params[n] != ';' {
			n++
		}
		p := params[:n]
		eq := -1
		for i, c := range p {
			if c == '=' {
				eq = i
				break
			}
		}
		key := p
		var val []byte
		if eq >= 0 {
			key, val = p[:eq], p[eq+1:]
		}
		if equalFold(key, name) {
			return val, true
		}
		if n == len(params) {
			break
		}
		params = params[n+1:]
	}
	return nil, false
}

// Unescape appends the %-decoded form of b to dst. Decoding happens exactly
// once, at the point of comparison or lookup, never on stored values.
func Unescape(dst, b []byte) []byte {
	for i := 0; i < len(b); i++ {
		if b[i] == '%' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
			dst = append(dst, unhex(b[i+1])<<4|unhex(b[i+2]))
			i += 2
			continue
		}
		dst = append(dst, b[i])
	}
	return dst
}

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	default:
		return lower(c) - 'a' + 10
	}
}

// escapedEqual compares two escaped strings per RFC 3261 §19.1.4:
// "characters other than those in the reserved set are equivalent to their
// %HEX HEX encoding". An escape of any other character is decoded once and
// compares equal to that character written plainly; an escape of a reserved
// character (';' '/' '?' ':' '@' '&' '=' '+' '$' ',') stays an escape, equal
// only to the same escape (hex digits in any case), since it means something
// other than the delimiter it encodes (sip:alice%3Bx@ is not sip:alice;x@).
// Bytes compare case-sensitively, as RFC 3261 §19.1.4 requires for user and
// password; with fold, letters compare case-insensitively (host, params).
func escapedEqual(a, b []byte, fold bool) bool { return compareEscaped(a, b, fold, false) }

// unescapedEqual compares two escaped strings after decoding every escape
// once, reserved characters included: for URI header values, which stand
// for header field values where an escaped ':' is the ':' it encodes.
func unescapedEqual(a, b []byte, fold bool) bool { return compareEscaped(a, b, fold, true) }

func compareEscaped(a, b []byte, fold, all bool) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ca, na := decodeAt(a, i, all)
		cb, nb := decodeAt(b, j, all)
		if fold && ca < 256 && cb < 256 {
			ca, cb = int(lower(byte(ca))), int(lower(byte(cb)))
		}
		if ca != cb {
			return false
		}
		i += na
		j += nb
	}
	return i == len(a) && j == len(b)
}

// decodeAt reads the character at b[i] and how many bytes it takes. A
// %-escape yields the character it encodes, except that without all an
// escape of a reserved character yields 256 + the character, so it never
// equals a plain byte.
func decodeAt(b []byte, i int, all bool) (int, int) {
	if b[i] == '%' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
		c := unhex(b[i+1])<<4 | unhex(b[i+2])
		if !all && isReserved(c) {
			return 256 + int(c), 3
		}
		return int(c), 3
	}
	return int(b[i]), 1
}

// isReserved: reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" /
// "$" / "," (RFC 3261 §25.1, from RFC 2396).
func isReserved(c byte) bool {
	switch c {
	case ';', '/', '?', ':', '@', '&', '=', '+', '$', ',':
		return true
	}
	return false
}

// URIEqual compares two SIP URIs per RFC 3261 §19.1.4: scheme and host
// case-insensitive, user and password case-sensitive, escapes of unreserved
// characters equal to the characters (see escapedEqual), a port present on
// both (with the same value) or on neither, the user, ttl, method, maddr and
// transport parameters equal if present in either, other parameters compared
// only when present in both, and the headers equal (see uriHeadersEqual).
// Non-SIP URIs compare their opaque parts byte for byte under the same
// escape rule.
func URIEqual(a, b *URI) bool {
	if !equalFold(a.Scheme, string(b.Scheme)) {
		return false
	}
	if !a.IsSIP() {
		return escapedEqual(a.Opaque, b.Opaque, false)
	}
	// An explicit port, even :0, never matches an absent one: "A URI
	// omitting any component with a default value will not match a URI
	// explicitly containing that component with its default value".
	if a.HasUser != b.HasUser || !escapedEqual(a.User, b.User, false) ||
		!escapedEqual(a.Password, b.Password, false) ||
		!escapedEqual(a.Host, b.Host, true) || a.HasPort != b.HasPort || a.Port != b.Port {
		return false
	}
	for _, name := range [...]string{"user", "ttl", "method", "maddr", "transport"} {
		va, oka := a.Param(name)
		vb, okb := b.Param(name)
		if oka != okb || (oka && !escapedEqual(va, vb, true)) {
			return false
		}
	}
	// Other parameters: compare those present in both.
	ps := a.Params
	for len(ps) > 0 {
		n := 0
		for n < len(ps) && ps[n] != ';' {
			n++
		}
		p := ps[:n]
		key := p
		for i, c := range p {
			if c == '=' {
				key = p[:i]
				break
			}
		}
		// A name given twice counts by its first value, as Param reads it
		// (the duplicate's own value would make a URI differ from itself).
		val, _ := uriParam(a.Params, string(key))
		if vb, ok := uriParam(b.Params, string(key)); ok && !escapedEqual(val, vb, true) {
			return false
		}
		if n == len(ps) {
			break
		}
		ps = ps[n+1:]
	}
	return uriHeadersEqual(a.Headers, b.Headers)
}

// uriHeadersEqual compares the headers of two URIs (hname "=" hvalue joined
// by '&'). RFC 3261 §19.1.4: "URI header components are never ignored. Any
// present header component MUST be present in both URIs and match": the
// two lists must hold the same headers in any order, each as many times in
// one as in the other. Names compare case-insensitively (§7.3.1), values
// case-sensitively, both after unescaping (an hvalue is the escaped form of
// a header field value); a header written without '=' has an empty value.
func uriHeadersEqual(a, b []byte) bool {
	for rest := a; ; {
		h, r, more := nextURIHeader(rest)
		if !more {
			break
		}
		if countURIHeader(a, h) != countURIHeader(b, h) {
			return false
		}
		rest = r
	}
	// Every header of a has its match in b, as often; b must hold nothing
	// else.
	return countURIHeaders(a) == countURIHeaders(b)
}

// nextURIHeader splits the first header off a '&'-separated list. Empty
// elements ("a&&b", a trailing '&') hold no header and are skipped.
func nextURIHeader(l []byte) (h, rest []byte, ok bool) {
	for len(l) > 0 {
		i := bytes.IndexByte(l, '&')
		switch {
		case i < 0:
			return l, nil, true
		case i > 0:
			return l[:i], l[i+1:], true
		}
		l = l[1:]
	}
	return nil, nil, false
}

// countURIHeaders returns the number of headers in a list.
func countURIHeaders(l []byte) int {
	n := 0
	for {
		_, r, ok := nextURIHeader(l)
		if !ok {
			return n
		}
		n++
		l = r
	}
}

// countURIHeader returns how many headers of l match h.
func countURIHeader(l, h []byte) int {
	hn, hv := splitURIHeader(h)
	n := 0
	for {
		x, r, ok := nextURIHeader(l)
		if !ok {
			return n
		}
		xn, xv := splitURIHeader(x)
		if unescapedEqual(xn, hn, true) && unescapedEqual(xv, hv, false) {
			n++
		}
		l = r
	}
}

// splitURIHeader splits "hname=hvalue" at the first '='.
func splitURIHeader(h []byte) (name, value []byte) {
	for i, c := range h {
		if c == '=' {
			return h[:i], h[i+1:]
		}
	}
	return h, nil
}
