package registrar

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sipedge/sip"
	"sipedge/store"
	"sipedge/transport"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newReg(t *testing.T, st *store.Store) (*Registrar, *clock) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r, err := New(Config{MinExpires: 60 * time.Second, MaxExpires: time.Hour, DefaultExpires: 30 * time.Minute,
		MaxContacts: 3, Store: st, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, c
}

var src = netip.MustParseAddrPort("192.168.1.20:5060")

// register builds and applies a REGISTER with the given extra header lines.
func register(t *testing.T, r *Registrar, callID string, cseq int, headers ...string) Result {
	t.Helper()
	msg := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK%s%d\r\n"+
		"From: <sip:alice@example.com>;tag=f\r\nTo: <sip:alice@example.com>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n%s"+
		"Content-Length: 0\r\n\r\n", callID, cseq, callID, cseq, strings.Join(headers, ""))
	var m sip.Message
	if err := m.Parse([]byte(msg), nil); err != nil {
		t.Fatal(err)
	}
	res := r.Register(Request{Msg: &m, Source: src, Proto: transport.UDP})
	if res.Commit != nil {
		ch := make(chan error, 1)
		res.Commit(func(err error) { ch <- err })
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	return res
}

func uris(bs []Binding) string {
	var out []string
	for _, b := range bs {
		out = append(out, fmt.Sprintf("%s q=%d exp=%s", b.URI, b.Q, b.Expires.Format("15:04:05")))
	}
	return strings.Join(out, " | ")
}

func TestRegisterRules(t *testing.T) {
	r, clk := newReg(t, nil)
	const aor = "sip:alice@example.com"
	t0 := clk.now()

	// Add with the default expiry; the 200 lists the binding.
	res := register(t, r, "c1", 1, "Contact: <sip:alice@192.168.1.20:5060>\r\n")
	if res.Code != 200 || !strings.Contains(string(res.Extra), "Contact: <sip:alice@192.168.1.20:5060>;expires=1800\r\n") {
		t.Fatalf("%d %q", res.Code, res.Extra)
	}
	// expires param beats the Expires header; above max is clamped.
	register(t, r, "c1", 2, "Contact: <sip:alice@192.168.1.20:5062>;expires=7200;q=0.5\r\n", "Expires: 120\r\n")
	bs := r.Lookup(aor)
	if len(bs) != 2 || bs[1].URI != "sip:alice@192.168.1.20:5062" || !bs[1].Expires.Equal(t0.Add(time.Hour)) || bs[1].Q != 500 {
		t.Fatalf("bindings: %s", uris(bs))
	}
	// Below min: 423 with Min-Expires, nothing changed.
	res = register(t, r, "c1", 3, "Contact: <sip:alice@192.168.1.20:5064>;expires=30\r\n")
	if res.Code != 423 || string(res.Extra) != "Min-Expires: 60\r\n" || len(r.Lookup(aor)) != 2 {
		t.Fatalf("423: %d %q", res.Code, res.Extra)
	}
	// Same Call-ID, old CSeq: refused (§10.3 step 7).
	if res = register(t, r, "c1", 1, "Contact: <sip:alice@192.168.1.20:5060>;expires=0\r\n"); res.Code != 500 {
		t.Fatalf("out-of-order CSeq: %d", res.Code)
	}
	// A query (no Contact) returns the bindings without changing them.
	res = register(t, r, "c1", 4)
	if res.Code != 200 || res.Commit != nil || strings.Count(string(res.Extra), "Contact:") != 2 {
		t.Fatalf("query: %d %q", res.Code, res.Extra)
	}
	// Max contacts (3): a fourth contact replaces the binding refreshed
	// longest ago; a request with more contacts than allowed is refused.
	clk.add(time.Second)
	register(t, r, "c2", 1, "Contact: <sip:alice@10.0.0.3>\r\n")
	clk.add(time.Second)
	res = register(t, r, "c3", 1, "Contact: <sip:alice@10.0.0.4>\r\n")
	bs = r.Lookup(aor)
	if res.Code != 200 || len(bs) != 3 || strings.Contains(uris(bs)+" ", "192.168.1.20:5060 ") {
		t.Fatalf("max contacts: %d, %s", res.Code, uris(bs))
	}
	res = register(t, r, "c4", 1, "Contact: <sip:alice@10.0.0.5>, <sip:alice@10.0.0.6>, <sip:alice@10.0.0.7>, <sip:alice@10.0.0.8>\r\n")
	if res.Code != 403 || len(r.Lookup(aor)) != 3 {
		t.Fatalf("4 contacts in one request: %d", res.Code)
	}
	// Lookup orders by q.
	if bs := r.Lookup(aor); bs[len(bs)-1].Q != 500 {
		t.Fatalf("q order: %s", uris(bs))
	}
	// Remove one with expires=0 (a different Call-ID may remove).
	register(t, r, "c9", 1, "Contact: <sip:alice@10.0.0.3>;expires=0\r\n")
	if len(r.Lookup(aor)) != 2 {
		t.Fatal("expires=0 did not remove")
	}
	// "*" needs Expires: 0 and to be alone.
	if res = register(t, r, "c9", 2, "Contact: *\r\n"); res.Code != 400 {
		t.Fatalf("* without Expires: %d", res.Code)
	}
	if res = register(t, r, "c9", 3, "Contact: *, <sip:alice@10.0.0.5>\r\n", "Expires: 0\r\n"); res.Code != 400 {
		t.Fatalf("* with another contact: %d", res.Code)
	}
	if res = register(t, r, "c9", 4, "Contact: *\r\n", "Expires: 0\r\n"); res.Code != 200 || len(r.Lookup(aor)) != 0 {
		t.Fatalf("* removal: %d, %d left", res.Code, len(r.Lookup(aor)))
	}
	// Bad q.
	if res = register(t, r, "c9", 5, "Contact: <sip:alice@10.0.0.5>;q=1.5\r\n"); res.Code != 400 {
		t.Fatalf("q=1.5: %d", res.Code)
	}
}

func TestInstanceAndPath(t *testing.T) {
	r, _ := newReg(t, nil)
	inst := `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`
	register(t, r, "i1", 1, "Contact: <sip:alice@192.168.1.20:5060>"+inst+"\r\n", "Path: <sip:edge.example.com;lr>\r\n")
	// Same instance and reg-id from a new address replaces the flow (RFC 5626 §6).
	res := register(t, r, "i2", 1, "Contact: <sip:alice@192.168.1.99:6000>"+inst+"\r\n", "Path: <sip:edge.example.com;lr>\r\n")
	bs := r.Lookup("sip:alice@example.com")
	if len(bs) != 1 || bs[0].URI != "sip:alice@192.168.1.99:6000" || bs[0].Instance != "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>" || bs[0].RegID != 1 {
		t.Fatalf("instance replacement: %s", uris(bs))
	}
	if len(bs[0].Path) != 1 || !strings.Contains(string(res.Extra), "Path: <sip:edge.example.com;lr>\r\n") {
		t.Fatalf("Path not kept/echoed: %v %q", bs[0].Path, res.Extra)
	}
}

// TestTortureRegisters: RFC 4475 §3.3.12–14 and §3.1.1.4 semantics.
func TestTortureRegisters(t *testing.T) {
	for _, tc := range []struct {
		file, aor, uri, params string
		n                      int
	}{
		{"cparam01.dat", "sip:watson@example.com", "sip:+19725552222@gw1.example.net", ";unknownparam", 1},
		{"cparam02.dat", "sip:watson@example.com", "sip:+19725552222@gw1.example.net;unknownparam", "", 1},
		{"regescrt.dat", "sip:user@example.com", "sip:user@example.com?Route=%3Csip:sip.example.com%3E", "", 1},
		{"escnull.dat", "sip:null-\x00-null@example.com", "sip:%00@host5.example.com", "", 2},
	} {
		r, _ := newReg(t, nil)
		b, err := os.ReadFile(filepath.Join("../sip/testdata/torture/rfc4475", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		var m sip.Message
		if err := m.Parse(b, nil); err != nil {
			t.Fatal(err)
		}
		if res := r.Register(Request{Msg: &m, Source: src, Proto: transport.UDP}); res.Code != 200 {
			t.Fatalf("%s: %d", tc.file, res.Code)
		}
		bs := r.Lookup(tc.aor)
		if len(bs) != tc.n || bs[0].URI != tc.uri || bs[0].Params != tc.params {
			t.Fatalf("%s: %d bindings %q", tc.file, len(bs), uris(bs))
		}
	}
	// unksm2: a To that is no SIP AoR is refused.
	r, _ := newReg(t, nil)
	b, _ := os.ReadFile("../sip/testdata/torture/rfc4475/unksm2.dat")
	var m sip.Message
	m.Parse(b, nil)
	if res := r.Register(Request{Msg: &m}); res.Code != 400 {
		t.Fatalf("unksm2: %d", res.Code)
	}
}

func TestExpiry(t *testing.T) {
	r, clk := newReg(t, nil)
	register(t, r, "e1", 1, "Contact: <sip:alice@10.0.0.1>;expires=60\r\n")
	clk.add(61 * time.Second)
	if len(r.Lookup("sip:alice@example.com")) != 0 {
		t.Fatal("expired binding returned")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, n := r.Count(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sweeper did not remove the expired binding")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDurable(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newReg(t, st)
	for i := 0; i < 50; i++ {
		msg := fmt.Sprintf("Contact: <sip:u%d@10.0.0.%d:5060>;q=0.%d\r\n", i, i%250+1, i%10)
		register(t, r, fmt.Sprint("d", i), 1, msg)
	}
	r.Close()
	st.Close()
	st, _ = store.Open(dir, store.Options{})
	defer st.Close()
	r2, _ := newReg(t, st)
	bs := r2.Lookup("sip:alice@example.com")
	if len(bs) != 3 { // MaxContacts 3: the rest were refused
		t.Fatalf("%d bindings after restart: %s", len(bs), uris(bs))
	}
	if bs[0].Source != src || bs[0].Proto != transport.UDP || bs[0].CallID == "" {
		t.Fatalf("fields lost: %+v", bs[0])
	}
}

func BenchmarkRegister(b *testing.B) {
	r, _ := New(Config{MaxContacts: 10})
	defer r.Close()
	msgs := make([][]byte, 1000)
	for i := range msgs {
		msgs[i] = []byte(fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK%d\r\n"+
			"From: <sip:user%d@example.com>;tag=f\r\nTo: <sip:user%d@example.com>\r\nCall-ID: b%d\r\nCSeq: %%d REGISTER\r\n"+
			"Contact: <sip:user%d@10.0.%d.%d:5060>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n", i, i, i, i, i, i/250, i%250))
	}
	var m sip.Message
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		msg := []byte(fmt.Sprintf(string(msgs[i%1000]), i+1))
		m.Parse(msg, nil)
		r.Register(Request{Msg: &m, Source: src, Proto: transport.UDP})
	}
}
