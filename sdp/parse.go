package sdp

import (
	"bytes"
	"net/netip"

	"sipedge/sip"
)

func (s *Session) reset() {
	ls, ms := s.lines[:0], s.media[:0]
	if ls == nil {
		ls = make([]line, 0, 32)
	}
	if ms == nil {
		ms = make([]media, 0, 4)
	}
	*s = Session{Limits: s.Limits, lines: ls, media: ms, origin: -1, sname: -1}
	s.conn.line = -1
}

// Parse indexes the session description in body and checks what the relay
// relies on (RFC 8866 §5): the first line is v=0; every line is
// "<letter>=<value>" terminated by CRLF or a bare LF (§5: parsers should
// accept both), with no NUL or lone CR; one o= and one s= come before the
// first m=; at most one session-level c=; the syntax of o=, c=, m= and
// a=rtcp; every stream with a non-zero port has a connection address.
// Trailing empty lines and a missing terminator on the last line are
// tolerated and kept. Lines of other types, unknown letters included, and
// the order of session-level lines are not checked: sipedge forwards them,
// it does not interpret them.
//
// On error Parse returns an *Error whose Status is 400 or 488. A syntax
// error (400) wins over a relay refusal (488) found earlier in the body, so
// a broken body is always called broken; a Limits bound (488) stops the
// parse where it is exceeded.
func (s *Session) Parse(body []byte) error {
	s.reset()
	s.buf = body
	if err := s.parse(s.Limits.withDefaults()); err != nil {
		s.ok = false
		if err.status == 400 {
			// A lone CR does not end a line, so it shows up as some
			// other defect of its line: name the cause.
			if i := loneCR(body); i < len(body) && i <= lineEnd(body, err.Offset) {
				return errAt(400, "CR not followed by LF", body, i)
			}
		}
		return err
	}
	return nil
}

func lineEnd(b []byte, off int) int {
	if i := bytes.IndexByte(b[off:], '\n'); i >= 0 {
		return off + i
	}
	return len(b)
}

