package sip

import (
	"net/netip"
	"slices"
	"strconv"
)

// AppendResponse appends to dst a response to req built per RFC 3261 §8.2.6:
// the status line, every Via of the request in order, From, To (with toTag
// added when the request's To has none and code > 100), Call-ID and CSeq
// copied byte for byte, then extra (complete header lines, each ending in
// CRLF), then Content-Length: 0 and the empty line. A 100 Trying also
// echoes the request's Timestamp (RFC 3261 §8.2.6.1).
//
// It works on a request that failed validation as long as its header index
// was built, which is how malformed requests get their 400: headers that were
// never read are simply left out.
func AppendResponse(dst []byte, req *Message, code int, reason string, toTag []byte, extra []byte) []byte {
	return appendResponse(dst, req, netip.AddrPort{}, code, reason, toTag, extra)
}

// AppendResponseFrom is AppendResponse for a request received from src: the
// top Via value of the response gets received=<src address> when its
// sent-by host is not that address or it carries rport, and an empty rport
// gets src's port (RFC 3261 §18.2.1, RFC 3581 §4), as they were added when
// the request arrived. A phone behind NAT learns its public address from
// them.
func AppendResponseFrom(dst []byte, req *Message, src netip.AddrPort, code int, reason string, toTag []byte, extra []byte) []byte {
	return appendResponse(dst, req, src, code, reason, toTag, extra)
}

func appendResponse(dst []byte, req *Message, src netip.AddrPort, code int, reason string, toTag []byte, extra []byte) []byte {
	// Size the result once: the copied headers are at most the request's
	// header section, so a fresh response costs one allocation, not one per
	// growth step.
	n := 64 + len(reason) + len(toTag) + len(extra) + int(req.hdrEnd)
	if cap(dst)-len(dst) < n {
		dst = slices.Grow(dst, n)
	}
	dst = append(dst, "SIP/2.0 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, '\r', '\n')
	topVia := src.IsValid()
	for i := range req.hdrs {
		h := &req.hdrs[i]
		switch h.kind {
		case KindVia:
			if topVia {
				topVia = false
				dst = appendTopVia(dst, req.b(h.value), src)
				continue
			}
			dst = appendHeader(dst, "Via", req.b(h.value))
		case KindFrom, KindCallID, KindCSeq:
			dst = appendHeader(dst, h.kind.String(), req.b(h.value))
		case KindTo:
			dst = appendHeader(dst, "To", req.b(h.value))
			if code > 100 && len(toTag) > 0 {
				if a, err := ParseAddress(req.b(h.value)); err == nil && a.Tag == nil {
					dst = dst[:len(dst)-2]
					dst = append(dst, ";tag="...)
					dst = append(dst, toTag...)
					dst = append(dst, '\r', '\n')
				}
			}
		case KindOther:
			// RFC 3261 §8.2.6.1: a 100 (Trying) copies the request's
			// Timestamp so the client can measure the round trip
			// (§20.38). The value is echoed as is: the delay §8.2.6.1
			// allows adding is left out, since AppendResponse does not
			// know when the request arrived.
			if code == 100 && equalFold(req.b(h.name), "timestamp") {
				dst = appendHeader(dst, "Timestamp", req.b(h.value))
			}
		}
	}
	dst = append(dst, extra...)
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// appendTopVia writes the Via header field whose first value is the top
// Via, with received and rport filled in for a request from src.
func appendTopVia(dst []byte, v []byte, src netip.AddrPort) []byte {
	k := SplitComma(v)
	first, rest := v[:k], v[k:]
	via, err := ParseVia(first)
	dst = append(dst, "Via: "...)
	if err != nil {
		dst = append(dst, v...)
		return append(dst, '\r', '\n')
	}
	// rport with no value: "=port" after the parameter name.
	at := -1
	if via.HasRPort && via.RPort == 0 {
		for p := via.Params; ; {
			name, _, r, ok, _ := p.Next()
			if !ok {
				break
			}
			if equalFold(name, "rport") {
				at = int(cap(first)-cap(name)) + len(name)
				break
			}
			p = r
		}
	}
	// Trailing spaces before a comma stay after the parameters we add.
	end := len(first)
	for end > 0 && (first[end-1] == ' ' || first[end-1] == '\t') {
		end--
	}
	if at >= 0 && at <= end {
		dst = append(dst, first[:at]...)
		dst = append(dst, '=')
		dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
		dst = append(dst, first[at:end]...)
	} else {
		dst = append(dst, first[:end]...)
	}
	if via.NeedsReceived(src.Addr()) {
		dst = append(dst, ";received="...)
		dst = src.Addr().Unmap().AppendTo(dst)
	}
	dst = append(dst, first[end:]...)
	dst = append(dst, rest...)
	return append(dst, '\r', '\n')
}

func appendHeader(dst []byte, name string, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// ReasonPhrase returns the RFC 3261 §21 default reason phrase for a code.
func ReasonPhrase(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 181:
		return "Call Is Being Forwarded"
	case 182:
		return "Queued"
	case 183:
		return "Session Progress"
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 413:
		return "Request Entity Too Large"
	case 414:
		return "Request-URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Unsupported URI Scheme"
	case 420:
		return "Bad Extension"
	case 421:
		return "Extension Required"
	case 423:
		return "Interval Too Brief"
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 482:
		return "Loop Detected"
	case 483:
		return "Too Many Hops"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 505:
		return "Version Not Supported"
	case 513:
		return "Message Too Large"
	case 603:
		return "Decline"
	}
	return "Unknown"
}
