package sdp

import (
	"net/netip"
	"strconv"

	"sipedge/sip"
)

// Plan says what the media relay needs changed in a session description.
type Plan struct {
	// Media has one entry per media description, by index. Missing
	// entries (len(Media) < NumMedia) and entries with Relay false leave
	// their media description untouched.
	Media []MediaPlan
	// Origin, when valid, replaces the unicast-address of o= (and its
	// address type). The sess-version is left alone: see Session.Version.
	Origin netip.Addr
}

// MediaPlan is the relay's answer for one media description.
//
// A stream with port 0 is rejected (RFC 3264 §6) and stays exactly as it
// was whatever its entry says: there is nothing to relay.
type MediaPlan struct {
	// Relay selects the stream for rewriting; false keeps every line of
	// the media description as it was.
	Relay bool
	// Addr is the relay's address for the stream. An IPv4-mapped IPv6
	// address is written as IPv4.
	Addr netip.Addr
	// RTPPort replaces the m= port (1..65535).
	RTPPort int
	// RTCPPort is the relay's RTCP port; 0 means RTPPort+1, the RFC 3550
	// §11 default that needs no a=rtcp. Ignored for an a=rtcp line of a
	// stream offering rtcp-mux, which must carry the RTP port.
	RTCPPort int
	// DropICE removes the ICE attributes of the media description
	// (a=candidate, a=remote-candidates, a=end-of-candidates, a=ice-ufrag,
	// a=ice-pwd, a=ice-options, a=ice-lite, a=ice-mismatch, a=ice-pacing):
	// with a relay in the path the candidates would lie. The
	// session-level ones go too when no active stream keeps ICE.
	DropICE bool
}

func (mp *MediaPlan) check() error {
	if !mp.Relay {
		return nil
	}
	switch {
	case !mp.Addr.IsValid() || mp.Addr.Zone() != "":
		return planError("relay address missing or has a zone")
	case mp.Addr.IsUnspecified():
		return planError("relay address is unspecified")
	case mp.RTPPort < 1 || mp.RTPPort > 65535:
		return planError("RTP port out of range")
	case mp.RTCPPort < 0 || mp.RTCPPort > 65535 || (mp.RTCPPort == 0 && mp.RTPPort == 65535):
		return planError("RTCP port out of range")
	}
	return nil
}

// writer copies the body with byte-range replacements applied in order:
// bytes up to pos have been dealt with.
type writer struct {
	dst []byte
	buf []byte
	pos int32
}

func (w *writer) flush(to int32) {
	w.dst = append(w.dst, w.buf[w.pos:to]...)
	w.pos = to
}

// replaceAddr rewrites "<addrtype> <address>[/ttl/n]" of c to address a.
func (w *writer) replaceAddr(c *conn, a netip.Addr) {
	w.flush(c.typ.s)
	w.dst = appendAddrType(w.dst, a)
	w.pos = c.end
}

func (w *writer) replacePort(sp span, port int) {
	w.flush(sp.s)
	w.dst = strconv.AppendInt(w.dst, int64(port), 10)
	w.pos = sp.e
}

func (w *writer) deleteLine(l *line) {
	w.flush(l.value.s - 2)
	w.pos = l.end
}

// openLine starts a new line after line l and returns the terminator that
// closes it: l's own, so the new line matches its neighbour. When l is the
// last line and has no terminator, the new line gets one in front instead
// and stays unterminated, as l was.
func (w *writer) openLine(s *Session, l *line) []byte {
	w.flush(l.end)
	if l.end > l.value.e {
		return s.buf[l.value.e:l.end]
	}
	w.dst = append(w.dst, s.defaultEOL()...)
	return nil
}

// defaultEOL is the terminator of the first line, CRLF when it has none.
func (s *Session) defaultEOL() []byte {
	if l := &s.lines[0]; l.end > l.value.e {
		return s.buf[l.value.e:l.end]
	}
	return crlf
}

var crlf = []byte("\r\n")

// relayed returns the plan entry of media i when the stream is rewritten.
func (s *Session) relayed(p *Plan, i int) *MediaPlan {
	if i < len(p.Media) && p.Media[i].Relay && s.media[i].portN != 0 {
		return &p.Media[i]
	}
	return nil
}

