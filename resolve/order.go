package resolve

import (
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"sipedge/transport"
)

// naptrChoice is a NAPTR record reduced to what RFC 3263 §4.1 uses.
type naptrChoice struct {
	order, pref uint16
	proto       transport.Proto
	replacement string // SRV name, absolute, lower case
}

// naptrService maps the RFC 3263 §4.1 service fields this proxy can use to
// transports. SCTP (D2S) and the WebSocket services of RFC 7118 are not
// supported by the transport layer and are discarded with any other
// service, as §4.1 says to do with unsupported ones.
func naptrService(s string) (transport.Proto, bool) {
	switch strings.ToUpper(s) {
	case "SIP+D2U":
		return transport.UDP, true
	case "SIP+D2T":
		return transport.TCP, true
	case "SIPS+D2T":
		return transport.TLS, true
	}
	return 0, false
}

// usableNAPTR filters NAPTR records down to those RFC 3263 §4.1 lets the
// client follow and sorts them by order, then preference (RFC 3403 §4.1).
// Kept records:
//   - have a SIP service for a transport in prefer; for a SIPS URI only
//     SIPS+D2T ("A client resolving a SIPS URI MUST discard any services
//     that do not contain "SIPS" as the protocol in the service field");
//   - have the "s" flag (the next lookup is SRV) and a replacement; SIP
//     NAPTRs carry an empty regexp, so records relying on one are unusable.
//
// Ties in order and preference fall back to the proxy's own preference.
func usableNAPTR(recs []*dns.NAPTR, secure bool, prefer []transport.Proto) []naptrChoice {
	var out []naptrChoice
	for _, n := range recs {
		if n == nil || !strings.EqualFold(n.Flags, "s") {
			continue
		}
		p, ok := naptrService(n.Service)
		if !ok || (secure && p != transport.TLS) || !slices.Contains(prefer, p) {
			continue
		}
		repl := strings.ToLower(n.Replacement)
		if repl == "" || repl == "." {
			continue
		}
		if _, ok := dns.IsDomainName(repl); !ok {
			continue
		}
		out = append(out, naptrChoice{order: n.Order, pref: n.Preference, proto: p, replacement: dns.Fqdn(repl)})
	}
	slices.SortStableFunc(out, func(a, b naptrChoice) int {
		if a.order != b.order {
			return int(a.order) - int(b.order)
		}
		if a.pref != b.pref {
			return int(a.pref) - int(b.pref)
		}
		return slices.Index(prefer, a.proto) - slices.Index(prefer, b.proto)
	})
	return out
}

// orderSRV returns the records in the order RFC 2782 says to contact them:
// ascending priority, and within one priority a weighted random order.
// intn(n) must return a uniform integer in [0, n). The input is not
// modified (it may be shared with the cache).
func orderSRV(recs []*dns.SRV, intn func(n int) int) []*dns.SRV {
	in := slices.Clone(recs)
	slices.SortStableFunc(in, func(a, b *dns.SRV) int { return int(a.Priority) - int(b.Priority) })
	out := make([]*dns.SRV, 0, len(in))
	for i := 0; i < len(in); {
		j := i
		for j < len(in) && in[j].Priority == in[i].Priority {
			j++
		}
		out = append(out, weightedOrder(in[i:j], intn)...)
		i = j
	}
	return out
}

// weightedOrder orders one priority group by the RFC 2782 selection
// algorithm: "arrange all SRV RRs (that have not been ordered yet) in any
// order, except that all those with weight 0 are placed at the beginning
// of the list. Compute the sum of the weights ... choose a uniform random
// number between 0 and the sum computed (inclusive), and select the RR
// whose running sum value is the first in the selected order which is
// greater than or equal to the random number selected." Repeated until the
// group is exhausted. Weight-0 records so get a small chance of coming
// first, and are otherwise tried last; all-zero groups keep their order.
func weightedOrder(group []*dns.SRV, intn func(n int) int) []*dns.SRV {
	rest := make([]*dns.SRV, 0, len(group))
	for _, s := range group {
		if s.Weight == 0 {
			rest = append(rest, s)
		}
	}
	for _, s := range group {
		if s.Weight != 0 {
			rest = append(rest, s)
		}
	}
	out := make([]*dns.SRV, 0, len(group))
	for len(rest) > 0 {
		sum := 0
		for _, s := range rest {
			sum += int(s.Weight)
		}
		pick := intn(sum + 1)
		k, run := len(rest)-1, 0
		for idx, s := range rest {
			run += int(s.Weight)
			if run >= pick {
				k = idx
				break
			}
		}
		out = append(out, rest[k])
		rest = slices.Delete(rest, k, k+1)
	}
	return out
}

// randIntN is the default random source. math/rand/v2's top-level
// functions are safe for concurrent use and need no seeding; SRV load
// balancing has no need for cryptographic randomness.
func randIntN(n int) int { return rand.IntN(n) }
