package store

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, dir string, opt Options) *Store {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = quiet
	}
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// put writes one record and waits for its callback.
func put(t testing.TB, s *Store, k, v string) {
	t.Helper()
	ch := make(chan error, 1)
	s.Put([]byte(k), []byte(v), DoneFunc(func(err error) { ch <- err }))
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

func contents(t testing.TB, s *Store) map[string]string {
	t.Helper()
	m := map[string]string{}
	if err := s.Load(func(k, v []byte) error { m[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// logFile returns the path of the single log in dir.
func logFile(t testing.TB, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "wal-*"))
	if len(m) != 1 {
		t.Fatalf("logs in %s: %v", dir, m)
	}
	return m[0]
}

func TestPutDeleteReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	put(t, s, "a", "1")
	put(t, s, "b", "2")
	put(t, s, "a", "3")
	put(t, s, "empty", "")
	s.Delete([]byte("b"), nil)
	s.Delete([]byte("never-there"), nil)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "3", "empty": ""}
	if got := contents(t, s); !maps.Equal(got, want) {
		t.Fatalf("before reopen: %v", got)
	}
	if st := s.Stats(); st.Keys != 2 || st.Records != 6 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	// After Close: callbacks get ErrClosed at once.
	var got error
	s.Put([]byte("x"), nil, DoneFunc(func(err error) { got = err }))
	if got != ErrClosed || s.Sync() != ErrClosed {
		t.Fatalf("after Close: %v", got)
	}

	s = open(t, dir, Options{})
	defer s.Close()
	if got := contents(t, s); !maps.Equal(got, want) {
		t.Fatalf("after reopen: %v", got)
	}
	if st := s.Stats(); st.Keys != 2 {
		t.Fatalf("keys after reopen: %+v", st)
	}
}

// TestLocked: a second Open of the same directory fails instead of
// interleaving two logs.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	defer s.Close()
	if s2, err := Open(dir, Options{Logger: quiet}); err == nil {
		s2.Close()
		t.Fatal("second Open of a store in use succeeded")
	}
}

// TestGroupCommit: N concurrent Puts share far fewer than N fsyncs, and
// every done runs only after the fsync that covers its record. The fsync
// hook reads back the log after each fsync, so "covered" is checked
// against the bytes actually in the file, not against counters.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	durable := map[string]bool{}
	var syncs atomic.Int64
	hook := func(f *os.File) error {
		if err := f.Sync(); err != nil {
			return err
		}
		syncs.Add(1)
		b, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		r := &reader{r: bufio.NewReader(bytes.NewReader(b)), left: int64(len(b))}
		mu.Lock()
		for {
			_, k, _, ok := r.next()
			if !ok {
				break
			}
			durable[string(k)] = true
		}
		mu.Unlock()
		return nil
	}
	s := open(t, dir, Options{syncFile: hook})
	defer s.Close()
	const n = 2000
	var wg sync.WaitGroup
	var early atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := "k" + strconv.Itoa(i)
			ch := make(chan error, 1)
			s.Put([]byte(k), []byte("v"), DoneFunc(func(err error) {
				mu.Lock()
				if !durable[k] {
					early.Add(1)
				}
				mu.Unlock()
				ch <- err
			}))
			if err := <-ch; err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if early.Load() != 0 {
		t.Fatalf("%d callbacks ran before their record was fsynced", early.Load())
	}
	if st.Fsyncs == 0 || st.Fsyncs > n/10 || int64(st.Fsyncs) != syncs.Load() {
		t.Fatalf("%d fsyncs for %d concurrent puts: no group commit", st.Fsyncs, n)
	}
	t.Logf("%d concurrent puts: %d batches, %d fsyncs, last fsync %v", n, st.Batches, st.Fsyncs, st.LastFsync)

	// With no batching delay, records that arrive during an fsync still
	// share the next one.
	s2 := open(t, t.TempDir(), Options{SyncInterval: -1})
	defer s2.Close()
	var wg2 sync.WaitGroup
	for i := range n {
		wg2.Add(1)
		s2.Put([]byte(strconv.Itoa(i)), nil, DoneFunc(func(error) { wg2.Done() }))
	}
	wg2.Wait()
	if st := s2.Stats(); st.Fsyncs >= n {
		t.Fatalf("SyncInterval<0: %d fsyncs for %d puts", st.Fsyncs, n)
	}
}

