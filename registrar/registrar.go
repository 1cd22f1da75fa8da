// Package registrar is sipedge's registrar and location service (RFC 3261
// §10): it applies REGISTER requests to the bindings of an address-of-record
// (AoR) and answers the proxy's lookups.
//
// Bindings live in memory in 64 shards, each a map from the canonical AoR
// key to the AoR's bindings behind its own RWMutex, so registrations and
// lookups of different users rarely meet on a lock. Each change is also
// written to the durable store (Config.Store, a Persister) as one record
// per AoR holding the AoR's whole binding set (record.go): a REGISTER that
// touches several contacts is then one record, so it is durable all or
// nothing, exactly as it is applied
// (RFC 3261 §10.3 step 7: the updates are committed "if and only if all
// binding updates and additions succeed"). The caller answers only from
// Result.Commit's callback, after the record is fsynced.
//
// The change is visible to Lookup as soon as Register returns, before it is
// durable: holding the AoR's lock across an fsync would serialize the
// AoR's requests behind the disk. A request that reads such a binding and
// is answered later is itself written later in the same log, so its 200
// implies the earlier record is on disk too. If the store fails, the
// failed request is answered 500 but its change stays in memory; the store
// then refuses all writes (see store.Put), and a restart recovers what is
// on disk.
//
// Bindings expire on time: Lookup hides expired bindings at once, and one
// sweeper goroutine removes them from memory and the store using a
// per-shard min-heap of AoR expiry times (expiry.go).
package registrar

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"sipedge/sip"
	"sipedge/store"
	"sipedge/transport"
)

// Config configures a Registrar. Zero fields take the defaults.
type Config struct {
	// MinExpires, MaxExpires and DefaultExpires bound the registration
	// interval (RFC 3261 §10.3 step 7); defaults 60 s, 3600 s, 3600 s.
	MinExpires, MaxExpires, DefaultExpires time.Duration
	// MaxContacts is the largest number of bindings per AoR; default 10.
	MaxContacts int
	// Store makes bindings durable (Persister); nil, or a nil
	// *store.Store, keeps them in memory only.
	Store Persister
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
	// Node names this instance when several share the bindings (a
	// cluster over Redis): bindings it takes are marked as its own (the
	// owner of their flow, Binding.Owner), and RangeNAT visits only
	// those. "" for a single instance.
	Node string
}

// Binding is one contact registered for an AoR, as returned by Lookup.
type Binding struct {
	AOR       string         // canonical AoR key (see AORKey)
	URI       string         // Contact URI as written (escaped form kept)
	Params    string         // contact params as written, minus expires and q (for echoing in 200)
	Q         int            // thousandths, 1000 default
	Expires   time.Time      // when the binding lapses
	CallID    string         // of the REGISTER that last wrote the binding
	CSeq      uint32         // of the REGISTER that last wrote the binding
	Instance  string         // +sip.instance value (RFC 5626), quotes stripped
	RegID     int            // reg-id (RFC 5626), 0 if absent
	Path      []string       // Path header values in order (RFC 3327)
	Source    netip.AddrPort // where the REGISTER came from (NAT: the real address)
	Proto     transport.Proto
	Local     netip.AddrPort // local socket it arrived on
	ConnID    uint64         // stream connection (flow) it arrived on; 0 for UDP and after a restart
	UserAgent string
	NAT       bool // the phone registered from behind a NAT (Request.NAT)
	// Owner is the node (Config.Node) that took the REGISTER and holds
	// the phone's flow: its socket is the one the phone's NAT lets in,
	// its connection the one a TCP phone keeps. "" on a single instance.
	Owner string
}

// Request is a REGISTER and where it came from.
type Request struct {
	Msg           *sip.Message
	Source, Local netip.AddrPort
	// NAT: the REGISTER came from behind a NAT (nat.Detect); requests go
	// to Source rather than to the Contact address.
	NAT    bool
	Proto  transport.Proto
	ConnID uint64
}

// Result is the registrar's answer to a REGISTER.
type Result struct {
	Code   int
	Reason string
	// Extra holds header lines for the response, each ending in CRLF:
	// Contact (every current binding with ;expires=N), Min-Expires (423),
	// Path (RFC 3327 §5.3), Require: outbound (RFC 5626 §6), Date.
	Extra []byte
	// Commit is non-nil when the bindings changed. The caller must send
	// the 2xx only from done(nil), which runs once the change is durable;
	// done(err) means it could not be written and is answered 500. done
	// runs on the store's committer goroutine (or at once, on the
	// caller's, when the change is already durable or there is no store),
	// so it must not block nor call the Registrar. Call Commit.Then at
	// most once. nil: answer at once.
	Commit *Commit
}

