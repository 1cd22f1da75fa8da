package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func open(t testing.TB, dir string, opt Options) *Store {
	t.Helper()
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func putSync(t testing.TB, s *Store, k, v string) {
	ch := make(chan error, 1)
	s.Put(k, []byte(v), func(err error) { ch <- err })
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

func contents(s *Store) map[string]string {
	m := map[string]string{}
	s.Load(func(k string, v []byte) error { m[k] = string(v); return nil })
	return m
}

func TestPutDeleteReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	putSync(t, s, "a", "1")
	putSync(t, s, "b", "2")
	putSync(t, s, "a", "3")
	s.Delete("b", nil)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{})
	defer s.Close()
	if got := fmt.Sprint(contents(s)); got != "map[a:3]" {
		t.Fatalf("after reopen: %s", got)
	}
}

// TestGroupCommit: concurrent Puts share fsyncs, and each done runs only
// after its record is durable.
func TestGroupCommit(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	const n = 2000
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ch := make(chan error, 1)
			s.Put(fmt.Sprint("k", i), []byte("v"), func(err error) { ch <- err })
			if err := <-ch; err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	st := s.Stats()
	if st.Fsyncs == 0 || st.Fsyncs > n/4 {
		t.Fatalf("%d fsyncs for %d concurrent puts: no group commit", st.Fsyncs, n)
	}
	t.Logf("%d puts, %d fsyncs, last fsync %v", n, st.Fsyncs, st.LastFsync)
}

// TestTornTail: a crash mid-write leaves a partial last record; reopening
// keeps every complete record and cuts the rest, at every cut point.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	putSync(t, s, "first", "1")
	putSync(t, s, "second", "2")
	s.Close()
	wal, _ := os.ReadFile(filepath.Join(dir, "wal"))
	last := len(appendRecord(nil, recPut, "second", []byte("2")))
	for cut := len(wal) - last; cut < len(wal); cut++ {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, "wal"), wal[:cut], 0o640)
		s := open(t, d, Options{})
		if got := fmt.Sprint(contents(s)); got != "map[first:1]" {
			t.Fatalf("cut at %d: %s", cut, got)
		}
		putSync(t, s, "third", "3") // the log is usable after the cut
		s.Close()
		s = open(t, d, Options{})
		if got := fmt.Sprint(contents(s)); got != "map[first:1 third:3]" {
			t.Fatalf("cut at %d, after append: %s", cut, got)
		}
		s.Close()
	}
	// A flipped byte inside the last record is caught by the CRC.
	bad := append([]byte(nil), wal...)
	bad[len(bad)-1] ^= 0xff
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "wal"), bad, 0o640)
	s = open(t, d, Options{})
	defer s.Close()
	if got := fmt.Sprint(contents(s)); got != "map[first:1]" {
		t.Fatalf("corrupt tail: %s", got)
	}
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{CompactAt: 4096})
	for i := 0; i < 500; i++ {
		putSync(t, s, fmt.Sprint("k", i%10), fmt.Sprint("value-", i))
	}
	st := s.Stats()
	s.Close()
	if st.Compactions == 0 || st.LogBytes > 8192 {
		t.Fatalf("no compaction: %+v", st)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	c := contents(s)
	if len(c) != 10 || c["k9"] != "value-499" || c["k0"] != "value-490" {
		t.Fatalf("after compaction: %v", c)
	}
}

func TestReopen100k(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{NoSync: true})
	val := []byte(strings.Repeat("x", 200))
	for i := 0; i < 100000; i++ {
		s.Put(fmt.Sprint("sip:user", i, "@example.com"), val, nil)
	}
	s.Sync()
	s.Close()
	start := time.Now()
	s = open(t, dir, Options{})
	d := time.Since(start)
	defer s.Close()
	if s.Len() != 100000 {
		t.Fatalf("%d records", s.Len())
	}
	t.Logf("reopen with 100000 records: %v", d)
	if d > 2*time.Second {
		t.Fatalf("reopen took %v", d)
	}
}

// TestKill9: a child process writes records and prints each key once its
// done callback ran; the parent SIGKILLs it mid-stream. Every printed
// (acknowledged) key must be there after reopening.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("STORE_CHILD_DIR"); dir != "" {
		s, err := Open(dir, Options{})
		if err != nil {
			os.Exit(3)
		}
		w := bufio.NewWriter(os.Stdout)
		var mu sync.Mutex
		for i := 0; ; i++ {
			k := fmt.Sprint("key", i)
			s.Put(k, []byte("v"), func(err error) {
				if err == nil {
					mu.Lock()
					fmt.Fprintln(w, k)
					w.Flush()
					mu.Unlock()
				}
			})
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "STORE_CHILD_DIR="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var acked []string
	for sc.Scan() {
		acked = append(acked, sc.Text())
		if len(acked) == 3000 {
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	for sc.Scan() { // lines already written before the kill
		acked = append(acked, sc.Text())
	}
	cmd.Wait()
	s := open(t, dir, Options{})
	defer s.Close()
	c := contents(s)
	for _, k := range acked {
		if _, ok := c[k]; !ok {
			t.Fatalf("acknowledged %s lost after kill -9 (%d acknowledged, %d stored)", k, len(acked), len(c))
		}
	}
	t.Logf("%d acknowledged, %d stored after kill -9", len(acked), len(c))
}