// TestFsyncFailure: a failed fsync fails the batch's callbacks, and every
// later write is refused with the same error (the file's state is unknown
// after a failed fsync); Close reports it; reopening works.
func TestFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	s := open(t, dir, Options{syncFile: func(f *os.File) error {
		if fail.Load() {
			return fmt.Errorf("injected EIO")
		}
		return f.Sync()
	}})
	put(t, s, "a", "1")
	fail.Store(true)
	ch := make(chan error, 1)
	s.Put([]byte("b"), []byte("2"), DoneFunc(func(err error) { ch <- err }))
	if err := <-ch; err == nil || !strings.Contains(err.Error(), "injected EIO") {
		t.Fatalf("failed fsync reported as %v", err)
	}
	fail.Store(false)
	var later error
	s.Put([]byte("c"), []byte("3"), DoneFunc(func(err error) { later = err }))
	if later == nil || s.Sync() == nil {
		t.Fatal("writes accepted after a failed fsync")
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close hid the failure")
	}
	s = open(t, dir, Options{})
	defer s.Close()
	if got := contents(t, s); got["a"] != "1" || got["c"] != "" {
		t.Fatalf("after reopen: %v", got)
	}
}

// TestTornTail simulates kill -9 during a write: the log is cut at every
// offset inside its last record, or the record is corrupted; reopening
// keeps every complete record, drops the partial one, and the log is
// usable afterwards.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	put(t, s, "first", "1")
	put(t, s, "second", strings.Repeat("2", 300)) // long enough for a multi-byte length
	s.Delete([]byte("first"), nil)
	put(t, s, "last", "3")
	s.Close()
	wal, err := os.ReadFile(logFile(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	lastLen := len(appendRecord(nil, recPut, "last", []byte("3")))
	complete := map[string]string{"second": strings.Repeat("2", 300)}
	check := func(name string, data []byte) {
		t.Helper()
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "wal-0000000000000001"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		s := open(t, d, Options{NoSync: true})
		if got := contents(t, s); !maps.Equal(got, complete) {
			t.Fatalf("%s: %v", name, got)
		}
		put(t, s, "after", "4")
		s.Close()
		s = open(t, d, Options{NoSync: true})
		defer s.Close()
		want := maps.Clone(complete)
		want["after"] = "4"
		if got := contents(t, s); !maps.Equal(got, want) {
			t.Fatalf("%s, after an append: %v", name, got)
		}
	}
	for cut := len(wal) - lastLen; cut < len(wal); cut++ {
		check(fmt.Sprintf("cut at %d of %d", cut, len(wal)), wal[:cut])
	}
	for i := len(wal) - lastLen; i < len(wal); i++ {
		bad := bytes.Clone(wal)
		bad[i] ^= 0x5a
		check(fmt.Sprintf("byte %d flipped", i), bad)
	}
	// A crash can also leave zeros (blocks allocated, data not written).
	check("zero tail", append(wal[:len(wal)-lastLen:len(wal)-lastLen], make([]byte, 100)...))
}

// TestCompaction: snapshots keep the data, the log shrinks, and Puts and
// Deletes made while a snapshot is written (the overlay) are kept.
func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{CompactAt: 4096, NoSync: true})
	model := map[string]string{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		k := "k" + strconv.Itoa(rng.IntN(300))
		if rng.IntN(4) == 0 {
			s.Delete([]byte(k), nil)
			delete(model, k)
		} else {
			v := fmt.Sprint("value-", i)
			s.Put([]byte(k), []byte(v), nil)
			model[k] = v
		}
		if i%100 == 0 {
			// Small batches, as under real load: compaction is decided
			// between batches, so one huge batch would stay in the log.
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if i%1000 == 0 {
			if got := contents(t, s); !maps.Equal(got, model) {
				t.Fatalf("op %d: live set differs from the model", i)
			}
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, s); !maps.Equal(got, model) {
		t.Fatal("live set differs from the model")
	}
	// A snapshot still being written when the loop ends lets the log grow
	// meanwhile; keep writing (a rewrite of one key) until the compaction
	// after it has run, however slow the machine is.
	for deadline := time.Now().Add(20 * time.Second); s.Stats().LogBytes > 32<<10 && time.Now().Before(deadline); {
		s.Put([]byte("k0"), []byte(model["k0"]), nil)
		if _, ok := model["k0"]; !ok {
			s.Delete([]byte("k0"), nil)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := s.Stats()
	s.Close()
	if st.Compactions == 0 {
		t.Fatalf("no compaction: %+v", st)
	}
	var logSize int64
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		if strings.Contains(f, "wal-") {
			fi, _ := os.Stat(f)
			logSize += fi.Size()
		}
	}
	if logSize > int64(st.Bytes)/10 {
		t.Fatalf("log not shrunk: %d bytes on disk of %d written (%v)", logSize, st.Bytes, files)
	}
	t.Logf("%d compactions, %d bytes written, %d left in the log, files %v", st.Compactions, st.Bytes, logSize, files)
	s = open(t, dir, Options{})
	defer s.Close()
	if got := contents(t, s); !maps.Equal(got, model) {
		t.Fatalf("after reopen: %d keys, want %d", len(got), len(model))
	}
}

// TestSnapshotDoesNotBlock: while a snapshot is being written (held here
// by a hook), Puts and Deletes keep being written, fsynced and
// acknowledged from the new log generation; the overlay is folded in
// afterwards.
func TestSnapshotDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	hold, started := make(chan struct{}), make(chan struct{}, 1)
	s := open(t, dir, Options{CompactAt: 1 << 16, beforeSnapshot: func() {
		started <- struct{}{}
		<-hold
	}})
	model := map[string]string{}
	val := strings.Repeat("v", 100)
	for i := 0; len(started) == 0; i++ {
		k := "k" + strconv.Itoa(i%500)
		s.Put([]byte(k), []byte(val), nil)
		model[k] = val
		if i%100 == 0 {
			s.Sync()
		}
	}
	// The snapshot writer is stuck; the store must carry on.
	for i := range 300 {
		k := "k" + strconv.Itoa(i)
		if i%3 == 0 {
			ch := make(chan error, 1)
			s.Delete([]byte(k), DoneFunc(func(err error) { ch <- err }))
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
			delete(model, k)
		} else {
			put(t, s, k, "during")
			model[k] = "during"
		}
	}
	put(t, s, "new-key", "x")
	model["new-key"] = "x"
	if got := contents(t, s); !maps.Equal(got, model) {
		t.Fatal("live set during the snapshot differs from the model")
	}
	if st := s.Stats(); st.Compactions != 0 || st.Keys != len(model) {
		t.Fatalf("during the snapshot: %+v", st)
	}
	close(hold)
	s.Close()
	if st := s.Stats(); st.Compactions != 1 {
		t.Fatalf("after: %+v", st)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	if got := contents(t, s); !maps.Equal(got, model) {
		t.Fatal("after reopen: differs from the model")
	}
}

// TestCrashDuringCompaction: the process dies after the switch to a new
// log and before the snapshot is renamed into place (a leftover .tmp and
// two logs); reopening replays the older snapshot and both logs.
func TestCrashDuringCompaction(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{NoSync: true})
	put(t, s, "a", "1")
	put(t, s, "b", "2")
	s.Close()
	// Generation 1 holds a and b; pretend a switch to generation 2
	// happened and the snapshot was half written.
	rec := appendRecord(nil, recDel, "a", nil)
	rec = appendRecord(rec, recPut, "c", []byte("3"))
	os.WriteFile(filepath.Join(dir, "wal-0000000000000002"), rec, 0o640)
	os.WriteFile(filepath.Join(dir, "snap-0000000000000002.tmp"), []byte("partial"), 0o640)
	s = open(t, dir, Options{NoSync: true})
	if got := contents(t, s); !maps.Equal(got, map[string]string{"b": "2", "c": "3"}) {
		t.Fatalf("got %v", got)
	}
	put(t, s, "d", "4")
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "snap-0000000000000002.tmp")); err == nil {
		t.Fatal("temp snapshot not removed")
	}
	s = open(t, dir, Options{NoSync: true})
	defer s.Close()
	if got := contents(t, s); !maps.Equal(got, map[string]string{"b": "2", "c": "3", "d": "4"}) {
		t.Fatalf("got %v", got)
	}
}

