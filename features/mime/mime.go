// Package mime refuses requests whose body is of a media type the
// configuration does not allow, before they are routed (stage "mime"):
// an edge proxy keeps bodies nothing inside expects (and that parsers
// inside were never tested with) from reaching phones and servers.
//
// There are two allow-lists: inbound, for requests from sources that are
// not trusted (phones on the Internet, providers not listed in
// trusted_networks), and outbound, for requests from trusted sources. A
// list holds media types "type/subtype", "type/*" or "*/*", compared
// without regard to case; parameters (charset, boundary, ...) are not
// compared. "*/*" turns the check off for its direction.
//
// A request whose body is refused is answered 415 Unsupported Media Type
// with an Accept header listing the allowed types (RFC 3261 §8.2.3,
// §21.4.13). A multipart body (RFC 2046 §5.1, RFC 5621) is allowed only
// when its own type and every part's type are, nested multiparts included
// down to a depth of maxDepth and up to maxParts parts in all. A body that
// cannot be read (a non-empty body without Content-Type, RFC 3261 §20.15; a
// multipart without boundary or close delimiter) is answered 400 with a
// reason that names the defect. An ACK is never answered (§17.1.1.3): a
// refused one is dropped and counted.
//
// Responses are not checked: a response cannot be answered with 415, and
// dropping or stripping the body of a 200 would break the call it sets up
// (the caller could never ACK an answer it did not get); the remedy for an
// unwanted body in a response is the request that asked for it.
package mime

import (
	"fmt"
	"strings"
	"sync/atomic"

	"sipedge/proxy"
	"sipedge/sip"
)

const (
	// maxDepth is how deep multipart bodies may nest: a multipart inside
	// a multipart inside the top-level multipart, no deeper. SIP uses one
	// level (SDP with ISUP or a location object), two for
	// multipart/alternative inside multipart/mixed.
	maxDepth = 3
	// maxParts bounds the body parts of one request across all levels,
	// so that a datagram of tiny parts costs a bounded walk.
	maxParts = 32
)

// Config is the two allow-lists; an empty list is refused (write "*/*"
// to allow every body).
type Config struct {
	Inbound  []string
	Outbound []string
}

// Feature is the body filter.
type Feature struct {
	cfg   atomic.Pointer[lists]
	stats struct{ inbound, outbound counters }
}

type lists struct{ inbound, outbound list }

// list is one compiled allow-list.
type list struct {
	all    bool // "*/*": no check
	ranges []mediaRange
	accept []byte // "Accept: ...\r\n" for the 415
}

// mediaRange is one entry: sub "*" allows the whole type.
type mediaRange struct{ typ, sub string }

type counters struct {
	refused, malformed, acks atomic.Uint64
}

// Stats is a snapshot of the feature's counters (the metrics convention
// of package metrics), per direction.
type Stats struct {
	Inbound  Direction // requests from sources not trusted
	Outbound Direction // requests from trusted_networks
}

// Direction counts the requests refused in one direction.
type Direction struct {
	Refused    uint64 // 415: a body of a type not allowed
	Malformed  uint64 // 400: a body that could not be read
	ACKDropped uint64 // ACKs dropped for their body (never answered)
}

// New returns the filter with cfg.
func New(cfg Config) (*Feature, error) {
	f := &Feature{}
	if err := f.SetConfig(cfg); err != nil {
		return nil, err
	}
	return f, nil
}

// SetConfig replaces the allow-lists (reload): the next request uses them.
// A list that does not parse is refused and the lists in force are kept.
func (f *Feature) SetConfig(cfg Config) error {
	var l lists
	var err error
	if l.inbound, err = compile(cfg.Inbound); err != nil {
		return fmt.Errorf("mime.inbound: %v", err)
	}
	if l.outbound, err = compile(cfg.Outbound); err != nil {
		return fmt.Errorf("mime.outbound: %v", err)
	}
	f.cfg.Store(&l)
	return nil
}

// CheckRange reports whether s is a valid allow-list entry: "type/subtype",
// "type/*" or "*/*", both tokens (RFC 3261 §25.1 media-range), without
// parameters. The error says how to write it.
func CheckRange(s string) error {
	typ, sub, params, ok := splitType([]byte(s))
	if !ok || params != nil || (string(typ) == "*" && string(sub) != "*") ||
		(strings.Contains(string(typ), "*") && string(typ) != "*") || (strings.Contains(string(sub), "*") && string(sub) != "*") {
		return fmt.Errorf("%q: want a media type such as application/sdp, a whole type such as text/*, or */* (no parameters)", s)
	}
	return nil
}

