package pool

import (
	"testing"
	"time"
)

// TestHealthThresholds: the state machine, step by step: N failures in a
// row take a target down, M successes in a row bring it back, and an
// interruption of either run starts it again.
func TestHealthThresholds(t *testing.T) {
	type step struct {
		ok      bool
		passive bool
		up      bool // state after the step
		changed bool
	}
	const down, up = 3, 2
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"one failure does not take it down", []step{{false, false, true, false}, {true, false, true, false}, {false, false, true, false}, {false, false, true, false}}},
		{"three failures in a row do", []step{{false, false, true, false}, {false, false, true, false}, {false, false, false, true}}},
		{"passive failures count with probe failures", []step{{false, true, true, false}, {false, false, true, false}, {false, true, false, true}}},
		{"a passive success clears the failures", []step{{false, false, true, false}, {false, false, true, false}, {true, true, true, false}, {false, false, true, false}, {false, false, true, false}}},
		{"down: one success is not enough", []step{{false, false, true, false}, {false, false, true, false}, {false, false, false, true}, {true, false, false, false}, {false, false, false, false}, {true, false, false, false}, {true, false, true, true}}},
		{"down: passive successes do not bring it back", []step{{false, false, true, false}, {false, false, true, false}, {false, false, false, true}, {true, true, false, false}, {true, true, false, false}, {true, false, false, false}, {true, false, true, true}}},
		{"down: further failures change nothing", []step{{false, false, true, false}, {false, false, true, false}, {false, false, false, true}, {false, false, false, false}, {false, true, false, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := health{up: true}
			now := time.Unix(1000, 0)
			for i, s := range tc.steps {
				now = now.Add(time.Second)
				var changed bool
				if s.passive {
					changed = h.passive(s.ok, down, up, now)
				} else {
					changed = h.observe(s.ok, down, up, now)
				}
				if h.up != s.up || changed != s.changed {
					t.Fatalf("step %d (ok=%v passive=%v): up=%v changed=%v, want up=%v changed=%v", i, s.ok, s.passive, h.up, changed, s.up, s.changed)
				}
				if changed && !h.since.Equal(now) {
					t.Fatalf("step %d: since %v, want %v", i, h.since, now)
				}
			}
		})
	}
}

func TestLatencySmoothed(t *testing.T) {
	var l latency
	l.add(80 * time.Millisecond)
	if l.last != 80*time.Millisecond || l.smooth != 80*time.Millisecond {
		t.Fatalf("first sample: %+v", l)
	}
	l.add(160 * time.Millisecond)
	if l.last != 160*time.Millisecond || l.smooth != 90*time.Millisecond {
		t.Fatalf("second sample: %+v, want smooth 90ms", l)
	}
}