// fill100k writes 100 000 registrar-sized records and closes the store.
func fill100k(t testing.TB, dir string) {
	s := open(t, dir, Options{NoSync: true})
	val := bytes.Repeat([]byte("x"), 200)
	for i := range 100000 {
		s.Put([]byte("sip:user"+strconv.Itoa(i)+"@example.com"), val, nil)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReopen100k(t *testing.T) {
	dir := t.TempDir()
	fill100k(t, dir)
	start := time.Now()
	s := open(t, dir, Options{})
	d := time.Since(start)
	defer s.Close()
	if n := s.Stats().Keys; n != 100000 {
		t.Fatalf("%d keys after reopen", n)
	}
	t.Logf("reopen with 100000 records (%d log bytes): %v", s.Stats().LogBytes, d)
	if d > 2*time.Second {
		t.Fatalf("reopen took %v", d)
	}
}

func BenchmarkReopen100k(b *testing.B) {
	dir := b.TempDir()
	fill100k(b, dir)
	for b.Loop() {
		s := open(b, dir, Options{NoSync: true})
		s.Close()
	}
}

// BenchmarkPut: 64 concurrent writers, each waiting for its callback (as
// REGISTER handlers do); records/batch shows the group commit.
func BenchmarkPut(b *testing.B) {
	for _, bc := range []struct {
		name string
		opt  Options
	}{
		{"fsync", Options{}},
		{"fsync-nodelay", Options{SyncInterval: -1}},
		{"nosync", Options{NoSync: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := open(b, b.TempDir(), bc.opt)
			defer s.Close()
			val := bytes.Repeat([]byte("x"), 200)
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				key := make([]byte, 0, 32)
				done := make(chan error, 1)
				cb := func(err error) { done <- err }
				for pb.Next() {
					key = strconv.AppendInt(append(key[:0], "sip:user"...), n.Add(1)%100000, 10)
					s.Put(key, val, DoneFunc(cb))
					if err := <-done; err != nil {
						b.Error(err)
						return
					}
				}
			})
			st := s.Stats()
			b.ReportMetric(float64(st.Records)/float64(max(st.Batches, 1)), "records/batch")
			b.ReportMetric(float64(st.LastFsync.Microseconds()), "µs/fsync")
		})
	}
}

