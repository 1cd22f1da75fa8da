package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// With NoSync, what is queued inside a stretch is written by Leave, before
// it returns, as one batch inside the batch hooks; the committer is not
// woken meanwhile.
func TestLeaveWritesOnCaller(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{NoSync: true})
	var begins, ends atomic.Int32
	s.SetBatchHooks(BatchHooks{Begin: func() { begins.Add(1) }, End: func() { ends.Add(1) }})

	s.Enter()
	var stored atomic.Int32
	for i := range 3 {
		s.Put(fmt.Appendf(nil, "k%d", i), []byte("v"), DoneFunc(func(err error) {
			if err != nil {
				t.Error(err)
			}
			stored.Add(1)
		}))
	}
	// Inside the stretch nothing is written: the committer was not woken.
	time.Sleep(20 * time.Millisecond)
	if n := stored.Load(); n != 0 {
		t.Fatalf("%d callbacks ran inside the stretch", n)
	}
	s.Leave()
	if n := stored.Load(); n != 3 {
		t.Fatalf("after Leave: %d callbacks, want 3", n)
	}
	if b, e := begins.Load(), ends.Load(); b != 1 || e != 1 {
		t.Fatalf("batch hooks: %d begins, %d ends; want one batch", b, e)
	}
	if st := s.Stats(); st.Batches != 1 || st.Records != 3 || st.Fsyncs != 0 {
		t.Fatalf("stats %+v: want one batch of 3 records and no fsync", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	if m := contents(t, s); len(m) != 3 {
		t.Fatalf("reopened: %v", m)
	}
}

// A write from a goroutine outside any stretch still wakes the committer,
// and one queued from elsewhere while a stretch is open is written by
// that stretch's Leave.
func TestWritesOutsideStretch(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	defer s.Close()
	put(t, s, "alone", "v") // no stretch: the committer
	// The committer runs the callback before it looks for more to write:
	// wait until it has looked, or it would take the next record itself.
	for {
		s.mu.Lock()
		busy := s.committing
		s.mu.Unlock()
		if !busy {
			break
		}
		time.Sleep(time.Millisecond)
	}

	s.Enter()
	ch := make(chan error, 1)
	go s.Put([]byte("other"), []byte("v"), DoneFunc(func(err error) { ch <- err }))
	select {
	case <-ch:
		t.Fatal("written while a stretch was open: the committer was woken")
	case <-time.After(20 * time.Millisecond):
	}
	s.Leave()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stretch's Leave did not write what another goroutine queued")
	}
}

// With fsync, Enter and Leave change nothing: the committer writes (an
// fsync on a reader would hold up every message behind it).
func TestStretchWithFsyncUsesCommitter(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	s.Enter()
	ch := make(chan error, 1)
	s.Put([]byte("k"), []byte("v"), DoneFunc(func(err error) { ch <- err }))
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("with fsync a write inside a stretch must not wait for Leave")
	}
	s.Leave()
	if st := s.Stats(); st.Fsyncs == 0 {
		t.Fatalf("stats %+v: no fsync", st)
	}
}

// Many readers in and out of stretches, writers outside them, and Close in
// the middle: every callback runs exactly once, every acknowledged record
// is on disk, and nothing hangs (run with -race).
func TestStretchesConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{NoSync: true, CompactAt: 4 << 10})
	var acked sync.Map
	var calls atomic.Int64
	var wg sync.WaitGroup
	const readers, outside, per = 4, 2, 300
	// write puts k and records its callback.
	write := func(k string) {
		s.Put([]byte(k), []byte(k), DoneFunc(func(err error) {
			calls.Add(1)
			if err == nil {
				acked.Store(k, true)
			}
		}))
	}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				s.Enter()
				for j := range 1 + i%3 {
					write(fmt.Sprintf("r%d-%d-%d", r, i, j))
				}
				s.Leave()
			}
		}()
	}
	for o := range outside {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				write(fmt.Sprintf("o%d-%d", o, i))
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	wg.Wait()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung")
	}
	want := int64(outside * per)
	for i := range per {
		want += int64(readers * (1 + i%3))
	}
	if n := calls.Load(); n != want {
		t.Fatalf("%d callbacks, want %d (each exactly once)", n, want)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	m := contents(t, s)
	acked.Range(func(k, _ any) bool {
		if m[k.(string)] != k.(string) {
			t.Errorf("acknowledged %q lost", k)
		}
		return true
	})
}
