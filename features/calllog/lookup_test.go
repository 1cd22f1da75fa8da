package calllog

import (
	"strings"
	"testing"
	"time"
)

// TestCall: a call is found by its Call-ID while in progress, after it
// ended, and the one in progress wins over an ended one with the same
// Call-ID (an INVITE repeated after a failure).
func TestCall(t *testing.T) {
	fx := newFixture(t)
	if _, ok := fx.f.Call("c1"); ok {
		t.Fatal("found a call before any")
	}
	inv := fx.request(t, msg("INVITE", "", "a", 1), caller)
	if r, ok := fx.f.Call("c1"); !ok || r.End != (time.Time{}) || r.Source != caller.String() {
		t.Fatalf("in progress: %+v %v", r, ok)
	}
	fx.now = fx.now.Add(time.Second)
	fx.f.failure(inv.TestFailure(486))
	if r, ok := fx.f.Call("c1"); !ok || r.Status != 486 || r.End.IsZero() {
		t.Fatalf("ended: %+v %v", r, ok)
	}
	fx.now = fx.now.Add(time.Second)
	fx.request(t, strings.Replace(msg("INVITE", "", "a2", 1), "branch=z9hG4bKINVITE1", "branch=z9hG4bKagain", 1), caller)
	if r, ok := fx.f.Call("c1"); !ok || !r.End.IsZero() || r.Status != 0 {
		t.Fatalf("again: %+v %v", r, ok)
	}
	if _, ok := fx.f.Call("c2"); ok {
		t.Fatal("found another Call-ID")
	}
}
