package sip

import "errors"

// ErrAuth reports a malformed Authorization or Proxy-Authorization value.
var ErrAuth = errors.New("sip: bad credentials")

// Credentials is a view of an Authorization / Proxy-Authorization value
// (RFC 3261 §25.1 credentials, RFC 7616 digest): the scheme and its
// comma-separated auth-params. Values are returned as written: quoted
// strings keep their quotes (use Unquote).
type Credentials struct {
	Scheme []byte
	params []byte
}

// ParseCredentials parses "Scheme name=value, name="quoted", ...". An
// unknown scheme parses too (RFC 4475 §3.3.7): the registrar decides.
func ParseCredentials(b []byte) (Credentials, error) {
	var c Credentials
	b = trimLWS(b)
	i := 0
	for i < len(b) && isToken(b[i]) {
		i++
	}
	if i == 0 {
		return c, ErrAuth
	}
	c.Scheme = b[:i]
	c.params = trimLWS(b[i:])
	if i < len(b) && !isLWS(b[i]) {
		return c, ErrAuth
	}
	// Validate the whole list once so Param can assume it is well formed.
	for rest := c.params; len(rest) > 0; {
		_, _, r, err := nextAuthParam(rest)
		if err != nil {
			return c, err
		}
		rest = r
	}
	return c, nil
}

// Param returns the value of an auth-param (case-insensitive name).
func (c *Credentials) Param(name string) ([]byte, bool) {
	for rest := c.params; len(rest) > 0; {
		n, v, r, err := nextAuthParam(rest)
		if err != nil {
			return nil, false
		}
		if equalFold(n, name) {
			return v, true
		}
		rest = r
	}
	return nil, false
}

// nextAuthParam reads one "name = value" and the comma after it.
func nextAuthParam(b []byte) (name, value, rest []byte, err error) {
	i := skipLWS(b, 0)
	s := i
	for i < len(b) && isToken(b[i]) {
		i++
	}
	if i == s {
		return nil, nil, nil, ErrAuth
	}
	name = b[s:i]
	i = skipLWS(b, i)
	if i >= len(b) || b[i] != '=' {
		// token68 form (e.g. "Basic dXNlcg=="): take the rest as one value.
		return name, nil, nil, nil
	}
	i = skipLWS(b, i+1)
	vs := i
	if i < len(b) && b[i] == '"' {
		e, qerr := quotedEnd(b, i)
		if qerr != nil {
			return nil, nil, nil, qerr
		}
		i = e
	} else {
		for i < len(b) && b[i] != ',' && !isLWS(b[i]) {
			i++
		}
	}
	value = b[vs:i]
	i = skipLWS(b, i)
	if i < len(b) {
		if b[i] != ',' {
			return nil, nil, nil, ErrAuth
		}
		i++
	}
	return name, value, b[i:], nil
}

// Expires returns the Expires header value (seconds, saturating at 2^32-1)
// and whether the header is present and numeric.
func (m *Message) Expires() (uint32, bool) {
	v := m.Get(KindExpires)
	if v == nil {
		return 0, false
	}
	return parseUint32Sat(v)
}
