package digest

import (
	"testing"
	"time"

	"sipedge/internal/race"
)

func TestNonces(t *testing.T) {
	key := []byte("0123456789abcdef")
	n := NewNonces(key, 5*time.Minute)
	issued := time.Unix(1_800_000_000, 123)
	nonce := n.Append([]byte("x"), "sip.example.com", issued)[1:]
	if len(nonce) != NonceLen {
		t.Fatalf("nonce %q has %d bytes", nonce, len(nonce))
	}
	flip := func(i int) []byte {
		b := append([]byte(nil), nonce...)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return b
	}
	for _, tc := range []struct {
		name         string
		nonces       *Nonces
		nonce        []byte
		realm        string
		now          time.Time
		valid, stale bool
	}{
		{"fresh", n, nonce, "sip.example.com", issued, true, false},
		{"at the lifetime", n, nonce, "sip.example.com", issued.Add(5 * time.Minute), true, false},
		{"after the lifetime: stale", n, nonce, "sip.example.com", issued.Add(5*time.Minute + 1), false, true},
		{"a day old: stale", n, nonce, "sip.example.com", issued.Add(24 * time.Hour), false, true},
		{"issued 2 s in the future (clock drift)", n, nonce, "sip.example.com", issued.Add(-2 * time.Second), true, false},
		{"issued 4 s in the future", n, nonce, "sip.example.com", issued.Add(-4 * time.Second), false, false},
		{"other realm", n, nonce, "other.example.com", issued, false, false},
		{"other key", NewNonces([]byte("0123456789abcdeF"), 5*time.Minute), nonce, "sip.example.com", issued, false, false},
		{"time altered", n, flip(3), "sip.example.com", issued, false, false},
		{"MAC altered", n, flip(30), "sip.example.com", issued, false, false},
		{"truncated", n, nonce[:31], "sip.example.com", issued, false, false},
		{"too long", n, append(append([]byte(nil), nonce...), 'A'), "sip.example.com", issued, false, false},
		{"not base64url", n, append(append([]byte(nil), nonce[:31]...), '='), "sip.example.com", issued, false, false},
		{"empty", n, nil, "sip.example.com", issued, false, false},
	} {
		valid, stale := tc.nonces.Check(tc.nonce, tc.realm, tc.now)
		if valid != tc.valid || stale != tc.stale {
			t.Errorf("%s: Check = %v, %v; want %v, %v", tc.name, valid, stale, tc.valid, tc.stale)
		}
	}
	if other := n.Append(nil, "sip.example.com", issued.Add(time.Nanosecond)); string(other) == string(nonce) {
		t.Error("two instants gave the same nonce")
	}
	// A long realm is bound whole.
	long := string(make([]byte, 300)) + "a"
	ln := n.Append(nil, long, issued)
	if v, _ := n.Check(ln, long, issued); !v {
		t.Error("long realm refused")
	}
	if v, _ := n.Check(ln, long[:300]+"b", issued); v {
		t.Error("long realm differing after 256 bytes accepted")
	}
	// A random key when none is given.
	r := NewNonces(nil, time.Minute)
	if v, _ := r.Check(r.Append(nil, "r", issued), "r", issued); !v {
		t.Error("random key: own nonce refused")
	}
	if v, _ := NewNonces(nil, time.Minute).Check(r.Append(nil, "r", issued), "r", issued); v {
		t.Error("two random keys accept each other's nonces")
	}
}

func TestNonceCheckAllocatesNothing(t *testing.T) {
	if testing.CoverMode() != "" || race.Enabled {
		t.Skip("coverage counters and the race detector allocate")
	}
	n := NewNonces([]byte("0123456789abcdef"), time.Minute)
	now := time.Now()
	nonce := n.Append(nil, "sip.example.com", now)
	buf := make([]byte, 0, 64)
	if a := testing.AllocsPerRun(100, func() {
		if v, _ := n.Check(nonce, "sip.example.com", now); !v {
			t.Fatal("refused")
		}
		buf = n.Append(buf[:0], "sip.example.com", now)
	}); a != 0 {
		t.Errorf("Check and Append allocate %v times", a)
	}
}

func BenchmarkNonceCheck(b *testing.B) {
	n := NewNonces([]byte("0123456789abcdef"), time.Minute)
	now := time.Now()
	nonce := n.Append(nil, "sip.example.com", now)
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := n.Check(nonce, "sip.example.com", now); !v {
			b.Fatal("refused")
		}
	}
}
