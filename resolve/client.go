package resolve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	// maxCNAME bounds CNAME chains, within one answer and across queries,
	// so that a loop cannot spin forever.
	maxCNAME = 8
	// ednsSize is the UDP payload size advertised with EDNS(0): the 1232
	// bytes of DNS Flag Day 2020 avoid IP fragmentation on any path while
	// keeping most SRV answers off TCP.
	ednsSize = 1232
)

// lookup answers (name, qtype), following CNAMEs up to maxCNAME deep. It
// returns the records of type qtype (none for NXDOMAIN/NODATA, which is not
// an error here: the caller decides what a missing record means) and, for
// SRV, address records from the additional section still within their TTL.
// Errors are failures to get an answer: ErrTimeout, ErrServerFailure, the
// context's error, or ErrNotFound for an over-long CNAME chain.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (rrs, extra []dns.RR, err error) {
	name = strings.ToLower(dns.Fqdn(name))
	orig, hops := name, 0
	for {
		e, err := r.get(ctx, cacheKey{name, qtype})
		if err != nil {
			return nil, nil, err
		}
		hops += e.hops
		if hops > maxCNAME {
			return nil, nil, fmt.Errorf("%w: %s: CNAME chain longer than %d", ErrNotFound, trimDot(orig), maxCNAME)
		}
		if e.alias == "" {
			if e.negative {
				return nil, nil, nil
			}
			if r.now().Before(e.extraExpires) {
				extra = e.extra
			}
			return e.rrs, extra, nil
		}
		// The answer stopped at a CNAME whose target it did not include:
		// ask for the target itself (its own cache entry).
		name = e.alias
	}
}

// query asks the servers one question. It tries the current server, then,
// once, the next one (Config.Timeout per attempt); NOERROR and NXDOMAIN
// answers are returned, anything else is an error.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	n := uint32(len(r.servers))
	start := r.cur.Load() % n
	var lastErr error
	for a := uint32(0); a < 2; a++ {
		i := (start + a) % n
		m, err := r.exchange(ctx, r.servers[i], name, qtype)
		if err == nil {
			return m, nil
		}
		if errors.Is(err, ErrTimeout) {
			r.nTimeouts.Add(1)
			// Prefer the next server from now on: the one that did not
			// answer is likely down, and every query would otherwise wait
			// for its timeout first.
			r.cur.CompareAndSwap(start, (i+1)%n)
		}
		r.log.Debug("resolve: DNS query failed", "server", r.servers[i], "name", name,
			"type", dns.TypeToString[qtype], "err", err)
		lastErr = err
	}
	return nil, lastErr
}

// exchange sends one question to one server over UDP, and again over TCP
// if the UDP answer was truncated (RFC 1035 §4.2.1, RFC 7766 §5): a
// truncated SRV or NAPTR set would silently drop targets.
func (r *Resolver) exchange(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)

	c := dns.Client{Net: "udp", Timeout: r.timeout}
	resp, err := r.send(ctx, &c, m, server)
	if err == nil && resp.Truncated {
		r.nTCP.Add(1)
		c.Net = "tcp"
		resp, err = r.send(ctx, &c, m, server)
	}
	if err != nil {
		return nil, classify(server, err)
	}
	// The library matched the ID; check the rest, so that a stray or
	// spoofed datagram answering another question is never cached.
	if !resp.Response || len(resp.Question) != 1 ||
		!strings.EqualFold(resp.Question[0].Name, name) || resp.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("%w: %s: reply does not match the question", ErrServerFailure, server)
	}
	if resp.Truncated {
		return nil, fmt.Errorf("%w: %s: truncated answer over TCP", ErrServerFailure, server)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	}
	return nil, fmt.Errorf("%w: %s answered %s for %s %s", ErrServerFailure, server,
		dns.RcodeToString[resp.Rcode], trimDot(name), dns.TypeToString[qtype])
}

func (r *Resolver) send(ctx context.Context, c *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	r.nQueries.Add(1)
	resp, _, err := c.ExchangeContext(ctx, m, server)
	return resp, err
}

// classify maps a transport error to ErrTimeout (the server gave no answer:
// timeout, refused port, unreachable, connection closed) or ErrServerFailure
// (it answered something unusable, e.g. a malformed message).
func classify(server string, err error) error {
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) && ne.Timeout() || errors.As(err, &oe) ||
		errors.Is(err, io.EOF) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: %w", ErrTimeout, server, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrServerFailure, server, err)
}

// parseAnswer turns a NOERROR/NXDOMAIN reply to (qname, qtype) into a cache
// entry. It trusts only records on the CNAME chain starting at qname (and,
// for SRV, address records of the SRV targets), so odd or hostile data in
// a reply cannot fill the cache with other names.
func parseAnswer(m *dns.Msg, qname string, qtype uint16, now time.Time) (*entry, error) {
	cur := qname
	hops := 0
	ttl := uint32(maxTTL / time.Second)
	for {
		var recs []dns.RR
		next, nextTTL := "", uint32(0)
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				recs = append(recs, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && next == "" {
				next, nextTTL = c.Target, h.Ttl
			}
		}
		if len(recs) > 0 {
			for _, rr := range recs {
				ttl = min(ttl, rr.Header().Ttl)
			}
			e := &entry{rrs: recs, hops: hops, expires: now.Add(clampTTL(ttl))}
			if qtype == dns.TypeSRV {
				e.extra, e.extraExpires = srvExtra(m.Extra, recs, now)
			}
			return e, nil
		}
		if next == "" {
			if hops == 0 || m.Rcode == dns.RcodeNameError {
				// RFC 2308: NXDOMAIN or NODATA (NOERROR, no records). After
				// a CNAME, NXDOMAIN is about the chain's end, and the
				// negative entry must not outlive the CNAMEs leading to it.
				d := negativeTTL(m)
				if hops > 0 {
					d = min(d, clampTTL(ttl))
				}
				return &entry{negative: true, nxdomain: m.Rcode == dns.RcodeNameError,
					hops: hops, expires: now.Add(d)}, nil
			}
			// The server did not chase the chain to the end (an
			// authoritative-only server does not): the end is queried next.
			return &entry{alias: cur, hops: hops, expires: now.Add(clampTTL(ttl))}, nil
		}
		hops++
		if hops > maxCNAME {
			return nil, fmt.Errorf("%w: %s: CNAME chain longer than %d", ErrNotFound, trimDot(qname), maxCNAME)
		}
		ttl = min(ttl, nextTTL)
		cur = strings.ToLower(dns.Fqdn(next))
	}
}

// srvExtra keeps the A/AAAA records of the additional section that belong
// to a target of recs, and the time they stop being valid.
func srvExtra(extra []dns.RR, recs []dns.RR, now time.Time) ([]dns.RR, time.Time) {
	var out []dns.RR
	ttl := uint32(maxTTL / time.Second)
	for _, rr := range extra {
		h := rr.Header()
		if h.Class != dns.ClassINET || (h.Rrtype != dns.TypeA && h.Rrtype != dns.TypeAAAA) {
			continue
		}
		for _, s := range recs {
			if srv, ok := s.(*dns.SRV); ok && strings.EqualFold(srv.Target, h.Name) {
				out = append(out, rr)
				ttl = min(ttl, h.Ttl)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, time.Time{}
	}
	return out, now.Add(clampTTL(ttl))
}
