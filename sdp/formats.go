package sdp

// Codec filtering: which payload formats of an offer go on. As with the
// relay's Plan, the decision is data (FormatPlan, made by whoever knows the
// policy) and AppendFilter is the pure step that writes it.

// Format is one payload format of a media description: a fmt token of
// its m= line (RFC 8866 §5.14) with what a=rtpmap says of it.
type Format struct {
	// PT is the fmt token as written: an RTP payload type number for the
	// RTP transports (RFC 3551), a name such as "t38" for others.
	PT []byte
	// Encoding is the encoding name of the format's a=rtpmap (RFC 8866
	// §6.6), else the name RFC 3551 §6 gives a static payload type; nil
	// when neither says.
	Encoding []byte
}

// staticPT are the static RTP payload types of RFC 3551 §6 (tables 4 and
// 5): an offer may use them without a=rtpmap.
var staticPT = [35]string{
	0: "PCMU", 3: "GSM", 4: "G723", 5: "DVI4", 6: "DVI4", 7: "LPC", 8: "PCMA", 9: "G722",
	10: "L16", 11: "L16", 12: "QCELP", 13: "CN", 14: "MPA", 15: "G728", 16: "DVI4", 17: "DVI4",
	18: "G729", 25: "CelB", 26: "JPEG", 28: "nv", 31: "H261", 32: "MPV", 33: "MP2T", 34: "H263",
}

// Formats appends the formats of media description i to dst, in the
// order of its m= line.
func (s *Session) Formats(dst []Format, i int) []Format {
	m := &s.media[i]
	b := s.buf
	for fs, fe := field(b, int(m.fmts.s), int(m.fmts.e)); fs < fe; fs, fe = field(b, fe, int(m.fmts.e)) {
		f := Format{PT: b[fs:fe]}
		if m.kind == TransportRTP {
			f.Encoding = s.rtpmap(m, f.PT)
			if f.Encoding == nil {
				if n, end := parseNum(b, fs, fe); end == fe && fe-fs <= 2 && n < len(staticPT) && staticPT[n] != "" {
					f.Encoding = []byte(staticPT[n])
				}
			}
		}
		dst = append(dst, f)
	}
	return dst
}

// rtpmap returns the encoding name of the a=rtpmap for pt in media m.
func (s *Session) rtpmap(m *media, pt []byte) []byte {
	for li := m.line + 1; li <= m.last; li++ {
		rest, ok := s.ptAttr(&s.lines[li], pt)
		if !ok || !hasPrefixFold(s.b(s.lines[li].value), "rtpmap:") {
			continue
		}
		for i, c := range rest {
			if c == '/' || c == ' ' {
				return rest[:i]
			}
		}
		return rest
	}
	return nil
}

// ptAttr reports whether line l is an a=rtpmap, a=fmtp or a=rtcp-fb
// naming payload type pt (RFC 8866 §6.6, §6.15; RFC 4585 §4.2), and
// returns what follows the payload type and its space.
func (s *Session) ptAttr(l *line, pt []byte) (rest []byte, ok bool) {
	if l.typ != 'a' {
		return nil, false
	}
	v := s.b(l.value)
	var n int
	switch {
	case hasPrefixFold(v, "rtpmap:"):
		n = len("rtpmap:")
	case hasPrefixFold(v, "fmtp:"):
		n = len("fmtp:")
	case hasPrefixFold(v, "rtcp-fb:"):
		n = len("rtcp-fb:")
	default:
		return nil, false
	}
	v = v[n:]
	if len(v) < len(pt) || string(v[:len(pt)]) != string(pt) || (len(v) > len(pt) && v[len(pt)] != ' ') {
		return nil, false
	}
	v = v[len(pt):]
	for len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return v, true
}

func hasPrefixFold(b []byte, p string) bool {
	return len(b) >= len(p) && eqFold(b[:len(p)], p)
}

// FormatPlan says which payload formats to remove from a session
// description (codec filtering of an offer, RFC 3264 §5.1: the offerer
// lists what it is willing to use, so fewer formats is still an offer).
type FormatPlan struct {
	// Drop has one entry per media description, by index: the fmt
	// tokens to remove. Missing or empty entries, and rejected streams
	// (port 0), stay as they were.
	Drop [][]string
}

// AppendFilter appends the session description with the formats of p
// removed: each dropped token leaves its m= line, and its a=rtpmap,
// a=fmtp and a=rtcp-fb lines go with it. The kept tokens are written in
// their order, one space apart; every other byte is copied as it was. A
// media description must keep a format (RFC 8866 §5.14): a plan that
// would remove every one is refused (ErrPlan), so is a token its m= line
// does not list.
func (s *Session) AppendFilter(dst []byte, p *FormatPlan) ([]byte, error) {
	if !s.ok {
		return dst, ErrNotParsed
	}
	if len(p.Drop) > len(s.media) {
		return dst, planError("more entries than media descriptions")
	}
	var scratch [16]Format
	for i, drop := range p.Drop {
		if len(drop) == 0 || s.media[i].portN == 0 {
			continue
		}
		fs := s.Formats(scratch[:0], i)
		kept := 0
		for _, f := range fs {
			if !contains(drop, f.PT) {
				kept++
			}
		}
		if kept == 0 {
			return dst, planError("every format of a media description dropped")
		}
		for _, d := range drop {
			found := false
			for _, f := range fs {
				found = found || string(f.PT) == d
			}
			if !found {
				return dst, planError("dropped format not in its m= line")
			}
		}
	}
	w := writer{dst: dst, buf: s.buf}
	for i := range s.media {
		if i >= len(p.Drop) || len(p.Drop[i]) == 0 || s.media[i].portN == 0 {
			continue
		}
		m, drop := &s.media[i], p.Drop[i]
		w.flush(m.fmts.s)
		first := true
		b := s.buf
		for fs, fe := field(b, int(m.fmts.s), int(m.fmts.e)); fs < fe; fs, fe = field(b, fe, int(m.fmts.e)) {
			if contains(drop, b[fs:fe]) {
				continue
			}
			if !first {
				w.dst = append(w.dst, ' ')
			}
			first = false
			w.dst = append(w.dst, b[fs:fe]...)
		}
		w.pos = m.fmts.e
		for li := m.line + 1; li <= m.last; li++ {
			l := &s.lines[li]
			for _, d := range drop {
				if _, ok := s.ptAttr(l, []byte(d)); ok {
					w.deleteLine(l)
					break
				}
			}
		}
	}
	w.flush(int32(len(s.buf)))
	return w.dst, nil
}

func contains(list []string, b []byte) bool {
	for _, s := range list {
		if s == string(b) {
			return true
		}
	}
	return false
}
