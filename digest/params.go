package digest

import (
	"errors"
	"fmt"
)

// MaxValue is the longest Authorization or WWW-Authenticate value parsed,
// in bytes. Real ones are a few hundred; the bound keeps a hostile value
// from costing more than a fixed amount of work.
const MaxValue = 4096

// ErrNotDigest is returned for a header value whose scheme is not Digest
// (Basic, Bearer...): not an error in the message, only nothing this
// package answers; a server challenges again.
var ErrNotDigest = errors.New("digest: scheme is not Digest")

// ErrUnsupported is wrapped by the errors for a well-formed value that asks
// for what is not supported: an algorithm other than MD5, SHA-256 and
// SHA-512-256, or a qop other than auth. A server challenges again with
// what it supports.
var ErrUnsupported = errors.New("digest: not supported")

// Error is a syntax error (or, wrapping ErrUnsupported, an unsupported
// value) in a header value, with where it is.
type Error struct {
	Offset int    // byte offset in the value
	Near   string // up to 16 bytes of the value from Offset
	Reason string
	Err    error // ErrUnsupported or nil
}

func (e *Error) Error() string {
	return fmt.Sprintf("digest: %s at offset %d near %q", e.Reason, e.Offset, e.Near)
}

func (e *Error) Unwrap() error { return e.Err }

func errAt(v []byte, off int, reason string) error {
	return &Error{Offset: off, Near: near(v, off), Reason: reason}
}

func near(v []byte, off int) string {
	if off > len(v) {
		off = len(v)
	}
	end := min(off+16, len(v))
	return string(v[off:end])
}

// param is one auth-param (RFC 7616 §3.3: auth-param = token BWS "=" BWS
// ( token / quoted-string )). For a quoted-string, value is its content
// without the quotes and with its escapes as written.
type param struct {
	name, value []byte
	quoted      bool
	off         int // offset of name in the header value
}

// scanner walks "Digest" and the comma-separated auth-params after it.
type scanner struct {
	v []byte
	i int
}

// scheme reads the auth-scheme and the whitespace after it. A scheme
// other than Digest is ErrNotDigest.
func (s *scanner) scheme() error {
	if len(s.v) > MaxValue {
		return errAt(s.v, MaxValue, fmt.Sprintf("value longer than %d bytes", MaxValue))
	}
	s.skipLWS()
	start := s.i
	for s.i < len(s.v) && isTchar(s.v[s.i]) {
		s.i++
	}
	if s.i == start {
		return errAt(s.v, s.i, "expected an authentication scheme")
	}
	if !equalFold(s.v[start:s.i], "Digest") {
		return ErrNotDigest
	}
	if s.i < len(s.v) && !isLWS(s.v[s.i]) {
		return errAt(s.v, s.i, "expected a space after Digest")
	}
	s.skipLWS()
	if s.i == len(s.v) {
		return errAt(s.v, s.i, "no parameters after Digest")
	}
	return nil
}

// next returns the next auth-param; ok is false at the end. Empty list
// elements (",,") are skipped as RFC 7230 §7 asks of recipients.
func (s *scanner) next() (p param, ok bool, err error) {
	for s.i < len(s.v) && (isLWS(s.v[s.i]) || s.v[s.i] == ',') {
		s.i++
	}
	if s.i == len(s.v) {
		return p, false, nil
	}
	p.off = s.i
	start := s.i
	for s.i < len(s.v) && isTchar(s.v[s.i]) {
		s.i++
	}
	if s.i == start {
		return p, false, errAt(s.v, s.i, "expected a parameter name")
	}
	p.name = s.v[start:s.i]
	s.skipLWS()
	if s.i == len(s.v) || s.v[s.i] != '=' {
		// In SIP one header value holds one challenge or one set of
		// credentials (RFC 3261 §20.7, §20.44): a bare token here would
		// be a second scheme.
		return p, false, errAt(s.v, s.i, "expected '=' after parameter "+string(p.name))
	}
	s.i++
	s.skipLWS()
	if s.i < len(s.v) && s.v[s.i] == '"' {
		s.i++
		start = s.i
		for {
			if s.i == len(s.v) {
				return p, false, errAt(s.v, start-1, "unterminated quoted string")
			}
			c := s.v[s.i]
			if c == '"' {
				break
			}
			if c == '\\' {
				// quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F),
				// RFC 3261 §25.1.
				if s.i+1 == len(s.v) || s.v[s.i+1] == '\r' || s.v[s.i+1] == '\n' || s.v[s.i+1] >= 0x80 {
					return p, false, errAt(s.v, s.i, "bad escape in quoted string")
				}
				s.i += 2
				continue
			}
			if c < 0x20 && c != '\t' || c == 0x7f {
				return p, false, errAt(s.v, s.i, "control character in quoted string")
			}
			s.i++
		}
		p.value = s.v[start:s.i]
		p.quoted = true
		s.i++
	} else {
		start = s.i
		for s.i < len(s.v) && isTchar(s.v[s.i]) {
			s.i++
		}
		if s.i == start {
			return p, false, errAt(s.v, s.i, "expected a value for parameter "+string(p.name))
		}
		p.value = s.v[start:s.i]
	}
	s.skipLWS()
	if s.i < len(s.v) && s.v[s.i] != ',' {
		return p, false, errAt(s.v, s.i, "expected ',' after parameter "+string(p.name))
	}
	return p, true, nil
}

func (s *scanner) skipLWS() {
	for s.i < len(s.v) && isLWS(s.v[s.i]) {
		s.i++
	}
}

// isLWS accepts CR and LF as well: a folded header value may reach here
// unfolded or not.
func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// isTchar is RFC 7230's tchar, a superset of RFC 3261's token characters.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// unquotedWriter is what hashes and buffers have in common.
type unquotedWriter interface{ Write([]byte) (int, error) }

// writeUnquoted writes b with its quoted-pair escapes decoded.
func writeUnquoted(w unquotedWriter, b []byte) {
	start := 0
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			w.Write(b[start:i])
			i++
			start = i
		}
	}
	w.Write(b[start:])
}

// Unquote appends b, the content of a quoted string as the views of this
// package return it, to dst with its escapes decoded (RFC 3261 §25.1).
func Unquote(dst, b []byte) []byte {
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			i++
		}
		dst = append(dst, b[i])
	}
	return dst
}

// appendQuoted appends s as a quoted string, escaping '"' and '\'.
func appendQuoted(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range s {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}
