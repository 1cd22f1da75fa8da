package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestDistribution(t *testing.T) {
	d := NewDistribution(1, 2.5, 4)
	for _, v := range []float64{0.5, 1, 2, 2.5, 3.9, 4.41, 1e9} {
		d.Observe(v)
	}
	s := d.Snapshot()
	// ≤1: 0.5 and exactly 1; ≤2.5: 2 and exactly 2.5; ≤4: 3.9; above: 4.41, 1e9.
	want := []uint64{2, 2, 1, 2}
	if len(s.Counts) != len(want) {
		t.Fatalf("counts %v", s.Counts)
	}
	for i := range want {
		if s.Counts[i] != want[i] {
			t.Errorf("bucket %d: %d, want %d", i, s.Counts[i], want[i])
		}
	}
	if s.Count() != 7 || s.Sum != 0.5+1+2+2.5+3.9+4.41+1e9 {
		t.Errorf("count %d sum %v", s.Count(), s.Sum)
	}
	// A snapshot is a copy: later values do not change it.
	d.Observe(0)
	if s.Counts[0] != 2 {
		t.Error("snapshot shares its counts")
	}

	type stats struct{ StreamMOS DistributionSnapshot }
	var got []Sample
	if err := Walk("x", stats{StreamMOS: s}, func(s Sample) { got = append(got, s) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "x_stream_mos" || got[0].Dist == nil || got[0].Dist.Count() != 7 {
		t.Fatalf("%+v", got)
	}

	// Exported as a Prometheus histogram with cumulative buckets.
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(nil, Source{Name: "x", Stats: func() any { return stats{StreamMOS: s} }}))
	fams, err := reg.Gather()
	if err != nil || len(fams) != 1 || fams[0].GetName() != "sipedge_x_stream_mos" || len(fams[0].Metric) != 1 {
		t.Fatalf("gather: %v %v", err, fams)
	}
	h := fams[0].Metric[0].GetHistogram()
	if h.GetSampleCount() != 7 || h.GetSampleSum() != s.Sum || len(h.Bucket) != 3 {
		t.Fatalf("histogram %v", h)
	}
	for i, cum := range []uint64{2, 4, 5} {
		if b := h.Bucket[i]; b.GetUpperBound() != s.Bounds[i] || b.GetCumulativeCount() != cum {
			t.Errorf("bucket %d: %v, want le %v count %d", i, b, s.Bounds[i], cum)
		}
	}
	// The zero snapshot (nothing observed, no bounds) exports an empty
	// histogram, not an error.
	reg = prometheus.NewRegistry()
	reg.MustRegister(NewCollector(nil, Source{Name: "x", Stats: func() any { return stats{} }}))
	if fams, err := reg.Gather(); err != nil || len(fams) != 1 || fams[0].Metric[0].GetHistogram().GetSampleCount() != 0 {
		t.Errorf("zero snapshot: %v %v", err, fams)
	}
}
