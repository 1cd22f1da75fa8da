package pool

import (
	"hash/fnv"
	"math"
	"sort"
)

// Algorithm is how a pool orders its targets for a new request. Every
// algorithm gives a full order of the targets that are up: the first is
// tried, the next after a timeout, a transport error or a 503 (RFC 3263
// §4.3 failover, proxy.Decision.Failover).
type Algorithm uint8

const (
	// Weighted picks at random in proportion to the weights (and the
	// fallbacks the same way among the rest).
	Weighted Algorithm = iota
	// Hash picks by the Call-ID (weighted rendezvous hashing): every
	// request of a call goes to the same target, and when a target goes
	// down only its own calls move.
	Hash
	// Priority takes the lowest priority number first, the next one only
	// when it fails; equal priorities share by weight.
	Priority
	// LeastCalls takes the target with the fewest active calls for its
	// weight.
	LeastCalls
)

// ParseAlgorithm reads the configuration's name for an algorithm.
func ParseAlgorithm(s string) (Algorithm, bool) {
	switch s {
	case "weighted", "":
		return Weighted, true
	case "hash":
		return Hash, true
	case "priority":
		return Priority, true
	case "least-calls":
		return LeastCalls, true
	}
	return 0, false
}

func (a Algorithm) String() string {
	switch a {
	case Hash:
		return "hash"
	case Priority:
		return "priority"
	case LeastCalls:
		return "least-calls"
	}
	return "weighted"
}

// candidate is a target that is up, as the algorithms see it.
type candidate struct {
	weight   int // at least 1
	priority int
	active   int64  // calls on it now
	key      uint64 // a hash of its URI, for Hash
}

// order returns the indexes of cands in the order to try them. intN is a
// random source (rand.IntN; a fixed one in tests).
func order(alg Algorithm, cands []candidate, callID []byte, intN func(int) int) []int {
	switch alg {
	case Hash:
		return byHash(cands, callID)
	case Priority:
		out := weightedOrder(cands, intN)
		sort.SliceStable(out, func(i, j int) bool { return cands[out[i]].priority < cands[out[j]].priority })
		return out
	case LeastCalls:
		// Random among equals (a weighted shuffle first), so that idle
		// targets share the first calls instead of the first in the list
		// taking them all.
		out := weightedOrder(cands, intN)
		sort.SliceStable(out, func(i, j int) bool {
			a, b := cands[out[i]], cands[out[j]]
			return a.active*int64(b.weight) < b.active*int64(a.weight)
		})
		return out
	}
	return weightedOrder(cands, intN)
}

// weightedOrder draws the targets one by one without replacement, each
// draw in proportion to the weights of those left.
func weightedOrder(cands []candidate, intN func(int) int) []int {
	left := make([]int, len(cands))
	total := 0
	for i := range cands {
		left[i] = i
		total += cands[i].weight
	}
	out := make([]int, 0, len(cands))
	for len(left) > 0 {
		r := intN(total)
		k := 0
		for ; k < len(left)-1; k++ {
			if r < cands[left[k]].weight {
				break
			}
			r -= cands[left[k]].weight
		}
		total -= cands[left[k]].weight
		out = append(out, left[k])
		left = append(left[:k], left[k+1:]...)
	}
	return out
}

// byHash orders the targets by weighted rendezvous hashing of the
// Call-ID: each target scores weight / -ln(u), u uniform in (0,1) from a
// hash of the Call-ID and the target. The order depends on the Call-ID
// and the set of targets up only, so it is the same in every sipedge
// instance and after a restart.
func byHash(cands []candidate, callID []byte) []int {
	h := fnv.New64a()
	h.Write(callID)
	c := h.Sum64()
	score := make([]float64, len(cands))
	out := make([]int, len(cands))
	for i := range cands {
		x := mix(c ^ cands[i].key)
		u := (float64(x>>11) + 0.5) / (1 << 53)
		score[i] = float64(cands[i].weight) / -math.Log(u)
		out[i] = i
	}
	sort.SliceStable(out, func(i, j int) bool { return score[out[i]] > score[out[j]] })
	return out
}

// mix is SplitMix64's finalizer: FNV's low bits alone spread poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func keyOf(uri string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(uri))
	return mix(h.Sum64())
}
