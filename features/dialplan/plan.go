package dialplan

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"sipedge/sdp"
	"sipedge/sip"
)

// Plan is what the rule that matched one request does to it: decided once
// (decide, from the rules and the request alone) and applied by pure
// steps that schedule byte edits — ApplyRequest on the request before it
// is routed, ApplyHeaders on each copy forwarded.
type Plan struct {
	Rule string
	// User is the new Request-URI user; nil leaves it as it is.
	User []byte
	// Formats are the payload formats to remove from the SDP offer; nil
	// leaves the body as it is.
	Formats *sdp.FormatPlan
	// Code and Reason answer the request instead of forwarding it.
	Code   int
	Reason string
	rule   *compiled
}

// Redirects is how many 3xx responses are followed (0: relayed).
func (p *Plan) Redirects() int { return p.rule.redirects }

// decide finds the first rule matching m and works out its plan; nil when
// no rule matches. s is scratch for reading the SDP offer.
func decide(rules []*compiled, m *sip.Message, s *sdp.Session) *Plan {
	user, ok := requestUser(m)
	if !ok {
		return nil
	}
	method := m.Method()
	for _, r := range rules {
		if !r.matches(method, user) {
			continue
		}
		p := &Plan{Rule: r.name, rule: r}
		nu := r.rewrite(user)
		switch {
		case len(nu) == 0:
			// RFC 3261 §21.4.22: nothing left to route on.
			p.Code, p.Reason = 484, "Address Incomplete"
			return p
		case !validUser(string(nu)):
			p.Code, p.Reason = 500, "Dial Plan Made An Invalid Number"
			return p
		case !bytes.Equal(nu, user):
			p.User = nu
		}
		if len(r.codecs) > 0 {
			if fp, all := r.formats(m, s); all {
				p.Code, p.Reason = 488, "Not Acceptable Here"
				return p
			} else if fp != nil {
				p.Formats = fp
			}
		}
		return p
	}
	return nil
}

// requestUser is the user part of a SIP Request-URI, or the number of a
// tel URI (RFC 3966, without its parameters).
func requestUser(m *sip.Message) ([]byte, bool) {
	u, err := m.RequestURI()
	if err != nil {
		return nil, false
	}
	if u.IsSIP() {
		return u.User, u.HasUser && len(u.User) > 0
	}
	if u.Kind == sip.SchemeTel {
		n := u.Opaque
		if i := bytes.IndexByte(n, ';'); i >= 0 {
			n = n[:i]
		}
		return n, len(n) > 0
	}
	return nil, false
}

func (r *compiled) matches(method, user []byte) bool {
	found := false
	for _, m := range r.methods {
		if m == string(method) {
			found = true
			break
		}
	}
	if !found {
		return false
	}
	if r.re != nil {
		return r.re.Match(user)
	}
	return bytes.HasPrefix(user, []byte(r.prefix))
}

// rewrite applies replace, strip, strip_prefix and add_prefix, in that
// order.
func (r *compiled) rewrite(user []byte) []byte {
	u := user
	if r.re != nil && r.replace != "" {
		u = r.re.ReplaceAll(u, []byte(r.replace))
	}
	if r.strip > 0 {
		if r.strip >= len(u) {
			u = nil
		} else {
			u = u[r.strip:]
		}
	}
	u = bytes.TrimPrefix(u, []byte(r.stripPrefix))
	if r.addPrefix != "" {
		u = append([]byte(r.addPrefix), u...)
	}
	return u
}

// formats works out the codec filter of an SDP offer: for each active RTP
// stream, the formats whose payload type or encoding name the rule lists.
// all reports a stream that would keep none (the offer cannot go on). A
// body that is not SDP, or not readable, is left to the media feature.
func (r *compiled) formats(m *sip.Message, s *sdp.Session) (fp *sdp.FormatPlan, all bool) {
	if !isSDP(m) || s.Parse(m.Body()) != nil {
		return nil, false
	}
	var scratch [16]sdp.Format
	for i := 0; i < s.NumMedia(); i++ {
		md := s.Media(i)
		if md.Rejected() || md.Transport != sdp.TransportRTP {
			continue
		}
		fs := s.Formats(scratch[:0], i)
		var drop []string
		for _, f := range fs {
			if r.dropsFormat(f) && !contains(drop, f.PT) {
				drop = append(drop, string(f.PT))
			}
		}
		if len(drop) == 0 {
			continue
		}
		kept := 0
		for _, f := range fs {
			if !contains(drop, f.PT) {
				kept++
			}
		}
		if kept == 0 {
			return nil, true
		}
		if fp == nil {
			fp = &sdp.FormatPlan{Drop: make([][]string, s.NumMedia())}
		}
		fp.Drop[i] = drop
	}
	return fp, false
}

