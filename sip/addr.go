package sip

import (
	"bytes"
	"errors"
)

// Errors of the address parser.
var (
	ErrAddress     = errors.New("sip: bad address")
	ErrDisplayName = errors.New("sip: bad display name")
	ErrAngle       = errors.New("sip: bad <URI>")
	ErrAddrSpec    = errors.New("sip: URI with '?' or ',' must be enclosed in <>")
)

// Address is a view of a name-addr or addr-spec with header parameters: the
// value of From, To, Contact, Route, Record-Route, Path (RFC 3261 §20.10).
type Address struct {
	Display  []byte // display name as written (quotes kept), nil if none
	URI      URI
	RawURI   []byte // the URI bytes (inside <> when there were brackets)
	Angle    bool   // the URI was enclosed in <>
	Params   Params // header parameters, starting at the first ';'
	Tag      []byte // the tag parameter, nil if absent
	Wildcard bool   // Contact: *
}

// Q returns the q parameter in thousandths (1000 when absent or invalid),
// so comparing contacts needs no floating point (RFC 3261 §20.10).
func (a *Address) Q() int {
	v, ok := a.Params.Get("q")
	if !ok {
		return 1000
	}
	q, ok := parseQ(v)
	if !ok {
		return 1000
	}
	return q
}

// Expires returns the expires parameter and whether it is present and
// numeric. Overlarge values saturate (RFC 4475 §3.1.2.4 allows it).
func (a *Address) Expires() (uint32, bool) {
	v, ok := a.Params.Get("expires")
	if !ok {
		return 0, false
	}
	return parseUint32Sat(v)
}

// parseQ parses qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
func parseQ(b []byte) (int, bool) {
	if len(b) == 0 || (b[0] != '0' && b[0] != '1') {
		return 0, false
	}
	q := int(b[0]-'0') * 1000
	if len(b) == 1 {
		return q, true
	}
	if b[1] != '.' || len(b) > 5 {
		return 0, false
	}
	mul := 100
	for _, c := range b[2:] {
		if !isDigit(c) {
			return 0, false
		}
		q += int(c-'0') * mul
		mul /= 10
	}
	if q > 1000 {
		return 0, false
	}
	return q, true
}

// parseUint32Sat parses digits, saturating at 2^32-1.
func parseUint32Sat(b []byte) (uint32, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		if v < 1<<32 {
			v = v*10 + uint64(c-'0')
		}
	}
	if v > 1<<32-1 {
		v = 1<<32 - 1
	}
	return uint32(v), true
}

// ParseAddress parses one address value. Forms (RFC 3261 §20.10, §25.1):
//
//	"Quoted Name" <uri> ;params
//	Token Name <uri> ;params      (lwsdisp: no LWS before '<' is accepted)
//	<uri> ;params
//	uri ;params                   (addr-spec: the URI ends at the first ';')
//	*                             (Contact wildcard)
func ParseAddress(b []byte) (Address, error) {
	var a Address
	err := parseAddress(&a, b)
	return a, err
}

// parseAddress fills *a; the pointer form avoids copying the large Address
// and URI structs on the validation path.
func parseAddress(a *Address, b []byte) error {
	b = trimLWS(b)
	if len(b) == 0 {
		return ErrAddress
	}
	if len(b) == 1 && b[0] == '*' {
		a.Wildcard = true
		return nil
	}
	i := 0
	switch {
	case b[0] == '"':
		e, err := quotedEnd(b, 0)
		if err != nil {
			return err
		}
		a.Display = b[:e]
		i = skipLWS(b, e)
		if i >= len(b) || b[i] != '<' {
			return ErrDisplayName
		}
	case b[0] == '<':
	default:
		// Either a scheme (addr-spec) or display-name tokens.
		j := 0
		for j < len(b) && isToken(b[j]) {
			j++
		}
		if j < len(b) && b[j] == ':' {
			return parseAddrSpec(a, b)
		}
		// *(token LWS) then '<'. Anything else (',', '@', quotes) is a
		// non-token display name: RFC 4475 §3.1.2.15.
		for {
			for j < len(b) && isToken(b[j]) {
				j++
			}
			k := skipLWS(b, j)
			if k >= len(b) {
				return ErrDisplayName
			}
			if b[k] == '<' {
				a.Display = trimLWS(b[:k])
				i = k
				break
			}
			if k == j || !isToken(b[k]) {
				return ErrDisplayName
			}
			j = k
		}
	}
	// b[i] == '<': the URI runs to '>' with no LWS inside (RFC 4475 §3.1.2.14).
	// The URI grammar has no LWS, so parseURI rejects the LWS of RFC 4475
	// §3.1.2.14 ("< sip:... >"); finding '>' needs no per-byte check.
	e := bytes.IndexByte(b[i+1:], '>')
	if e < 0 {
		return ErrAngle
	}
	e += i + 1
	a.Angle = true
	a.RawURI = b[i+1 : e]
	if err := parseURI(&a.URI, a.RawURI); err != nil {
		return err
	}
	return a.finishParams(b[e+1:])
}

func parseAddrSpec(a *Address, b []byte) error {
	e := 0
	for e < len(b) && b[e] != ';' && !isLWS(b[e]) {
		if b[e] == '?' || b[e] == ',' {
			return ErrAddrSpec
		}
		e++
	}
	a.RawURI = b[:e]
	if err := parseURI(&a.URI, a.RawURI); err != nil {
		return err
	}
	return a.finishParams(b[e:])
}

func (a *Address) finishParams(rest []byte) error {
	a.Params = Params(rest)
	p := a.Params
	for {
		name, value, r, ok, err := p.Next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if len(name) == 3 && equalFold(name, "tag") {
			if len(value) == 0 {
				return ErrParams
			}
			a.Tag = value
		}
		p = r
	}
	return nil
}

// ParseQ parses a q-value into thousandths (RFC 3261 §20.10 qvalue).
func ParseQ(b []byte) (int, bool) { return parseQ(b) }
