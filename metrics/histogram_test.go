package metrics

import (
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Second, time.Minute} {
		h.Observe(d)
	}
	s := h.Snapshot()
	// ≤1ms: 2 (0.5 ms and exactly 1 ms), ≤5ms: 1, ≤2s: 1, above 10 s: 1.
	want := map[int]uint64{0: 2, 2: 1, 10: 1, len(DelayBuckets): 1}
	for i, c := range s.Counts {
		if c != want[i] {
			t.Errorf("bucket %d: %d, want %d", i, c, want[i])
		}
	}
	if s.Count() != 5 || s.Sum != 500*time.Microsecond+time.Millisecond+3*time.Millisecond+2*time.Second+time.Minute {
		t.Errorf("count %d sum %v", s.Count(), s.Sum)
	}
	type stats struct{ Delay HistogramSnapshot }
	var got []Sample
	if err := Walk("x", stats{Delay: s}, func(s Sample) { got = append(got, s) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "x_delay_seconds" || got[0].Hist == nil || got[0].Hist.Count() != 5 {
		t.Fatalf("%+v", got)
	}
}
