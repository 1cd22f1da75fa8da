package sip

import "bytes"

// Parse indexes one SIP message in b. b must hold exactly one datagram, or
// one message framed from a stream by Frame; bytes after Content-Length are
// ignored and never forwarded (RFC 4475 §3.1.1.8). The Message keeps
// referring to b, so b must outlive it and must not be modified.
//
// Parse validates what a proxy must check before acting (RFC 3261 §16.3 and
// §8.2): the start line, the mandatory headers and their syntax (Via, From,
// To, Call-ID, CSeq, Contact, Route, Record-Route), Content-Length and the
// limits. On error it returns a *ParseError whose Code is the status to
// answer a request with; the index is still filled as far as the defect, so a
// response can be built from the Via, From, To, Call-ID and CSeq that were
// read.
func (m *Message) Parse(b []byte, lim *Limits) error {
	m.reset()
	lv := lim.withDefaults()
	l := &lv
	// RFC 3261 §21.5.14 (Limits.MaxMessageSize): a message longer than the
	// limit is answered 513. Only the first MaxMessageSize bytes are indexed,
	// so a hostile datagram costs no more than a legal one, and the 513 can
	// still be built from the Via, From, To, Call-ID and CSeq found there.
	// The cut leaves a header section or body that stops short; the defect
	// it creates (Header Section Not Terminated, Bad Header Field,
	// Content-Length Larger Than Message...) is an artefact of the cut, not
	// the cause of the refusal, so tooBig takes precedence over every
	// framing error below. Only a bad start line, which is read whole before
	// any header, is still reported first.
	var tooBig error
	if len(b) > l.MaxMessageSize && l.MaxMessageSize > 0 {
		tooBig = errAt(513, "Message Too Large", b, l.MaxMessageSize)
		b = b[:l.MaxMessageSize]
	}
	m.buf = b

	// RFC 3261 §7.5: ignore CRLFs before the start line.
	p := 0
	for p+1 < len(b) && b[p] == '\r' && b[p+1] == '\n' {
		p += 2
	}
	lineEnd, err := m.lineEnd(p, l)
	if err != nil {
		return firstErr(tooBig, err, nil)
	}
	// A request with a bad start line (extra SP, unknown version) is
	// still answered (400, 505), and the answer needs the Via, From, To,
	// Call-ID and CSeq: index the headers anyway and report the start line.
	startErr := m.parseStartLine(p, lineEnd)
	if startErr != nil && !m.request {
		return startErr // a response is dropped; nothing more to read
	}
	p = lineEnd + 2
	m.startEnd = int32(p)

	if err := m.parseHeaders(p, l); err != nil {
		return firstErr(startErr, tooBig, err)
	}
	if err := m.frameBody(l); err != nil {
		return firstErr(startErr, tooBig, err)
	}
	if tooBig != nil && m.contentLen >= 0 {
		// Content-Length ended the message inside the first
		// MaxMessageSize bytes: what follows in the datagram is not part
		// of it and is discarded (RFC 3261 §18.3), so the message itself
		// is within the limit, as Frame judges a stream message.
		tooBig = nil
	}
	if err := firstErr(startErr, tooBig, nil); err != nil {
		return err
	}
	return m.validate(l)
}

// firstErr returns the first non-nil of a, b, c: the errors of one message
// in order of precedence.
func firstErr(a, b, c error) error {
	switch {
	case a != nil:
		return a
	case b != nil:
		return b
	}
	return c
}

// lineEnd returns the offset of the CR of the CRLF ending the line at p.
func (m *Message) lineEnd(p int, l *Limits) (int, error) {
	b := m.buf
	i := bytes.IndexByte(b[p:], '\n')
	if i < 0 {
		if len(b)-p > l.MaxLineLength {
			return 0, errAt(513, "Line Too Long", b, p)
		}
		return 0, errAt(400, "Start Line Not Terminated", b, p)
	}
	if i > l.MaxLineLength {
		return 0, errAt(513, "Line Too Long", b, p)
	}
	e := p + i
	if i == 0 || b[e-1] != '\r' {
		return 0, errAt(400, "Line Not Ended By CRLF", b, e)
	}
	return e - 1, nil
}

// parseStartLine reads "Method SP Request-URI SP SIP-Version" or
// "SIP-Version SP Status-Code SP Reason-Phrase" (RFC 3261 §7.1, §7.2).
// Exactly one SP separates the elements: RFC 4475 §3.1.2.8–10 messages with
// extra or trailing SP are refused rather than forwarded altered.
func (m *Message) parseStartLine(p, e int) error {
	b := m.buf
	line := b[p:e]
	if len(line) >= 4 && equalFold(line[:4], "sip/") {
		return m.parseStatusLine(p, e)
	}
	m.request = true
	i := p
	for i < e && isToken(b[i]) {
		i++
	}
	if i == p || i >= e || b[i] != ' ' {
		return errAt(400, "Bad Request Line", b, i)
	}
	m.methodSp = span{int32(p), int32(i)}
	m.method = LookupMethod(b[p:i])
	i++
	u := i
	for i < e && b[i] != ' ' {
		if b[i] < 0x21 || b[i] == 0x7f {
			return errAt(400, "Bad Request-URI", b, i)
		}
		i++
	}
	if i == u || i >= e {
		return errAt(400, "Bad Request Line", b, i)
	}
	m.ruri = span{int32(u), int32(i)}
	i++
	m.version = span{int32(i), int32(e)}
	return checkVersion(b, i, e)
}

