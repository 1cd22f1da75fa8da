// Package gateway is the passive registrar of the gateway deployment: a
// phone behind sipedge registers with an outside provider through it. The
// provider must send the phone's calls to sipedge, not to the phone's
// inside address, so the forwarded REGISTER's Contact names sipedge's
// address towards the provider, with a parameter that identifies the phone:
//
//	Contact: <sip:alice@10.77.0.10:5060>  →  <sip:alice@203.0.113.1:5060;sipedge=3f2a9c01d4e5>
//
// The binding becomes active only when the provider's 2xx lists that
// contact (with its expiry): the provider's answer, not the phone's
// request, says what is registered (RFC 3261 §10.3 step 8). A request whose
// Request-URI carries the parameter is then sent to the phone's real
// contact, with the Request-URI the phone wrote — an initial request
// (stage "passive") as well as an in-dialog one or the ACK of a 2xx routed
// by its Route set (a URIResolver), which is what a phone that uses the
// provider's GRUU (RFC 5627) as its Contact receives.
//
// Survival mode (survival.go) keeps the phones working while the
// provider does not answer.
//
// Hooks: stages "survival-route", "passive" and "survival", branch hooks "passive-contact"
// and "survival-watch", reply hook "passive-restore", a URIResolver.
package gateway

import (
	"bytes"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/nat"
	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/transport"
)

// Param is the Contact URI parameter of a passive registration.
const Param = "sipedge"

// Feature is the passive registrar of one core.
type Feature struct {
	core *proxy.Core
	log  *slog.Logger
	key  atomic.Uint64 // tokens are derived from it (SetTokenKey)
	p    Persister     // nil: bindings in memory only

	mu   sync.Mutex
	m    map[string]*binding // token → binding
	adds int                 // insertions, to sweep now and then
	buf  []byte              // record being written (mu held)

	surv survival // survival mode (survival.go)
}

// binding is one phone registered with an outside registrar through
// sipedge.
type binding struct {
	contact []byte          // the phone's Contact URI as written
	target  proxy.Target    // where requests for it go
	expires time.Time       // zero while the provider has not confirmed it
	pending time.Time       // when the last unconfirmed REGISTER went out
	aor     string          // for logs
	local   netip.AddrPort  // sipedge's address written into the Contact
	proto   transport.Proto // towards the provider
}

