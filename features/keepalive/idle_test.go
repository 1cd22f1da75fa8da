package keepalive

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// natLocator is a Locator with no NATed binding; it counts its rounds.
type natLocator struct{ rounds atomic.Int32 }

func (l *natLocator) RangeNAT(func(aor, uri string, src netip.AddrPort, updated time.Time)) {
	l.rounds.Add(1)
}
func (l *natLocator) Remove(aor, uri string) bool { return false }

// TestIdle: with keep-alives on and no NATed phone, the sender wakes once
// per interval for its round, not at every 100 ms step; a new
// configuration still starts a round at once.
func TestIdle(t *testing.T) {
	loc := &natLocator{}
	f := &Feature{loc: loc, failures: map[string]int{}, kick: make(chan struct{}, 1)}
	f.SetConfig(Config{Interval: 600 * time.Millisecond, Method: Options})
	f.Start()
	defer f.Close()
	time.Sleep(1500 * time.Millisecond) // 15 steps, 2½ intervals
	if w, r := f.wakes.Load(), loc.rounds.Load(); w > 5 || r < 2 || r > 4 {
		t.Fatalf("%d wake-ups and %d rounds in 1.5 s (interval 600 ms, step 100 ms)", w, r)
	}
	r := loc.rounds.Load()
	f.SetConfig(Config{Interval: time.Hour, Method: Options})
	for deadline := time.Now().Add(2 * time.Second); loc.rounds.Load() == r; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no round after a new configuration")
		}
	}
}
