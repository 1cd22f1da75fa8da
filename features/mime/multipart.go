package mime

import "bytes"

// A byte-level reader of multipart bodies (RFC 2046 §5.1.1, as SIP uses
// them: RFC 3261 §7.4, RFC 5621):
//
//	multipart-body := [preamble CRLF] dash-boundary transport-padding CRLF
//	                  body-part *encapsulation close-delimiter
//	                  transport-padding [CRLF epilogue]
//	encapsulation  := delimiter transport-padding CRLF body-part
//	delimiter      := CRLF dash-boundary      ; dash-boundary := "--" boundary
//	close-delimiter := delimiter "--"
//	body-part      := MIME-part-headers [CRLF *OCTET]
//
// Bodies are binary (RFC 4475 §3.1.1.11 carries NUL bytes), so nothing here
// assumes text: a delimiter is found by its bytes at the start of a line.
// A bare LF is accepted wherever CRLF is, as SIP parsers accept it in
// headers. Nothing is copied: parts are slices of the body.

// maxBoundary is the longest boundary RFC 2046 §5.1.1 allows.
const maxBoundary = 70

// Reasons of a 400 for a malformed body. They name the defect so that the
// sender's logs say what to fix.
const (
	whyNoBoundary   = "Multipart Without Boundary"
	whyBadBoundary  = "Bad Multipart Boundary"
	whyNoDelimiter  = "Multipart Boundary Not Found"
	whyEmpty        = "Empty Multipart Body"
	whyUnterminated = "Unterminated Multipart Body"
	whyPartHeader   = "Malformed Body Part Header"
	whyPartTwoTypes = "Multiple Content-Type In Body Part"
	whyBadType      = "Bad Content-Type"
	whyMissingType  = "Missing Content-Type"
	whyTwoTypes     = "Multiple Content-Type"
	whyTooDeep      = "Multipart Nested Too Deeply"
	whyTooManyParts = "Too Many Body Parts"
	whyBadParam     = "Bad Content-Type Parameter"
)

// splitter walks the body parts of one multipart body.
type splitter struct {
	body    []byte
	delim   []byte // "--" boundary
	pos     int    // start of the part being read
	started bool
	closed  bool
}

// newSplitter prepares a walk of body with delim ("--" + boundary).
func newSplitter(body, delim []byte) splitter {
	return splitter{body: body, delim: delim}
}

// next returns the next body part (without the CRLF that belongs to the
// delimiter after it). ok is false after the close delimiter; why is set
// when the body is malformed.
func (s *splitter) next() (part []byte, ok bool, why string) {
	if s.closed {
		return nil, false, ""
	}
	if !s.started {
		// The preamble, if any, ends with the CRLF of the first
		// delimiter line; it is ignored (RFC 2046 §5.1.1).
		_, after, closing, found := s.find(0)
		if !found {
			return nil, false, whyNoDelimiter
		}
		if closing {
			return nil, false, whyEmpty
		}
		s.started, s.pos = true, after
	}
	i, after, closing, found := s.find(s.pos)
	if !found {
		return nil, false, whyUnterminated
	}
	end := i
	// The line ending before the delimiter is part of the delimiter.
	if end > s.pos && s.body[end-1] == '\n' {
		end--
		if end > s.pos && s.body[end-1] == '\r' {
			end--
		}
	}
	part = s.body[s.pos:end]
	s.pos = after
	s.closed = closing // the epilogue after the close delimiter is ignored
	return part, true, ""
}

// find looks for a delimiter line from index from: the dash-boundary at
// the start of a line, followed by "--" (the close delimiter) or by
// transport padding (SP, HT) and a line ending. A line that only begins
// with the dash-boundary ("--bound" then "ary-2") is content. It returns
// the index of the dash-boundary and of what follows its line.
func (s *splitter) find(from int) (i, after int, closing, found bool) {
	b := s.body
	for from <= len(b) {
		j := bytes.Index(b[from:], s.delim)
		if j < 0 {
			return 0, 0, false, false
		}
		i = from + j
		from = i + 1
		if i > 0 && b[i-1] != '\n' {
			continue
		}
		k := i + len(s.delim)
		if k+1 < len(b) && b[k] == '-' && b[k+1] == '-' {
			return i, k + 2, true, true
		}
		for k < len(b) && (b[k] == ' ' || b[k] == '\t') {
			k++
		}
		switch {
		case k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n':
			return i, k + 2, false, true
		case k < len(b) && b[k] == '\n':
			return i, k + 1, false, true
		}
	}
	return 0, 0, false, false
}