// AppendRewrite appends the session description rewritten by p to dst and
// returns the extended slice. It allocates nothing when dst has room.
//
//   - c= (session and media level) gets the relay address and the matching
//     address type; a multicast "/ttl/n" suffix goes, the relay is unicast.
//     A hold address 0.0.0.0 or "::" stays: it means "do not send"
//     (RFC 3264 §8.4), and the ports are still rewritten.
//   - A session-level c= serves every stream without its own (RFC 8866
//     §5.7). It takes the address of the first relayed stream that uses
//     it, unless an active stream that is not relayed uses it too, in which
//     case it stays. A relayed stream whose address then differs gets its
//     own c= line, after m= and i= as RFC 8866 §5 orders them.
//   - m= gets the RTP port; the port count and the rest of the line stay.
//   - a=rtcp (RFC 3605) gets the RTCP port, and the relay address if it
//     had one. With a=rtcp-mux it carries the RTP port (RFC 5761 §5.1.3,
//     RFC 8858 §4). Without a=rtcp, one is added to an RTP stream only
//     when the RTCP port is not RTP+1 and rtcp-mux is not offered.
//   - ICE attributes are removed where the plan says so.
//   - o= gets Plan.Origin if valid.
//
// Nothing else changes: a=crypto, a=fingerprint, a=setup and every other
// line are copied byte for byte, and a Plan that repeats the current
// addresses and ports writes the body unchanged.
func (s *Session) AppendRewrite(dst []byte, p *Plan) ([]byte, error) {
	if !s.ok {
		return dst, ErrNotParsed
	}
	if p == nil {
		return append(dst, s.buf...), nil
	}
	if len(p.Media) > len(s.media) {
		return dst, planError("more entries than media descriptions")
	}
	for i := range p.Media {
		if err := p.Media[i].check(); err != nil {
			return dst, err
		}
	}
	if p.Origin.IsValid() && p.Origin.Zone() != "" {
		return dst, planError("origin address has a zone")
	}

	// The session-level c=: which address it will carry.
	sc := &s.conn
	var target netip.Addr // valid: the session c= will say exactly this
	if sc.line >= 0 && !sc.hold() {
		keep, first := false, -1
		for i := range s.media {
			m := &s.media[i]
			if m.conn.line >= 0 || m.portN == 0 {
				continue
			}
			if s.relayed(p, i) == nil {
				keep = true
			} else if first < 0 {
				first = i
			}
		}
		if !keep && first >= 0 {
			target = p.Media[first].Addr.Unmap()
		}
	}

	// Session-level ICE attributes go when every active stream drops ICE.
	dropSessICE := false
	for i := range s.media {
		if s.media[i].portN == 0 {
			continue
		}
		rp := s.relayed(p, i)
		if rp == nil || !rp.DropICE {
			dropSessICE = false
			break
		}
		dropSessICE = true
	}

	w := writer{dst: dst, buf: s.buf}
	firstM := int32(len(s.lines))
	if len(s.media) > 0 {
		firstM = s.media[0].line
	}
	for li := int32(0); li < firstM; li++ {
		l := &s.lines[li]
		switch {
		case li == s.origin && p.Origin.IsValid():
			s.rewriteOrigin(&w, p.Origin.Unmap())
		case li == sc.line && target.IsValid() && !connEqual(sc, target):
			w.replaceAddr(sc, target)
		case dropSessICE && l.typ == 'a' && l.attr.ice():
			w.deleteLine(l)
		}
	}

	for i := range s.media {
		rp := s.relayed(p, i)
		if rp == nil {
			continue
		}
		m := &s.media[i]
		a := rp.Addr.Unmap()

		needC := false // insert a media-level c=
		if m.conn.line < 0 && !sc.hold() {
			if target.IsValid() {
				needC = a != target
			} else {
				needC = !connEqual(sc, a)
			}
		}

		mux := m.attrs&AttrRTCPMux != 0
		rtcp := rp.RTCPPort
		if rtcp == 0 {
			rtcp = rp.RTPPort + 1
		}
		lineRTCP := rtcp
		if mux {
			lineRTCP = rp.RTPPort
		}
		needRTCP := m.rtcpLine < 0 && !mux && m.kind.RTP() && rtcp != rp.RTPPort+1
		rtcpAfter := m.last
		for rp.DropICE && s.lines[rtcpAfter].typ == 'a' && s.lines[rtcpAfter].attr.ice() {
			rtcpAfter--
		}

		for li := m.line; li <= m.last; li++ {
			l := &s.lines[li]
			switch {
			case li == m.line:
				if int(m.portN) != rp.RTPPort {
					w.replacePort(m.port, rp.RTPPort)
				}
			case li == m.conn.line:
				if !m.conn.hold() && !connEqual(&m.conn, a) {
					w.replaceAddr(&m.conn, a)
				}
			case li == m.rtcpLine:
				if int(m.rtcpN) != lineRTCP {
					w.replacePort(m.rtcpPort, lineRTCP)
				}
				if ra := &m.rtcpAddr; ra.line >= 0 && !ra.hold() && !connEqual(ra, a) {
					w.replaceAddr(ra, a)
				}
			case rp.DropICE && l.typ == 'a' && l.attr.ice():
				w.deleteLine(l)
			}
			if li == m.cAfter && needC {
				eol := w.openLine(s, l)
				w.dst = append(w.dst, "c=IN "...)
				w.dst = appendAddrType(w.dst, a)
				w.dst = append(w.dst, eol...)
			}
			if li == rtcpAfter && needRTCP {
				eol := w.openLine(s, l)
				w.dst = append(w.dst, "a=rtcp:"...)
				w.dst = strconv.AppendInt(w.dst, int64(rtcp), 10)
				w.dst = append(w.dst, eol...)
			}
		}
	}
	w.flush(int32(len(s.buf)))
	return w.dst, nil
}

// rewriteOrigin writes "IN <addrtype> <address>" for a into o= unless the
// line already says that.
func (s *Session) rewriteOrigin(w *writer, a netip.Addr) {
	f := &s.ofield
	cur := s.b(f[5])
	var same bool
	if eqFold(s.b(f[3]), "IN") {
		if a.Is6() {
			ip, ok := sip.ParseIPv6(cur)
			same = ok && ip == a && eqFold(s.b(f[4]), "IP6")
		} else {
			ip, ok := sip.ParseIPv4(cur)
			same = ok && ip == a && eqFold(s.b(f[4]), "IP4")
		}
	}
	if same {
		return
	}
	w.flush(f[3].s)
	w.dst = append(w.dst, "IN "...)
	w.dst = appendAddrType(w.dst, a)
	w.pos = f[5].e
}
