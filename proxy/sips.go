package proxy

import (
	"sipedge/sip"
)

// sipsNext reports whether the request goes on as a SIPS request: its
// Request-URI (uri, the one a target rewrites it to; nil: the received
// one) or the first Route value after sipedge's own n entries is a sips
// URI. Such a request must be sent over TLS on every hop (RFC 3261
// §26.2.2; RFC 5630 §3.1.3), and the Record-Route sipedge adds must be a
// SIPS URI too (RFC 3261 §16.6 step 4).
func sipsNext(m *sip.Message, n int, uri []byte) bool {
	if v, ok := routeValue(m, n); ok {
		if a, err := sip.ParseAddress(v); err == nil && a.URI.Kind == sip.SchemeSIPS {
			return true
		}
	}
	var u sip.URI
	var err error
	if uri != nil {
		u, err = sip.ParseURI(uri)
	} else {
		u, err = m.RequestURI()
	}
	return err == nil && u.Kind == sip.SchemeSIPS
}

// sipsNotAllowed is the Warning of a SIPS request refused because none of
// its targets can be reached over TLS (RFC 5630 §5.1.1, §7: warn-code 380).
const sipsNotAllowed = "Warning: 380 sipedge \"SIPS Not Allowed\"\r\n"

// sipsStage keeps, for a SIPS request, only the targets that are reached
// over TLS: a registered contact that came over UDP or TCP, a route to a
// sip: gateway or a sips URI with transport=udp would let the request
// continue in clear, which the SIPS scheme forbids (RFC 3261 §26.2.2).
// With none left it answers 480 with warn-code 380 "SIPS Not Allowed"
// (RFC 5630 §5.1.1 names exactly this answer as the one a UAC must not
// downgrade to sip: on its own). 480, not 416: the scheme is understood;
// the callee is just not reachable securely now, and may register over
// TLS later.
func sipsStage(r *Request) bool {
	d := &r.decision
	if !r.decided {
		return false
	}
	all := sipsNext(&r.msg, r.routes, nil)
	n, kept := 0, d.Groups[:0]
	for _, g := range d.Groups {
		ok := g[:0]
		for _, t := range g {
			n++
			if t.Proto.Secure() || !all && !isSIPS(t.URI) {
				ok = append(ok, t)
			}
		}
		if len(ok) > 0 {
			kept = append(kept, ok)
		}
	}
	d.Groups = kept
	if len(kept) > 0 || n == 0 {
		return false
	}
	r.core.stats.SIPSRefused.Add(1)
	r.Respond(480, "Temporarily Unavailable", []byte(sipsNotAllowed))
	return true
}

// isSIPS reports whether a target's new Request-URI is a sips URI (a route
// to sips:gateway, a contact registered as sips:).
func isSIPS(uri []byte) bool {
	return len(uri) > 5 && sip.EqualFold(uri[:5], "sips:")
}
