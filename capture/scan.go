package capture

import (
	"bytes"
	"strings"

	"sipedge/sip"
)

// The scanners below read only what the capture needs from a message that
// may be malformed (the tap sees every message before the parser does):
// they never fail, never allocate on the tap's path, and stop at the end
// of the header section.

// line is what the start line says.
type line struct {
	response bool
	code     int    // a response's status code (0 when not three digits)
	method   []byte // a request's method
}

// startLine reads "METHOD SP ..." or "SIP/2.0 SP CODE SP ...".
func startLine(b []byte) line {
	if e := bytes.IndexByte(b, '\n'); e >= 0 {
		b = b[:e]
	}
	if rest, ok := bytes.CutPrefix(b, []byte("SIP/2.0 ")); ok {
		l := line{response: true}
		if len(rest) >= 3 && isDigit(rest[0]) && isDigit(rest[1]) && isDigit(rest[2]) && (len(rest) == 3 || !isDigit(rest[3])) {
			l.code = int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
		}
		return l
	}
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 {
		return line{}
	}
	return line{method: b[:sp]}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// header returns the value of the first header whose name is long or
// short (given in lower case, compared case-insensitively; short may be
// empty), trimmed, or nil. A folded
// value is returned up to its first line end, which is enough for the
// CSeq and Content-Type the capture reads.
func header(b []byte, long, short string) []byte {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil
	}
	i++
	for i < len(b) {
		end := bytes.IndexByte(b[i:], '\n')
		if end < 0 {
			end = len(b)
		} else {
			end += i
		}
		l := b[i:end]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if len(l) == 0 {
			return nil // end of the header section
		}
		// The name is the line's first bytes: compare them before looking
		// for the colon, so most lines cost one byte compare.
		if n := nameMatch(l, long); n > 0 || short != "" && nameMatch(l, short) > 0 {
			if n == 0 {
				n = len(short)
			}
			if c := colonAfter(l, n); c > 0 {
				return bytes.TrimSpace(l[c+1:])
			}
		}
		i = end + 1
	}
	return nil
}

// nameMatch reports len(name) when line starts with name
// (case-insensitive, name in lower case), else 0.
func nameMatch(line []byte, name string) int {
	if len(line) < len(name) {
		return 0
	}
	for i := 0; i < len(name); i++ {
		if c := line[i]; c != name[i] && !('A' <= c && c <= 'Z' && c+('a'-'A') == name[i]) {
			return 0
		}
	}
	return len(name)
}

// colonAfter returns the index of the colon that follows a header name of
// n bytes, after optional white space (RFC 3261 §7.3.1), or 0 when
// something else follows (a longer name).
func colonAfter(l []byte, n int) int {
	for ; n < len(l); n++ {
		switch l[n] {
		case ':':
			return n
		case ' ', '\t':
		default:
			return 0
		}
	}
	return 0
}

// body is the message body: after the first empty line.
func body(b []byte) []byte {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return b[i+4:]
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return b[i+2:]
	}
	return nil
}

// Label is what the ladder writes on a message's arrow: the method of a
// request ("INVITE"), the status of a response ("180 Ringing", the reason
// phrase cut at 24 characters). Characters other than printable ASCII
// become '?': the text comes from the network and ends up on terminals.
func Label(b []byte) string {
	sl := startLine(b)
	var s []byte
	switch {
	case sl.response:
		s = bytes.TrimPrefix(b, []byte("SIP/2.0 "))
		if e := bytes.IndexAny(s, "\r\n"); e >= 0 {
			s = s[:e]
		}
		if len(s) > 28 {
			s = s[:28]
		}
	case len(sl.method) > 0:
		s = sl.method
		if len(s) > 20 {
			s = s[:20]
		}
	default:
		return "?"
	}
	return printable(s)
}

// printable is b with every byte outside printable ASCII as '?'.
func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// staticPT names the static RTP payload types (RFC 3551 §6) a phone may
// offer without an rtpmap.
var staticPT = map[string]string{"0": "PCMU", "3": "GSM", "4": "G723", "8": "PCMA", "9": "G722",
	"13": "CN", "18": "G729"}

// SDPSummary summarises the SDP body of a message for a ladder arrow:
// the connection address and, per media line, its type, port, first
// format by name and any direction other than sendrecv, e.g.
// "c=10.0.0.5 m=audio 4000 PCMU" or "c=0.0.0.0 m=audio 4000 PCMU
// sendonly" (a hold). Empty when the message carries no SDP. It is for
// reading, not a parser: anything it does not understand is left out.
func SDPSummary(msg []byte) string {
	ct := header(msg, "content-type", "c")
	if !sip.EqualFold(bytes.TrimSpace(bytes.SplitN(ct, []byte(";"), 2)[0]), "application/sdp") {
		return ""
	}
	b := body(msg)
	var out strings.Builder
	conn := "" // the session's c= address
	type media struct{ kind, port, pt, codec, dir, conn string }
	var ms []media
	for len(b) > 0 {
		var l []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			l, b = b[:i], b[i+1:]
		} else {
			l, b = b, nil
		}
		l = bytes.TrimRight(l, "\r \t")
		if len(l) < 2 || l[1] != '=' {
			continue
		}
		v := string(l[2:])
		switch l[0] {
		case 'c': // c=IN IP4 10.0.0.5
			f := strings.Fields(v)
			if len(f) == 3 {
				addr := f[2]
				if i := strings.IndexByte(addr, '/'); i >= 0 {
					addr = addr[:i] // multicast TTL
				}
				if len(ms) == 0 {
					conn = addr
				} else {
					ms[len(ms)-1].conn = addr // this media's own
				}
			}
		case 'm': // m=audio 4000 RTP/AVP 0 8 101
			f := strings.Fields(v)
			if len(ms) == 8 || len(f) < 3 {
				continue
			}
			m := media{kind: f[0], port: f[1]}
			if len(f) > 3 {
				m.pt = f[3]
			}
			ms = append(ms, m)
		case 'a':
			if len(ms) == 0 {
				continue
			}
			cur := &ms[len(ms)-1]
			switch {
			case v == "sendonly" || v == "recvonly" || v == "inactive":
				cur.dir = v
			case strings.HasPrefix(v, "rtpmap:"): // a=rtpmap:0 PCMU/8000
				pt, enc, ok := strings.Cut(v[len("rtpmap:"):], " ")
				if ok && pt == cur.pt {
					name, _, _ := strings.Cut(strings.TrimSpace(enc), "/")
					cur.codec = name
				}
			}
		}
	}
	write := func(s string) {
		if out.Len() > 0 {
			out.WriteByte(' ')
		}
		out.WriteString(s)
	}
	if conn != "" {
		write("c=" + conn)
	}
	for _, m := range ms {
		if m.conn != "" && m.conn != conn {
			write("c=" + m.conn)
		}
		write("m=" + m.kind + " " + m.port)
		codec := m.codec
		if codec == "" {
			codec = staticPT[m.pt]
		}
		if codec == "" {
			codec = m.pt
		}
		if codec != "" {
			write(codec)
		}
		if m.dir != "" {
			write(m.dir)
		}
	}
	s := out.String()
	if len(s) > 160 {
		s = s[:160]
	}
	return printable([]byte(s))
}
