// Package registrar is sipedge's registrar and location service (RFC 3261
// §10): it applies REGISTER requests to the bindings of an address-of-record
// and answers lookups for the proxy. Bindings live in memory, sharded by
// AoR, and every change is written to the durable store before the 200 is
// sent, so an acknowledged registration survives kill -9.
package registrar

import (
	"errors"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"sipedge/sip"
	"sipedge/store"
	"sipedge/transport"
)

// Config configures the registrar.
type Config struct {
	MinExpires, MaxExpires, DefaultExpires time.Duration
	MaxContacts                            int
	Store                                  *store.Store // nil: memory only
	Logger                                 *slog.Logger
	Now                                    func() time.Time
}

// Binding is one contact registered for an AoR.
type Binding struct {
	AOR       string
	URI       string // Contact URI as written (escapes kept)
	Params    string // contact params as written, without expires and q
	Q         int    // thousandths
	Expires   time.Time
	CallID    string
	CSeq      uint32
	Instance  string // +sip.instance (RFC 5626), quotes stripped
	RegID     int
	Path      []string // Path header values (RFC 3327)
	Source    netip.AddrPort
	Proto     transport.Proto
	Local     netip.AddrPort
	ConnID    uint64
	UserAgent string
}

// Request is a REGISTER and where it came from.
type Request struct {
	Msg    *sip.Message
	Source netip.AddrPort
	Local  netip.AddrPort
	Proto  transport.Proto
	ConnID uint64
}

// Result is the registrar's answer. When Commit is set the bindings changed
// and the 2xx may be sent only from Commit's callback (the change is then
// durable); an error there is answered 500.
type Result struct {
	Code   int
	Reason string
	Extra  []byte
	Commit func(done func(error))
}

type shard struct {
	mu   sync.RWMutex
	aors map[string][]Binding
}