const numShards = 64

// Registrar is the registrar and location service.
type Registrar struct {
	cfg       Config
	log       *slog.Logger
	lim       atomic.Pointer[limits] // replaced by SetLimits (reload)
	seed      maphash.Seed
	self      uint16       // Config.Node's index in owners
	avail     Availability // Config.Store's, when it has one
	shards    [numShards]shard
	date      atomic.Pointer[dateCache]
	locals    localTable
	owners    ownerTable
	quit      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type shard struct {
	mu   sync.RWMutex
	aors map[string]*aor
	exp  []expEntry        // min-heap of AoR expiry times (expiry.go)
	ua   map[string]string // interned User-Agent values
	work []work            // Register's scratch binding set
	enc  []byte            // scratch store record
	key  []byte            // scratch store key (Register's own is on its stack)
	_    [64]byte          // keep neighbouring shards' locks off one cache line
}

// aor holds the bindings of one AoR, sorted as Lookup returns them.
type aor struct {
	bs    []binding
	sched int64 // expiry time of this AoR's live heap entry (unix ns)
}

// binding is the compact in-memory form of a Binding (144 bytes): the
// URI, params and instance in one string, times as unix nanoseconds (whole
// milliseconds, as stored), the
// User-Agent interned, the local socket as an index into a small table,
// the Path values in one string, no copy of the AoR.
type binding struct {
	contact        string // URI as written + params + instance
	callID         string
	userAgent      string
	path           string // encoded Path values (see appendPath), "" when none
	expires        int64  // unix ns
	updated        int64  // unix ns of the REGISTER that last wrote it
	source         netip.AddrPort
	connID         uint64
	cseq           uint32
	regID          int32
	uriLen, parLen uint16 // split of contact
	q              uint16
	local          uint16 // index in Registrar.locals
	owner          uint16 // index in Registrar.owners (0: "")
	proto          transport.Proto
	nat            bool
}

func (b *binding) uri() string      { return b.contact[:b.uriLen] }
func (b *binding) params() string   { return b.contact[b.uriLen : int(b.uriLen)+int(b.parLen)] }
func (b *binding) instance() string { return b.contact[int(b.uriLen)+int(b.parLen):] }

// setContact stores the three strings in one allocation.
func (b *binding) setContact(uri, params, instance []byte) {
	buf := make([]byte, 0, len(uri)+len(params)+len(instance))
	buf = append(append(append(buf, uri...), params...), instance...)
	b.contact = unsafe.String(unsafe.SliceData(buf), len(buf)) // buf is never modified again
	b.uriLen, b.parLen = uint16(len(uri)), uint16(len(params))
}

// work is one entry of the tentative binding set of a REGISTER; mine marks
// bindings this request already wrote, which the Call-ID/CSeq rule must
// not hold against a second contact of the same request.
type work struct {
	b    binding
	mine bool
}

// New starts a registrar and loads the bindings kept in cfg.Store,
// dropping those that expired while sipedge was down.
func New(cfg Config) (*Registrar, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if st, ok := cfg.Store.(*store.Store); ok && st == nil {
		cfg.Store = nil // a nil *store.Store in the interface is no store
	}
	r := &Registrar{
		cfg:  cfg,
		log:  cfg.Logger,
		seed: maphash.MakeSeed(),
		quit: make(chan struct{}),
	}
	// The expiry limits and max contacts (defaults, checks) are the
	// reloadable Limits.
	if err := r.SetLimits(Limits{MinExpires: cfg.MinExpires, MaxExpires: cfg.MaxExpires,
		DefaultExpires: cfg.DefaultExpires, MaxContacts: cfg.MaxContacts}); err != nil {
		return nil, err
	}
	r.self = r.owners.index(cfg.Node)
	for i := range r.shards {
		r.shards[i].aors = make(map[string]*aor)
		r.shards[i].ua = make(map[string]string)
	}
	if cfg.Store != nil {
		if err := r.load(); err != nil {
			return nil, err
		}
		cfg.Store.Own(r.dump)
		r.avail, _ = cfg.Store.(Availability)
	}
	r.wg.Add(1)
	go r.sweep()
	return r, nil
}

// Close stops the expiry sweeper. It does not close the store.
func (r *Registrar) Close() error {
	r.closeOnce.Do(func() { close(r.quit) })
	r.wg.Wait()
	return nil
}

func (r *Registrar) shardOf(key []byte) *shard {
	return &r.shards[maphash.Bytes(r.seed, key)%numShards]
}

// bytesOf views s as bytes without copying. Only for callees that read and
// do not keep the slice (store.Put copies, the URI parser makes views that
// die with the call).
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// AORKey returns the canonical key of a To or Request-URI: "sip:" + the
// unescaped user + "@" + the lower-case host. RFC 3261 §10.3 step 5: "all
// URI parameters MUST be removed (including the user-param), and any
// escaped characters MUST be converted to their unescaped form"; sips: and
// sip: share a key (the AoR is the same user) and the port is dropped. The
// unescaped user may hold any byte, NUL included (RFC 4475 §3.1.1.4): the
// key is opaque. false for a non-SIP URI.
func AORKey(u *sip.URI) (string, bool) {
	if !u.IsSIP() {
		return "", false
	}
	var buf [128]byte
	return string(appendAORKey(buf[:0], u)), true
}

func appendAORKey(dst []byte, u *sip.URI) []byte {
	dst = append(dst, "sip:"...)
	if u.HasUser {
		dst = sip.Unescape(dst, u.User)
		dst = append(dst, '@')
	}
	for _, c := range u.Host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Lookup returns the unexpired bindings of an AoR key (AORKey), highest q
// first and most recently registered first among equal q. The slice and
// its elements are copies.
func (r *Registrar) Lookup(aorKey string) []Binding {
	sh := r.shardOf(bytesOf(aorKey))
	now := r.cfg.Now().UnixNano()
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	a := sh.aors[aorKey]
	if a == nil {
		return nil
	}
	var out []Binding
	for i := range a.bs {
		if b := &a.bs[i]; b.expires > now {
			if out == nil {
				out = make([]Binding, 0, len(a.bs)-i)
			}
			out = append(out, r.public(b, aorKey))
		}
	}
	return out
}

func (r *Registrar) public(b *binding, aorKey string) Binding {
	return Binding{
		AOR: aorKey, URI: b.uri(), Params: b.params(), Q: int(b.q),
		Expires: time.Unix(0, b.expires), CallID: b.callID, CSeq: b.cseq,
		Instance: b.instance(), RegID: int(b.regID), Path: splitPath(b.path),
		Source: b.source, Proto: b.proto, Local: r.locals.get(b.local), ConnID: b.connID, NAT: b.nat,
		UserAgent: b.userAgent, Owner: r.owners.get(b.owner),
	}
}

// Count returns the number of AoRs and bindings held, including bindings
// that expired since the last sweep (at most about a second ago).
func (r *Registrar) Count() (aors, bindings int) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		aors += len(sh.aors)
		for _, a := range sh.aors {
			bindings += len(a.bs)
		}
		sh.mu.RUnlock()
	}
	return aors, bindings
}