func (s *Session) parse(lim Limits) *Error {
	b := s.buf
	if len(b) < 2 || b[0] != 'v' || b[1] != '=' {
		return errAt(400, "not an SDP body: first line is not v=", b, 0)
	}
	if len(b) > lim.MaxSize {
		return errAt(488, "SDP body too large", b, lim.MaxSize)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return errAt(400, "NUL byte in line", b, i)
	}
	var soft *Error // first 488 found; reported only if no 400 follows
	cur := -1       // index of the current media description
	blank := -1     // offset of the first empty line
	ncrlf := 0      // lines ended by CRLF; any other CR is a lone one
	for p := 0; p < len(b); {
		ve, end := len(b), len(b)
		if i := bytes.IndexByte(b[p:], '\n'); i >= 0 {
			ve, end = p+i, p+i+1
			if ve > p && b[ve-1] == '\r' {
				ve--
				ncrlf++
			}
		}
		if ve == p {
			if blank < 0 {
				blank = p
			}
			p = end
			continue
		}
		if blank >= 0 {
			return errAt(400, "empty line inside the description", b, blank)
		}
		if len(s.lines) >= lim.MaxLines {
			return errAt(488, "too many lines", b, p)
		}
		if ve-p < 2 || b[p+1] != '=' || !isAlpha(b[p]) {
			return errAt(400, "line is not <type>=<value>", b, p)
		}
		li := int32(len(s.lines))
		s.lines = append(s.lines, line{typ: b[p], value: span{int32(p + 2), int32(ve)}, end: int32(end)})
		l := &s.lines[li]
		vs, vend := p+2, trimRight(b, p+2, ve)
		var err *Error
		switch l.typ {
		case 'v':
			if li != 0 {
				return errAt(400, "v= repeated", b, p)
			}
			if vend-vs != 1 || b[vs] != '0' {
				return errAt(400, "unsupported SDP version", b, vs)
			}
		case 'o':
			if cur >= 0 {
				return errAt(400, "o= inside a media description", b, p)
			}
			if s.origin >= 0 {
				return errAt(400, "o= repeated", b, p)
			}
			s.origin = li
			if err = s.parseOrigin(vs, vend); err != nil {
				return err
			}
		case 's':
			if cur >= 0 {
				return errAt(400, "s= inside a media description", b, p)
			}
			if s.sname >= 0 {
				return errAt(400, "s= repeated", b, p)
			}
			s.sname = li
		case 'i':
			if cur >= 0 && s.media[cur].cAfter == li-1 {
				s.media[cur].cAfter = li
			}
		case 'c':
			var c conn
			c.line = li
			if err = s.parseConn(&c, vs, vend); err != nil {
				if err.status == 400 {
					return err
				}
				soft = firstErr(soft, err)
			}
			if cur < 0 {
				if s.conn.line >= 0 {
					return errAt(400, "c= repeated at session level", b, p)
				}
				s.conn = c
				break
			}
			m := &s.media[cur]
			if m.nconn++; m.nconn == 1 {
				m.conn = c
			} else {
				// Several c= in one media description are layered
				// multicast (RFC 8866 §5.7): not relayable.
				soft = firstErr(soft, errAt(488, "several c= lines in one media description", b, p))
			}
		case 'm':
			if s.origin < 0 || s.sname < 0 {
				return errAt(400, "o= and s= must precede the first m=", b, p)
			}
			if cur >= 0 {
				soft = firstErr(soft, s.endMedia(cur, li-1))
			}
			if len(s.media) >= lim.MaxMedia {
				return errAt(488, "too many media descriptions", b, p)
			}
			cur = len(s.media)
			s.media = append(s.media, media{line: li, cAfter: li, rtcpLine: -1})
			m := &s.media[cur]
			m.conn.line, m.rtcpAddr.line = -1, -1
			if err = s.parseMedia(m, vs, vend); err != nil {
				return err
			}
		case 'a':
			if err = s.parseAttr(l, cur, vs, vend); err != nil {
				if err.status == 400 {
					return err
				}
				soft = firstErr(soft, err)
			}
		}
		p = end
	}
	if bytes.Count(b, crByte) != ncrlf {
		return errAt(400, "CR not followed by LF", b, loneCR(b))
	}
	if s.origin < 0 || s.sname < 0 {
		return errAt(400, "o= or s= line missing", b, len(b))
	}
	if cur >= 0 {
		soft = firstErr(soft, s.endMedia(cur, int32(len(s.lines)-1)))
	}
	if soft != nil {
		return soft
	}
	s.ok = true
	return nil
}

var crByte = []byte{'\r'}

// loneCR returns the offset of the first CR not followed by LF.
func loneCR(b []byte) int {
	for p := 0; ; {
		i := bytes.IndexByte(b[p:], '\r')
		if i < 0 {
			return len(b)
		}
		p += i + 1
		if p == len(b) || b[p] != '\n' {
			return p - 1
		}
	}
}

func firstErr(a, b *Error) *Error {
	if a != nil {
		return a
	}
	return b
}

// trimRight returns the end of b[s:e] without trailing SP and HT, tolerated
// after the last field of the lines sipedge interprets.
func trimRight(b []byte, s, e int) int {
	for e > s && (b[e-1] == ' ' || b[e-1] == '\t') {
		e--
	}
	return e
}

// field returns the next SP-separated field of b[p:e] and the offset after
// it. Runs of SP count as one separator.
func field(b []byte, p, e int) (fs, fe int) {
	for p < e && b[p] == ' ' {
		p++
	}
	fs = p
	for p < e && b[p] != ' ' {
		p++
	}
	return fs, p
}

// parseOrigin checks "o=<username> <sess-id> <sess-version> <nettype>
// <addrtype> <unicast-address>" (RFC 8866 §5.2): six non-empty fields.
// Their content is not interpreted; the address is only rewritten on
// request.
func (s *Session) parseOrigin(p, e int) *Error {
	b := s.buf
	for k := range s.ofield {
		fs, fe := field(b, p, e)
		if fs == fe {
			return errAt(400, "o= needs six fields", b, fs)
		}
		s.ofield[k] = span{int32(fs), int32(fe)}
		p = fe
	}
	if p != e {
		return errAt(400, "o= has more than six fields", b, p)
	}
	return nil
}