// Registrar is the registrar and location service.
type Registrar struct {
	cfg       Config
	log       *slog.Logger
	shards    [64]shard
	quit      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New builds the registrar and loads the bindings kept in the store.
func New(cfg Config) (*Registrar, error) {
	if cfg.MinExpires == 0 {
		cfg.MinExpires = 60 * time.Second
	}
	if cfg.MaxExpires == 0 {
		cfg.MaxExpires = time.Hour
	}
	if cfg.DefaultExpires == 0 {
		cfg.DefaultExpires = time.Hour
	}
	if cfg.MaxContacts == 0 {
		cfg.MaxContacts = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registrar{cfg: cfg, log: cfg.Logger, quit: make(chan struct{})}
	for i := range r.shards {
		r.shards[i].aors = map[string][]Binding{}
	}
	if cfg.Store != nil {
		now := cfg.Now()
		n := 0
		err := cfg.Store.Load(func(key string, val []byte) error {
			bs, err := decodeBindings(key, val)
			if err != nil {
				r.log.Warn("registrar: skipping an unreadable stored binding set", "aor", key, "err", err)
				return nil
			}
			live := bs[:0]
			for _, b := range bs {
				if b.Expires.After(now) {
					live = append(live, b)
				}
			}
			if len(live) > 0 {
				r.shard(key).aors[key] = live
				n += len(live)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		r.log.Info("registrar: bindings loaded", "bindings", n)
	}
	r.wg.Add(1)
	go r.sweep()
	return r, nil
}

// Close stops the expiry sweeper.
func (r *Registrar) Close() error {
	r.closeOnce.Do(func() { close(r.quit) })
	r.wg.Wait()
	return nil
}

func (r *Registrar) shard(aor string) *shard {
	h := fnv.New32a()
	h.Write([]byte(aor))
	return &r.shards[h.Sum32()%uint32(len(r.shards))]
}

// AORKey is the canonical key of an address-of-record: "sip:" + the user
// unescaped + "@" + the host in lower case; sips: and sip: share a key, port
// and parameters are dropped (RFC 3261 §10.3 step 5, §19.1.4).
func AORKey(u *sip.URI) (string, bool) {
	if !u.IsSIP() {
		return "", false
	}
	b := make([]byte, 0, 4+len(u.User)+1+len(u.Host))
	b = append(b, "sip:"...)
	if u.HasUser {
		b = sip.Unescape(b, u.User)
		b = append(b, '@')
	}
	for _, c := range u.Host {
		if c >= 'A' && c <= 'Z' {
			c += 32
		}
		b = append(b, c)
	}
	return string(b), true
}

// Lookup returns the current bindings of an AoR, highest q first, most
// recently refreshed first among equal q. The slice is a copy.
func (r *Registrar) Lookup(aor string) []Binding {
	s := r.shard(aor)
	now := r.cfg.Now()
	s.mu.RLock()
	src := s.aors[aor]
	out := make([]Binding, 0, len(src))
	for _, b := range src {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	s.mu.RUnlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Q > out[j].Q })
	return out
}

// Count returns the number of AoRs and bindings.
func (r *Registrar) Count() (aors, bindings int) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		aors += len(s.aors)
		for _, bs := range s.aors {
			bindings += len(bs)
		}
		s.mu.RUnlock()
	}
	return
}

// change is one contact of a REGISTER, validated.
type change struct {
	uri      sip.URI
	raw      string
	params   string
	q        int
	expires  time.Duration
	instance string
	regID    int
}

var errBad = errors.New("bad contact")

// Register applies a REGISTER (RFC 3261 §10.3 steps 3–8). The caller has
// checked the Request-URI domain, Require and authentication.
func (r *Registrar) Register(req Request) Result {
	m := req.Msg
	to, err := m.To()
	if err != nil || !to.URI.IsSIP() {
		return Result{Code: 400, Reason: "Bad Request (To must be a SIP AoR)"}
	}
	aor, _ := AORKey(&to.URI)
	callID := string(m.CallID())
	cseq, _ := m.CSeq()
	now := r.cfg.Now()
	hdrExp, hasHdrExp := m.Expires()

	var changes []change
	wildcard := false
	for it := m.Values(sip.KindContact); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		a, err := sip.ParseAddress(v)
		if err != nil {
			return Result{Code: 400, Reason: "Bad Contact"}
		}
		if a.Wildcard {
			wildcard = true
			continue
		}
		c, err := r.contactChange(&a, hdrExp, hasHdrExp)
		if err != nil {
			return Result{Code: 400, Reason: "Bad Contact Parameters"}
		}
		if c.expires > 0 && c.expires < r.cfg.MinExpires {
			// §10.3 step 7: 423 with the minimum; nothing changes.
			return Result{Code: 423, Reason: "Interval Too Brief",
				Extra: []byte("Min-Expires: " + strconv.Itoa(int(r.cfg.MinExpires/time.Second)) + "\r\n")}
		}
		changes = append(changes, c)
	}
	if wildcard && (len(changes) > 0 || !hasHdrExp || hdrExp != 0) {
		// §10.3 step 6: "*" only alone and with Expires: 0.
		return Result{Code: 400, Reason: "Bad Request (Contact: * needs Expires: 0 and no other contact)"}
	}
	var path []string
	for i := m.Find(sip.KindPath); i >= 0; i = m.FindNext(sip.KindPath, i) {
		path = append(path, string(m.HeaderValue(i)))
	}
	ua := string(m.Get(sip.KindUserAgent))

	s := r.shard(aor)
	s.mu.Lock()
	cur := s.aors[aor]
	// Work on a copy: the request is atomic, all or nothing.
	next := make([]Binding, 0, len(cur)+len(changes))
	for _, b := range cur {
		if b.Expires.After(now) {
			next = append(next, b)
		}
	}
	changed := false
	if wildcard {
		for _, b := range next {
			if b.CallID == callID && cseq <= b.CSeq {
				s.mu.Unlock()
				return Result{Code: 500, Reason: "Server Internal Error (CSeq out of order)"}
			}
		}
		changed = len(next) > 0
		next = next[:0]
	}
	for _, c := range changes {
		idx := -1
		for i := range next {
			b := &next[i]
			if c.instance != "" && c.regID != 0 && b.Instance == c.instance && b.RegID == c.regID {
				idx = i // RFC 5626 §6: the same flow of the same instance
				break
			}
			if u, err := sip.ParseURI([]byte(b.URI)); err == nil && sip.URIEqual(&u, &c.uri) {
				idx = i
				break
			}
		}
		if idx >= 0 {
			b := &next[idx]
			if b.CallID == callID && cseq <= b.CSeq {
				// §10.3 step 7: an older or repeated request must not
				// undo a newer one.
				s.mu.Unlock()
				return Result{Code: 500, Reason: "Server Internal Error (CSeq out of order)"}
			}
			if c.expires == 0 {
				next = append(next[:idx], next[idx+1:]...)
				changed = true
				continue
			}
		} else if c.expires == 0 {
			continue // removing what is not there
		}
		nb := Binding{
			AOR: aor, URI: c.raw, Params: c.params, Q: c.q, Expires: now.Add(c.expires),
			CallID: callID, CSeq: cseq, Instance: c.instance, RegID: c.regID, Path: path,
			Source: req.Source, Proto: req.Proto, Local: req.Local, ConnID: req.ConnID, UserAgent: ua,
		}
		if idx >= 0 {
			next[idx] = nb
		} else {
			next = append(next, nb)
		}
		changed = true
	}
	if len(next) > r.cfg.MaxContacts {
		// Too many bindings: the ones refreshed longest ago give way. A
		// phone whose NAT binding changed registers a new contact while
		// the old one is still unexpired; refusing it would lock out the
		// one binding that works. If this request alone carries too many
		// contacts it is refused.
		if len(changes) > r.cfg.MaxContacts {
			s.mu.Unlock()
			return Result{Code: 403, Reason: "Forbidden (Too Many Contacts)"}
		}
		sort.SliceStable(next, func(i, j int) bool {
			fi := next[i].CallID == callID && next[i].CSeq == cseq
			fj := next[j].CallID == callID && next[j].CSeq == cseq
			if fi != fj {
				return fi // this request's bindings first
			}
			return next[i].Expires.After(next[j].Expires)
		})
		next = next[:r.cfg.MaxContacts]
		changed = true
	}
	if changed {
		if len(next) == 0 {
			delete(s.aors, aor)
		} else {
			s.aors[aor] = next
		}
	}
	extra := appendContacts(nil, next, now)
	if len(path) > 0 {
		for _, p := range path {
			extra = append(extra, "Path: "...)
			extra = append(extra, p...)
			extra = append(extra, "\r\n"...)
		}
	}
	var val []byte
	if changed && r.cfg.Store != nil && len(next) > 0 {
		val = encodeBindings(next)
	}
	s.mu.Unlock()

	res := Result{Code: 200, Reason: "OK", Extra: extra}
	if changed && r.cfg.Store != nil {
		st := r.cfg.Store
		if val == nil {
			res.Commit = func(done func(error)) { st.Delete(aor, done) }
		} else {
			res.Commit = func(done func(error)) { st.Put(aor, val, done) }
		}
	}
	return res
}

// contactChange reads one contact's expiry, q and RFC 5626 parameters.
func (r *Registrar) contactChange(a *sip.Address, hdrExp uint32, hasHdrExp bool) (change, error) {
	c := change{uri: a.URI, raw: string(a.RawURI), q: 1000}
	exp := r.cfg.DefaultExpires
	if hasHdrExp {
		exp = time.Duration(hdrExp) * time.Second
	}
	var params []byte
	for p := a.Params; ; {
		name, val, rest, ok, err := p.Next()
		if err != nil {
			return c, errBad
		}
		if !ok {
			break
		}
		p = rest
		switch {
		case sip.EqualFold(name, "expires"):
			if v, ok := parseSeconds(val); ok {
				exp = time.Duration(v) * time.Second
			}
			continue
		case sip.EqualFold(name, "q"):
			q, ok := sip.ParseQ(val)
			if !ok {
				return c, errBad // RFC 3261 §20.10: qvalue is 0 to 1, three decimals
			}
			c.q = q
			continue
		case sip.EqualFold(name, "+sip.instance"):
			c.instance = string(sip.Unquote(val))
		case sip.EqualFold(name, "reg-id"):
			n, err := strconv.Atoi(string(val))
			if err != nil || n <= 0 {
				return c, errBad
			}
			c.regID = n
		}
		params = append(params, ';')
		params = append(params, name...)
		if val != nil {
			params = append(params, '=')
			params = append(params, val...)
		}
	}
	if exp > r.cfg.MaxExpires {
		exp = r.cfg.MaxExpires
	}
	c.expires = exp.Truncate(time.Second)
	c.params = string(params)
	return c, nil
}

func parseSeconds(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v < 1<<40 {
			v = v*10 + uint64(c-'0')
		}
	}
	return v, true
}