func (r *compiled) dropsFormat(f sdp.Format) bool {
	for _, c := range r.codecs {
		if c == string(f.PT) || len(f.Encoding) > 0 && strings.EqualFold(c, string(f.Encoding)) {
			return true
		}
	}
	return false
}

func contains(list []string, b []byte) bool {
	for _, s := range list {
		if s == string(b) {
			return true
		}
	}
	return false
}

// isSDP reports a body of type application/sdp (RFC 3261 §20.15; the
// parameters after ';' do not matter).
func isSDP(m *sip.Message) bool {
	if len(m.Body()) == 0 {
		return false
	}
	ct := m.Get(sip.KindContentType)
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(string(ct)), "application/sdp")
}

// errNoUser is a plan's new user for a request whose Request-URI has none
// (the message changed between decide and apply).
var errNoUser = errors.New("dialplan: the Request-URI has no user part to rewrite")

// ApplyRequest schedules the plan's edits of the request itself on m: the
// Request-URI user, and the SDP offer without the filtered formats (with
// its Content-Length, RFC 3261 §20.14). s is scratch.
func ApplyRequest(m *sip.Message, p *Plan, s *sdp.Session) error {
	if p.User != nil {
		user, ok := requestUser(m)
		off := m.Offset(user)
		if !ok || off < 0 {
			return errNoUser
		}
		if err := m.Replace(off, off+len(user), p.User); err != nil {
			return err
		}
	}
	if p.Formats != nil {
		if err := s.Parse(m.Body()); err != nil {
			return err
		}
		body, err := s.AppendFilter(nil, p.Formats)
		if err != nil {
			return err
		}
		if err := m.Replace(m.Offset(m.Body()), m.Offset(m.Body())+len(m.Body()), body); err != nil {
			return err
		}
		cl := strconv.AppendInt(nil, int64(len(body)), 10)
		if i := m.Find(sip.KindContentLength); i >= 0 {
			return m.SetHeaderValue(i, cl)
		}
		return m.InsertHeader(m.NumHeaders(), "Content-Length", cl)
	}
	return nil
}

// ApplyHeaders schedules the header edits of the plan's rule on one
// forwarded copy m. An edit of a header field another hook already edits
// (the credentials hook removes sipedge's own Proxy-Authorization) is
// skipped and counted in skipped: the other hook's edit stands.
func ApplyHeaders(m *sip.Message, p *Plan) (skipped int) {
	for i := range p.rule.headers {
		op := &p.rule.headers[i]
		switch op.kind {
		case opRemove:
			for h := 0; h < m.NumHeaders(); h++ {
				if op.matches(m, h) && m.DeleteHeader(h) != nil {
					skipped++
				}
			}
		case opSet:
			first := true
			for h := 0; h < m.NumHeaders(); h++ {
				if !op.matches(m, h) {
					continue
				}
				var err error
				if first {
					err = m.SetHeaderValue(h, op.value)
				} else {
					err = m.DeleteHeader(h)
				}
				if err != nil {
					skipped++
				}
				first = false
			}
			if first && m.InsertHeader(m.NumHeaders(), op.name, op.value) != nil {
				skipped++
			}
		case opRewrite:
			for h := 0; h < m.NumHeaders(); h++ {
				if !op.matches(m, h) {
					continue
				}
				v := m.HeaderValue(h)
				nv := op.re.ReplaceAll(v, op.repl)
				if bytes.Equal(nv, v) {
					continue
				}
				if !validValue(string(nv)) || m.SetHeaderValue(h, nv) != nil {
					skipped++
				}
			}
		case opAdd:
			if m.InsertHeader(m.NumHeaders(), op.name, op.value) != nil {
				skipped++
			}
		}
	}
	return skipped
}

func (op *headerOp) matches(m *sip.Message, h int) bool {
	if op.hk != sip.KindOther {
		return m.HeaderKind(h) == op.hk
	}
	return m.HeaderKind(h) == sip.KindOther && strings.EqualFold(string(m.HeaderName(h)), op.name)
}
