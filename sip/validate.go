package sip

// validate checks the syntax a proxy relies on (RFC 3261 §8.2, §16.3 step 1,
// RFC 4475 §3.1.2 and §3.3). Each failure points at the offending header.
// Headers the core does not interpret are not validated: they are carried
// through untouched, which is what RFC 4475 §3.1.1.1 asks of a proxy.
func (m *Message) validate(l *Limits) error {
	b := m.buf
	// Mandatory headers (RFC 3261 §8.1.1). Max-Forwards is not checked:
	// RFC 2543 senders omit it (RFC 4475 §3.4.1) and the proxy adds it.
	for _, k := range [...]HeaderKind{KindVia, KindFrom, KindTo, KindCallID, KindCSeq} {
		if m.first[k] == 0 {
			return errAt(400, "Missing "+k.String(), b, int(m.startEnd))
		}
	}
	// Single-valued headers appearing twice (RFC 4475 §3.3.8).
	for _, k := range [...]HeaderKind{KindFrom, KindTo, KindCallID, KindCSeq, KindMaxForwards} {
		if m.count[k] > 1 {
			i := m.FindNext(k, m.Find(k))
			return errAt(400, "Multiple "+k.String(), b, int(m.hdrs[i].line.s))
		}
	}
	if m.request {
		if err := m.validateRequestURI(); err != nil {
			return err
		}
	}
	for i := range m.hdrs {
		h := &m.hdrs[i]
		v := b[h.value.s:h.value.e]
		var ok bool
		switch h.kind {
		case KindVia:
			ok = m.validateVias(i, l)
			if !ok && int(m.nvias) > l.MaxVias {
				return errAt(513, "Too Many Via Values", b, int(h.line.s))
			}
		case KindFrom, KindTo:
			var a Address
			ok = parseAddress(&a, v) == nil
		case KindContact:
			ok = validateAddressList(v, true)
		case KindRoute, KindRecordRoute, KindPath:
			ok = validateAddressList(v, false)
		case KindCallID:
			ok = validCallID(v)
		case KindCSeq:
			ok = m.parseCSeq(h.value)
			if ok && m.request && string(b[m.cseqMethod.s:m.cseqMethod.e]) != string(m.Method()) {
				// RFC 4475 §3.1.2.17/18: an unknown method gets 501,
				// which it would get anyway; a known one 400.
				if m.method == MethodOther {
					return errAt(501, "Not Implemented", b, int(h.line.s))
				}
				return errAt(400, "CSeq Method Does Not Match", b, int(h.line.s))
			}
		case KindMaxForwards:
			var n uint32
			n, ok = parseUint32Sat(v)
			if n > 1<<31-1 {
				n = 1<<31 - 1
			}
			m.maxForwards = int32(n)
		case KindExpires, KindMinExpires:
			_, ok = parseUint32Sat(v)
		case KindDate:
			ok = validDate(v)
		default:
			ok = true
		}
		if !ok {
			return errAt(400, "Bad "+nameOf(h.kind, b[h.name.s:h.name.e]), b, int(h.value.s))
		}
	}
	return nil
}

// nameOf is used on the error path only.
func nameOf(k HeaderKind, name []byte) string {
	if k != KindOther {
		return k.String()
	}
	return string(name) + " Header"
}

// validateRequestURI: sip, sips and tel are parsed; other schemes only need
// a valid scheme here (the proxy answers 416, RFC 3261 §16.3 step 1).
// Headers (?...) are not allowed in a Request-URI (RFC 3261 §19.1.1 table 1;
// RFC 4475 §3.1.2.11).
func (m *Message) validateRequestURI() error {
	var u URI
	if parseURI(&u, m.b(m.ruri)) != nil {
		return errAt(400, "Bad Request-URI", m.buf, int(m.ruri.s))
	}
	if len(u.Headers) > 0 {
		return errAt(400, "Headers Not Allowed In Request-URI", m.buf, int(m.ruri.s))
	}
	return nil
}