// TestKill9 runs a child process (this test binary, re-executed) that
// writes records and prints each one once its done callback ran, SIGKILLs
// it mid-stream, and checks that every printed, hence acknowledged, write
// survived. In the "overwrite" case a few hundred keys are rewritten over
// and over with a tiny CompactAt, so the kill lands among generation
// switches and snapshots; each key must then hold a value at least as new
// as the last one acknowledged for it.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("SIPEDGE_STORE_CHILD"); dir != "" {
		kill9Child(dir)
		return
	}
	if testing.Short() {
		t.Skip("subprocess test")
	}
	for _, mode := range []string{"unique", "overwrite"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SIPEDGE_STORE_CHILD="+dir, "SIPEDGE_STORE_MODE="+mode)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(out)
			acked := map[string]int{} // key → highest acknowledged sequence
			n, killed := 0, false
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					break // EOF; a partial last line is not an acknowledgement
				}
				k, seq, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
				v, _ := strconv.Atoi(seq)
				acked[k] = max(acked[k], v)
				if n++; n == 20000 && !killed {
					cmd.Process.Signal(syscall.SIGKILL)
					killed = true
				}
			}
			cmd.Wait()
			if !killed {
				t.Fatalf("child ended on its own after %d acknowledgements", n)
			}
			s := open(t, dir, Options{})
			defer s.Close()
			got := contents(t, s)
			for k, seq := range acked {
				v, ok := got[k]
				stored, _ := strconv.Atoi(v)
				if !ok || stored < seq {
					t.Fatalf("acknowledged %s=%d lost after kill -9 (stored %q; %d writes acknowledged, %d keys stored)", k, seq, v, n, len(got))
				}
			}
			files, _ := os.ReadDir(dir)
			var names []string
			for _, f := range files {
				names = append(names, f.Name())
			}
			t.Logf("%d writes acknowledged, %d keys stored after kill -9; files %v", n, len(got), names)
		})
	}
}

