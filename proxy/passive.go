package proxy

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// The passive registrar (gateway deployment, ../shared/docs/PRODUCT.md):
// a phone behind sipedge registers with an outside provider through it.
// The provider must send the phone's calls to sipedge, not to the phone's
// inside address, so the forwarded REGISTER's Contact names sipedge's
// address towards the provider, with a parameter that identifies the phone:
//
//	Contact: <sip:alice@10.77.0.10:5060>  →  <sip:alice@203.0.113.1:5060;sipedge=3f2a9c01d4e5>
//
// The binding becomes active only when the provider's 2xx lists that
// contact (with its expiry): the provider's answer, not the phone's
// request, says what is registered (RFC 3261 §10.3 step 8). A request whose
// Request-URI carries the parameter is then sent to the phone's real
// contact, with the Request-URI the phone wrote.

// passiveParam is the Contact URI parameter of a passive registration.
const passiveParam = "sipedge"

// passiveBinding is one phone registered with an outside registrar
// through sipedge.
type passiveBinding struct {
	contact []byte          // the phone's Contact URI as written
	target  Target          // where requests for it go
	expires time.Time       // zero while the provider has not confirmed it
	pending time.Time       // when the last unconfirmed REGISTER went out
	aor     string          // for logs
	local   netip.AddrPort  // sipedge's address written into the Contact
	proto   transport.Proto // towards the provider
}

type passiveTable struct {
	mu   sync.Mutex
	m    map[string]*passiveBinding // token → binding
	adds int                        // insertions, to sweep now and then
}

// passiveToken names a phone's registration: the same phone contact from
// the same source always gets the same token, so refreshes update one
// entry and the provider sees a stable Contact.
func (c *Core) passiveToken(contact []byte, src netip.AddrPort) string {
	b, _ := src.MarshalBinary()
	h := sip.NewHash().AddString("passive").AddUint64(c.tagKey).Add(contact).Add(b)
	var buf [8]byte
	for i := range buf {
		buf[i] = byte(h >> (8 * i))
	}
	return hex.EncodeToString(buf[:6])
}

// passiveContact rewrites the Contact of a REGISTER that sipedge forwards
// for a phone talking to it directly: the contact becomes sipedge's
// outgoing address out, with the token. Wildcard and host-name contacts
// are left alone (the provider then cannot reach the phone, as without
// sipedge). Only the first Contact value is rewritten; phones register one.
func (c *Core) passiveContact(m *sip.Message, via *sip.Via, src netip.AddrPort, inProto transport.Proto, out netip.AddrPort, outProto transport.Proto) {
	i := m.Find(sip.KindContact)
	if i < 0 {
		return
	}
	v := m.HeaderValue(i)
	v = v[:sip.SplitComma(v)]
	a, err := sip.ParseAddress(v)
	if err != nil || a.Wildcard || !a.URI.IsSIP() || !a.Angle {
		return
	}
	t, ok := uriTarget(&a.URI)
	if !ok {
		return
	}
	if behindNAT(m, via, src) && inProto == transport.UDP {
		t = Target{Proto: inProto, Addr: src, NAT: true}
	}
	start := m.Offset(a.RawURI)
	if start < 0 {
		return
	}
	token := c.passiveToken(a.RawURI, src)
	to, _ := m.To()
	c.passive.mu.Lock()
	pb := c.passive.m[token]
	if pb == nil {
		pb = &passiveBinding{contact: append([]byte(nil), a.RawURI...)}
		c.passive.m[token] = pb
		if c.passive.adds++; c.passive.adds%1024 == 0 {
			c.passiveSweep(time.Now())
		}
	}
	pb.target, pb.local, pb.proto, pb.pending = t, out, outProto, time.Now()
	pb.target.URI = pb.contact
	if to.URI.IsSIP() {
		pb.aor = string(to.URI.User) + "@" + string(to.URI.Host)
	}
	c.passive.mu.Unlock()

	var buf [160]byte
	nu := append(buf[:0], "sip:"...)
	if a.URI.HasUser {
		nu = append(nu, a.URI.User...)
		nu = append(nu, '@')
	}
	nu = appendHostPort(nu, out)
	if outProto != transport.UDP {
		nu = append(nu, ";transport="...)
		nu = append(nu, strings.ToLower(outProto.String())...)
	}
	nu = append(nu, ';')
	nu = append(nu, passiveParam...)
	nu = append(nu, '=')
	nu = append(nu, token...)
	_ = m.Replace(start, start+len(a.RawURI), nu)
}

