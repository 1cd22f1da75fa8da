package proxy

import (
	"sipedge/sip"
)

// stage is one step a request walks through. run returns true when the
// stage has dealt with the request (answered, forwarded or absorbed it).
type stage struct {
	name string
	run  func(r *request) bool
}

// stages is the order every request follows, the one list to read to know
// what sipedge does with a request. Later capabilities (authentication,
// registrar, routing, NAT fixing) each add one named stage here.
var stages = []stage{
	{"ack", ackStage},                // ACK is never answered
	{"scheme", schemeStage},          // RFC 3261 §16.3 step 1: 416
	{"max-forwards", maxFwdStage},    // §16.3 step 3: 483
	{"proxy-require", proxyReqStage}, // §16.3 step 6: 420
	{"self", selfStage},              // requests addressed to sipedge itself
	{"route", routeStage},            // everything else
}

// ackStage absorbs ACKs: without transactions or routes yet, an ACK can
// only be for a response sipedge generated, and an ACK is never answered
// (RFC 3261 §17.2.1).
func ackStage(r *request) bool {
	return r.msg.MethodKind() == sip.ACK
}

// schemeStage: a proxy that does not understand the Request-URI scheme
// answers 416 (RFC 3261 §16.3 step 1; RFC 4475 §3.3.2, §3.3.3).
func schemeStage(r *request) bool {
	u, err := r.msg.RequestURI()
	if err == nil && (u.IsSIP() || u.Kind == sip.SchemeTel) {
		return false
	}
	r.respond(416, "Unsupported URI Scheme", nil)
	return true
}

// maxFwdStage: Max-Forwards 0 is answered 483 (RFC 3261 §16.3 step 3),
// except an OPTIONS for sipedge itself, which a proxy may answer as the
// final recipient (RFC 4475 §3.3.11).
func maxFwdStage(r *request) bool {
	n, ok := r.msg.MaxForwards()
	if !ok || n > 0 {
		return false
	}
	if r.msg.MethodKind() == sip.OPTIONS && r.forSelf() {
		return false
	}
	r.respond(483, "Too Many Hops", nil)
	return true
}

// proxyReqStage: sipedge supports no Proxy-Require extension yet, so every
// listed option tag is returned in Unsupported with 420 (RFC 3261 §16.3
// step 6, §20.29; RFC 4475 §3.3.5).
func proxyReqStage(r *request) bool {
	if r.msg.Find(sip.KindProxyRequire) < 0 {
		return false
	}
	r.respond(420, "Bad Extension", r.unsupportedHeader(sip.KindProxyRequire))
	return true
}

// unsupportedHeader builds "Unsupported: tag, tag" from every option tag of
// a Require or Proxy-Require header.
func (r *request) unsupportedHeader(k sip.HeaderKind) []byte {
	var hdr [256]byte
	h := append(hdr[:0], "Unsupported: "...)
	first := true
	for it := r.msg.Values(k); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		if len(v) == 0 {
			continue
		}
		if !first {
			h = append(h, ", "...)
		}
		first = false
		h = append(h, v...)
	}
	h = append(h, '\r', '\n')
	return append([]byte(nil), h...)
}

// Allow and Supported describe what sipedge itself answers as a UAS.
const (
	allowHeader     = "Allow: OPTIONS\r\n"
	acceptHeader    = "Accept: application/sdp\r\n"
	supportedHeader = "Supported: \r\n"
)

// selfStage answers requests whose Request-URI names sipedge itself
// (RFC 3261 §16.4: "the proxy is the final recipient"): OPTIONS gets 200
// with its capabilities (§11.2); other methods are not implemented here.
func selfStage(r *request) bool {
	if !r.forSelf() {
		return false
	}
	m := &r.msg
	// A UAS refuses Require tags it does not support (RFC 3261 §8.2.2.3).
	if m.Find(sip.KindRequire) >= 0 && m.MethodKind() != sip.CANCEL {
		r.respond(420, "Bad Extension", r.unsupportedHeader(sip.KindRequire))
		return true
	}
	switch m.MethodKind() {
	case sip.OPTIONS:
		r.respond(200, "OK", []byte(allowHeader+acceptHeader+supportedHeader))
	case sip.CANCEL:
		r.respond(481, "Call/Transaction Does Not Exist", nil)
	case sip.MethodOther:
		r.respond(501, "Not Implemented", []byte(allowHeader))
	default:
		r.respond(405, "Method Not Allowed", []byte(allowHeader))
	}
	return true
}

// routeStage handles requests for other targets. With no location service
// or routes configured the target set is empty, which a proxy answers with
// 480 (RFC 3261 §16.6... "If the target set is empty": §16.5 / §16.7); a
// CANCEL matches no transaction (481, §16.10).
func routeStage(r *request) bool {
	if r.msg.MethodKind() == sip.CANCEL {
		r.respond(481, "Call/Transaction Does Not Exist", nil)
		return true
	}
	r.respond(480, "Temporarily Unavailable", nil)
	return true
}

// forSelf reports whether the Request-URI names sipedge: a host that is one
// of its addresses or names, with a port it listens on (or none).
func (r *request) forSelf() bool {
	u, err := r.msg.RequestURI()
	if err != nil || !u.IsSIP() {
		return false
	}
	return r.core.self.Load().Is(u.Host, u.Port, u.Kind == sip.SchemeSIPS)
}