// validateVias parses every via-parm of Via header i and counts them in
// nvias. Via = "Via" HCOLON via-parm *(COMMA via-parm) (RFC 3261 §20.42,
// §25.1): an empty value, or an empty element between commas, is not a
// via-parm and is refused (§16.3 step 1). The value is split here rather
// than with the Values iterator, which moves to the next Via header before
// it returns an empty value, so the empty element could not be told apart
// from the end of this header.
func (m *Message) validateVias(i int, l *Limits) bool {
	h := &m.hdrs[i]
	v := m.buf[h.value.s:h.value.e]
	for {
		n := splitComma(v)
		m.nvias++
		if int(m.nvias) > l.MaxVias {
			return false
		}
		var via Via
		if parseVia(&via, v[:n]) != nil {
			return false
		}
		if n == len(v) {
			return true
		}
		v = v[n+1:]
	}
}

func validateAddressList(v []byte, contact bool) bool {
	for len(v) > 0 {
		n := splitComma(v)
		var a Address
		if parseAddress(&a, v[:n]) != nil {
			return false
		}
		if a.Wildcard && !contact {
			return false
		}
		if !contact && !a.Angle {
			return false // Route, Record-Route and Path are name-addr only
		}
		if n == len(v) {
			return true
		}
		v = v[n+1:]
		if len(trimLWS(v)) == 0 {
			return false
		}
	}
	return false
}

// validCallID: word ["@" word] (RFC 3261 §25.1), no LWS inside.
func validCallID(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	at := 0
	for i, c := range v {
		if c == '@' {
			at++
			if at > 1 || i == 0 || i == len(v)-1 {
				return false
			}
			continue
		}
		if charClass[c]&cWordChar == 0 {
			return false
		}
	}
	return true
}

// parseCSeq reads "1*DIGIT LWS Method"; the number must fit 32 bits
// (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.4).
func (m *Message) parseCSeq(sp span) bool {
	b := m.buf
	i, e := int(sp.s), int(sp.e)
	var n uint64
	s := i
	for i < e && isDigit(b[i]) {
		n = n*10 + uint64(b[i]-'0')
		if n > 1<<32-1 {
			return false
		}
		i++
	}
	if i == s {
		return false
	}
	ws := i
	i = skipLWS(b[:e], i)
	if i == ws {
		return false
	}
	ms := i
	for i < e && isToken(b[i]) {
		i++
	}
	if i == ms || i != e {
		return false
	}
	m.cseq = uint32(n)
	m.cseqMethod = span{int32(ms), int32(e)}
	return true
}

// validDate checks rfc1123-date: wkday "," SP 2DIGIT SP month SP 4DIGIT SP
// 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT" (RFC 3261 §20.17; RFC 4475
// §3.1.2.12 refuses "EST"). In the layout 'a' is a letter, 'd' a digit;
// wkday and month must then be one of the names RFC 3261 §25.1 lists
// (Mon..Sun, Jan..Dec), spelled as there: like "GMT", they are
// case-sensitive, since SIP-date is the HTTP-date of RFC 2616 §3.3.1.
func validDate(v []byte) bool {
	const layout = "aaa, dd aaa dddd dd:dd:dd GMT"
	if len(v) != len(layout) {
		return false
	}
	for i := 0; i < len(layout); i++ {
		switch c := v[i]; layout[i] {
		case 'a':
			if !isAlpha(c) {
				return false
			}
		case 'd':
			if !isDigit(c) {
				return false
			}
		default:
			if c != layout[i] {
				return false
			}
		}
	}
	return oneOf3(v[0:3], "MonTueWedThuFriSatSun") && oneOf3(v[8:11], "JanFebMarAprMayJunJulAugSepOctNovDec")
}

// oneOf3 reports whether the 3 bytes of b are one of the 3-letter names
// concatenated in names.
func oneOf3(b []byte, names string) bool {
	for i := 0; i+3 <= len(names); i += 3 {
		if string(b) == names[i:i+3] {
			return true
		}
	}
	return false
}
