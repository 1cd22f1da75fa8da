package metrics

import (
	"slices"
	"sync"
)

// Distribution counts values that are not delays — a MOS, a loss
// percentage — into upper bounds its owner chooses (a MOS's 1-4.5 scale
// has nothing in common with DelayBuckets). Observe takes a lock: it is
// for events such as a stream that ended, not for the per-packet path.
type Distribution struct {
	bounds []float64 // ascending, never changed after NewDistribution
	mu     sync.Mutex
	counts []uint64 // len(bounds)+1, the last above every bound
	sum    float64
}

// NewDistribution returns a distribution over the upper bounds given,
// which must be ascending.
func NewDistribution(bounds ...float64) *Distribution {
	if !slices.IsSorted(bounds) {
		panic("metrics: distribution bounds not ascending")
	}
	b := slices.Clip(slices.Clone(bounds))
	return &Distribution{bounds: b, counts: make([]uint64, len(b)+1)}
}

// Observe records one value: counted in the first bucket whose bound it
// does not exceed.
func (d *Distribution) Observe(v float64) {
	i, _ := slices.BinarySearch(d.bounds, v)
	d.mu.Lock()
	d.counts[i]++
	d.sum += v
	d.mu.Unlock()
}

// DistributionSnapshot is a Distribution as a Stats field (package doc):
// the bounds, the count in each bucket (not cumulative; the last above
// every bound) and the sum. Walk emits it as one histogram sample named
// after the field, without a unit suffix (the field names its unit).
type DistributionSnapshot struct {
	Bounds []float64 // shared with the Distribution: never change it
	Counts []uint64
	Sum    float64
}

// Snapshot reads the distribution; the zero snapshot for a nil one.
func (d *Distribution) Snapshot() DistributionSnapshot {
	if d == nil {
		return DistributionSnapshot{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return DistributionSnapshot{Bounds: d.bounds, Counts: slices.Clone(d.counts), Sum: d.sum}
}

// Count is the number of values observed.
func (s *DistributionSnapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}
