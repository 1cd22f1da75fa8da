package digest

// AppendChallenge appends a WWW-Authenticate or Proxy-Authenticate value
// to dst (RFC 3261 §22.1, RFC 7616 §3.3):
//
//	Digest realm="R", nonce="N", algorithm=MD5, qop="auth"[, stale=true]
//
// One challenge names one algorithm; a server offering several sends one
// header per algorithm, the preferred first (RFC 8760 §2.4). No opaque is
// sent: the nonce already carries everything the server needs back.
func AppendChallenge(dst []byte, a Algorithm, realm string, nonce []byte, stale bool) []byte {
	dst = append(dst, `Digest realm=`...)
	dst = appendQuoted(dst, []byte(realm))
	dst = append(dst, `, nonce=`...)
	dst = appendQuoted(dst, nonce)
	dst = append(dst, `, algorithm=`...)
	dst = append(dst, a.String()...)
	dst = append(dst, `, qop="auth"`...)
	if stale {
		dst = append(dst, `, stale=true`...)
	}
	return dst
}

// Challenge is a parsed WWW-Authenticate or Proxy-Authenticate value, the
// client side's view. The byte fields are views into the parsed value;
// quoted ones keep their escapes as written.
type Challenge struct {
	Realm     []byte
	Nonce     []byte
	Opaque    []byte // echoed in the credentials when present
	Domain    []byte
	Algorithm Algorithm
	QOPAuth   bool // qop offered and includes auth: answer with qop=auth
	Stale     bool // the previous credentials had a right password but an old nonce
}

// ParseChallenge parses a WWW-Authenticate or Proxy-Authenticate value.
// realm and nonce are required. A qop list without auth (auth-int only)
// and an unknown algorithm wrap ErrUnsupported; another scheme is
// ErrNotDigest.
func ParseChallenge(v []byte) (Challenge, error) {
	var ch Challenge
	s := scanner{v: v}
	if err := s.scheme(); err != nil {
		return ch, err
	}
	seen := 0
	for {
		p, ok, err := s.next()
		if err != nil {
			return ch, err
		}
		if !ok {
			break
		}
		var bit int
		switch {
		case equalFold(p.name, "realm"):
			bit, ch.Realm = seenRealm, p.value
		case equalFold(p.name, "nonce"):
			bit, ch.Nonce = seenNonce, p.value
		case equalFold(p.name, "opaque"):
			bit, ch.Opaque = seenOpaque, p.value
		case equalFold(p.name, "domain"):
			bit, ch.Domain = seenDomain, p.value
		case equalFold(p.name, "algorithm"):
			bit = seenAlgorithm
			a, ok := ParseAlgorithm(p.value)
			if !ok || len(p.value) == 0 {
				return ch, unsupported(v, p.off, "algorithm "+string(p.value))
			}
			ch.Algorithm = a
		case equalFold(p.name, "qop"):
			// qop-options = "qop" EQUAL LDQUOT qop-value *("," qop-value)
			// RDQUOT (RFC 3261 §25.1): a list inside the quotes.
			bit = seenQOP
			if !qopListHasAuth(p.value) {
				return ch, unsupported(v, p.off, "qop "+string(p.value))
			}
			ch.QOPAuth = true
		case equalFold(p.name, "stale"):
			// stale = "stale" EQUAL ( "true" / "false" ), case-insensitive;
			// anything else means false (RFC 7616 §3.3).
			bit = seenStale
			ch.Stale = equalFold(p.value, "true")
		default:
			continue
		}
		if seen&bit != 0 {
			return ch, errAt(v, p.off, "duplicate parameter "+string(p.name))
		}
		seen |= bit
	}
	if seen&seenRealm == 0 {
		return ch, errAt(v, len(v), "missing parameter realm")
	}
	if seen&seenNonce == 0 {
		return ch, errAt(v, len(v), "missing parameter nonce")
	}
	return ch, nil
}

