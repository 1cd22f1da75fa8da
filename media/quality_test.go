package media

import (
	"math"
	"testing"
	"time"
)

// TestMOSFromR: G.107 Annex B's R-to-MOS curve at the points its
// user-satisfaction table names, and the clamps.
func TestMOSFromR(t *testing.T) {
	for _, tc := range []struct{ r, mos float64 }{
		{93.2, 4.41}, // the default R of G.107: a perfect narrowband call
		{90, 4.34},   // "very satisfied" threshold
		{80, 4.03},   // "satisfied"
		{70, 3.60},   // "some users dissatisfied"
		{60, 3.10},   // "many users dissatisfied"
		{50, 2.58},   // "nearly all users dissatisfied"
		{0, 1},
		{-5, 1},
		{3, 1}, // the cubic dips below 1 near 0: clamped
		{100, 4.5},
		{120, 4.5},
	} {
		// The table's values are rounded to two decimals (4.024 at 80).
		if got := MOSFromR(tc.r); math.Abs(got-tc.mos) > 0.0075 {
			t.Errorf("MOSFromR(%v) = %.4f, want %.2f", tc.r, got, tc.mos)
		}
	}
}

// TestEstimate: R and MOS for loss, jitter and codec, against values
// worked out by hand from the formulas in Estimate's comment (d = 2 ×
// jitter + 20 ms + relay).
func TestEstimate(t *testing.T) {
	for _, tc := range []struct {
		name          string
		codec         string
		loss          float64
		jitter, relay time.Duration
		r, mos        float64
	}{
		{"G.711 clean", "PCMU", 0, 0, 0, 92.72, 4.40},                                       // Id = 0.024 × 20
		{"G.711 1% loss", "PCMA", 1, 0, 0, 89.08, 4.32},                                     // Ie,eff = 95 × 1/26.1
		{"G.711 5% loss", "PCMU", 5, 0, 0, 76.94, 3.90},                                     // Ie,eff = 95 × 5/30.1
		{"G.711 20% loss", "PCMU", 20, 0, 0, 50.59, 2.61},                                   // unusable
		{"all lost", "PCMU", 100, 0, 0, 16.78, 1.16},                                        // Ie,eff = 95 × 100/125.1
		{"G.729 clean", "G729", 0, 0, 0, 81.72, 4.09},                                       // Ie 11
		{"G.729 2% loss", "g729", 2, 0, 0, 73.72, 3.77},                                     // 11 + 84 × 2/21
		{"unknown codec as G.711", "opus", 1, 0, 0, 89.08, 4.32},                            // G.711's values
		{"jitter 100 ms", "PCMU", 0, 100 * time.Millisecond, 0, 83.22, 4.14},                // d 220: Id 5.28 + 0.11 × 42.7
		{"jitter 1 ms, relay 1 ms", "", 0, time.Millisecond, time.Millisecond, 92.65, 4.40}, // d 23
		{"loss over 100 clamped", "PCMU", 150, 0, 0, 16.78, 1.16},
		{"negative loss clamped", "PCMU", -3, 0, 0, 92.72, 4.40},
		{"huge jitter", "PCMU", 50, 10 * time.Second, 0, 0, 1},
	} {
		q := Estimate(tc.codec, tc.loss, tc.jitter, tc.relay)
		if math.Abs(q.R-tc.r) > 0.01 || math.Abs(q.MOS-tc.mos) > 0.005 {
			t.Errorf("%s: R %.3f MOS %.3f, want R %.2f MOS %.2f", tc.name, q.R, q.MOS, tc.r, tc.mos)
		}
	}
}
