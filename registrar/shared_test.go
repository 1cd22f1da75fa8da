package registrar

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sipedge/store"
	"sipedge/transport"
)

// shared is a store as a cluster's looks to the registrar: it keeps the
// last record of each key, can be down, and fails writes while it is.
type shared struct {
	mu   sync.Mutex
	recs map[string][]byte
	down bool
}

func (s *shared) Put(key, val []byte, done store.Done) {
	s.mu.Lock()
	down := s.down
	if !down {
		s.recs[string(key)] = append([]byte(nil), val...)
	}
	s.mu.Unlock()
	if done != nil {
		if down {
			done.Stored(ErrUnavailable)
		} else {
			done.Stored(nil)
		}
	}
}
func (s *shared) Delete(key []byte, done store.Done) { s.Put(key, nil, done) }
func (s *shared) Load(func(key, val []byte) error) error {
	return nil
}
func (s *shared) Own(func(emit func(key, val []byte) error) error) {}
func (s *shared) Available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.down
}

// TestSharedBindings: two registrars of a cluster. What one stores, the
// other installs with Replace: the bindings are routable there with their
// owner; RangeNAT visits only a node's own; an empty record removes the
// AoR; Forget drops what the store no longer has. While the store is
// down, a REGISTER that would change bindings is answered 503 with
// Retry-After and changes nothing; a query is still answered.
func TestSharedBindings(t *testing.T) {
	st := &shared{recs: map[string][]byte{}}
	a := newRegistrar(t, Config{Store: st, Node: "192.0.2.1:5060"})
	b := newRegistrar(t, Config{Store: &shared{recs: map[string][]byte{}}, Node: "192.0.2.2:5060"})
	m := parse(t, req{to: "<sip:alice@example.com>", hdrs: []string{"Contact: <sip:alice@10.0.0.5:5060>"}}.text())
	if res := a.Register(Request{Msg: m, Source: src, Local: local, Proto: transport.UDP, NAT: true}); res.Code != 200 {
		t.Fatal(res.Code, res.Reason)
	}
	key := "sip:alice@example.com"
	if err := b.Replace([]byte(key), st.recs[key]); err != nil {
		t.Fatal(err)
	}
	bs := b.Lookup(key)
	if len(bs) != 1 || bs[0].Owner != "192.0.2.1:5060" || bs[0].Source != src || !bs[0].NAT {
		t.Fatalf("installed on b: %+v", bs)
	}
	n := 0
	b.RangeNAT(func(string, string, netip.AddrPort, time.Time) { n++ })
	a.RangeNAT(func(string, string, netip.AddrPort, time.Time) { n += 10 })
	if n != 10 {
		t.Fatalf("keep-alive visits: %d, want the owner's only (10)", n)
	}
	if err := b.Replace([]byte(key), []byte{0xff}); err == nil {
		t.Fatal("a malformed record was installed")
	}
	if err := b.Replace([]byte(key), nil); err != nil || len(b.Lookup(key)) != 0 {
		t.Fatalf("removal: %v %+v", err, b.Lookup(key))
	}
	b.Replace([]byte(key), st.recs[key])
	if n := b.Forget(func(string) bool { return false }); n != 1 || len(b.Lookup(key)) != 0 {
		t.Fatalf("Forget dropped %d", n)
	}

	st.down = true
	m = parse(t, req{to: "<sip:alice@example.com>", cseq: 2, hdrs: []string{"Contact: <sip:alice@10.0.0.6:5060>"}}.text())
	res := a.Register(Request{Msg: m, Source: src, Local: local, Proto: transport.UDP})
	if res.Code != 503 || string(res.Extra) != "Retry-After: 5\r\n" {
		t.Fatalf("store down: %d %q", res.Code, res.Extra)
	}
	if bs := a.Lookup(key); len(bs) != 1 || bs[0].URI != "sip:alice@10.0.0.5:5060" {
		t.Fatalf("a refused REGISTER changed the bindings: %+v", bs)
	}
	q := parse(t, req{to: "<sip:alice@example.com>", cseq: 3}.text())
	if res := a.Register(Request{Msg: q, Source: src, Local: local, Proto: transport.UDP}); res.Code != 200 {
		t.Fatalf("query with the store down: %d", res.Code)
	}
}

// TestSharedCommitFails: a write the store could not make reports
// ErrUnavailable through the Commit (the core answers 503).
func TestSharedCommitFails(t *testing.T) {
	st := &shared{recs: map[string][]byte{}}
	r := newRegistrar(t, Config{Store: st})
	st.down = true
	r.avail = nil // the store went down after the check
	m := parse(t, req{to: "<sip:bob@example.com>", hdrs: []string{"Contact: <sip:bob@10.0.0.5:5060>"}}.text())
	res := r.Register(Request{Msg: m, Source: src, Local: local, Proto: transport.UDP})
	ch := make(chan error, 1)
	res.Commit.Then(func(err error) { ch <- err })
	if err := <-ch; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("commit: %v", err)
	}
}

// TestReplaceReusesStrings: installing a refresh of the same bindings (new
// times, same contact, Call-ID and Path) reuses the strings held: the
// three of them are not allocated again.
func TestReplaceReusesStrings(t *testing.T) {
	st := &shared{recs: map[string][]byte{}}
	a := newRegistrar(t, Config{Store: st, Node: "192.0.2.1:5060"})
	b := newRegistrar(t, Config{Store: &shared{recs: map[string][]byte{}}})
	m := parse(t, req{to: "<sip:carol@example.com>", hdrs: []string{"Path: <sip:edge.example.net;lr>",
		`Contact: <sip:carol@10.0.0.7:5060;transport=tcp>;+sip.instance="<urn:uuid:1>";reg-id=1`}}.text())
	if res := a.Register(Request{Msg: m, Source: src, Local: local, Proto: transport.TCP}); res.Code != 200 {
		t.Fatal(res.Code, res.Reason)
	}
	key := []byte("sip:carol@example.com")
	rec := st.recs[string(key)]
	if err := b.Replace(key, rec); err != nil {
		t.Fatal(err)
	}
	sh := b.shardOf(key)
	fresh := testing.AllocsPerRun(100, func() { b.decodeSet(rec, sh) })
	reuse := testing.AllocsPerRun(100, func() { b.decodeSetFrom(rec, sh, sh.aors[string(key)].bs) })
	if fresh-reuse < 3 {
		t.Fatalf("decoding an unchanged binding set: %.0f allocations, %.0f without reuse; want the contact, Call-ID and Path reused", reuse, fresh)
	}
	if bs := b.Lookup(string(key)); len(bs) != 1 || bs[0].URI != "sip:carol@10.0.0.7:5060;transport=tcp" || len(bs[0].Path) != 1 || bs[0].Instance != "<urn:uuid:1>" {
		t.Fatalf("installed %+v", bs)
	}
}
