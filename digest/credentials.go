package digest

import (
	"crypto/subtle"
	"fmt"
)

// Credentials are the parameters of an Authorization or
// Proxy-Authorization value (RFC 3261 §22.4, RFC 7616 §3.4). The byte
// fields are views into the parsed value, not copies: they are valid as
// long as it is. Quoted fields hold the string's content without the quotes
// and with any backslash escapes as written; Verify decodes them.
type Credentials struct {
	Username  []byte
	Realm     []byte
	Nonce     []byte
	URI       []byte
	Response  []byte // hex, as sent
	Algorithm Algorithm
	CNonce    []byte
	QOP       []byte // "auth" as sent (any case), or nil for RFC 2069 credentials
	NC        uint32 // nonce count; 0 without qop
	Opaque    []byte

	ncText []byte // the 8 hex digits as sent: the response hashes those
}

// Bits of the parameters seen, to refuse duplicates.
const (
	seenUsername = 1 << iota
	seenRealm
	seenNonce
	seenURI
	seenResponse
	seenAlgorithm
	seenCNonce
	seenQOP
	seenNC
	seenOpaque
	seenStale
	seenDomain
)

// ParseCredentials parses an Authorization or Proxy-Authorization header
// value. username, realm, nonce, uri and response are required; with qop,
// cnonce and nc too. A parameter given twice is an error; unknown ones are
// ignored (RFC 7616 §3.4). A scheme other than Digest is ErrNotDigest; an
// algorithm or qop this package does not support wraps ErrUnsupported.
func ParseCredentials(v []byte) (Credentials, error) {
	var c Credentials
	s := scanner{v: v}
	if err := s.scheme(); err != nil {
		return c, err
	}
	seen := 0
	for {
		p, ok, err := s.next()
		if err != nil {
			return c, err
		}
		if !ok {
			break
		}
		var bit int
		switch {
		case equalFold(p.name, "username"):
			bit, c.Username = seenUsername, p.value
		case equalFold(p.name, "realm"):
			bit, c.Realm = seenRealm, p.value
		case equalFold(p.name, "nonce"):
			bit, c.Nonce = seenNonce, p.value
		case equalFold(p.name, "uri"):
			bit, c.URI = seenURI, p.value
		case equalFold(p.name, "response"):
			bit, c.Response = seenResponse, p.value
		case equalFold(p.name, "cnonce"):
			bit, c.CNonce = seenCNonce, p.value
		case equalFold(p.name, "opaque"):
			bit, c.Opaque = seenOpaque, p.value
		case equalFold(p.name, "algorithm"):
			bit = seenAlgorithm
			a, ok := ParseAlgorithm(p.value)
			if !ok || len(p.value) == 0 {
				return c, unsupported(v, p.off, "algorithm "+string(p.value))
			}
			c.Algorithm = a
		case equalFold(p.name, "qop"):
			// RFC 7616 §3.4 sends qop as a token; some user agents quote
			// it, which costs nothing to accept.
			bit = seenQOP
			if !equalFold(p.value, "auth") {
				return c, unsupported(v, p.off, "qop "+string(p.value))
			}
			c.QOP = p.value
		case equalFold(p.name, "nc"):
			bit = seenNC
			n, ok := parseNC(p.value)
			if !ok {
				return c, errAt(v, p.off, "nc must be 8 hex digits")
			}
			c.NC, c.ncText = n, p.value
		default:
			continue
		}
		if seen&bit != 0 {
			return c, errAt(v, p.off, "duplicate parameter "+string(p.name))
		}
		seen |= bit
	}
	for _, r := range [...]struct {
		bit  int
		name string
	}{{seenUsername, "username"}, {seenRealm, "realm"}, {seenNonce, "nonce"}, {seenURI, "uri"}, {seenResponse, "response"}} {
		if seen&r.bit == 0 {
			return c, errAt(v, len(v), "missing parameter "+r.name)
		}
	}
	switch {
	case c.QOP != nil && seen&seenCNonce == 0:
		return c, errAt(v, len(v), "qop=auth without cnonce")
	case c.QOP != nil && seen&seenNC == 0:
		return c, errAt(v, len(v), "qop=auth without nc")
	case c.QOP == nil && seen&seenNC != 0:
		// Without qop the response does not cover nc: a count that is not
		// protected must not be taken for one.
		return c, errAt(v, len(v), "nc without qop")
	}
	return c, nil
}

func unsupported(v []byte, off int, what string) error {
	return &Error{Offset: off, Near: near(v, off), Reason: what + " not supported (MD5, SHA-256, SHA-512-256 and qop=auth are)", Err: ErrUnsupported}
}

// parseNC reads nc-value = 8LHEX (RFC 7616 §3.4); upper case is accepted.
func parseNC(b []byte) (uint32, bool) {
	if len(b) != 8 {
		return 0, false
	}
	var n uint32
	for _, c := range b {
		d, ok := unhex(c)
		if !ok {
			return 0, false
		}
		n = n<<4 | uint32(d)
	}
	return n, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Verify reports whether the credentials' response is the one a client
// knowing the password behind ha1 (hex, as User.HA1 returns it for
// c.Algorithm) computes for a request with this method (RFC 7616 §3.4.1):
//
//	qop=auth:  H(HA1:nonce:nc:cnonce:qop:H(method:uri))
//	no qop:    H(HA1:nonce:H(method:uri))          (RFC 2069)
//
// The comparison takes the same time wherever the responses differ. It
// checks only the response: the realm, the uri, the nonce's freshness and
// its count are the caller's (see the package documentation). Verify
// allocates nothing.
func (c *Credentials) Verify(ha1, method []byte) bool {
	if c.Algorithm >= numAlgorithms {
		return false
	}
	n := 2 * c.Algorithm.size()
	if len(ha1) != n || len(c.Response) != n {
		return false
	}
	s := getHasher(c.Algorithm)
	defer putHasher(s)
	h := s.h
	h.Reset()
	h.Write(method)
	h.Write(colon)
	writeUnquoted(h, c.URI)
	ha2 := s.hexSum(&s.a2)

	h.Reset()
	h.Write(ha1)
	h.Write(colon)
	writeUnquoted(h, c.Nonce)
	h.Write(colon)
	if c.QOP != nil {
		nc := c.ncText
		if len(nc) != 8 {
			nc = appendNC(s.a1[:0], c.NC)
		}
		h.Write(nc)
		h.Write(colon)
		writeUnquoted(h, c.CNonce)
		h.Write(colon)
		h.Write(c.QOP)
		h.Write(colon)
	}
	h.Write(ha2)
	want := s.hexSum(&s.a1)
	// Hex digits sent in upper case are the same response.
	got := s.resp[:n]
	for i, b := range c.Response {
		got[i] = lower(b)
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}

const hexDigits = "0123456789abcdef"

// appendNC appends nc as 8 lower-case hex digits.
func appendNC(dst []byte, nc uint32) []byte {
	for shift := 28; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[nc>>uint(shift)&0xf])
	}
	return dst
}

// String is for logs: the credentials without the response.
func (c *Credentials) String() string {
	return fmt.Sprintf("Digest username=%q realm=%q algorithm=%s", c.Username, c.Realm, c.Algorithm)
}
