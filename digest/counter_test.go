package digest

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"sipedge/internal/race"
)

var testKey = []byte("0123456789abcdef")

func TestCounterWindow(t *testing.T) {
	n := NewNonces(testKey, time.Minute)
	t0 := time.Unix(1_800_000_000, 0)
	nonce := n.Append(nil, "r", t0)
	c := NewCounter(100, time.Minute)
	for i, tc := range []struct {
		nc   uint32
		want bool
	}{
		{1, true},
		{1, false},  // replay
		{3, true},   // a gap
		{2, true},   // out of order, within the window
		{2, false},  // replay out of order
		{3, false},  // replay of the highest
		{66, true},  // window now 3..66
		{3, false},  // the bottom of the window 3..66, used before
		{4, true},   // in the window, not used before
		{2, false},  // below the window
		{1, false},  // far below
		{0, false},  // RFC 2069 use of a nonce used with counts
		{200, true}, // a jump beyond the window
		{137, true}, // bottom of the new window
		{136, false},
		{199, true},
		{199, false},
	} {
		if got := c.Use(nonce, tc.nc, t0.Add(time.Second)); got != tc.want {
			t.Errorf("step %d: Use(nc=%d) = %v, want %v", i, tc.nc, got, tc.want)
		}
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d", c.Len())
	}
}

func TestCounterWithoutQOP(t *testing.T) {
	n := NewNonces(testKey, time.Minute)
	t0 := time.Unix(1_800_000_000, 0)
	c := NewCounter(100, time.Minute)
	a := n.Append(nil, "r", t0)
	if !c.Use(a, 0, t0) {
		t.Fatal("first use refused")
	}
	for _, nc := range []uint32{0, 1, 2, 1 << 31, ^uint32(0)} {
		if c.Use(a, nc, t0) {
			t.Errorf("nonce used without qop accepted again with nc=%d", nc)
		}
	}
	if !c.Use(n.Append(nil, "r", t0.Add(1)), 0, t0) {
		t.Error("another nonce refused")
	}
}

func TestCounterExpiry(t *testing.T) {
	n := NewNonces(testKey, time.Minute)
	t0 := time.Unix(1_800_000_000, 0)
	c := NewCounter(100, time.Minute)
	a := n.Append(nil, "r", t0)
	if !c.Use(a, 1, t0) {
		t.Fatal("refused")
	}
	if c.Use(a, 2, t0.Add(time.Minute+1)) {
		t.Error("nonce older than the lifetime accepted")
	}
	// A later use cleans the expired entry out.
	b := n.Append(nil, "r", t0.Add(2*time.Minute))
	if !c.Use(b, 1, t0.Add(2*time.Minute)) {
		t.Fatal("fresh nonce refused")
	}
	if c.Len() > 1+len(c.shards)-1 {
		t.Errorf("Len = %d after expiry", c.Len())
	}
	// With one shard the expiry is exact.
	c = NewCounter(1, time.Minute)
	c.Use(a, 1, t0)
	c.Use(b, 1, t0.Add(2*time.Minute))
	if c.Len() != 1 {
		t.Errorf("one shard: Len = %d, want 1", c.Len())
	}
	if c.Use([]byte("not a nonce"), 1, t0) {
		t.Error("foreign nonce accepted")
	}
}

func TestCounterEviction(t *testing.T) {
	n := NewNonces(testKey, time.Hour)
	t0 := time.Unix(1_800_000_000, 0)
	for _, max := range []int{1, 3, 4, 40} {
		c := NewCounter(max, time.Hour)
		var nonces [][]byte
		for i := range 200 {
			nonce := n.Append(nil, "r", t0.Add(time.Duration(i)*time.Millisecond))
			nonces = append(nonces, nonce)
			if !c.Use(nonce, 1, t0.Add(time.Second)) {
				t.Fatalf("max %d: nonce %d refused", max, i)
			}
			if c.Len() > max {
				t.Fatalf("max %d: Len %d", max, c.Len())
			}
		}
		// Evicted nonces cannot start again from 1, nor go on.
		for _, nc := range []uint32{1, 2} {
			if c.Use(nonces[0], nc, t0.Add(time.Second)) {
				t.Errorf("max %d: evicted nonce accepted with nc=%d", max, nc)
			}
		}
		// The newest goes on counting.
		if !c.Use(nonces[199], 2, t0.Add(time.Second)) || c.Use(nonces[199], 2, t0.Add(time.Second)) {
			t.Errorf("max %d: newest nonce's window wrong", max)
		}
		// A nonce issued after the evictions is fresh.
		if !c.Use(n.Append(nil, "r", t0.Add(time.Second)), 1, t0.Add(time.Second)) {
			t.Errorf("max %d: new nonce refused", max)
		}
	}
}

func TestCounterConcurrent(t *testing.T) {
	n := NewNonces(testKey, time.Hour)
	t0 := time.Unix(1_800_000_000, 0)
	c := NewCounter(1000, time.Hour)
	var nonces [][]byte
	for i := range 50 {
		nonces = append(nonces, n.Append(nil, "r", t0.Add(time.Duration(i))))
	}
	// Every (nonce, nc) is tried by 4 goroutines: exactly one wins each.
	var mu sync.Mutex
	won := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for nc := uint32(1); nc <= 20; nc++ {
				for _, nonce := range nonces {
					if c.Use(nonce, nc, t0) {
						mu.Lock()
						won[fmt.Sprintf("%s/%d", nonce, nc)]++
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(won) != 50*20 {
		t.Errorf("%d (nonce, nc) accepted, want %d", len(won), 50*20)
	}
	for k, v := range won {
		if v != 1 {
			t.Errorf("%s accepted %d times", k, v)
		}
	}
}

func TestCounterUseAllocatesNothing(t *testing.T) {
	if testing.CoverMode() != "" || race.Enabled {
		t.Skip("coverage counters and the race detector allocate")
	}
	n := NewNonces(testKey, time.Hour)
	t0 := time.Unix(1_800_000_000, 0)
	c := NewCounter(10, time.Hour)
	nonce := n.Append(nil, "r", t0)
	nc := uint32(0)
	if a := testing.AllocsPerRun(100, func() {
		nc++
		if !c.Use(nonce, nc, t0) {
			t.Fatal("refused")
		}
	}); a != 0 {
		t.Errorf("Use of a known nonce allocates %v times", a)
	}
}

// TestCounterHoldsNoPointers: the table holds a nonce per authenticated
// request for the nonces' lifetime (a million under load); with no pointer
// in its keys, values and queue the garbage collector never walks it.
func TestCounterHoldsNoPointers(t *testing.T) {
	var sh counterShard
	for _, typ := range []reflect.Type{reflect.TypeOf(sh.m).Key(), reflect.TypeOf(sh.m).Elem(), reflect.TypeOf(sh.queue).Elem()} {
		if p := pointerIn(typ); p != "" {
			t.Errorf("%v holds a pointer (%s)", typ, p)
		}
	}
}

// pointerIn names a kind within typ that the collector scans, or "".
func pointerIn(typ reflect.Type) string {
	switch typ.Kind() {
	case reflect.Array:
		return pointerIn(typ.Elem())
	case reflect.Struct:
		for i := range typ.NumField() {
			if p := pointerIn(typ.Field(i).Type); p != "" {
				return typ.Field(i).Name + ": " + p
			}
		}
		return ""
	case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Interface,
		reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return typ.Kind().String()
	}
	return ""
}
