package sip

import (
	"errors"
	"net/netip"
)

// ErrVia reports a malformed Via value.
var ErrVia = errors.New("sip: bad Via")

// Via is a view of one Via value (RFC 3261 §20.42, RFC 3581 rport).
type Via struct {
	Transport []byte // as written: "UDP", "TCP", "TLS", "SCTP", "WS", or unknown
	Host      []byte // sent-by host; IPv6 references keep their brackets
	Port      int    // sent-by port, 0 when absent
	Params    Params // from the first ';'
	Branch    []byte
	Received  []byte // may be an IPv6 address with or without brackets (RFC 5118 §4.5)
	Maddr     []byte
	RPort     int  // rport value, 0 when absent or empty
	HasRPort  bool // rport present (with or without a value)
	TTL       int
	HasBranch bool
}

// MagicCookie marks RFC 3261 branches (§8.1.1.7).
const MagicCookie = "z9hG4bK"

// RFC3261Branch reports whether the branch carries the magic cookie and
// something after it; a bare "z9hG4bK" (RFC 4475 §3.2.1) does not count,
// and such requests fall back to RFC 2543 matching.
func (v *Via) RFC3261Branch() bool {
	return len(v.Branch) > len(MagicCookie) && string(v.Branch[:len(MagicCookie)]) == MagicCookie
}

// ParseVia parses one Via value:
//
//	sent-protocol LWS sent-by *( SEMI via-params )
//	sent-protocol = protocol-name SLASH protocol-version SLASH transport
//
// with LWS allowed around the slashes and before the parameters
// (RFC 4475 §3.1.1.1).
func ParseVia(b []byte) (Via, error) {
	var v Via
	err := parseVia(&v, b)
	return v, err
}

func parseVia(v *Via, b []byte) error {
	b = trimLWS(b)
	i := 0
	tok := func() []byte {
		s := i
		for i < len(b) && isToken(b[i]) {
			i++
		}
		return b[s:i]
	}
	slash := func() bool {
		i = skipLWS(b, i)
		if i >= len(b) || b[i] != '/' {
			return false
		}
		i = skipLWS(b, i+1)
		return true
	}
	name := tok()
	if !equalFold(name, "sip") || !slash() {
		return ErrVia
	}
	if string(tok()) != "2.0" || !slash() {
		return ErrVia
	}
	v.Transport = tok()
	if len(v.Transport) == 0 {
		return ErrVia
	}
	s := i
	i = skipLWS(b, i)
	if i == s || i >= len(b) {
		return ErrVia // LWS before sent-by is mandatory
	}
	hs := i
	if b[i] == '[' {
		for i < len(b) && b[i] != ']' {
			i++
		}
		if i >= len(b) || !validIPv6(b[hs+1:i]) {
			return ErrVia
		}
		i++
	} else {
		for i < len(b) && charClass[b[i]]&cHostChar != 0 {
			i++
		}
		if i == hs {
			return ErrVia
		}
	}
	v.Host = b[hs:i]
	j := skipLWS(b, i)
	if j < len(b) && b[j] == ':' {
		j = skipLWS(b, j+1)
		ps := j
		port := 0
		for j < len(b) && isDigit(b[j]) {
			port = port*10 + int(b[j]-'0')
			if port > 65535 {
				return ErrVia
			}
			j++
		}
		if j == ps {
			return ErrVia
		}
		v.Port = port
		i = j
	}
	v.Params = Params(b[i:])
	p := v.Params
	for {
		n, val, rest, ok, err := p.Next()
		if err != nil {
			return ErrVia
		}
		if !ok {
			break
		}
		switch {
		case equalFold(n, "branch"):
			v.Branch, v.HasBranch = val, true
			if len(val) == 0 {
				return ErrVia
			}
		case equalFold(n, "received"):
			v.Received = val
		case equalFold(n, "maddr"):
			v.Maddr = val
		case equalFold(n, "rport"):
			v.HasRPort = true
			if len(val) > 0 {
				r, ok := parseUint32Sat(val)
				if !ok || r > 65535 {
					return ErrVia
				}
				v.RPort = int(r)
			}
		case equalFold(n, "ttl"):
			t, ok := parseUint32Sat(val)
			if !ok || t > 255 {
				return ErrVia
			}
			v.TTL = int(t)
		}
		p = rest
	}
	return nil
}

// NeedsReceived reports whether a server that got a request with this top
// Via from src adds received=src to it: when the sent-by host is not that
// address (RFC 3261 §18.2.1), and always when rport is present (RFC 3581
// §4). A Via that already has received keeps it.
func (v *Via) NeedsReceived(src netip.Addr) bool {
	if len(v.Received) > 0 {
		return false
	}
	host, isIP := ParseIP(v.Host)
	return v.HasRPort || !isIP || host != src.Unmap()
}