// contact is one validated Contact value of a REGISTER.
type contact struct {
	addr     sip.Address
	expires  int64 // seconds, defaults applied and clamped
	q        int
	instance []byte
	regID    int32
}

func fail(code int, reason string) Result { return Result{Code: code, Reason: reason} }

// Register applies a REGISTER (RFC 3261 §10.3 steps 5–8). The proxy has
// already checked the Request-URI domain (step 1), Require (step 2) and
// authentication and authorization (steps 3–4). The request is atomic:
// every contact is validated, and the new binding set computed on a
// scratch copy, before anything changes.
func (r *Registrar) Register(req Request) Result {
	m := req.Msg
	// Step 5: the AoR is the To URI, which must be a SIP or SIPS URI
	// (§10.2); RFC 4475 §3.3.4 (unksm2) expects a registrar to answer 400.
	to, err := m.To()
	if err != nil || !to.URI.IsSIP() {
		return fail(400, "Bad Request (To Must Be A SIP Or SIPS URI)")
	}
	var kbuf [128]byte
	key := appendAORKey(kbuf[:0], &to.URI)
	callID := m.CallID()
	cseq, _ := m.CSeq()
	now := r.cfg.Now()
	// Binding times are kept in whole milliseconds, which is what the
	// store record holds (record.go), so a reload gives identical values.
	nowNs := now.UnixMilli() * int64(time.Millisecond)

	// The Expires header applies to contacts without an expires param;
	// a malformed value counts as absent (§20.19: "treated as 3600").
	lim := r.lim.Load()
	hdrExp := lim.defEx
	hdrZero := false
	if n, ok := m.Expires(); ok {
		hdrExp = int64(n)
		hdrZero = n == 0
	}

	var cbuf [4]contact
	cs := cbuf[:0]
	wildcard, outbound := false, false
	for it := m.Values(sip.KindContact); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		cs = append(cs, contact{})
		c := &cs[len(cs)-1]
		if c.addr, err = sip.ParseAddress(v); err != nil {
			return fail(400, "Bad Contact")
		}
		if c.addr.Wildcard {
			wildcard = true
			continue
		}
		if res, ok := r.checkContact(c, hdrExp, lim); !ok {
			return res
		}
		outbound = outbound || (c.regID != 0 && c.expires > 0)
	}
	// Step 6: "*" must be the only Contact and come with Expires: 0.
	if wildcard && (len(cs) != 1 || !hdrZero) {
		return fail(400, "Bad Request (Contact: * Needs Expires: 0 And No Other Contact)")
	}
	if wildcard {
		cs = cs[:0]
	}

	sh := r.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a := sh.aors[string(key)]
	w := sh.work[:0]
	if a != nil {
		for i := range a.bs {
			if a.bs[i].expires > nowNs {
				w = append(w, work{b: a.bs[i]})
			}
		}
	}
	defer func() {
		clear(w[:cap(w)]) // drop the strings the scratch refers to
		sh.work = w[:0]
	}()
	changed := false
	if wildcard {
		// Step 6: bindings with the same Call-ID are removed only if
		// the CSeq is higher; otherwise the request is aborted.
		for i := range w {
			if w[i].b.callID == string(callID) && cseq <= w[i].b.cseq {
				return fail(500, "Server Internal Error (CSeq Out Of Order)")
			}
		}
		changed = len(w) > 0
		w = w[:0]
	}
	var callIDStr, pathStr string
	var pathDone bool
	for i := range cs {
		c := &cs[i]
		idx := findBinding(w, c)
		if idx >= 0 {
			b := &w[idx]
			// Step 7: with the same Call-ID, only a higher CSeq may
			// update or remove a binding; otherwise "the update MUST
			// be aborted and the request fails".
			if !b.mine && b.b.callID == string(callID) && cseq <= b.b.cseq {
				return fail(500, "Server Internal Error (CSeq Out Of Order)")
			}
			if c.expires == 0 {
				w = append(w[:idx], w[idx+1:]...)
				changed = true
				continue
			}
		} else if c.expires == 0 {
			continue // removing a binding that is not there
		}
		var old *binding
		if idx >= 0 {
			old = &w[idx].b
		}
		if !pathDone {
			pathStr, pathDone = pathOf(m, old), true
		}
		if callIDStr == "" {
			if old != nil && old.callID == string(callID) {
				callIDStr = old.callID
			} else {
				callIDStr = string(callID)
			}
		}
		nb := binding{
			callID:    callIDStr,
			userAgent: sh.intern(m.Get(sip.KindUserAgent)),
			path:      pathStr,
			expires:   nowNs + c.expires*int64(time.Second),
			updated:   nowNs,
			source:    req.Source,
			nat:       req.NAT,
			local:     r.locals.index(req.Local),
			connID:    req.ConnID,
			owner:     r.self,
			cseq:      cseq,
			regID:     c.regID,
			q:         uint16(c.q),
			proto:     req.Proto,
		}
		contactStrings(&nb, c, old)
		if idx >= 0 {
			w[idx] = work{b: nb, mine: true}
		} else {
			w = append(w, work{b: nb, mine: true})
		}
		changed = true
	}
	if changed && len(w) > lim.maxContacts {
		// Too many bindings: the ones refreshed longest ago give way. A
		// phone whose NAT mapping changed registers a new contact while
		// the old one is still unexpired; refusing it would lock out the
		// one binding that works. Only a request that alone carries more
		// contacts than allowed is refused.
		mine := 0
		for i := range w {
			if w[i].mine {
				mine++
			}
		}
		if mine > lim.maxContacts {
			return fail(403, "Too Many Contacts")
		}
		sort.SliceStable(w, func(i, j int) bool {
			if w[i].mine != w[j].mine {
				return w[i].mine
			}
			return w[i].b.updated > w[j].b.updated
		})
		w = w[:lim.maxContacts]
	}

	res := Result{Code: 200, Reason: "OK"}
	if changed && r.avail != nil && !r.avail.Available() {
		// A shared store that is down: nothing changes (a query is
		// still answered from memory).
		return unavailable()
	}
	if changed {
		sortWork(w)
		r.apply(sh, a, key, w)
		if st := r.cfg.Store; st != nil {
			// Written under the shard lock, so the store sees the
			// changes of one AoR in the order they were applied.
			// The key goes to the store in the shard's buffer: passed
			// to an interface method, Register's stack array would
			// escape, and every REGISTER would allocate it.
			p := new(Commit)
			sh.key = append(sh.key[:0], key...)
			if len(w) == 0 {
				st.Delete(sh.key, p)
			} else {
				sh.enc = r.appendSet(sh.enc[:0], sh.aors[string(key)].bs)
				st.Put(sh.key, sh.enc, p)
			}
			res.Commit = p
		} else {
			res.Commit = committed
		}
	}
	// Step 8: the 200 lists every current binding.
	res.Extra = r.appendExtra(nil, m, w, nowNs, now, outbound && supportsOutbound(m))
	return res
}