func compile(types []string) (list, error) {
	if len(types) == 0 {
		return list{}, fmt.Errorf("an empty list would refuse every body; list the media types to allow, or [\"*/*\"] to allow all")
	}
	var l list
	for _, s := range types {
		if err := CheckRange(s); err != nil {
			return list{}, err
		}
		typ, sub, _, _ := splitType([]byte(s))
		r := mediaRange{strings.ToLower(string(typ)), strings.ToLower(string(sub))}
		if r.typ == "*" {
			l.all = true
		}
		l.ranges = append(l.ranges, r)
	}
	var b strings.Builder
	b.WriteString("Accept: ")
	for i, r := range l.ranges {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.typ + "/" + r.sub)
	}
	b.WriteString("\r\n")
	l.accept = []byte(b.String())
	return l, nil
}

// allows reports whether the list allows typ/sub.
func (l *list) allows(typ, sub []byte) bool {
	for i := range l.ranges {
		r := &l.ranges[i]
		if equalFold(typ, r.typ) && (r.sub == "*" || equalFold(sub, r.sub)) {
			return true
		}
	}
	return false
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{Stages: []proxy.Stage{{Name: "mime", Run: f.stage}}}
}

// Stats returns a snapshot of the counters.
func (f *Feature) Stats() Stats {
	return Stats{Inbound: f.stats.inbound.snapshot(), Outbound: f.stats.outbound.snapshot()}
}

func (c *counters) snapshot() Direction {
	return Direction{Refused: c.refused.Load(), Malformed: c.malformed.Load(), ACKDropped: c.acks.Load()}
}

// stage checks the body of a request; a request without a body costs a
// length test.
func (f *Feature) stage(r *proxy.Request) bool {
	m := r.Msg()
	body := m.Body()
	if len(body) == 0 {
		return false
	}
	ls := f.cfg.Load()
	l, c := &ls.inbound, &f.stats.inbound
	if r.Trusted() {
		l, c = &ls.outbound, &f.stats.outbound
	}
	if l.all {
		return false
	}
	code, why := l.check(m)
	if code == 0 {
		return false
	}
	if m.MethodKind() == sip.ACK {
		c.acks.Add(1)
		return true // absorbed: an ACK gets no response (RFC 3261 §17.1.1.3)
	}
	if code == 415 {
		c.refused.Add(1)
		r.Respond(415, "Unsupported Media Type", l.accept)
		return true
	}
	c.malformed.Add(1)
	r.Respond(400, why, nil)
	return true
}

// check judges the body of m (not empty): 0 when it is allowed, 415 when
// a type is not, 400 with a reason when it cannot be read.
func (l *list) check(m *sip.Message) (code int, why string) {
	switch m.Count(sip.KindContentType) {
	case 0:
		// RFC 3261 §20.15: Content-Type MUST be present when the body
		// is not empty; what it is cannot be judged without it.
		return 400, whyMissingType
	case 1:
	default:
		return 400, whyTwoTypes
	}
	parts := 0
	return l.checkBody(m.Get(sip.KindContentType), m.Body(), 0, &parts)
}

// checkBody judges a body of type ct at nesting depth (0: the message
// body), counting the parts it walks in parts.
func (l *list) checkBody(ct, body []byte, depth int, parts *int) (code int, why string) {
	typ, sub, params, ok := splitType(ct)
	if !ok {
		return 400, whyBadType
	}
	if !l.allows(typ, sub) {
		return 415, ""
	}
	if !equalFold(typ, "multipart") {
		return 0, ""
	}
	if depth >= maxDepth {
		return 400, whyTooDeep
	}
	if params == nil {
		return 400, whyNoBoundary
	}
	boundary, found, ok := param(params, "boundary")
	switch {
	case !ok:
		return 400, whyBadParam
	case !found:
		return 400, whyNoBoundary
	case len(boundary) == 0 || len(boundary) > maxBoundary:
		return 400, whyBadBoundary
	}
	var d [2 + maxBoundary]byte
	delim := append(append(d[:0], '-', '-'), boundary...)
	s := newSplitter(body, delim)
	for {
		part, more, why := s.next()
		if why != "" {
			return 400, why
		}
		if !more {
			return 0, ""
		}
		if *parts++; *parts > maxParts {
			return 400, whyTooManyParts
		}
		pct, content, why := splitPart(part)
		if why != "" {
			return 400, why
		}
		if pct == nil {
			pct = textPlain // RFC 2046 §5.1: the default of a part
		}
		if code, why := l.checkBody(pct, content, depth+1, parts); code != 0 {
			return code, why
		}
	}
}

var textPlain = []byte("text/plain")