// splitPart separates a body part's MIME headers from its content and
// returns its Content-Type value (nil when it has none: text/plain, RFC
// 2046 §5.1). The value keeps folding (CRLF SP), which splitType reads as
// white space. Other headers (Content-Disposition, Content-ID,
// Content-Transfer-Encoding) are not interpreted.
func splitPart(p []byte) (ct, content []byte, why string) {
	ctStart, ctEnd := -1, -1
	inCT := false // the last header line was Content-Type (for folding)
	for pos := 0; pos < len(p); {
		e := bytes.IndexByte(p[pos:], '\n')
		next := len(p)
		if e >= 0 {
			e += pos
			next = e + 1
		} else {
			e = len(p)
		}
		line := p[pos:e]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 { // the empty line: content follows
			content = p[next:]
			break
		}
		switch {
		case line[0] == ' ' || line[0] == '\t':
			if pos == 0 {
				return nil, nil, whyPartHeader // folding with nothing to fold
			}
			if inCT {
				ctEnd = pos + len(line)
			}
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return nil, nil, whyPartHeader
			}
			name := bytes.TrimRight(line[:colon], " \t")
			inCT = len(name) == len("Content-Type") && equalFold(name, "content-type")
			if inCT {
				if ctStart >= 0 {
					return nil, nil, whyPartTwoTypes
				}
				ctStart, ctEnd = pos+colon+1, pos+len(line)
			}
		}
		pos = next
	}
	if ctStart >= 0 {
		ct = p[ctStart:ctEnd]
	}
	return ct, content, ""
}

// splitType reads a Content-Type value: media-type = m-type SLASH
// m-subtype *(SEMI m-parameter) (RFC 3261 §20.15, §25.1; SLASH allows
// white space around it). params is what follows the first ';'.
func splitType(v []byte) (typ, sub, params []byte, ok bool) {
	i := skipWS(v, 0)
	j := skipToken(v, i)
	if j == i {
		return nil, nil, nil, false
	}
	typ = v[i:j]
	i = skipWS(v, j)
	if i >= len(v) || v[i] != '/' {
		return nil, nil, nil, false
	}
	i = skipWS(v, i+1)
	j = skipToken(v, i)
	if j == i {
		return nil, nil, nil, false
	}
	sub = v[i:j]
	i = skipWS(v, j)
	switch {
	case i == len(v):
		return typ, sub, nil, true
	case v[i] == ';':
		return typ, sub, v[i+1:], true
	}
	return nil, nil, nil, false
}

// param finds parameter name in params (the part of a Content-Type after
// its first ';'): m-parameter = m-attribute EQUAL m-value, m-value = token
// / quoted-string. A quoted value is returned without its quotes (quoted
// pairs are kept as they are: no boundary character needs one). ok is
// false when params does not parse.
func param(params []byte, name string) (val []byte, found, ok bool) {
	i := 0
	for {
		i = skipWS(params, i)
		j := skipToken(params, i)
		if j == i {
			return nil, false, false
		}
		attr := params[i:j]
		i = skipWS(params, j)
		if i >= len(params) || params[i] != '=' {
			return nil, false, false
		}
		i = skipWS(params, i+1)
		var v []byte
		if i < len(params) && params[i] == '"' {
			k := i + 1
			for k < len(params) && params[k] != '"' {
				if params[k] == '\\' {
					k++
				}
				k++
			}
			if k >= len(params) {
				return nil, false, false
			}
			v, i = params[i+1:k], k+1
		} else {
			j = skipToken(params, i)
			if j == i {
				return nil, false, false
			}
			v, i = params[i:j], j
		}
		if !found && equalFold(attr, name) {
			val, found = v, true
		}
		i = skipWS(params, i)
		if i == len(params) {
			return val, found, true
		}
		if params[i] != ';' {
			return nil, false, false
		}
		i++
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

func skipToken(b []byte, i int) int {
	for i < len(b) && isToken(b[i]) {
		i++
	}
	return i
}

// isToken: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+"
// / "`" / "'" / "~") (RFC 3261 §25.1).
func isToken(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

// equalFold compares b with an ASCII string case-insensitively without
// allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
