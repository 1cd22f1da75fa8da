package metrics

import (
	"sync/atomic"
	"time"
)

// DelayBuckets are the upper bounds, in seconds, of the delay histograms
// (session request delay, registration request delay): from a LAN's
// milliseconds to a slow upstream's seconds.
var DelayBuckets = [...]float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}

// Histogram counts delays into DelayBuckets without a lock: Observe is
// two atomic adds, for the per-message path.
type Histogram struct {
	counts [len(DelayBuckets) + 1]atomic.Uint64 // the last: above every bound
	sumNS  atomic.Int64
}

// Observe records one delay.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(DelayBuckets) && s > DelayBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNS.Add(int64(d))
}

// HistogramSnapshot is a Histogram as a Stats field (package doc): the
// count in each bucket (not cumulative; the last above every bound) and
// the sum. Walk emits it as one histogram sample named NAME_seconds.
type HistogramSnapshot struct {
	Counts [len(DelayBuckets) + 1]uint64
	Sum    time.Duration
}

// Snapshot reads the histogram.
func (h *Histogram) Snapshot() HistogramSnapshot {
	var s HistogramSnapshot
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sumNS.Load())
	return s
}

// Count is the number of delays observed.
func (s *HistogramSnapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}