// qopListHasAuth reports whether a comma-separated qop list holds "auth".
func qopListHasAuth(b []byte) bool {
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != ',' {
			i++
		}
		item := b[:i]
		for len(item) > 0 && isLWS(item[0]) {
			item = item[1:]
		}
		for len(item) > 0 && isLWS(item[len(item)-1]) {
			item = item[:len(item)-1]
		}
		if equalFold(item, "auth") {
			return true
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return false
}

// ChooseChallenge parses challenge values (the WWW-Authenticate or
// Proxy-Authenticate headers of one response) and returns the one with the
// strongest supported algorithm — SHA-512-256, then SHA-256, then MD5 —
// and its index; the first of equals wins (RFC 8760 §2.4, RFC 7616 §3.7:
// the client uses the first challenge it supports, and the server lists
// its preferred first). Values that are not Digest, do not parse or ask
// for what is not supported are skipped; ok is false when none is left.
func ChooseChallenge(values ...[]byte) (ch Challenge, index int, ok bool) {
	index = -1
	for i, v := range values {
		c, err := ParseChallenge(v)
		if err != nil {
			continue
		}
		if index < 0 || c.Algorithm.strength() > ch.Algorithm.strength() {
			ch, index = c, i
		}
	}
	return ch, index, index >= 0
}

// Authorize appends the Authorization (or Proxy-Authorization) value
// answering the challenge for a request with this method and Request-URI
// to dst (RFC 7616 §3.4):
//
//	Digest username="alice", realm="R", nonce="N", uri="sip:bob@example.com",
//	response="...", algorithm=SHA-256, cnonce="C", qop=auth, nc=00000001
//
// With qop offered the answer uses qop=auth with cnonce (fresh random
// characters from the caller, without '"' or '\') and nc (1 for a nonce's
// first request, then counting up); without it, the RFC 2069 form, and
// cnonce and nc are not used. An opaque is echoed.
func (ch *Challenge) Authorize(dst []byte, user, password string, method, uri []byte, cnonce []byte, nc uint32) []byte {
	s := getHasher(ch.Algorithm)
	defer putHasher(s)
	h := s.h
	h.Reset()
	h.Write([]byte(user))
	h.Write(colon)
	writeUnquoted(h, ch.Realm)
	h.Write(colon)
	h.Write([]byte(password))
	ha1 := s.hexSum(&s.a1)

	h.Reset()
	h.Write(method)
	h.Write(colon)
	h.Write(uri)
	ha2 := s.hexSum(&s.a2)

	var ncText [8]byte
	appendNC(ncText[:0], nc)
	h.Reset()
	h.Write(ha1)
	h.Write(colon)
	writeUnquoted(h, ch.Nonce)
	h.Write(colon)
	if ch.QOPAuth {
		h.Write(ncText[:])
		h.Write(colon)
		h.Write(cnonce)
		h.Write([]byte(":auth:"))
	}
	h.Write(ha2)
	response := s.hexSum(&s.resp)

	dst = append(dst, `Digest username=`...)
	dst = appendQuoted(dst, []byte(user))
	// realm, nonce and opaque go back exactly as the server wrote them.
	dst = append(dst, `, realm="`...)
	dst = append(dst, ch.Realm...)
	dst = append(dst, `", nonce="`...)
	dst = append(dst, ch.Nonce...)
	dst = append(dst, `", uri=`...)
	dst = appendQuoted(dst, uri)
	dst = append(dst, `, response="`...)
	dst = append(dst, response...)
	dst = append(dst, `", algorithm=`...)
	dst = append(dst, ch.Algorithm.String()...)
	if ch.QOPAuth {
		dst = append(dst, `, cnonce=`...)
		dst = appendQuoted(dst, cnonce)
		dst = append(dst, `, qop=auth, nc=`...)
		dst = append(dst, ncText[:]...)
	}
	if ch.Opaque != nil {
		dst = append(dst, `, opaque="`...)
		dst = append(dst, ch.Opaque...)
		dst = append(dst, '"')
	}
	return dst
}
