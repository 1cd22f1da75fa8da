package sip

import "bytes"

// FrameKind says what Frame found at the head of a stream buffer.
type FrameKind uint8

const (
	// FrameMessage is one whole SIP message (headers and Content-Length body).
	FrameMessage FrameKind = iota
	// FramePing is a double-CRLF keep-alive ping; the receiver answers with a
	// single CRLF pong (RFC 5626 §3.5.1).
	FramePing
	// FramePong is a single CRLF: a pong to our ping, or padding between
	// messages that RFC 3261 §7.5 says to ignore. Nothing is answered.
	FramePong
)

var crlfcrlf = []byte("\r\n\r\n")

// Frame finds the first complete unit in b, the unread bytes of a TCP, TLS
// or WebSocket-less stream. It returns the unit's length and kind; n == 0 and
// err == nil means more bytes are needed. A stream message is delimited by
// Content-Length (RFC 3261 §18.3); a missing Content-Length counts as 0.
//
// An error means the stream can no longer be framed (bad or repeated
// Content-Length, a header section or message over the limits): the caller
// answers it if it can and closes the connection, since the next message's
// start can no longer be found.
func Frame(b []byte, lim *Limits) (n int, kind FrameKind, err error) {
	if len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		switch {
		case len(b) >= 4 && b[2] == '\r' && b[3] == '\n':
			return 4, FramePing, nil
		case len(b) == 2 || (len(b) == 3 && b[2] == '\r'):
			return 0, FramePong, nil // could still become a ping
		default:
			return 2, FramePong, nil
		}
	}
	if len(b) == 1 && b[0] == '\r' {
		return 0, FrameMessage, nil
	}
	l := lim.withDefaults()
	h := bytes.Index(b, crlfcrlf)
	if h < 0 {
		if len(b) > l.MaxMessageSize {
			return 0, FrameMessage, errAt(513, "Message Too Large", b, l.MaxMessageSize)
		}
		return 0, FrameMessage, nil
	}
	hdrEnd := h + 4
	if hdrEnd > l.MaxMessageSize {
		return 0, FrameMessage, errAt(513, "Message Too Large", b, l.MaxMessageSize)
	}
	cl, err := scanContentLength(b[:hdrEnd], &l)
	if err != nil {
		return 0, FrameMessage, err
	}
	total := hdrEnd + cl
	if total > l.MaxMessageSize {
		return 0, FrameMessage, errAt(513, "Message Too Large", b, 0)
	}
	if len(b) < total {
		return 0, FrameMessage, nil
	}
	return total, FrameMessage, nil
}

// scanContentLength finds the Content-Length of a header section without a
// full parse: framing must not depend on the rest of the message being
// valid, so a bad Via still gets its 400 over the same connection.
func scanContentLength(hdr []byte, l *Limits) (int, error) {
	found := false
	cl := 0
	p := bytes.IndexByte(hdr, '\n') + 1 // skip the start line
	for p > 0 && p < len(hdr) {
		e := bytes.IndexByte(hdr[p:], '\n')
		if e < 0 {
			break
		}
		line := hdr[p : p+e+1]
		start := p
		p += e + 1
		if line[0] == ' ' || line[0] == '\t' || line[0] == '\r' {
			continue // folded continuation or the final empty line
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !(len(name) == 1 && (name[0]|0x20) == 'l') && !equalFold(name, "content-length") {
			continue
		}
		if found {
			return 0, errAt(400, "Multiple Content-Length", hdr, start)
		}
		found = true
		// The value may be folded onto continuation lines (RFC 3261
		// §7.3.1: LWS = [*WSP CRLF] 1*WSP), as in "Content-Length:\r\n 5":
		// take every following line that starts with SP or HT, the same
		// field end Parse uses, so both read the same value.
		for p < len(hdr) && (hdr[p] == ' ' || hdr[p] == '\t') {
			k := bytes.IndexByte(hdr[p:], '\n')
			if k < 0 {
				break
			}
			p += k + 1
		}
		v, ok := parseUintLWS(hdr[start+colon+1 : p])
		if !ok {
			return 0, errAt(400, "Bad Content-Length", hdr, start)
		}
		if v > uint64(l.MaxBodySize) {
			return 0, errAt(413, "Request Entity Too Large", hdr, start)
		}
		cl = int(v)
	}
	return cl, nil
}

// parseUintLWS parses 1*DIGIT surrounded by optional whitespace (CR, LF, SP,
// HT: folding included). Values beyond 2^63 fail.
func parseUintLWS(b []byte) (uint64, bool) {
	i := 0
	for i < len(b) && isLWS(b[i]) {
		i++
	}
	start := i
	var v uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if v > (1<<63)/10 {
			return 0, false
		}
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	if i == start {
		return 0, false
	}
	for i < len(b) && isLWS(b[i]) {
		i++
	}
	return v, i == len(b)
}