// New returns the feature for core; with p, confirmed bindings and the
// secret their tokens are made from are kept in it and loaded from it now
// (nil: memory only, tokens from the core's per-process key).
func New(core *proxy.Core, p Persister) (*Feature, error) {
	f := &Feature{core: core, log: core.Logger(), p: p, m: map[string]*binding{}}
	f.key.Store(core.TagKey())
	f.surv.kick = make(chan struct{}, 1)
	if p != nil {
		if err := f.load(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{
		Stages:   []proxy.Stage{{Name: "survival-route", Run: f.routeStage}, {Name: "passive", Run: f.stage}, {Name: "survival", Run: f.survivalStage}},
		Branch:   []proxy.BranchHook{{Name: "passive-contact", Run: f.contact}, {Name: "survival-watch", Run: f.watch}},
		Reply:    []proxy.ReplyHook{{Name: "passive-restore", Run: f.reply}},
		Resolver: []proxy.URIResolver{f.resolve},
	}
}

// Bindings returns the number of passive bindings known (confirmed or
// not).
func (f *Feature) Bindings() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// token names a phone's registration: the same phone contact from the same
// source always gets the same token, so refreshes update one entry and the
// provider sees a stable Contact.
func (f *Feature) token(contact []byte, src netip.AddrPort) string {
	b, _ := src.MarshalBinary()
	h := sip.NewHash().AddString("passive").AddUint64(f.key.Load()).Add(contact).Add(b)
	var buf [8]byte
	for i := range buf {
		buf[i] = byte(h >> (8 * i))
	}
	return hex.EncodeToString(buf[:6])
}

// contact rewrites the Contact of a REGISTER that sipedge forwards for a
// phone talking to it directly: the contact becomes sipedge's outgoing
// address, with the token. Wildcard and host-name contacts are left alone
// (the provider then cannot reach the phone, as without sipedge). Only the
// first Contact value is rewritten; phones register one.
func (f *Feature) contact(b *proxy.Branch) error {
	m := b.Msg
	if m.MethodKind() != sip.REGISTER || !nat.FromUA(m) {
		return nil
	}
	i := m.Find(sip.KindContact)
	if i < 0 {
		return nil
	}
	v := m.HeaderValue(i)
	v = v[:sip.SplitComma(v)]
	a, err := sip.ParseAddress(v)
	if err != nil || a.Wildcard || !a.URI.IsSIP() || !a.Angle {
		return nil
	}
	t, ok := proxy.URITarget(&a.URI)
	if !ok {
		return nil
	}
	if nat.BehindRequest(m, b.Via, b.Src) && b.InProto == transport.UDP {
		t = proxy.Target{Proto: b.InProto, Addr: b.Src, NAT: true}
	}
	start := m.Offset(a.RawURI)
	if start < 0 {
		return nil
	}
	tok := f.token(a.RawURI, b.Src)
	to, _ := m.To()
	out, outProto := b.Local, b.Target.Proto
	f.mu.Lock()
	pb := f.m[tok]
	if pb == nil {
		pb = &binding{contact: append([]byte(nil), a.RawURI...)}
		f.m[tok] = pb
		if f.adds++; f.adds%1024 == 0 {
			f.sweepLocked(time.Now())
		}
	}
	pb.target, pb.local, pb.proto, pb.pending = t, out, outProto, time.Now()
	pb.target.URI = pb.contact
	if to.URI.IsSIP() {
		pb.aor = string(to.URI.User) + "@" + string(to.URI.Host)
	}
	f.mu.Unlock()

	var buf [160]byte
	nu := append(buf[:0], "sip:"...)
	if a.URI.HasUser {
		nu = append(nu, a.URI.User...)
		nu = append(nu, '@')
	}
	nu = proxy.AppendHostPort(nu, out)
	if outProto != transport.UDP {
		nu = append(nu, ";transport="...)
		nu = append(nu, strings.ToLower(outProto.String())...)
	}
	nu = append(nu, ';')
	nu = append(nu, Param...)
	nu = append(nu, '=')
	nu = append(nu, tok...)
	return m.Replace(start, start+len(a.RawURI), nu)
}

// eachContact calls fn for every Contact value of m that carries a passive
// registrar token.
func eachContact(m *sip.Message, fn func(a *sip.Address, tok []byte)) {
	for it := m.Values(sip.KindContact); ; {
		v, ok := it.Next()
		if !ok {
			return
		}
		a, err := sip.ParseAddress(v)
		if err != nil {
			continue
		}
		if tok, ok := a.URI.Param(Param); ok {
			fn(&a, tok)
		}
	}
}

// reply handles the provider's 2xx to a REGISTER: the bindings it lists
// become active (learn), and the phone gets its own Contact URIs back
// (restore): a phone checks that the contact it registered is listed (RFC
// 3261 §10.2.4) and would not recognise ours.
func (f *Feature) reply(rp *proxy.Reply) error {
	if rp.Code < 200 || rp.Code >= 300 || rp.Req.MethodKind() != sip.REGISTER {
		return nil
	}
	// Restore before learning: learning drops the binding of a phone that
	// unregistered, and its 200 must still show the phone its own Contact.
	var firstErr error
	f.mu.Lock()
	eachContact(rp.Resp, func(a *sip.Address, tok []byte) {
		if pb := f.m[string(tok)]; pb != nil {
			if start := rp.Resp.Offset(a.RawURI); start >= 0 {
				if err := rp.Resp.Replace(start, start+len(a.RawURI), pb.contact); err != nil && firstErr == nil {
					firstErr = err
				}
			}
		}
	})
	f.mu.Unlock()
	f.learn(rp.Resp, f.tokenFor(rp.Req, rp.Src))
	return firstErr
}

// learn reads the provider's 2xx to a REGISTER: every contact of ours it
// lists is active until its expiry; the token of the REGISTER it answers
// (sent), when the 2xx no longer lists it (the phone unregistered), is
// dropped.
func (f *Feature) learn(m *sip.Message, sent string) {
	now := time.Now()
	hdrExp := -1
	if e := m.Get(sip.KindExpires); e != nil {
		if n, err := strconv.Atoi(string(bytes.TrimSpace(e))); err == nil {
			hdrExp = n
		}
	}
	listed := false
	f.mu.Lock()
	defer f.mu.Unlock()
	eachContact(m, func(a *sip.Address, tok []byte) {
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
		if pb := f.m[string(tok)]; pb != nil {
			pb.expires, pb.pending = now.Add(time.Duration(exp)*time.Second), time.Time{}
			f.storeLocked(string(tok), pb)
		}
	})
	if !listed {
		f.forgetLocked(sent)
	}
}

// tokenFor is the token contact gave the REGISTER m from src (derived
// again rather than read back from the forwarded copy).
func (f *Feature) tokenFor(m *sip.Message, src netip.AddrPort) string {
	v := m.Get(sip.KindContact)
	if v == nil {
		return ""
	}
	a, err := sip.ParseAddress(v[:sip.SplitComma(v)])
	if err != nil {
		return ""
	}
	return f.token(a.RawURI, src)
}

// sweepLocked drops registrations that lapsed an hour ago or that the
// provider never confirmed within ten minutes (f.mu held).
func (f *Feature) sweepLocked(now time.Time) {
	for k, pb := range f.m {
		if !pb.expires.IsZero() && now.After(pb.expires.Add(time.Hour)) ||
			pb.expires.IsZero() && now.After(pb.pending.Add(10*time.Minute)) {
			f.forgetLocked(k)
		}
	}
}

// resolve returns where a request for a passive contact goes (claimed,
// with ok false when the binding lapsed or was never confirmed).
func (f *Feature) resolve(u *sip.URI) (proxy.Target, bool, bool) {
	tok, ok := u.Param(Param)
	if !ok {
		return proxy.Target{}, false, false
	}
	if !f.core.Self().Is(u.Host, u.Port, u.Kind == sip.SchemeSIPS) {
		return proxy.Target{}, false, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pb := f.m[string(tok)]
	if pb == nil || pb.expires.IsZero() || time.Now().After(pb.expires) {
		return proxy.Target{}, true, false
	}
	return pb.target, true, true
}

// stage routes a request addressed to a passive contact (from the outside
// registrar) to the phone behind sipedge (before the self stage, which
// would otherwise answer it as sipedge's own).
func (f *Feature) stage(r *proxy.Request) bool {
	if r.HasFurtherRoute() || r.Msg().MethodKind() == sip.REGISTER {
		return false
	}
	u, err := r.Msg().RequestURI()
	if err != nil {
		return false
	}
	t, ours, ok := f.resolve(&u)
	if !ours {
		return false
	}
	if !ok {
		r.Respond(480, "Temporarily Unavailable", nil)
		return true
	}
	r.Decide(proxy.Decision{Groups: [][]proxy.Target{{t}}})
	return false
}