// endMedia closes media description cur at line last and applies the
// relay's refusals (488) that need the whole section.
func (s *Session) endMedia(cur int, last int32) *Error {
	m := &s.media[cur]
	m.last = last
	if m.portN == 0 {
		return nil // a rejected stream carries no media (RFC 3264 §6)
	}
	b := s.buf
	at := int(s.lines[m.line].value.s) - 2
	if m.conn.line < 0 && s.conn.line < 0 {
		// RFC 8866 §5.7: c= at session level or in every media description.
		return errAt(488, "no connection address for an active stream", b, at)
	}
	if m.count > 1 && m.kind.Relayable() {
		// RFC 8866 §5.14: "/2" on RTP means two RTP/RTCP port pairs
		// (layered coding); a relay allocates one flow per stream.
		return errAt(488, "port count above 1 on a relayed stream", b, int(m.port.e))
	}
	return nil
}

// parseNum reads a decimal number of at most 5 digits from b[p:e].
func parseNum(b []byte, p, e int) (v, end int) {
	end = p
	for end < e && isDigit(b[end]) && end-p < 6 {
		v = v*10 + int(b[end]-'0')
		end++
	}
	return v, end
}

// parseMedia checks "m=<media> <port>[/<number of ports>] <proto> <fmt> ..."
// (RFC 8866 §5.14).
func (s *Session) parseMedia(m *media, p, e int) *Error {
	b := s.buf
	fs, fe := field(b, p, e)
	if !isToken(b[fs:fe]) {
		return errAt(400, "bad media type in m=", b, fs)
	}
	m.typ = span{int32(fs), int32(fe)}
	fs, fe = field(b, fe, e)
	v, i := parseNum(b, fs, fe)
	if i == fs || v > 65535 {
		return errAt(400, "bad port in m=", b, fs)
	}
	m.port, m.portN, m.count = span{int32(fs), int32(i)}, int32(v), 1
	if i < fe && b[i] == '/' {
		n, j := parseNum(b, i+1, fe)
		if j == i+1 || n == 0 || b[i+1] == '0' {
			return errAt(400, "bad port count in m=", b, i)
		}
		m.count, i = int32(n), j
	}
	if i != fe {
		return errAt(400, "bad port in m=", b, fs)
	}
	fs, fe = field(b, fe, e)
	if !isProto(b[fs:fe]) {
		return errAt(400, "bad proto in m=", b, fs)
	}
	m.proto = span{int32(fs), int32(fe)}
	m.kind = transportOf(b[fs:fe])
	fs, fe = field(b, fe, e)
	if fs == fe {
		return errAt(400, "m= has no format", b, fs)
	}
	m.fmts = span{int32(fs), int32(e)}
	for fs < fe {
		if !isToken(b[fs:fe]) {
			return errAt(400, "bad format in m=", b, fs)
		}
		fs, fe = field(b, fe, e)
	}
	return nil
}

// isProto checks proto = token *("/" token) (RFC 8866 §9).
func isProto(b []byte) bool {
	start := 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '/' {
			if i == start {
				return false
			}
			start = i + 1
		} else if !tokenChar[b[i]] {
			return false
		}
	}
	return true
}

// transportOf classifies a proto. Protos are compared without regard to
// case: "udptl" and "UDPTL" are both seen from T.38 gateways.
func transportOf(p []byte) Transport {
	switch {
	case eqFold(p, "RTP/AVP"), eqFold(p, "RTP/AVPF"), eqFold(p, "RTP/SAVP"), eqFold(p, "RTP/SAVPF"),
		eqFold(p, "UDP/TLS/RTP/SAVP"), eqFold(p, "UDP/TLS/RTP/SAVPF"):
		return TransportRTP
	case eqFold(p, "udptl"):
		return TransportUDPTL
	case eqFold(p, "udp"):
		return TransportUDP
	}
	return TransportOther
}