// checkContact validates one contact and works out its expiry, q and RFC
// 5626 parameters (one pass over the parameters, no allocation).
func (r *Registrar) checkContact(c *contact, hdrExp int64, lim *limits) (Result, bool) {
	c.expires, c.q = hdrExp, 1000
	var regID []byte
	for p := c.addr.Params; ; {
		name, val, rest, ok, err := p.Next()
		if err != nil {
			return fail(400, "Bad Contact"), false
		}
		if !ok {
			break
		}
		p = rest
		switch {
		case sip.EqualFold(name, "expires"):
			// A malformed value is treated as the default
			// (RFC 3261 §20.19 says 3600, the default default).
			c.expires = lim.defEx
			if n, ok := parseSeconds(val); ok {
				c.expires = n
			}
		case sip.EqualFold(name, "q"):
			// RFC 3261 §20.10 qvalue: 0 to 1 with at most 3 decimals.
			q, ok := sip.ParseQ(val)
			if !ok {
				return fail(400, "Bad Request (Invalid q Value)"), false
			}
			c.q = q
		case sip.EqualFold(name, "+sip.instance"):
			c.instance = sip.Unquote(val)
		case sip.EqualFold(name, "reg-id"):
			regID = val
			if regID == nil {
				regID = []byte{}
			}
		}
	}
	if len(c.addr.RawURI) > 1<<16-1 || len(c.addr.Params) > 1<<16-1 { // binding.uriLen, parLen
		return fail(400, "Bad Request (Contact Too Long)"), false
	}
	// RFC 5626 §6: without +sip.instance the reg-id is ignored.
	if regID != nil && len(c.instance) > 0 {
		n, ok := parseSeconds(regID) // 1*DIGIT, like delta-seconds
		if !ok || n < 1 || n > 1<<31-1 {
			return fail(400, "Bad Request (Invalid reg-id)"), false
		}
		c.regID = int32(n)
	}
	// RFC 3261 §10.3 step 7: a registrar may reject an interval that is
	// nonzero, under one hour and under its minimum with 423 and a
	// Min-Expires header; the whole request is refused.
	if c.expires > 0 && c.expires < lim.minExp && c.expires < 3600 {
		return Result{Code: 423, Reason: "Interval Too Brief",
			Extra: append(strconv.AppendInt([]byte("Min-Expires: "), lim.minExp, 10), "\r\n"...)}, false
	}
	// It may shorten the interval, never lengthen it.
	if c.expires > lim.maxExp {
		c.expires = lim.maxExp
	}
	return Result{}, true
}