// eachPassiveContact calls fn for every Contact value of m that carries
// a passive registrar token.
func eachPassiveContact(m *sip.Message, fn func(a *sip.Address, tok []byte)) {
	for it := m.Values(sip.KindContact); ; {
		v, ok := it.Next()
		if !ok {
			return
		}
		a, err := sip.ParseAddress(v)
		if err != nil {
			continue
		}
		if tok, ok := a.URI.Param(passiveParam); ok {
			fn(&a, tok)
		}
	}
}

// passiveLearn reads the provider's 2xx to a REGISTER: every contact of
// ours it lists is active until its expiry; the token of the REGISTER it
// answers (sent), when the 2xx no longer lists it (the phone unregistered),
// is dropped.
func (c *Core) passiveLearn(m *sip.Message, sent string) {
	now := time.Now()
	hdrExp := -1
	if e := m.Get(sip.KindExpires); e != nil {
		if n, err := strconv.Atoi(string(bytes.TrimSpace(e))); err == nil {
			hdrExp = n
		}
	}
	listed := false
	c.passive.mu.Lock()
	defer c.passive.mu.Unlock()
	eachPassiveContact(m, func(a *sip.Address, tok []byte) {
		exp := hdrExp
		if e, ok := a.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(string(e)); err == nil {
				exp = n
			}
		}
		if exp <= 0 {
			return
		}
		listed = listed || string(tok) == sent
		if pb := c.passive.m[string(tok)]; pb != nil {
			pb.expires, pb.pending = now.Add(time.Duration(exp)*time.Second), time.Time{}
		}
	})
	if !listed {
		delete(c.passive.m, sent)
	}
}

// passiveTokenFor is the token passiveContact gave the REGISTER m from
// src (derived again rather than read back from the forwarded copy).
func (c *Core) passiveTokenFor(m *sip.Message, src netip.AddrPort) string {
	v := m.Get(sip.KindContact)
	if v == nil {
		return ""
	}
	a, err := sip.ParseAddress(v[:sip.SplitComma(v)])
	if err != nil {
		return ""
	}
	return c.passiveToken(a.RawURI, src)
}

// passiveRestore schedules edits that give the phone back its own Contact
// URIs in the 2xx to its REGISTER: a phone checks that the contact it
// registered is listed (RFC 3261 §10.2.4) and would not recognise ours.
func (c *Core) passiveRestore(m *sip.Message) {
	c.passive.mu.Lock()
	defer c.passive.mu.Unlock()
	eachPassiveContact(m, func(a *sip.Address, tok []byte) {
		if pb := c.passive.m[string(tok)]; pb != nil {
			if start := m.Offset(a.RawURI); start >= 0 {
				_ = m.Replace(start, start+len(a.RawURI), pb.contact)
			}
		}
	})
}

// passiveSweep drops registrations that lapsed an hour ago or that the
// provider never confirmed within ten minutes (c.passive.mu held).
func (c *Core) passiveSweep(now time.Time) {
	for k, pb := range c.passive.m {
		if !pb.expires.IsZero() && now.After(pb.expires.Add(time.Hour)) ||
			pb.expires.IsZero() && now.After(pb.pending.Add(10*time.Minute)) {
			delete(c.passive.m, k)
		}
	}
}

// passiveTarget returns where a request for a passive contact goes.
func (c *Core) passiveTarget(u *sip.URI) (Target, bool, bool) {
	tok, ok := u.Param(passiveParam)
	if !ok {
		return Target{}, false, false
	}
	c.passive.mu.Lock()
	defer c.passive.mu.Unlock()
	pb := c.passive.m[string(tok)]
	if pb == nil || pb.expires.IsZero() || time.Now().After(pb.expires) {
		return Target{}, true, false
	}
	return pb.target, true, true
}

// passiveStage routes a request addressed to a passive contact (from the
// outside registrar) to the phone behind sipedge (before the self stage,
// which would otherwise answer it as sipedge's own).
func passiveStage(r *request) bool {
	if r.routes > 0 || r.hasFurtherRoute() || r.msg.MethodKind() == sip.REGISTER {
		return false
	}
	u, err := r.msg.RequestURI()
	if err != nil || !r.core.self.Load().Is(u.Host, u.Port, u.Kind == sip.SchemeSIPS) {
		return false
	}
	t, ours, ok := r.core.passiveTarget(&u)
	if !ours {
		return false
	}
	if !ok {
		r.respond(480, "Temporarily Unavailable", nil)
		return true
	}
	r.core.forward(r, Decision{Groups: [][]Target{{t}}})
	return true
}