// eqFold compares ASCII b and s without regard to case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if c != d && (c|0x20 != d|0x20 || !isAlpha(c)) {
			return false
		}
	}
	return true
}

// parseConn reads "<nettype> <addrtype> <connection-address>" (RFC 8866
// §5.7) from b[p:e] into c; a=rtcp (RFC 3605 §2.1) uses the same syntax.
//
// Address types other than IN IP4 / IN IP6 and multicast groups of more
// than one address are well-formed but not relayable (488). An IPv4 literal
// under IP6 or the reverse, a malformed literal, a host name that is not a
// DNS name, or a multicast suffix on a unicast address are syntax errors
// (400).
func (s *Session) parseConn(c *conn, p, e int) *Error {
	b := s.buf
	ns, ne := field(b, p, e)
	ts, te := field(b, ne, e)
	as, ae := field(b, te, e)
	if ns == ne || ts == te || as == ae {
		return errAt(400, "connection address needs <nettype> <addrtype> <address>", b, p)
	}
	if ae != e {
		return errAt(400, "extra field after connection address", b, ae)
	}
	c.typ, c.addr, c.end = span{int32(ts), int32(te)}, span{int32(as), int32(ae)}, int32(ae)
	c.ip, c.ip6, c.host, c.ttl, c.numAddr = netip.Addr{}, false, false, -1, 1
	if !eqFold(b[ns:ne], "IN") {
		return errAt(488, "unknown network type", b, ns)
	}
	switch {
	case eqFold(b[ts:te], "IP4"):
	case eqFold(b[ts:te], "IP6"):
		c.ip6 = true
	default:
		return errAt(488, "unknown address type", b, ts)
	}
	slash := bytes.IndexByte(b[as:ae], '/')
	if slash >= 0 {
		c.addr.e = int32(as + slash)
	}
	a := b[as:c.addr.e]
	var ok bool
	if c.ip6 {
		c.ip, ok = sip.ParseIPv6(a)
	} else {
		c.ip, ok = sip.ParseIPv4(a)
	}
	switch {
	case ok:
	case bytes.IndexByte(a, ':') >= 0 || isIPv4Like(a):
		return errAt(400, "address does not match the address type", b, as)
	case isHostname(a):
		c.host = true
	default:
		return errAt(400, "bad connection address", b, as)
	}
	if slash < 0 {
		return nil
	}
	// RFC 8866 §5.7: IP4 multicast "/ttl[/n]", IP6 multicast "/n".
	if !c.ip.IsValid() || !c.ip.IsMulticast() {
		return errAt(400, "multicast suffix on a unicast address", b, as+slash)
	}
	q := as + slash
	v, i := parseNum(b, q+1, ae)
	if i == q+1 || (i-(q+1) > 1 && b[q+1] == '0') {
		return errAt(400, "bad multicast suffix", b, q)
	}
	if !c.ip6 {
		if v > 255 {
			return errAt(400, "bad multicast TTL", b, q)
		}
		c.ttl = int16(v)
		if i < ae && b[i] == '/' {
			q = i
			v, i = parseNum(b, q+1, ae)
			if i == q+1 || b[q+1] == '0' {
				return errAt(400, "bad multicast suffix", b, q)
			}
		} else {
			v = 1
		}
	} else if v == 0 {
		return errAt(400, "bad multicast suffix", b, q)
	}
	if i != ae {
		return errAt(400, "bad multicast suffix", b, i)
	}
	c.numAddr = int32(v)
	if v > 1 {
		return errAt(488, "multicast address range is not relayable", b, q)
	}
	return nil
}

// isIPv4Like reports digits and dots only: a malformed IPv4 literal, not a
// host name, so that "300.1.1.1" under IP6 gets a precise message.
func isIPv4Like(a []byte) bool {
	for _, c := range a {
		if !isDigit(c) && c != '.' {
			return false
		}
	}
	return bytes.IndexByte(a, '.') >= 0
}

