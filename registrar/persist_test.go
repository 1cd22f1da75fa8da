package registrar

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"sipedge/store"
	"sipedge/transport"
)

// memPersister is a Persister that keeps its records in a map: writes are
// queued and applied, in order, by one committer goroutine, which then
// tells done, as *store.Store does. A failed write makes it refuse every
// later one. It is what a Redis-backed Persister looks like to the
// registrar, minus the network.
type memPersister struct {
	mu   sync.Mutex // recs, dump
	recs map[string]string
	dump func(emit func(key, val []byte) error) error

	qmu    sync.Mutex // queue order, err, closed
	err    error      // refuse writes with this error
	closed bool
	ops    chan memOp
	wg     sync.WaitGroup
}

type memOp struct {
	del      bool
	key, val string
	done     store.Done
	synced   chan struct{} // a Sync marker, not a write
}

func newMemPersister() *memPersister {
	p := &memPersister{recs: map[string]string{}, ops: make(chan memOp, 1024)}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for op := range p.ops {
			if op.synced != nil {
				close(op.synced)
				continue
			}
			p.mu.Lock()
			if op.del {
				delete(p.recs, op.key)
			} else {
				p.recs[op.key] = op.val
			}
			p.mu.Unlock()
			if op.done != nil {
				op.done.Stored(nil)
			}
		}
	}()
	return p
}

func (p *memPersister) enqueue(op memOp) {
	p.qmu.Lock()
	err := p.err
	if p.closed {
		err = store.ErrClosed
	}
	if err == nil {
		p.ops <- op // under qmu: the queue order is the call order
	}
	p.qmu.Unlock()
	if err != nil && op.done != nil {
		op.done.Stored(err)
	}
}

func (p *memPersister) Put(key, val []byte, done store.Done) {
	p.enqueue(memOp{key: string(key), val: string(val), done: done})
}

func (p *memPersister) Delete(key []byte, done store.Done) {
	p.enqueue(memOp{del: true, key: string(key), done: done})
}

