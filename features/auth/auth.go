// Package auth is digest authentication (RFC 3261 §22, RFC 7616, RFC
// 8760) for requests from outside the trusted networks: the "auth" stage
// challenges REGISTER with 401 and other requests with 407, verifies the
// credentials against the users file (hashes only), refuses replays and
// checks that the authenticated user owns the address it registers or
// calls from. A request that passes is marked authenticated
// (proxy.Request.Authenticate) and then served like one from a trusted
// network; the credentials for sipedge's realm are removed from what is
// forwarded (the "credentials" branch hook).
//
// What the stage leaves alone: requests from trusted networks,
// retransmissions (their transaction answers them), CANCEL (it matches a
// transaction or gets 481), requests inside a dialog (the core's relay
// stage lets them through only with sipedge's signed Record-Route),
// requests for sipedge itself (OPTIONS keep-alives), and, when
// AllowUnauthenticatedToLocal is set, calls from a foreign address to a
// local one.
//
// Anti-enumeration: an unknown user, a wrong password and a user locked
// by the failure counters get the same answer (a fresh challenge) after
// the same work (a hash over a stand-in HA1), so an answer tells nothing
// about which users exist (the lesson of CVE-2011-2536).
package auth

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"sipedge/digest"
	"sipedge/proxy"
	"sipedge/sip"
)

// Failures is told of every authentication outcome; the guard feature
// implements it (per-source and per-user counters, bans, the log line).
type Failures interface {
	AuthFailed(src netip.AddrPort, user, realm, reason string)
	// The user name is a view of the request, valid during the call.
	AuthSucceeded(src netip.AddrPort, user []byte)
	UserLocked(src netip.Addr, user []byte) bool
}

// Config is the reloadable configuration.
type Config struct {
	Realm string
	Users *digest.Users
	// Algorithms are offered in this order, one challenge each; empty:
	// MD5 alone. Most deployed clients are MD5-only, some fail when
	// SHA-256 comes first, and Debian's baresip 1.0 (libre 1.1) fails to
	// register at all when any challenge names an algorithm it lacks
	// ("Register: Function not implemented"), so MD5 leads and SHA-256 is
	// offered only when configured.
	Algorithms []digest.Algorithm
	// AllowUnauthenticatedToLocal serves calls from anyone to local
	// users (a public SIP address).
	AllowUnauthenticatedToLocal bool
	// Identities lets an authentication user register or call as other
	// users of the local domains; "*" means any.
	Identities map[string][]string
}

// Stats are the feature's counters.
type Stats struct {
	Challenges    uint64 // 401/407 sent without credentials
	Authenticated uint64
	Failures      map[string]uint64 `label:"reason"`
	Stale         uint64            // expired nonce: challenged again with stale=true
	PeerNonces    uint64            // nonce of another instance of the cluster: challenged again with stale=true
	Users         int               // users in the users file
}

// Feature is the auth feature.
type Feature struct {
	core     *proxy.Core
	log      *slog.Logger
	fails    Failures
	nonces   *digest.Nonces
	peers    *peers // SetCluster: the other instances' nonces
	counter  *digest.Counter
	cfg      atomic.Pointer[Config]
	credNote proxy.Note
	now      func() time.Time

	challenges, authed, stale, peerNonces atomic.Uint64
	failures                              [numReasons]atomic.Uint64
}

// NonceLifetime is how long a nonce is accepted: then the client is
// answered stale=true and retries with a fresh one (RFC 7616 §3.3).
const NonceLifetime = 5 * time.Minute

// maxTrackedNonces bounds the replay counter's memory (nonce-count state
// exists only for nonces used in a successful authentication).
const maxTrackedNonces = 1 << 20

// New returns the feature; secret keys the nonces (the same secret on
// every instance lets a nonce from one be verified by another).
func New(core *proxy.Core, cfg Config, secret []byte, fails Failures, log *slog.Logger) *Feature {
	if log == nil {
		log = slog.Default()
	}
	f := &Feature{core: core, log: log, fails: fails,
		nonces:   digest.NewNonces(secret, NonceLifetime),
		counter:  digest.NewCounter(maxTrackedNonces, NonceLifetime),
		credNote: core.NewNote(), now: time.Now}
	f.SetConfig(cfg)
	return f
}