// parseSeconds parses 1*DIGIT, saturating at 2^32-1 (RFC 4475 §3.1.2.4
// allows an overlarge expires to be read as the largest value).
func parseSeconds(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v = v*10 + int64(c-'0'); v > 1<<32-1 {
			v = 1<<32 - 1
		}
	}
	return v, true
}

// findBinding returns the index in w of the binding contact c refers to,
// -1 if none. The identity of a binding depends on what the contact
// carries:
//
//   - +sip.instance and reg-id: the binding of that instance and reg-id,
//     whatever its URI (RFC 5626 §6: a new flow replaces the old one, and
//     two flows of one instance may share a Contact URI).
//   - +sip.instance without reg-id: the binding of that instance that has
//     no reg-id, whatever its URI (RFC 5627 §6, as Kamailio's registrar
//     does): a phone behind a NAT that re-registers or de-registers with
//     the public address it learnt from received/rport still names the
//     binding it made with its private address. Failing that, a binding
//     without an instance whose URI is equal (the same phone naming its
//     instance for the first time). A binding of another instance is never
//     matched, even with an equal URI: distinct instances are distinct
//     user agents, hence distinct bindings.
//   - no +sip.instance: the binding whose URI is equal by RFC 3261 §19.1.4
//     (§10.3 step 7), whatever its instance.
func findBinding(w []work, c *contact) int {
	if len(c.instance) > 0 {
		// c.regID is 0 when the contact has no reg-id, and so is the
		// regID of a binding made without one.
		for i := range w {
			if w[i].b.regID == c.regID && w[i].b.instance() == string(c.instance) {
				return i
			}
		}
		if c.regID != 0 {
			return -1
		}
		return findURI(w, c, true)
	}
	return findURI(w, c, false)
}

