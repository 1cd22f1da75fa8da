package sip

import "testing"

// Hash is FNV-1a (checked against the published test vector for "a") with
// a separator after each part, so splitting the same bytes differently
// gives another hash, and AddLower folds ASCII case.
func TestHash(t *testing.T) {
	// FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; Add appends the separator.
	fnvA := Hash(0xaf63dc4c8601ec8c)
	want := (fnvA ^ 0xff) * hashPrime
	if got := NewHash().Add([]byte("a")); got != want {
		t.Errorf("Add(a) = %#x, want %#x", uint64(got), uint64(want))
	}
	if NewHash().Add([]byte("ab")).Add([]byte("c")) == NewHash().Add([]byte("a")).Add([]byte("bc")) {
		t.Error("parts are not separated")
	}
	if NewHash().AddString("Call-1") != NewHash().Add([]byte("Call-1")) {
		t.Error("AddString and Add differ")
	}
	if NewHash().AddLower([]byte("Example.COM")) != NewHash().Add([]byte("example.com")) {
		t.Error("AddLower does not fold case")
	}
	if NewHash().AddUint64(1) == NewHash().AddUint64(1<<56) {
		t.Error("AddUint64 ignores byte order")
	}
	if n := testing.AllocsPerRun(100, func() { _ = NewHash().Add([]byte("x")).AddUint64(7) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