// SetConfig replaces the configuration (SIGHUP: a new users file).
func (f *Feature) SetConfig(cfg Config) {
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []digest.Algorithm{digest.MD5}
	}
	f.cfg.Store(&cfg)
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{
		Stages: []proxy.Stage{{Name: "auth", Run: f.stage}},
		Branch: []proxy.BranchHook{{Name: "credentials", Run: f.stripCredentials}},
	}
}

// Stats returns the counters.
func (f *Feature) Stats() Stats {
	s := Stats{Challenges: f.challenges.Load(), Authenticated: f.authed.Load(), Stale: f.stale.Load(), PeerNonces: f.peerNonces.Load(),
		Failures: make(map[string]uint64, numReasons)}
	for i := range f.failures {
		s.Failures[reasonNames[i]] = f.failures[i].Load()
	}
	if u := f.cfg.Load().Users; u != nil {
		s.Users = u.Len()
	}
	return s
}

type reason int

const (
	wrongPassword reason = iota
	unknownUser
	locked
	replay
	aorMismatch
	badCredentials
	numReasons
)

var reasonNames = [numReasons]string{"wrong-password", "unknown-user", "locked", "replay", "aor-mismatch", "bad-credentials"}

// credentialsFor is where a request carries its credentials: REGISTER
// answers a registrar's 401 (Authorization), anything else a proxy's 407
// (Proxy-Authorization), RFC 3261 §22.2, §22.3.
func credentialsFor(k sip.Method) sip.HeaderKind {
	if k == sip.REGISTER {
		return sip.KindAuthorization
	}
	return sip.KindProxyAuthorization
}

func (f *Feature) stage(r *proxy.Request) bool {
	if r.Trusted() {
		return false
	}
	m := r.Msg()
	k := m.MethodKind()
	switch {
	case k == sip.ACK:
		// The ACK of a 401/407 answered here without a transaction ends
		// here; any other ACK is the relay stage's business.
		return r.AckOfLocalResponse()
	case k == sip.CANCEL, r.InDialog(), r.Retransmission():
		return false
	case k != sip.REGISTER && forSipedge(r):
		return false // OPTIONS keep-alives and probes for sipedge itself
	}
	cfg := f.cfg.Load()
	var cred digest.Credentials
	found, bad := false, false
	hk := credentialsFor(k)
	for i := m.Find(hk); i >= 0; i = m.FindNext(hk, i) {
		c, err := digest.ParseCredentials(m.HeaderValue(i))
		if err != nil {
			bad = true
			continue
		}
		if string(c.Realm) == cfg.Realm {
			cred, found = c, true
			break
		}
	}
	if !found {
		if bad {
			f.fail(r, cfg, nil, badCredentials)
		}
		if k != sip.REGISTER && cfg.AllowUnauthenticatedToLocal && f.toLocalFromForeign(r) {
			return false
		}
		f.challenge(r, cfg, false)
		return true
	}
	now := f.now()
	valid, stale := f.nonces.Check(cred.Nonce, cfg.Realm, now)
	if !valid && !stale && f.peers != nil && f.peers.issued(cred.Nonce, cfg.Realm, now) {
		// Another instance's nonce (cluster.go): a fresh one of ours.
		f.peerNonces.Add(1)
		f.challenge(r, cfg, true)
		return true
	}
	if !valid {
		if stale {
			f.stale.Add(1)
		}
		// An expired nonce (stale=true: the client retries without
		// asking its user) or one sipedge did not make.
		f.challenge(r, cfg, stale)
		return true
	}
	user, known := (*digest.User)(nil), false
	if cfg.Users != nil {
		user, known = cfg.Users.Lookup(cred.Username, cred.Realm)
	}
	ha1 := standIn[cred.Algorithm][:]
	if known {
		if h, ok := user.HA1(cred.Algorithm); ok {
			ha1 = h
		} else {
			known = false
		}
	}
	ok := cred.Verify(ha1, m.Method())
	switch {
	case !known:
		f.fail(r, cfg, cred.Username, unknownUser)
	case f.fails != nil && f.fails.UserLocked(r.Src().Addr(), cred.Username):
		f.fail(r, cfg, cred.Username, locked)
	case !ok:
		f.fail(r, cfg, cred.Username, wrongPassword)
	case !f.counter.Use(cred.Nonce, cred.NC, now):
		f.fail(r, cfg, cred.Username, replay)
	case !f.owns(r, cfg, cred.Username):
		f.fail(r, cfg, cred.Username, aorMismatch)
		r.Respond(403, "Forbidden", nil)
		return true
	default:
		f.authed.Add(1)
		if f.fails != nil {
			f.fails.AuthSucceeded(r.Src(), cred.Username)
		}
		r.Authenticate()
		r.SetNote(f.credNote, cfg)
		return false
	}
	f.challenge(r, cfg, false)
	return true
}