// findURI returns the index of the binding whose URI equals c's (RFC 3261
// §19.1.4), only among bindings without an instance if noInstance; -1 if
// none.
func findURI(w []work, c *contact, noInstance bool) int {
	// A refresh nearly always repeats the URI byte for byte, and equal
	// bytes are equal URIs: that saves parsing the stored ones.
	for i := range w {
		if w[i].b.uri() == string(c.addr.RawURI) && (!noInstance || w[i].b.instance() == "") {
			return i
		}
	}
	for i := range w {
		if noInstance && w[i].b.instance() != "" {
			continue
		}
		u, err := sip.ParseURI(bytesOf(w[i].b.uri()))
		if err == nil && sip.URIEqual(&u, &c.addr.URI) {
			return i
		}
	}
	return -1
}

// contactStrings sets b's URI as written, contact params minus expires and
// q, and instance, reusing old's string when they are unchanged (the usual
// refresh allocates nothing).
func contactStrings(b *binding, c *contact, old *binding) {
	var pbuf [160]byte
	ps := pbuf[:0]
	for p := c.addr.Params; ; {
		name, val, rest, ok, _ := p.Next()
		if !ok {
			break
		}
		p = rest
		if sip.EqualFold(name, "expires") || sip.EqualFold(name, "q") {
			continue
		}
		ps = append(ps, ';')
		ps = append(ps, name...)
		if val != nil {
			ps = append(ps, '=')
			ps = append(ps, val...)
		}
	}
	raw := c.addr.RawURI
	if old != nil && old.uri() == string(raw) && old.params() == string(ps) && old.instance() == string(c.instance) {
		b.contact, b.uriLen, b.parLen = old.contact, old.uriLen, old.parLen
		return
	}
	b.setContact(raw, ps, c.instance)
}

// pathOf returns the request's Path values (RFC 3327 §5.3: the registrar
// stores them with the binding) in their encoded form, reusing old's.
func pathOf(m *sip.Message, old *binding) string {
	if m.Find(sip.KindPath) < 0 {
		return ""
	}
	var buf [256]byte
	enc := buf[:0]
	for it := m.Values(sip.KindPath); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		enc = appendPath(enc, v)
	}
	if old != nil && old.path == string(enc) {
		return old.path
	}
	return string(enc)
}

// intern returns a shared copy of a User-Agent value: a million phones
// send a few dozen distinct ones (shard lock held).
func (sh *shard) intern(ua []byte) string {
	if len(ua) == 0 {
		return ""
	}
	if s, ok := sh.ua[string(ua)]; ok {
		return s
	}
	s := string(ua)
	if len(sh.ua) < 512 && len(ua) <= 256 {
		sh.ua[s] = s
	}
	return s
}

