package cluster

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sipedge/registrar"
	"sipedge/store"
)

// The tests run against a real redis-server (Debian's), started here.

type redisProc struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(t *testing.T) *redisProc {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not installed (apt-get install redis-server)")
		}
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &redisProc{t: t, port: port, dir: t.TempDir()}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisProc) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", "")
	out, _ := r.cmd.StdoutPipe()
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	ready := make(chan struct{})
	r.done = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		var once sync.Once
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() { r.cmd.Wait(); close(r.done) }()
	select {
	case <-ready:
	case <-r.done:
		r.t.Fatal("redis-server exited")
	case <-time.After(10 * time.Second):
		r.t.Fatal("redis-server did not start")
	}
}

func (r *redisProc) kill() {
	if r.cmd != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		<-r.done
	}
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t *testing.T, r *redisProc, node string) *Cluster {
	t.Helper()
	c, err := Open(Config{Addrs: []string{r.addr()}, Node: node, Prefix: "t:", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// target records the records installed.
type target struct {
	mu  sync.Mutex
	got map[string]string
	n   int
	ch  chan string
}

func newTarget() *target { return &target{got: map[string]string{}, ch: make(chan string, 100)} }

func (t *target) Replace(key, val []byte) error {
	t.mu.Lock()
	t.got[string(key)] = string(val)
	t.n++
	t.mu.Unlock()
	select {
	case t.ch <- string(key):
	default:
	}
	return nil
}

func (t *target) Forget(keep func(string) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k := range t.got {
		if !keep(k) {
			delete(t.got, k)
			n++
		}
	}
	return n
}

func (t *target) get(k string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.got[k]
	return v, ok
}

// put writes through l and waits for the result.
func put(t *testing.T, l *Locations, key, val string) error {
	t.Helper()
	ch := make(chan error, 1)
	if val == "" {
		l.Delete([]byte(key), store.DoneFunc(func(err error) { ch <- err }))
	} else {
		l.Put([]byte(key), []byte(val), store.DoneFunc(func(err error) { ch <- err }))
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("write not acknowledged within 5 s")
		return nil
	}
}

// TestLocationsShared: a write on one instance is installed on the other
// within 50 ms and not echoed back; a removal travels as an empty record;
// an instance started later loads what is in Redis.
func TestLocationsShared(t *testing.T) {
	r := startRedis(t)
	c1, c2 := open(t, r, "127.0.0.2:5060"), open(t, r, "127.0.0.3:5060")
	l1, l2 := c1.Locations(time.Hour), c2.Locations(time.Hour)
	t1, t2 := newTarget(), newTarget()
	l1.Bind(t1)
	l2.Bind(t2)
	c1.Start()
	c2.Start()

	key, val := "sip:alice@example.com", "\x03\x01binary\x00record"
	begin := time.Now()
	if err := put(t, l1, key, val); err != nil {
		t.Fatal(err)
	}
	select {
	case <-t2.ch:
	case <-time.After(time.Second):
		t.Fatal("not installed on the other instance")
	}
	if d := time.Since(begin); d > 50*time.Millisecond {
		t.Errorf("installed on the other instance after %v, want within 50 ms", d)
	}
	if v, _ := t2.get(key); v != val {
		t.Fatalf("installed %q, want %q", v, val)
	}
	time.Sleep(100 * time.Millisecond)
	if t1.n != 0 {
		t.Fatalf("the writer installed its own write again (echo): %d", t1.n)
	}
	if err := put(t, l1, key, ""); err != nil {
		t.Fatal(err)
	}
	<-t2.ch
	if v, ok := t2.get(key); !ok || v != "" {
		t.Fatalf("removal installed as %q %v", v, ok)
	}
	if err := put(t, l2, "sip:bob@example.com", "bob"); err != nil {
		t.Fatal(err)
	}
	c3 := open(t, r, "127.0.0.4:5060")
	l3 := c3.Locations(time.Hour)
	loaded := map[string]string{}
	if err := l3.Load(func(k, v []byte) error { loaded[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded["sip:bob@example.com"] != "bob" {
		t.Fatalf("loaded %q (a removed AoR must not load)", loaded)
	}
	// An install is visible before it is counted: await the counters.
	waitFor(t, 3*time.Second, "c2 counts two installs, one write and a peer", func() bool {
		s := c2.Stats()
		return s.Remote == 2 && s.Writes == 1 && s.Peers >= 1
	})
	if s := c2.Stats(); s.Remote != 2 || s.Writes != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestLocationsOrder: writes of one AoR from two instances at once end up
// the same everywhere: the one Redis ordered last. The writers are driven
// by hand so the interleavings are exact.
func TestLocationsOrder(t *testing.T) {
	r := startRedis(t)
	c1, c2 := open(t, r, "127.0.0.2:5060"), open(t, r, "127.0.0.3:5060")
	l1, l2 := c1.Locations(time.Hour), c2.Locations(time.Hour)
	t1 := newTarget()
	l1.Bind(t1)
	key := "sip:carol@example.com"
	// take runs what l has queued, as its writer would.
	take := func(l *Locations) {
		l.mu.Lock()
		b := append([]op(nil), l.queue...)
		l.queue = l.queue[:0]
		l.mu.Unlock()
		l.write(b)
	}
	// msg is a batch message with one write: batch g.
	msg := func(node string, g int, val string) string {
		k := "t:aor:" + key
		return strconv.Itoa(g) + " " + node + "\n" + strconv.Itoa(len(k)) + " " + k + " " + strconv.Itoa(len(val)) + " " + val
	}

	// 1. c1 applied its own write to memory and queued it; c2's write
	// reaches Redis first (version 1) and its message reaches c1 while
	// c1's is on the way; c1's then gets version 2: memory must hold
	// c1's again (put back).
	l1.Put([]byte(key), []byte("mine-1"), nil)
	l2.Put([]byte(key), []byte("theirs-1"), nil)
	take(l2)
	l1.remote(msg("127.0.0.3:5060", 1, "theirs-1"))
	if v, _ := t1.get(key); v != "theirs-1" {
		t.Fatalf("remote write not installed: %q", v)
	}
	take(l1)
	if v, _ := t1.get(key); v != "mine-1" {
		t.Fatalf("after its own later write, memory holds %q, want mine-1", v)
	}
	// 2. c2's message of version 1 arrives again late (after c1's
	// version 2): ignored.
	l1.remote(msg("127.0.0.3:5060", 1, "theirs-1"))
	if v, _ := t1.get(key); v != "mine-1" {
		t.Fatalf("a stale write was installed: %q", v)
	}
	// 3. c2 writes after c1 (version 3): installed.
	l2.Put([]byte(key), []byte("theirs-3"), nil)
	take(l2)
	l1.remote(msg("127.0.0.3:5060", 3, "theirs-3"))
	if v, _ := t1.get(key); v != "theirs-3" {
		t.Fatalf("a newer write was not installed: %q", v)
	}
	if s := c1.Stats(); s.PutBack != 1 || s.Stale != 1 || s.Remote != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestRedisDown: while Redis is down a write fails with
// registrar.ErrUnavailable (REGISTER 503) and Available turns false; when
// it is back, writes succeed again (the script is loaded again: Redis
// lost its script cache).
func TestRedisDown(t *testing.T) {
	r := startRedis(t)
	c := open(t, r, "127.0.0.2:5060")
	l := c.Locations(time.Hour)
	l.Bind(newTarget())
	c.Start()
	if err := put(t, l, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	r.kill()
	if err := put(t, l, "k", "v2"); !errors.Is(err, registrar.ErrUnavailable) {
		t.Fatalf("write with Redis down: %v", err)
	}
	if c.Available() {
		t.Fatal("still available")
	}
	r.start()
	deadline := time.Now().Add(5 * time.Second)
	for !c.Available() {
		if time.Now().After(deadline) {
			t.Fatal("not available again within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := put(t, l, "k", "v3"); err != nil {
		t.Fatalf("write after Redis came back: %v", err)
	}
}

type guardRec struct {
	mu      sync.Mutex
	imposed []string
	lifted  []string
}

func (g *guardRec) Impose(a netip.Addr, reason string, until time.Time) {
	g.mu.Lock()
	g.imposed = append(g.imposed, a.String()+" "+reason)
	g.mu.Unlock()
}

func (g *guardRec) LiftShared(p netip.Prefix) int {
	g.mu.Lock()
	g.lifted = append(g.lifted, p.String())
	g.mu.Unlock()
	return 1
}

func (g *guardRec) snapshot() ([]string, []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.imposed...), append([]string(nil), g.lifted...)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBansShared: a ban published by one instance is imposed by the other
// within a second (not by itself); an instance started later loads it; a
// lift travels too and removes it from the hash.
func TestBansShared(t *testing.T) {
	r := startRedis(t)
	c1, c2 := open(t, r, "127.0.0.2:5060"), open(t, r, "127.0.0.3:5060")
	g1, g2 := &guardRec{}, &guardRec{}
	b1 := c1.Bans(g1)
	c2.Bans(g2)
	c1.Start()
	c2.Start()
	src := netip.MustParsePrefix("203.0.113.9/32")
	b1.Publish(false, src, "rate", time.Now().Add(time.Minute))
	waitFor(t, time.Second, "ban on the other instance", func() bool { i, _ := g2.snapshot(); return len(i) == 1 })
	if i, _ := g2.snapshot(); i[0] != "203.0.113.9 rate" {
		t.Fatalf("imposed %q", i)
	}
	if i, _ := g1.snapshot(); len(i) != 0 {
		t.Fatalf("the banning instance imposed its own ban again: %q", i)
	}
	c3 := open(t, r, "127.0.0.4:5060")
	g3 := &guardRec{}
	c3.Bans(g3)
	c3.Start()
	if i, _ := g3.snapshot(); len(i) != 1 {
		t.Fatalf("a new instance loaded %q", i)
	}
	b1.Publish(true, netip.MustParsePrefix("203.0.113.0/24"), "", time.Time{})
	waitFor(t, time.Second, "lift on the other instance", func() bool { _, l := g2.snapshot(); return len(l) == 1 })
	c4 := open(t, r, "127.0.0.5:5060")
	g4 := &guardRec{}
	c4.Bans(g4)
	c4.Start()
	if i, _ := g4.snapshot(); len(i) != 0 {
		t.Fatalf("a lifted ban was loaded: %q", i)
	}
}

// TestNodes: instances see each other within a heartbeat, trust each
// other's address, share one secret, and one that leaves is gone at once.
func TestNodes(t *testing.T) {
	r := startRedis(t)
	c1 := open(t, r, "127.0.0.2:5060")
	s1, err := c1.Secret([]byte("secret-of-the-first-one"))
	if err != nil {
		t.Fatal(err)
	}
	c2 := open(t, r, "127.0.0.3:5060")
	s2, err := c2.Secret([]byte("another-secret-entirely"))
	if err != nil || string(s1) != string(s2) || string(s1) != "secret-of-the-first-one" {
		t.Fatalf("secrets %q %q %v", s1, s2, err)
	}
	c1.Start()
	c2.Start()
	waitFor(t, 3*time.Second, "peer seen", func() bool { _, ok := c1.Alive("127.0.0.3:5060"); return ok })
	if !c1.IsPeer(netip.MustParseAddr("127.0.0.3")) || c1.IsPeer(netip.MustParseAddr("127.0.0.2")) || c1.IsPeer(netip.MustParseAddr("127.0.0.9")) {
		t.Fatal("IsPeer")
	}
	c2.Close()
	waitFor(t, 3*time.Second, "peer gone", func() bool { _, ok := c1.Alive("127.0.0.3:5060"); return !ok })
}
