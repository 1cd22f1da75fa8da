package pool

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func cands(weights ...int) []candidate {
	var out []candidate
	for i, w := range weights {
		out = append(out, candidate{weight: w, key: keyOf(fmt.Sprintf("sip:10.0.0.%d", i+1))})
	}
	return out
}

// first counts how often each target comes first over n requests.
func first(alg Algorithm, cs []candidate, n int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 1))
	got := make([]int, len(cs))
	for i := 0; i < n; i++ {
		o := order(alg, cs, []byte(fmt.Sprintf("call-%d", i)), r.IntN)
		got[o[0]]++
	}
	return got
}

func isPermutation(o []int, n int) bool {
	s := slices.Clone(o)
	slices.Sort(s)
	for i := range s {
		if s[i] != i {
			return false
		}
	}
	return len(s) == n
}

// TestAlgorithms: what each algorithm puts first, over many requests,
// and that every order lists every target once (the rest are the
// failover order).
func TestAlgorithms(t *testing.T) {
	const n = 20000
	within := func(got, want, tol float64) bool { return got > want-tol && got < want+tol }
	for _, tc := range []struct {
		name  string
		alg   Algorithm
		cs    []candidate
		share []float64 // expected share of first places
	}{
		{"weighted 3:1", Weighted, cands(3, 1), []float64{0.75, 0.25}},
		{"weighted equal", Weighted, cands(1, 1, 1, 1), []float64{0.25, 0.25, 0.25, 0.25}},
		{"weighted 1:2:5", Weighted, cands(1, 2, 5), []float64{0.125, 0.25, 0.625}},
		{"hash 3:1", Hash, cands(3, 1), []float64{0.75, 0.25}},
		{"hash equal", Hash, cands(1, 1, 1), []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{"priority: the lowest number always", Priority, []candidate{{weight: 1, priority: 2}, {weight: 1, priority: 1}, {weight: 1, priority: 3}}, []float64{0, 1, 0}},
		{"priority: equal ones by weight", Priority, []candidate{{weight: 1, priority: 1}, {weight: 3, priority: 1}, {weight: 9, priority: 2}}, []float64{0.25, 0.75, 0}},
		{"least calls: the idle one", LeastCalls, []candidate{{weight: 1, active: 5}, {weight: 1, active: 0}, {weight: 1, active: 2}}, []float64{0, 1, 0}},
		{"least calls: per weight", LeastCalls, []candidate{{weight: 4, active: 4}, {weight: 1, active: 2}}, []float64{1, 0}},
		{"least calls: ties shared", LeastCalls, []candidate{{weight: 1}, {weight: 1}}, []float64{0.5, 0.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := first(tc.alg, tc.cs, n, 7)
			for i, c := range got {
				if share := float64(c) / n; !within(share, tc.share[i], 0.02) {
					t.Fatalf("target %d first in %.3f of requests, want %.3f (%v)", i, share, tc.share[i], got)
				}
			}
			r := rand.New(rand.NewPCG(1, 2))
			for i := 0; i < 100; i++ {
				if o := order(tc.alg, tc.cs, []byte(fmt.Sprint(i)), r.IntN); !isPermutation(o, len(tc.cs)) {
					t.Fatalf("order %v is not a permutation of %d targets", o, len(tc.cs))
				}
			}
		})
	}
}

// TestPriorityFailoverOrder: the whole order follows the priority
// numbers.
func TestPriorityFailoverOrder(t *testing.T) {
	cs := []candidate{{weight: 1, priority: 3}, {weight: 1, priority: 1}, {weight: 1, priority: 2}}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 50; i++ {
		if o := order(Priority, cs, nil, r.IntN); !slices.Equal(o, []int{1, 2, 0}) {
			t.Fatalf("order %v, want [1 2 0]", o)
		}
	}
}

// TestHashSticky: a Call-ID always gets the same order, and when a target
// leaves, only the calls it had move (rendezvous hashing): the others
// keep their target.
func TestHashSticky(t *testing.T) {
	all := cands(1, 1, 1, 1)
	without := []candidate{all[0], all[1], all[3]} // target 2 went down
	moved := 0
	for i := 0; i < 5000; i++ {
		id := []byte(fmt.Sprintf("c%d@host", i))
		a, b := order(Hash, all, id, nil), order(Hash, all, id, nil)
		if !slices.Equal(a, b) {
			t.Fatalf("%s: %v then %v", id, a, b)
		}
		w := order(Hash, without, id, nil)
		ix := []int{0, 1, 3}
		if a[0] != 2 && ix[w[0]] != a[0] {
			t.Fatalf("%s moved from target %d to %d though its target stayed up", id, a[0], ix[w[0]])
		}
		if a[0] == 2 {
			moved++
			if ix[w[0]] != a[1] {
				t.Fatalf("%s: its calls went to %d, want its second choice %d", id, ix[w[0]], a[1])
			}
		}
	}
	if moved < 1000 || moved > 1500 {
		t.Fatalf("%d of 5000 calls were on the target that left, want about a quarter", moved)
	}
}

func TestParseAlgorithm(t *testing.T) {
	for _, s := range []string{"weighted", "hash", "priority", "least-calls"} {
		a, ok := ParseAlgorithm(s)
		if !ok || a.String() != s {
			t.Errorf("%q: %v %v", s, a, ok)
		}
	}
	if a, ok := ParseAlgorithm(""); !ok || a != Weighted {
		t.Errorf("default: %v", a)
	}
	if _, ok := ParseAlgorithm("round-robin"); ok {
		t.Error("round-robin accepted")
	}
}