// sortWork orders a binding set as Lookup returns it: q descending, then
// most recently registered first (insertion sort: a few elements).
func sortWork(w []work) {
	for i := 1; i < len(w); i++ {
		for j := i; j > 0 && before(&w[j].b, &w[j-1].b); j-- {
			w[j], w[j-1] = w[j-1], w[j]
		}
	}
}

func before(a, b *binding) bool {
	if a.q != b.q {
		return a.q > b.q
	}
	return a.updated > b.updated
}

// apply installs the binding set w for key (shard lock held).
func (r *Registrar) apply(sh *shard, a *aor, key []byte, w []work) {
	if len(w) == 0 {
		if a != nil {
			delete(sh.aors, string(key))
			// Its heap entry goes stale; the sweeper skips it.
		}
		return
	}
	var ks string
	if a == nil {
		ks = string(key)
		a = &aor{}
		sh.aors[ks] = a
	}
	if cap(a.bs) < len(w) || cap(a.bs) > 2*len(w) {
		a.bs = make([]binding, len(w)) // exact size: memory per binding matters
	} else {
		clear(a.bs[len(w):cap(a.bs)])
		a.bs = a.bs[:len(w)]
	}
	first := w[0].b.expires
	for i := range w {
		a.bs[i] = w[i].b
		first = min(first, w[i].b.expires)
	}
	if a.sched == 0 || first < a.sched {
		if ks == "" {
			ks = string(key)
		}
		a.sched = first
		sh.push(expEntry{when: first, key: ks})
	}
}

// Commit connects the store's callback with the caller's, whichever comes
// first: the store may finish before the caller asks (then Then runs done
// at once) or after. One object per changed REGISTER, no closures.
type Commit struct {
	mu    sync.Mutex
	fired bool
	err   error
	done  func(error)
}

// Stored is the store's callback (store.Done).
func (p *Commit) Stored(err error) {
	p.mu.Lock()
	d := p.done
	if d == nil {
		p.fired, p.err = true, err
	}
	p.mu.Unlock()
	if d != nil {
		d(err)
	}
}

// Then runs done once the change is durable (nil) or failed (the error).
func (p *Commit) Then(done func(error)) {
	p.mu.Lock()
	if p.fired {
		p.mu.Unlock()
		done(p.err)
		return
	}
	p.done = done
	p.mu.Unlock()
}

// committed is Commit without a store: nothing to wait for.
var committed = &Commit{fired: true}

