package resolve

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// TTL bounds. Positive answers are kept for their TTL clamped to
// [minTTL, maxTTL]: a TTL of 0 would otherwise mean a query per request,
// and a huge one would pin a stale address for days. Negative answers use
// the SOA rule of RFC 2308 §5, or defaultNegTTL without an SOA.
const (
	minTTL        = time.Second
	maxTTL        = time.Hour
	defaultNegTTL = 30 * time.Second
)

// cacheKey identifies one DNS question. name is absolute and lower case.
type cacheKey struct {
	name  string
	qtype uint16
}

// entry is the cached outcome of one question. Exactly one of these holds:
// rrs is non-empty (records of the asked type, owned by the end of any
// CNAME chain); alias is set (the answer was a CNAME chain whose end must be
// asked separately); or negative (NXDOMAIN or NODATA).
type entry struct {
	rrs      []dns.RR
	alias    string
	hops     int // CNAMEs followed inside this answer
	negative bool
	nxdomain bool
	expires  time.Time

	// extra holds A/AAAA records from the additional section of an SRV
	// answer, usable until extraExpires (their own TTL may be shorter).
	extra        []dns.RR
	extraExpires time.Time
}

// cache is an LRU map of entries with expiry. The rrs slices are shared
// with readers and must be treated as read-only.
type cache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // front = most recently used; values are *cacheItem
	m   map[cacheKey]*list.Element
}

type cacheItem struct {
	k cacheKey
	e *entry
}

func newCache(size int) *cache {
	return &cache{max: size, ll: list.New(), m: make(map[cacheKey]*list.Element)}
}

// get returns a live entry or nil; expired entries are dropped.
func (c *cache) get(k cacheKey, now time.Time) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil
	}
	it := el.Value.(*cacheItem)
	if !now.Before(it.e.expires) {
		c.ll.Remove(el)
		delete(c.m, k)
		return nil
	}
	c.ll.MoveToFront(el)
	return it.e
}

func (c *cache) put(k cacheKey, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		el.Value.(*cacheItem).e = e
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&cacheItem{k, e})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheItem).k)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// call is one in-flight query that identical lookups wait for.
type call struct {
	done chan struct{}
	e    *entry
	err  error
}

// get answers one question from the cache, or by a query shared with every
// concurrent caller asking the same question (singleflight). The query runs
// detached from ctx, bounded by the per-attempt timeouts, so that a caller
// giving up does not fail the others; its answer is cached either way.
func (r *Resolver) get(ctx context.Context, k cacheKey) (*entry, error) {
	if e := r.cache.get(k, r.now()); e != nil {
		r.nHits.Add(1)
		return e, nil
	}
	r.mu.Lock()
	c, ok := r.calls[k]
	if ok {
		r.mu.Unlock()
		r.nCoalesced.Add(1)
	} else {
		// Re-check under r.mu: a query that finished since the first check
		// stored its entry before leaving r.calls.
		if e := r.cache.get(k, r.now()); e != nil {
			r.mu.Unlock()
			r.nHits.Add(1)
			return e, nil
		}
		c = &call{done: make(chan struct{})}
		r.calls[k] = c
		r.mu.Unlock()
		go func() {
			c.e, c.err = r.fetch(context.WithoutCancel(ctx), k)
			if c.err != nil {
				r.nFailures.Add(1)
			}
			r.mu.Lock()
			delete(r.calls, k)
			r.mu.Unlock()
			close(c.done)
		}()
	}
	if cacheOnly(ctx) {
		// The query is on its way (started above or by someone else); a
		// caller that may not block comes back once it has finished.
		r.nDeferred.Add(1)
		return nil, ErrNotCached
	}
	select {
	case <-c.done:
		return c.e, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ErrNotCached is returned under CacheOnly when an answer is not in the
// cache. The query has been started; asking again (without CacheOnly, or
// later) finds it in flight or cached.
var ErrNotCached = errors.New("resolve: answer not cached yet")

type cacheOnlyKey struct{}

// CacheOnly returns a context under which Resolve answers only from the
// cache and returns ErrNotCached instead of waiting for a DNS server. A
// SIP message reader uses it so that a slow lookup never stalls the
// messages behind it; the request that needs the lookup waits elsewhere.
func CacheOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, cacheOnlyKey{}, true)
}

func cacheOnly(ctx context.Context) bool { return ctx.Value(cacheOnlyKey{}) != nil }

// fetch queries the servers and caches the outcome. Failures (timeouts,
// SERVFAIL) are not cached: the next request retries.
func (r *Resolver) fetch(ctx context.Context, k cacheKey) (*entry, error) {
	m, err := r.query(ctx, k.name, k.qtype)
	if err != nil {
		return nil, err
	}
	e, err := parseAnswer(m, k.name, k.qtype, r.now())
	if err != nil {
		return nil, err
	}
	r.cache.put(k, e)
	return e, nil
}

// clampTTL bounds a positive TTL.
func clampTTL(sec uint32) time.Duration {
	d := time.Duration(sec) * time.Second
	return min(max(d, minTTL), maxTTL)
}

// negativeTTL is how long NXDOMAIN/NODATA is cached: RFC 2308 §5 takes the
// minimum of the SOA record's TTL and its MINIMUM field; without an SOA in
// the authority section, defaultNegTTL.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return clampTTL(min(soa.Hdr.Ttl, soa.Minttl))
		}
	}
	return defaultNegTTL
}