// appendContacts lists bindings for the 200 (§10.3 step 8).
func appendContacts(dst []byte, bs []Binding, now time.Time) []byte {
	for _, b := range bs {
		left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		if left < 0 {
			continue
		}
		dst = append(dst, "Contact: <"...)
		dst = append(dst, b.URI...)
		dst = append(dst, '>')
		dst = append(dst, b.Params...)
		if b.Q != 1000 {
			dst = append(dst, ";q="...)
			dst = append(dst, qString(b.Q)...)
		}
		dst = append(dst, ";expires="...)
		dst = strconv.AppendInt(dst, int64(left), 10)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

func qString(q int) string {
	s := strconv.Itoa(1000 + q)[1:] // three digits
	if q == 1000 {
		return "1"
	}
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return "0." + s
}

// sweep removes expired bindings every second (Lookup already hides them;
// this frees memory and the stored copies).
func (r *Registrar) sweep() {
	defer r.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-t.C:
		}
		now := r.cfg.Now()
		type write struct {
			aor string
			val []byte
		}
		var writes []write
		for i := range r.shards {
			s := &r.shards[i]
			s.mu.Lock()
			for aor, bs := range s.aors {
				live := bs[:0]
				for _, b := range bs {
					if b.Expires.After(now) {
						live = append(live, b)
					}
				}
				if len(live) == len(bs) {
					continue
				}
				if len(live) == 0 {
					delete(s.aors, aor)
					writes = append(writes, write{aor, nil})
				} else {
					s.aors[aor] = live
					writes = append(writes, write{aor, encodeBindings(live)})
				}
			}
			s.mu.Unlock()
		}
		// Outside the locks: the store may make us wait when busy. A lost
		// expiry write is harmless: expired bindings are dropped on load.
		if st := r.cfg.Store; st != nil {
			for _, w := range writes {
				if w.val == nil {
					st.Delete(w.aor, nil)
				} else {
					st.Put(w.aor, w.val, nil)
				}
			}
		}
	}
}
