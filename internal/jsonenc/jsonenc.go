// Package jsonenc appends JSON values exactly as encoding/json writes
// them, without reflection: for the records sipedge writes once per call
// (the call log's line with the call's media, the HEP quality report),
// where encoding/json's reflection and its second pass over what a
// MarshalJSON returns cost more than the rest of the call log
// (docs/PERFORMANCE.md). The tests compare every function with
// encoding/json's output.
package jsonenc

import (
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

const hex = "0123456789abcdef"

// safe marks the ASCII bytes encoding/json writes as they are in a
// string (with HTML escaping, its default): not control characters, '"',
// '\\', '<', '>' nor '&'.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// String appends s as a JSON string the way encoding/json does: HTML
// characters as \u003c..., bytes that are not UTF-8 as \ufffd, U+2028
// and U+2029 escaped.
func String(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Float appends f as encoding/json writes a float64: the shortest
// decimal that reads back as f, in exponent form below 1e-6 and from
// 1e21. encoding/json refuses NaN and infinities; they are written null
// here (a record is better with one unknown figure than not at all).
func Float(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// Time appends t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds, quoted).
func Time(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// AddrPort appends a as its MarshalText, quoted: "" for the zero value.
func AddrPort(b []byte, a netip.AddrPort) []byte {
	b = append(b, '"')
	b, _ = a.AppendText(b)
	return append(b, '"')
}

// Bool appends true or false.
func Bool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// Int and Uint append integers.
func Int(b []byte, v int64) []byte   { return strconv.AppendInt(b, v, 10) }
func Uint(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }

// Strings appends a []string as encoding/json does: null when nil.
func Strings(b []byte, list []string) []byte {
	if list == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, s)
	}
	return append(b, ']')
}