// parseAttr classifies "a=<name>[:<value>]" (RFC 8866 §5.13) and records
// what the relay needs. Attribute names are compared exactly: RFC 8866 §5
// makes SDP case-significant.
func (s *Session) parseAttr(l *line, cur int, p, e int) *Error {
	b := s.buf
	ne := p
	for ne < e && b[ne] != ':' {
		ne++
	}
	var m *media
	attrs, dir, hasDir := &s.attrs, &s.dir, &s.hasDir
	if cur >= 0 {
		m = &s.media[cur]
		attrs, dir, hasDir = &m.attrs, &m.dir, &m.hasDir
	}
	k := attrOther
	switch string(b[p:ne]) {
	case "sendrecv":
		k = attrSendRecv
	case "sendonly":
		k = attrSendOnly
	case "recvonly":
		k = attrRecvOnly
	case "inactive":
		k = attrInactive
	case "rtcp":
		if m != nil {
			k = attrRTCP
		}
	case "rtcp-mux":
		k = attrRTCPMux
		*attrs |= AttrRTCPMux
	case "crypto":
		k = attrCrypto
		*attrs |= AttrCrypto
	case "fingerprint":
		k = attrFingerprint
		*attrs |= AttrFingerprint
	case "setup":
		k = attrSetup
		*attrs |= AttrSetup
	case "candidate":
		k = attrCandidate
		*attrs |= AttrCandidate
		if m != nil {
			m.cands++
		}
	case "remote-candidates":
		k = attrRemoteCandidates
	case "end-of-candidates":
		k = attrEndOfCandidates
	case "ice-ufrag":
		k = attrICEUfrag
		*attrs |= AttrICEUfrag
	case "ice-pwd":
		k = attrICEPwd
		*attrs |= AttrICEPwd
	case "ice-options":
		k = attrICEOptions
		*attrs |= AttrICEOptions
	case "ice-lite":
		k = attrICELite
		*attrs |= AttrICELite
	case "ice-mismatch":
		k = attrICEMismatch
	case "ice-pacing":
		k = attrICEPacing
	}
	l.attr = k
	switch k {
	case attrSendRecv, attrSendOnly, attrRecvOnly, attrInactive:
		// At most one per level (RFC 3264 §5.1); the first one counts.
		if !*hasDir {
			*dir, *hasDir = Direction(k-attrSendRecv), true
		}
	case attrRTCP:
		return s.parseRTCP(m, int32(len(s.lines)-1), ne, e)
	}
	return nil
}

// parseRTCP reads "a=rtcp:<port> [<nettype> <addrtype> <address>]"
// (RFC 3605 §2.1). A second a=rtcp in one media description is refused:
// which of the two the peer uses is not defined.
func (s *Session) parseRTCP(m *media, li int32, p, e int) *Error {
	b := s.buf
	if m.rtcpLine >= 0 {
		return errAt(400, "a=rtcp repeated", b, p)
	}
	if p >= e || b[p] != ':' {
		return errAt(400, "a=rtcp needs a port", b, p)
	}
	v, i := parseNum(b, p+1, e)
	if i == p+1 || v > 65535 {
		return errAt(400, "bad port in a=rtcp", b, p+1)
	}
	m.rtcpLine, m.rtcpPort, m.rtcpN = li, span{int32(p + 1), int32(i)}, int32(v)
	if i == e {
		return nil
	}
	if b[i] != ' ' {
		return errAt(400, "bad port in a=rtcp", b, p+1)
	}
	m.rtcpAddr.line = li
	return s.parseConn(&m.rtcpAddr, i, e)
}

// connEqual reports whether c, written back, would already say "addrtype
// of a, address a" with no multicast suffix: then a rewrite leaves it alone.
func connEqual(c *conn, a netip.Addr) bool {
	return c.ip.IsValid() && c.ip == a && c.ip6 == a.Is6() && c.end == c.addr.e
}