func (p *memPersister) Load(fn func(key, val []byte) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range p.recs {
		if err := fn([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

func (p *memPersister) Own(dump func(emit func(key, val []byte) error) error) {
	p.mu.Lock()
	p.dump = dump
	p.mu.Unlock()
}

// Sync waits until every write queued before it is applied.
func (p *memPersister) Sync() {
	ch := make(chan struct{})
	p.enqueue(memOp{synced: ch})
	<-ch
}

func (p *memPersister) Close() {
	p.qmu.Lock()
	if !p.closed {
		p.closed = true
		close(p.ops)
	}
	p.qmu.Unlock()
	p.wg.Wait()
}

func (p *memPersister) fail(err error) {
	p.qmu.Lock()
	p.err = err
	p.qmu.Unlock()
}

func (p *memPersister) snapshot() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.recs)
}

// dumped is what the owner's dump emits.
func (p *memPersister) dumped(t *testing.T) map[string]string {
	t.Helper()
	p.mu.Lock()
	dump := p.dump
	p.mu.Unlock()
	if dump == nil {
		t.Fatal("the registrar did not call Own")
	}
	out := map[string]string{}
	if err := dump(func(k, v []byte) error { out[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPersister runs the registrar on a Persister other than *store.Store:
// register, look up, restart on the same persister, bindings back; what
// the persister holds equals what the registrar's dump emits; a failed
// write reaches Commit.
func TestPersister(t *testing.T) {
	p := newMemPersister()
	defer p.Close()
	clk := newClock()
	r := newRegistrar(t, Config{Store: p, Now: clk.Now})
	reg := func(r *Registrar, user string, cseq int, hdrs ...string) Result {
		t.Helper()
		m := parse(t, req{to: "<sip:" + user + "@example.com>", cseq: cseq, hdrs: hdrs}.text())
		res := r.Register(Request{Msg: m, Source: src, Local: local, Proto: transport.TCP, ConnID: 7})
		if res.Code != 200 {
			t.Fatalf("%s: %d %s", user, res.Code, res.Reason)
		}
		return res
	}
	wait := func(res Result) error {
		t.Helper()
		if res.Commit == nil {
			t.Fatal("no Commit for a change")
		}
		ch := make(chan error, 1)
		res.Commit.Then(func(err error) { ch <- err })
		select {
		case err := <-ch:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Commit's done never ran")
			return nil
		}
	}
	for i := range 20 {
		user := fmt.Sprintf("u%d", i)
		res := reg(r, user, 1,
			fmt.Sprintf("Contact: <sip:%s@10.0.0.%d:5060>;expires=%d", user, i, 100+i),
			fmt.Sprintf(`Contact: <sip:%s@10.0.1.%d:5060>;q=0.5;+sip.instance="<urn:uuid:%d>";reg-id=1`, user, i, i),
			"Path: <sip:edge.example.net;lr>")
		if err := wait(res); err != nil {
			t.Fatal(err)
		}
		// done ran after the write: the record is there already.
		if _, ok := p.snapshot()["sip:"+user+"@example.com"]; !ok {
			t.Fatalf("%s: Commit done before the record was stored", user)
		}
	}
	// u0 de-registers: its record goes.
	if err := wait(reg(r, "u0", 2, "Contact: *", "Expires: 0")); err != nil {
		t.Fatal(err)
	}
	if b := r.Lookup("sip:u1@example.com"); len(b) != 2 || b[0].URI != "sip:u1@10.0.0.1:5060" || b[1].RegID != 1 {
		t.Fatalf("lookup %+v", b)
	}
	p.Sync()
	recs := p.snapshot()
	if len(recs) != 19 {
		t.Fatalf("%d records, want 19", len(recs))
	}
	if d := p.dumped(t); !maps.Equal(d, recs) {
		t.Fatalf("dump emits %d records that differ from the %d stored", len(d), len(recs))
	}
	before := map[string][]Binding{}
	for i := range 20 {
		k := fmt.Sprintf("sip:u%d@example.com", i)
		before[k] = r.Lookup(k)
	}
	r.Close()

	// Restart on the same persister, 105 s later: the bindings with
	// expires 100..105 have lapsed and are dropped, and their records
	// rewritten without them.
	clk.Advance(105 * time.Second)
	r = newRegistrar(t, Config{Store: p, Now: clk.Now})
	if a, n := r.Count(); a != 19 || n != 19+14 {
		t.Fatalf("after restart: %d AoRs, %d bindings; want 19, 33", a, n)
	}
	for k, old := range before {
		want := slices.DeleteFunc(slices.Clone(old), func(b Binding) bool { return !b.Expires.After(clk.Now()) })
		for i := range want {
			want[i].ConnID = 0 // flows do not outlive a restart
		}
		if got := r.Lookup(k); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s after restart:\n got %+v\nwant %+v", k, got, want)
		}
	}
	p.Sync()
	if d, recs := p.dumped(t), p.snapshot(); !maps.Equal(d, recs) {
		t.Fatal("after restart the stored records differ from the registrar's")
	}

	// A write the persister cannot make is reported to Commit (500).
	boom := errors.New("persister down")
	p.fail(boom)
	if err := wait(reg(r, "u5", 2, "Contact: <sip:u5@10.0.0.99>")); !errors.Is(err, boom) {
		t.Fatalf("commit error %v, want %v", err, boom)
	}
}

// TestNilStorePointer: a nil *store.Store in Config.Store means no store,
// as it did before Store was an interface.
func TestNilStorePointer(t *testing.T) {
	var st *store.Store
	r := newRegistrar(t, Config{Store: st})
	res := register(t, r, parse(t, req{hdrs: []string{"Contact: <sip:alice@192.0.2.1>"}}.text()))
	if res.Code != 200 || res.Commit != committed || len(r.Lookup(alice)) != 1 {
		t.Fatalf("%d %s", res.Code, res.Reason)
	}
}