func kill9Child(dir string) {
	overwrite := os.Getenv("SIPEDGE_STORE_MODE") == "overwrite"
	opt := Options{Logger: quiet}
	if overwrite {
		opt.CompactAt = 16 << 10
	}
	s, err := Open(dir, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	time.AfterFunc(60*time.Second, func() { os.Exit(4) }) // never outlive a lost parent
	w := bufio.NewWriter(os.Stdout)
	for g := range 16 {
		go func() {
			// Each goroutine owns its keys and waits for each callback, so
			// the writes of one key reach the log in sequence order.
			for seq := 1; ; seq++ {
				k := "key" + strconv.Itoa(g) + "-" + strconv.Itoa(seq)
				if overwrite {
					k = "key" + strconv.Itoa(g) + "-" + strconv.Itoa(seq%20)
				}
				v := strconv.Itoa(seq)
				done := make(chan struct{})
				s.Put([]byte(k), []byte(v), DoneFunc(func(err error) {
					if err == nil {
						// Callbacks run one at a time on the committer.
						w.WriteString(k + " " + v + "\n")
						w.Flush()
					}
					close(done)
				}))
				<-done
			}
		}()
	}
	select {}
}

// TestOwnerSnapshots: once an owner takes the live set (Own), the store
// keeps no copy of the records; snapshots come from the owner's dump while
// Puts and Deletes go on, and a reopened store holds exactly the owner's
// state.
func TestOwnerSnapshots(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{CompactAt: 4096, NoSync: true})
	var mu sync.Mutex
	model := map[string]string{}
	if got := contents(t, s); len(got) != 0 {
		t.Fatalf("new store holds %d records", len(got))
	}
	dumps := 0
	s.Own(func(emit func(k, v []byte) error) error {
		mu.Lock()
		defer mu.Unlock()
		dumps++
		for k, v := range model {
			if err := emit([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 20000 {
		k := "k" + strconv.Itoa(rng.IntN(300))
		// As the registrar does: the owner's state changes first, then the
		// record is queued (under the owner's lock).
		mu.Lock()
		if rng.IntN(4) == 0 {
			delete(model, k)
			s.Delete([]byte(k), nil)
		} else {
			v := fmt.Sprint("value-", i)
			model[k] = v
			s.Put([]byte(k), []byte(v), nil)
		}
		mu.Unlock()
		if i%100 == 0 {
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	copies := len(s.live) + len(s.frozen)
	s.mu.Unlock()
	st := s.Stats()
	s.Close()
	if st.Compactions == 0 || dumps == 0 {
		t.Fatalf("no snapshot from the owner: %d dumps, %+v", dumps, st)
	}
	if copies != 0 {
		t.Errorf("the store still holds %d records of its own", copies)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	if got := contents(t, s); !maps.Equal(got, model) {
		t.Fatalf("after reopen: %d keys, want %d", len(got), len(model))
	}
}