// forSipedge: the Request-URI names sipedge itself, not a user at its
// address (RFC 3261 §16.5: no user part).
func forSipedge(r *proxy.Request) bool {
	u, err := r.Msg().RequestURI()
	return err == nil && !u.HasUser && r.ForSelf()
}

// standIn is the HA1 verified for unknown users, so that their answer
// takes the same work as a wrong password's.
var standIn = [...][]byte{
	digest.MD5:        []byte(digest.HA1(digest.MD5, "-", "-", "-")),
	digest.SHA256:     []byte(digest.HA1(digest.SHA256, "-", "-", "-")),
	digest.SHA512_256: []byte(digest.HA1(digest.SHA512_256, "-", "-", "-")),
}

func (f *Feature) fail(r *proxy.Request, cfg *Config, user []byte, why reason) {
	f.failures[why].Add(1)
	if f.fails != nil {
		f.fails.AuthFailed(r.Src(), string(user), cfg.Realm, reasonNames[why])
	}
}

// toLocalFromForeign: a request for a local user (or sipedge) whose From
// is not a local address. A From in a local domain claims to be a local
// user, and local users authenticate.
func (f *Feature) toLocalFromForeign(r *proxy.Request) bool {
	u, err := r.Msg().RequestURI()
	if err != nil || !r.IsLocal(&u) {
		return false
	}
	from, err := r.Msg().From()
	return err == nil && !r.IsLocal(&from.URI)
}

// owns reports whether the authenticated user may use the request's
// address of record: the To of a REGISTER (RFC 3261 §10.3 step 6), the
// From of anything else. The user part must be the authentication user
// (or one of its configured identities) and the host a local one.
func (f *Feature) owns(r *proxy.Request, cfg *Config, user []byte) bool {
	m := r.Msg()
	var a sip.Address
	var err error
	if m.MethodKind() == sip.REGISTER {
		a, err = m.To()
	} else {
		a, err = m.From()
	}
	if err != nil || !r.IsLocal(&a.URI) && !sip.EqualFold(a.URI.Host, cfg.Realm) {
		return false
	}
	if string(a.URI.User) == string(user) {
		return true
	}
	for _, id := range cfg.Identities[string(user)] {
		if id == "*" || id == string(a.URI.User) {
			return true
		}
	}
	return false
}

// challenge answers 401 (REGISTER) or 407 with one challenge per
// algorithm, in the configured order. Over UDP from a stranger the answer
// must stay under the core's amplification bound, so when all of them do
// not fit, only the first is sent.
func (f *Feature) challenge(r *proxy.Request, cfg *Config, stale bool) {
	f.challenges.Add(1)
	code, reason, name := 407, "Proxy Authentication Required", "Proxy-Authenticate: "
	if r.Msg().MethodKind() == sip.REGISTER {
		code, reason, name = 401, "Unauthorized", "WWW-Authenticate: "
	}
	var nb [64]byte
	nonce := f.nonces.Append(nb[:0], cfg.Realm, f.now())
	var buf [1024]byte
	extra := buf[:0]
	first := 0
	for i, a := range cfg.Algorithms {
		extra = append(extra, name...)
		extra = digest.AppendChallenge(extra, a, cfg.Realm, nonce, stale)
		extra = append(extra, '\r', '\n')
		if i == 0 {
			first = len(extra)
		}
	}
	if len(cfg.Algorithms) > 1 && !r.Fits(code, reason, extra) {
		extra = extra[:first]
	}
	r.Respond(code, reason, extra)
}

// stripCredentials removes the credentials for sipedge's realm from each
// forwarded copy: they were for sipedge, and the next hop has no use for
// them (RFC 3261 §22.3).
func (f *Feature) stripCredentials(b *proxy.Branch) error {
	cfg, ok := b.Note(f.credNote).(*Config)
	if !ok {
		return nil
	}
	realm := cfg.Realm
	m := b.Msg
	hk := credentialsFor(m.MethodKind())
	for i := m.Find(hk); i >= 0; i = m.FindNext(hk, i) {
		c, err := digest.ParseCredentials(m.HeaderValue(i))
		if err == nil && string(c.Realm) == realm {
			if err := m.DeleteHeader(i); err != nil {
				return err
			}
		}
	}
	return nil
}