// appendExtra builds the header lines of the 200 (RFC 3261 §10.3 step 8).
func (r *Registrar) appendExtra(dst []byte, m *sip.Message, w []work, nowNs int64, now time.Time, outbound bool) []byte {
	n := 64
	for i := range w {
		n += len(w[i].b.contact) + 40
	}
	n += 40 // Date
	hasPath := m.Find(sip.KindPath) >= 0 && len(w) > 0
	if hasPath {
		n += len(m.Bytes()) / 4
	}
	if dst == nil {
		dst = make([]byte, 0, n)
	}
	for i := range w {
		b := &w[i].b
		dst = append(dst, "Contact: <"...)
		dst = append(dst, b.uri()...)
		dst = append(dst, '>')
		dst = append(dst, b.params()...)
		if b.q != 1000 {
			dst = append(dst, ";q="...)
			dst = appendQ(dst, int(b.q))
		}
		dst = append(dst, ";expires="...)
		// Rounded up: a live binding is never announced as expires=0.
		left := (b.expires - nowNs + int64(time.Second) - 1) / int64(time.Second)
		dst = strconv.AppendInt(dst, left, 10)
		dst = append(dst, "\r\n"...)
	}
	if hasPath {
		// RFC 3327 §5.3: the registrar copies the Path values of the
		// request into the 200, in order, so the UA learns its route.
		for it := m.Values(sip.KindPath); ; {
			v, ok := it.Next()
			if !ok {
				break
			}
			dst = append(dst, "Path: "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	if outbound {
		// RFC 5626 §6: tell the UA its flow is registered with outbound
		// processing (it then keeps the flow alive).
		dst = append(dst, "Require: outbound\r\n"...)
	}
	// §10.3 step 8: "The response SHOULD include a Date header field."
	return append(dst, r.dateLine(now)...)
}

// dateCache holds the Date line of one second (formatting a date costs
// more than the rest of the response).
type dateCache struct {
	sec  int64
	line []byte
}

func (r *Registrar) dateLine(now time.Time) []byte {
	sec := now.Unix()
	if d := r.date.Load(); d != nil && d.sec == sec {
		return d.line
	}
	line := now.UTC().AppendFormat([]byte("Date: "), "Mon, 02 Jan 2006 15:04:05 GMT")
	line = append(line, "\r\n"...)
	r.date.Store(&dateCache{sec: sec, line: line})
	return line
}

// appendQ writes a qvalue in thousandths as "1", "0.5", "0.25", "0.125".
func appendQ(dst []byte, q int) []byte {
	if q >= 1000 {
		return append(dst, '1')
	}
	dst = append(dst, '0', '.', byte('0'+q/100))
	if q%100 != 0 {
		dst = append(dst, byte('0'+q/10%10))
		if q%10 != 0 {
			dst = append(dst, byte('0'+q%10))
		}
	}
	return dst
}

// supportsOutbound reports Supported: outbound (RFC 5626 §4.2.1).
func supportsOutbound(m *sip.Message) bool {
	for it := m.Values(sip.KindSupported); ; {
		v, ok := it.Next()
		if !ok {
			return false
		}
		if sip.EqualFold(v, "outbound") {
			return true
		}
	}
}

// localTable interns the local socket addresses bindings arrived on: a
// proxy has a handful of listeners, so a binding keeps a 2-byte index
// instead of a 32-byte netip.AddrPort. Reads are a lock-free load of an
// immutable slice.
type localTable struct {
	mu   sync.Mutex
	list atomic.Pointer[[]netip.AddrPort] // index 0 is the zero AddrPort
}

func (t *localTable) index(ap netip.AddrPort) uint16 {
	if !ap.IsValid() {
		return 0
	}
	if l := t.list.Load(); l != nil {
		for i, v := range *l {
			if v == ap {
				return uint16(i)
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var cur []netip.AddrPort
	if l := t.list.Load(); l != nil {
		cur = *l
		for i, v := range cur {
			if v == ap {
				return uint16(i)
			}
		}
	} else {
		cur = []netip.AddrPort{{}}
	}
	if len(cur) > 1<<16-1 {
		return 0 // cannot happen with real listeners; the address is then unknown
	}
	next := append(cur[:len(cur):len(cur)], ap)
	t.list.Store(&next)
	return uint16(len(next) - 1)
}

// ownerTable numbers the nodes that own bindings (a handful): index 0 is
// "", a single instance's bindings. Lock-free reads as localTable.
type ownerTable struct {
	mu   sync.Mutex
	list atomic.Pointer[[]string]
}

func (t *ownerTable) index(node string) uint16 {
	if node == "" {
		return 0
	}
	if l := t.list.Load(); l != nil {
		for i, n := range *l {
			if n == node {
				return uint16(i)
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := []string{""}
	if l := t.list.Load(); l != nil {
		cur = *l
	}
	for i, n := range cur {
		if n == node {
			return uint16(i)
		}
	}
	if len(cur) >= 1<<16-1 {
		return 0 // tens of thousands of nodes: not a cluster sipedge makes
	}
	next := append(cur[:len(cur):len(cur)], node)
	t.list.Store(&next)
	return uint16(len(next) - 1)
}

func (t *ownerTable) get(i uint16) string {
	if l := t.list.Load(); l != nil && int(i) < len(*l) {
		return (*l)[i]
	}
	return ""
}

func (t *localTable) get(i uint16) netip.AddrPort {
	if l := t.list.Load(); l != nil && int(i) < len(*l) {
		return (*l)[i]
	}
	return netip.AddrPort{}
}

// Range calls fn with a copy of every unexpired binding, shard by shard,
// until fn returns false. A shard's lock is held only while its bindings
// are copied, never while fn runs, so a slow reader (the operations API)
// does not hold up REGISTERs for long.
func (r *Registrar) Range(fn func(Binding) bool) {
	now := r.cfg.Now().UnixNano()
	var buf []Binding
	for i := range r.shards {
		sh := &r.shards[i]
		buf = buf[:0]
		sh.mu.RLock()
		for key, a := range sh.aors {
			for j := range a.bs {
				if b := &a.bs[j]; b.expires > now {
					buf = append(buf, r.public(b, key))
				}
			}
		}
		sh.mu.RUnlock()
		for _, b := range buf {
			if !fn(b) {
				return
			}
		}
	}
}