// checkVersion accepts "SIP/2.0"; another well-formed version is 505
// (RFC 3261 §8.2.2... and RFC 4475 §3.1.2.16), anything else 400.
func checkVersion(b []byte, s, e int) error {
	v := b[s:e]
	if len(v) < 7 || !equalFold(v[:4], "sip/") {
		return errAt(400, "Bad SIP Version", b, s)
	}
	i, dot := 4, -1
	for ; i < len(v); i++ {
		switch {
		case v[i] == '.' && dot < 0 && i > 4:
			dot = i
		case isDigit(v[i]):
		default:
			return errAt(400, "Bad SIP Version", b, s+i)
		}
	}
	if dot < 0 || dot == len(v)-1 {
		return errAt(400, "Bad SIP Version", b, s)
	}
	if string(v[4:]) != "2.0" {
		return errAt(505, "Version Not Supported", b, s)
	}
	return nil
}

func (m *Message) parseStatusLine(p, e int) error {
	b := m.buf
	sp := bytes.IndexByte(b[p:e], ' ')
	if sp < 0 {
		return errAt(400, "Bad Status Line", b, p)
	}
	m.version = span{int32(p), int32(p + sp)}
	if err := checkVersion(b, p, p+sp); err != nil {
		return err
	}
	i := p + sp + 1
	// Status-Code is exactly 3 digits, 100–699 (RFC 3261 §7.2, §21).
	if i+3 > e || !isDigit(b[i]) || !isDigit(b[i+1]) || !isDigit(b[i+2]) || (i+3 < e && b[i+3] != ' ') {
		return errAt(400, "Bad Status Code", b, i)
	}
	m.code = int(b[i]-'0')*100 + int(b[i+1]-'0')*10 + int(b[i+2]-'0')
	if m.code < 100 || m.code > 699 {
		return errAt(400, "Bad Status Code", b, i)
	}
	r := i + 3
	if r < e {
		r++ // the SP before the reason phrase, which may be empty
	}
	m.reason = span{int32(r), int32(e)}
	return nil
}

// parseHeaders indexes the header fields from p to the empty line.
func (m *Message) parseHeaders(p int, l *Limits) error {
	b := m.buf
	for {
		if p+1 >= len(b) {
			return errAt(400, "Header Section Not Terminated", b, p)
		}
		if b[p] == '\r' && b[p+1] == '\n' {
			m.hdrEnd = int32(p + 2)
			return nil
		}
		start := p
		i := p
		for i < len(b) && isToken(b[i]) {
			i++
		}
		nameEnd := i
		if nameEnd == start {
			return errAt(400, "Bad Header Name", b, start)
		}
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		if i >= len(b) || b[i] != ':' {
			return errAt(400, "Bad Header Field", b, start)
		}
		i++
		// The field ends at the first CRLF not followed by SP or HT
		// (RFC 3261 §7.3.1 folding).
		j := i
		var end int
		for {
			k := bytes.IndexByte(b[j:], '\n')
			if k < 0 {
				return errAt(400, "Header Section Not Terminated", b, start)
			}
			k += j
			if b[k-1] != '\r' {
				return errAt(400, "Line Not Ended By CRLF", b, k)
			}
			if k+1 < len(b) && (b[k+1] == ' ' || b[k+1] == '\t') {
				j = k + 1
				continue
			}
			end = k + 1
			break
		}
		if end-start > l.MaxLineLength {
			return errAt(513, "Header Field Too Long", b, start)
		}
		if len(m.hdrs) >= l.MaxHeaders {
			return errAt(513, "Too Many Header Fields", b, start)
		}
		vs, ve := i, end-2
		for vs < ve && isLWS(b[vs]) {
			vs++
		}
		for ve > vs && isLWS(b[ve-1]) {
			ve--
		}
		k := LookupKind(b[start:nameEnd])
		m.hdrs = append(m.hdrs, header{
			kind:  k,
			name:  span{int32(start), int32(nameEnd)},
			value: span{int32(vs), int32(ve)},
			line:  span{int32(start), int32(end)},
		})
		if m.first[k] == 0 {
			m.first[k] = int16(len(m.hdrs))
		}
		if m.count[k] < 255 {
			m.count[k]++
		}
		p = end
	}
}

// frameBody applies Content-Length to a datagram-framed message: the body is
// exactly Content-Length bytes and anything after it is cut off. Without
// Content-Length the rest of the datagram is the body (RFC 3261 §18.3).
func (m *Message) frameBody(l *Limits) error {
	b := m.buf
	h := int(m.hdrEnd)
	if m.count[KindContentLength] > 1 {
		return errAt(400, "Multiple Content-Length", b, int(m.hdrs[m.FindNext(KindContentLength, m.Find(KindContentLength))].line.s))
	}
	if i := m.Find(KindContentLength); i >= 0 {
		v, ok := parseUintLWS(m.b(m.hdrs[i].value))
		if !ok {
			return errAt(400, "Bad Content-Length", b, int(m.hdrs[i].value.s))
		}
		if v > uint64(l.MaxBodySize) {
			return errAt(413, "Request Entity Too Large", b, int(m.hdrs[i].value.s))
		}
		if h+int(v) > len(b) {
			return errAt(400, "Content-Length Larger Than Message", b, int(m.hdrs[i].value.s))
		}
		m.contentLen = int32(v)
		m.buf = b[:h+int(v)]
	}
	m.body = span{int32(h), int32(len(m.buf))}
	return nil
}
