package sip

import "errors"

// ErrParams reports a malformed header parameter list.
var ErrParams = errors.New("sip: bad header parameters")

// Params is a header parameter list as written, starting at the first ';'
// (LWS allowed around ';' and '=' per RFC 3261 §25.1 SEMI and EQUAL).
// Iterate with Next, look up with Get. Values are returned as written:
// quoted strings keep their quotes.
type Params []byte

// Next returns the next parameter and the remaining list. ok is false at
// the end or on a syntax error (err set).
func (p Params) Next() (name, value []byte, rest Params, ok bool, err error) {
	b := []byte(p)
	i := skipLWS(b, 0)
	if i == len(b) {
		return nil, nil, nil, false, nil
	}
	if b[i] != ';' {
		return nil, nil, nil, false, ErrParams
	}
	i = skipLWS(b, i+1)
	ns := i
	for i < len(b) && isToken(b[i]) {
		i++
	}
	if i == ns {
		return nil, nil, nil, false, ErrParams
	}
	name = b[ns:i]
	j := skipLWS(b, i)
	if j < len(b) && b[j] == '=' {
		j = skipLWS(b, j+1)
		vs := j
		if j < len(b) && b[j] == '"' {
			e, qerr := quotedEnd(b, j)
			if qerr != nil {
				return nil, nil, nil, false, qerr
			}
			j = e
		} else {
			// gen-value = token / host / quoted-string; hosts add ':' '[' ']'
			for j < len(b) && (isToken(b[j]) || b[j] == ':' || b[j] == '[' || b[j] == ']') {
				j++
			}
			if j == vs {
				return nil, nil, nil, false, ErrParams
			}
		}
		value = b[vs:j]
		i = j
	}
	return name, value, Params(b[i:]), true, nil
}

// Valid checks the whole list.
func (p Params) Valid() bool {
	for {
		_, _, rest, ok, err := p.Next()
		if err != nil {
			return false
		}
		if !ok {
			return true
		}
		p = rest
	}
}

// Get returns the value of the named parameter (case-insensitive name) and
// whether it is present. A parameter without '=' is present with a nil value.
func (p Params) Get(name string) ([]byte, bool) {
	for {
		n, v, rest, ok, _ := p.Next()
		if !ok {
			return nil, false
		}
		if equalFold(n, name) {
			return v, true
		}
		p = rest
	}
}

// quotedEnd returns the offset after the closing quote of the quoted string
// starting at b[i] == '"'. quoted-pair (backslash and any byte but CR/LF)
// is honoured, so "\"" does not end the string (RFC 3261 §25.1).
func quotedEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
			if j < len(b) && (b[j] == '\r' || b[j] == '\n') {
				return 0, ErrQuote
			}
		case '"':
			return j + 1, nil
		}
	}
	return 0, ErrQuote
}

// ErrQuote reports an unterminated quoted string (RFC 4475 §3.1.2.6).
var ErrQuote = errors.New("sip: unterminated quoted string")

// Unquote returns the content of a quoted string without its quotes (escapes
// kept), or b unchanged when it is not quoted.
func Unquote(b []byte) []byte {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		return b[1 : len(b)-1]
	}
	return b
}
