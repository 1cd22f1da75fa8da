package registrar

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sipedge/sip"
	"sipedge/store"
	"sipedge/transport"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// req describes a REGISTER; zero fields take defaults.
type req struct {
	to     string   // To value; default <sip:alice@example.com>
	callID string   // default call-1@ua.example.com
	cseq   int      // default 1
	hdrs   []string // extra header lines: "Contact: <sip:a@192.0.2.1>", "Expires: 0"
}

func (q req) text() string {
	to := q.to
	if to == "" {
		to = "<sip:alice@example.com>"
	}
	callID := q.callID
	if callID == "" {
		callID = "call-1@ua.example.com"
	}
	cseq := q.cseq
	if cseq == 0 {
		cseq = 1
	}
	var b strings.Builder
	b.WriteString("REGISTER sip:example.com SIP/2.0\r\n")
	b.WriteString("Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-" + strconv.Itoa(cseq) + "\r\n")
	b.WriteString("Max-Forwards: 70\r\n")
	b.WriteString("From: <sip:alice@example.com>;tag=from1\r\n")
	b.WriteString("To: " + to + "\r\n")
	b.WriteString("Call-ID: " + callID + "\r\n")
	b.WriteString("CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n")
	for _, h := range q.hdrs {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

func parse(t testing.TB, text string) *sip.Message {
	t.Helper()
	m := new(sip.Message)
	if err := m.Parse([]byte(text), nil); err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return m
}

var (
	src   = netip.MustParseAddrPort("198.51.100.7:40000")
	local = netip.MustParseAddrPort("192.0.2.1:5060")
)

// register runs a REGISTER and, when it changed something, its Commit.
func register(t testing.TB, r *Registrar, m *sip.Message) Result {
	t.Helper()
	res := r.Register(Request{Msg: m, Source: src, Local: local, Proto: transport.UDP})
	if res.Commit != nil {
		ch := make(chan error, 1)
		res.Commit.Then(func(err error) { ch <- err })
		if err := <-ch; err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	return res
}

func newRegistrar(t testing.TB, cfg Config) *Registrar {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// summary lists Lookup's bindings as "uri q expires-in-seconds".
func summary(r *Registrar, aor string, now time.Time) []string {
	var out []string
	for _, b := range r.Lookup(aor) {
		left := (b.Expires.Sub(now) + time.Second - 1) / time.Second // as in the 200
		out = append(out, fmt.Sprintf("%s %d %d", b.URI, b.Q, left))
	}
	return out
}

func contactLines(extra []byte) []string {
	var out []string
	for _, l := range strings.Split(string(extra), "\r\n") {
		if strings.HasPrefix(l, "Contact: ") {
			out = append(out, strings.TrimPrefix(l, "Contact: "))
		}
	}
	return out
}

func TestAORKey(t *testing.T) {
	for _, tc := range []struct {
		uri, key string
		ok       bool
	}{
		{"sip:alice@example.com", "sip:alice@example.com", true},
		{"sip:Alice@EXAMPLE.com:5070;transport=tcp;user=phone", "sip:Alice@example.com", true},
		{"sips:alice@example.com", "sip:alice@example.com", true},
		{"sip:%61lice@example.com", "sip:alice@example.com", true},
		{"sip:alice%40home@example.com", "sip:alice@home@example.com", true},
		{"sip:null-%00-null@example.com", "sip:null-\x00-null@example.com", true},
		{"sip:example.com", "sip:example.com", true},
		{"sip:bob@[2001:DB8::1]:5060", "sip:bob@[2001:db8::1]", true},
		{"tel:+15551234567", "", false},
		{"isbn:2983792873", "", false},
	} {
		u, err := sip.ParseURI([]byte(tc.uri))
		if err != nil {
			t.Fatalf("%s: %v", tc.uri, err)
		}
		key, ok := AORKey(&u)
		if key != tc.key || ok != tc.ok {
			t.Errorf("AORKey(%s) = %q, %v; want %q, %v", tc.uri, key, ok, tc.key, tc.ok)
		}
	}
}

// step is one REGISTER of a scenario and what must follow from it.
type step struct {
	advance time.Duration // clock moves before the request
	req     req
	code    int
	want    []string                                     // Lookup summary afterwards ("uri q secondsLeft"); nil: not checked, empty: none
	check   func(t *testing.T, res Result, r *Registrar) // optional
}

const alice = "sip:alice@example.com"

func TestRegister(t *testing.T) {
	ct := func(s string) string { return "Contact: " + s }
	scenarios := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{name: "add refresh remove", steps: []step{
			{req: req{hdrs: []string{ct("<sip:alice@192.0.2.20:5060>"), "Expires: 600"}}, code: 200,
				want: []string{"sip:alice@192.0.2.20:5060 1000 600"},
				check: func(t *testing.T, res Result, r *Registrar) {
					if res.Commit == nil {
						t.Error("a new binding must come with Commit")
					}
					if got := contactLines(res.Extra); !slices.Equal(got, []string{"<sip:alice@192.0.2.20:5060>;expires=600"}) {
						t.Errorf("200 contacts %q", got)
					}
					if !bytes.Contains(res.Extra, []byte("\r\nDate: Sat, 01 Mar 2025 12:00:00 GMT\r\n")) {
						t.Errorf("no Date: %q", res.Extra)
					}
				}},
			// Refresh, URI equal by §19.1.4 (host case differs).
			{advance: 100 * time.Second, req: req{cseq: 2, hdrs: []string{ct("<sip:alice@192.0.2.20:5060>;expires=900")}}, code: 200,
				want: []string{"sip:alice@192.0.2.20:5060 1000 900"}},
			{req: req{cseq: 3, hdrs: []string{ct("<sip:alice@192.0.2.21>")}}, code: 200,
				want: []string{"sip:alice@192.0.2.21 1000 3600", "sip:alice@192.0.2.20:5060 1000 900"}},
			{req: req{cseq: 4, hdrs: []string{ct("<sip:alice@192.0.2.20:5060>;expires=0")}}, code: 200,
				want: []string{"sip:alice@192.0.2.21 1000 3600"}},
			// Removing a binding that does not exist changes nothing.
			{req: req{cseq: 5, hdrs: []string{ct("<sip:nobody@192.0.2.99>;expires=0")}}, code: 200,
				want: []string{"sip:alice@192.0.2.21 1000 3600"},
				check: func(t *testing.T, res Result, r *Registrar) {
					if res.Commit != nil {
						t.Error("no change, yet Commit is set")
					}
				}},
		}},
		{name: "expires param, header, default, clamp", steps: []step{
			{req: req{hdrs: []string{"Expires: 300", ct("<sip:a@192.0.2.1>;expires=120"), ct("<sip:b@192.0.2.1>"), ct("<sip:c@192.0.2.1>;expires=junk")}}, code: 200,
				want: []string{"sip:a@192.0.2.1 1000 120", "sip:b@192.0.2.1 1000 300", "sip:c@192.0.2.1 1000 3600"}},
			{req: req{cseq: 2, hdrs: []string{ct("<sip:d@192.0.2.1>")}}, code: 200},
			{req: req{cseq: 3, hdrs: []string{ct("<sip:e@192.0.2.1>;expires=86400")}}, code: 200},
			{req: req{cseq: 4, hdrs: []string{ct("<sip:f@192.0.2.1>;expires=99999999999999")}}, code: 200,
				want: []string{"sip:f@192.0.2.1 1000 3600", "sip:e@192.0.2.1 1000 3600", "sip:d@192.0.2.1 1000 3600",
					"sip:a@192.0.2.1 1000 120", "sip:b@192.0.2.1 1000 300", "sip:c@192.0.2.1 1000 3600"}},
		}},
		{name: "423 interval too brief, nothing changed", steps: []step{
			{req: req{hdrs: []string{ct("<sip:a@192.0.2.1>")}}, code: 200, want: []string{"sip:a@192.0.2.1 1000 3600"}},
			{req: req{cseq: 2, hdrs: []string{ct("<sip:b@192.0.2.1>"), ct("<sip:a@192.0.2.1>;expires=30")}}, code: 423,
				want: []string{"sip:a@192.0.2.1 1000 3600"},
				check: func(t *testing.T, res Result, r *Registrar) {
					if string(res.Extra) != "Min-Expires: 60\r\n" || res.Commit != nil {
						t.Errorf("423 extra %q", res.Extra)
					}
				}},
			{req: req{cseq: 3, hdrs: []string{"Expires: 59", ct("<sip:b@192.0.2.1>")}}, code: 423},
			// The minimum itself and 0 (removal) are fine.
			{req: req{cseq: 4, hdrs: []string{"Expires: 60", ct("<sip:b@192.0.2.1>"), ct("<sip:a@192.0.2.1>;expires=0")}}, code: 200,
				want: []string{"sip:b@192.0.2.1 1000 60"}},
		}},
		{name: "custom limits", cfg: Config{MinExpires: 10 * time.Second, MaxExpires: 100 * time.Second, DefaultExpires: 50 * time.Second}, steps: []step{
			{req: req{hdrs: []string{ct("<sip:a@192.0.2.1>"), ct("<sip:b@192.0.2.1>;expires=500"), ct("<sip:c@192.0.2.1>;expires=10")}}, code: 200,
				want: []string{"sip:a@192.0.2.1 1000 50", "sip:b@192.0.2.1 1000 100", "sip:c@192.0.2.1 1000 10"}},
			{req: req{cseq: 2, hdrs: []string{ct("<sip:a@192.0.2.1>;expires=9")}}, code: 423,
				check: func(t *testing.T, res Result, r *Registrar) {
					if string(res.Extra) != "Min-Expires: 10\r\n" {
						t.Errorf("423 extra %q", res.Extra)
					}
				}},
		}},
		{name: "q ordering", steps: []step{
			{req: req{hdrs: []string{ct("<sip:low@192.0.2.1>;q=0.1"), ct("<sip:high@192.0.2.1>;q=1.0"), ct("<sip:mid@192.0.2.1>;q=0.5")}}, code: 200,
				want: []string{"sip:high@192.0.2.1 1000 3600", "sip:mid@192.0.2.1 500 3600", "sip:low@192.0.2.1 100 3600"},
				check: func(t *testing.T, res Result, r *Registrar) {
					want := []string{"<sip:high@192.0.2.1>;expires=3600", "<sip:mid@192.0.2.1>;q=0.5;expires=3600", "<sip:low@192.0.2.1>;q=0.1;expires=3600"}
					if got := contactLines(res.Extra); !slices.Equal(got, want) {
						t.Errorf("200 contacts %q", got)
					}
				}},
			// Equal q: the most recently registered first.
			{advance: time.Second, req: req{cseq: 2, hdrs: []string{ct("<sip:mid2@192.0.2.1>;q=0.500")}}, code: 200,
				want: []string{"sip:high@192.0.2.1 1000 3599", "sip:mid2@192.0.2.1 500 3600", "sip:mid@192.0.2.1 500 3599", "sip:low@192.0.2.1 100 3599"}},
			{req: req{cseq: 3, hdrs: []string{ct("<sip:x@192.0.2.1>;q=1.5")}}, code: 400},
			{req: req{cseq: 4, hdrs: []string{ct("<sip:x@192.0.2.1>;q=abc")}}, code: 400},
			{req: req{cseq: 5, hdrs: []string{ct("<sip:x@192.0.2.1>;q=0.1234")}}, code: 400,
				want: []string{"sip:high@192.0.2.1 1000 3599", "sip:mid2@192.0.2.1 500 3600", "sip:mid@192.0.2.1 500 3599", "sip:low@192.0.2.1 100 3599"}},
		}},
		{name: "Call-ID and CSeq ordering", steps: []step{
			{req: req{cseq: 10, hdrs: []string{ct("<sip:a@192.0.2.1>;expires=600")}}, code: 200, want: []string{"sip:a@192.0.2.1 1000 600"}},
			// Same Call-ID, lower or equal CSeq: the request fails, nothing changes.
			{req: req{cseq: 9, hdrs: []string{ct("<sip:a@192.0.2.1>;expires=0")}}, code: 500, want: []string{"sip:a@192.0.2.1 1000 600"}},
			{req: req{cseq: 10, hdrs: []string{ct("<sip:a@192.0.2.1>;expires=900")}}, code: 500, want: []string{"sip:a@192.0.2.1 1000 600"}},
			// Atomic: a valid new contact in a failing request is not added.
			{req: req{cseq: 10, hdrs: []string{ct("<sip:b@192.0.2.1>"), ct("<sip:a@192.0.2.1>")}}, code: 500, want: []string{"sip:a@192.0.2.1 1000 600"}},
			// A different Call-ID updates whatever its CSeq.
			{req: req{callID: "other@ua", cseq: 1, hdrs: []string{ct("<sip:a@192.0.2.1>;expires=700")}}, code: 200,
				want: []string{"sip:a@192.0.2.1 1000 700"},
				check: func(t *testing.T, res Result, r *Registrar) {
					if b := r.Lookup(alice); b[0].CallID != "other@ua" || b[0].CSeq != 1 {
						t.Errorf("binding %+v", b[0])
					}
				}},
			{req: req{callID: "other@ua", cseq: 2, hdrs: []string{ct("<sip:a@192.0.2.1>;expires=0")}}, code: 200},
		}},
		{name: "same contact twice in one request", steps: []step{
			// The Call-ID/CSeq rule applies to bindings from earlier
			// requests: the last of equal contacts wins.
			{req: req{hdrs: []string{ct("<sip:a@example.com>;expires=100"), ct("<sip:a@EXAMPLE.COM>;expires=200")}}, code: 200,
				want: []string{"sip:a@EXAMPLE.COM 1000 200"}},
			{req: req{cseq: 2, hdrs: []string{ct("<sip:a@example.com>;expires=300, <sip:a@example.com>;expires=0")}}, code: 200,
				want: []string{}},
			// The user part is case-sensitive (RFC 3261 §19.1.4).
			{req: req{cseq: 3, hdrs: []string{ct("<sip:a@example.com>;expires=100"), ct("<sip:A@example.com>;expires=200")}}, code: 200,
				want: []string{"sip:a@example.com 1000 100", "sip:A@example.com 1000 200"}},
		}},
		{name: "wildcard", steps: []step{
			{req: req{cseq: 5, hdrs: []string{ct("<sip:a@192.0.2.1>"), ct("<sip:b@192.0.2.1>")}}, code: 200},
			{req: req{callID: "other@ua", hdrs: []string{ct("<sip:c@192.0.2.1>")}}, code: 200},
			{req: req{cseq: 6, hdrs: []string{ct("*")}}, code: 400},                                        // no Expires
			{req: req{cseq: 6, hdrs: []string{ct("*"), "Expires: 10"}}, code: 400},                         // Expires not 0
			{req: req{cseq: 6, hdrs: []string{ct("*"), ct("<sip:a@192.0.2.1>"), "Expires: 0"}}, code: 400}, // not alone
			{req: req{cseq: 6, hdrs: []string{"Contact: *, <sip:a@192.0.2.1>", "Expires: 0"}}, code: 400},
			{req: req{cseq: 5, hdrs: []string{ct("*"), "Expires: 0"}}, code: 500, // same Call-ID, stale CSeq
				want: []string{"sip:c@192.0.2.1 1000 3600", "sip:a@192.0.2.1 1000 3600", "sip:b@192.0.2.1 1000 3600"}},
			{req: req{cseq: 6, hdrs: []string{ct("*"), "Expires: 0"}}, code: 200, want: []string{},
				check: func(t *testing.T, res Result, r *Registrar) {
					if res.Commit == nil || len(contactLines(res.Extra)) != 0 {
						t.Errorf("wildcard removal: %q", res.Extra)
					}
					if a, b := r.Count(); a != 0 || b != 0 {
						t.Errorf("count %d %d", a, b)
					}
				}},
			{req: req{cseq: 7, hdrs: []string{ct("*"), "Expires: 0"}}, code: 200, // nothing left: no change
				check: func(t *testing.T, res Result, r *Registrar) {
					if res.Commit != nil {
						t.Error("Commit without a change")
					}
				}},
		}},
		{name: "outbound instance and reg-id", steps: []step{
			{req: req{hdrs: []string{"Supported: path, outbound", ct(`<sip:alice@198.51.100.7:40000;transport=tcp;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`)}}, code: 200,
				check: func(t *testing.T, res Result, r *Registrar) {
					b := r.Lookup(alice)
					if len(b) != 1 || b[0].Instance != "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>" || b[0].RegID != 1 {
						t.Errorf("binding %+v", b)
					}
					if b[0].Params != `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1` {
						t.Errorf("params %q", b[0].Params)
					}
					if !bytes.Contains(res.Extra, []byte("\r\nRequire: outbound\r\n")) {
						t.Errorf("no Require: outbound in %q", res.Extra)
					}
				}},
			// A new flow (new source port, new URI) for the same instance and
			// reg-id replaces the old one...
			{req: req{cseq: 2, hdrs: []string{"Supported: outbound", ct(`<sip:alice@198.51.100.7:40002;transport=tcp;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`)}}, code: 200,
				want: []string{"sip:alice@198.51.100.7:40002;transport=tcp;ob 1000 3600"}},
			// ...a second reg-id is a second flow, even with the same URI...
			{req: req{cseq: 3, hdrs: []string{"Supported: outbound", ct(`<sip:alice@198.51.100.7:40002;transport=tcp;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=2`)}}, code: 200,
				check: func(t *testing.T, res Result, r *Registrar) {
					b := r.Lookup(alice)
					if len(b) != 2 || b[0].RegID != 2 || b[1].RegID != 1 {
						t.Errorf("bindings %+v", b)
					}
				}},
			// ...and without Supported: outbound no Require is sent.
			{req: req{cseq: 4, hdrs: []string{ct(`<sip:alice@198.51.100.7:40003;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=2`)}}, code: 200,
				check: func(t *testing.T, res Result, r *Registrar) {
					if bytes.Contains(res.Extra, []byte("Require")) {
						t.Errorf("Require without Supported: %q", res.Extra)
					}
					if b := r.Lookup(alice); len(b) != 2 || b[0].URI != "sip:alice@198.51.100.7:40003;transport=tcp" {
						t.Errorf("bindings %+v", b)
					}
				}},
			// reg-id without +sip.instance is ignored (RFC 5626 §6).
			{req: req{cseq: 5, hdrs: []string{ct(`<sip:alice@192.0.2.50>;reg-id=1`)}}, code: 200,
				check: func(t *testing.T, res Result, r *Registrar) {
					if b := r.Lookup(alice); len(b) != 3 || b[0].RegID != 0 || b[0].Instance != "" {
						t.Errorf("bindings %+v", b)
					}
				}},
			{req: req{cseq: 6, hdrs: []string{ct(`<sip:alice@192.0.2.51>;+sip.instance="<urn:uuid:1>";reg-id=0`)}}, code: 400},
			{req: req{cseq: 7, hdrs: []string{ct(`<sip:alice@192.0.2.51>;+sip.instance="<urn:uuid:1>";reg-id=x`)}}, code: 400},
		}},
		{name: "path stored and echoed", steps: []step{
			{req: req{hdrs: []string{"Path: <sip:edge1.example.net;lr;ob>", "Path: <sip:edge2.example.net;lr>, <sip:edge3.example.net;lr>", "Supported: path", ct("<sip:alice@10.0.0.5:5060>")}}, code: 200,
				check: func(t *testing.T, res Result, r *Registrar) {
					b := r.Lookup(alice)
					want := []string{"<sip:edge1.example.net;lr;ob>", "<sip:edge2.example.net;lr>", "<sip:edge3.example.net;lr>"}
					if len(b) != 1 || !slices.Equal(b[0].Path, want) {
						t.Fatalf("path %q", b[0].Path)
					}
					if !bytes.Contains(res.Extra, []byte("Path: <sip:edge1.example.net;lr;ob>\r\nPath: <sip:edge2.example.net;lr>\r\nPath: <sip:edge3.example.net;lr>\r\n")) {
						t.Errorf("Path not echoed in order: %q", res.Extra)
					}
				}},
			// A refresh without Path drops it.
			{req: req{cseq: 2, hdrs: []string{ct("<sip:alice@10.0.0.5:5060>")}}, code: 200,
				check: func(t *testing.T, res Result, r *Registrar) {
					if b := r.Lookup(alice); b[0].Path != nil || bytes.Contains(res.Extra, []byte("Path")) {
						t.Errorf("path %q / %q", b[0].Path, res.Extra)
					}
				}},
		}},
		{name: "query without contact", steps: []step{
			{req: req{}, code: 200, want: []string{},
				check: func(t *testing.T, res Result, r *Registrar) {
					if res.Commit != nil || len(contactLines(res.Extra)) != 0 {
						t.Errorf("query of nothing: %q", res.Extra)
					}
				}},
			{req: req{cseq: 2, hdrs: []string{ct("<sip:a@192.0.2.1>;expires=100"), ct("<sip:b@192.0.2.1>;q=0.7;foo=bar")}}, code: 200},
			{advance: 10 * time.Second, req: req{callID: "q@other", hdrs: []string{"Expires: 0"}}, code: 200,
				want: []string{"sip:a@192.0.2.1 1000 90", "sip:b@192.0.2.1 700 3590"},
				check: func(t *testing.T, res Result, r *Registrar) {
					want := []string{"<sip:a@192.0.2.1>;expires=90", "<sip:b@192.0.2.1>;foo=bar;q=0.7;expires=3590"}
					if got := contactLines(res.Extra); !slices.Equal(got, want) || res.Commit != nil {
						t.Errorf("query: %q", got)
					}
				}},
		}},
		{name: "max contacts", cfg: Config{MaxContacts: 2}, steps: []step{
			{req: req{hdrs: []string{ct("<sip:a@192.0.2.1>"), ct("<sip:b@192.0.2.1>"), ct("<sip:c@192.0.2.1>")}}, code: 403, want: []string{},
				check: func(t *testing.T, res Result, r *Registrar) {
					if res.Reason != "Too Many Contacts" {
						t.Errorf("reason %q", res.Reason)
					}
				}},
			{req: req{cseq: 2, hdrs: []string{ct("<sip:a@192.0.2.1>"), ct("<sip:b@192.0.2.1>")}}, code: 200},
			// Over the limit the binding refreshed longest ago (b) gives
			// way to this request's contacts.
			{req: req{cseq: 3, hdrs: []string{ct("<sip:c@192.0.2.1>"), ct("<sip:a@192.0.2.1>;expires=120")}}, code: 200,
				want: []string{"sip:a@192.0.2.1 1000 120", "sip:c@192.0.2.1 1000 3600"}},
			// Removing one frees a place.
			{req: req{cseq: 4, hdrs: []string{ct("<sip:a@192.0.2.1>;expires=0")}}, code: 200,
				want: []string{"sip:c@192.0.2.1 1000 3600"}},
		}},
		{name: "bad requests", steps: []step{
			{req: req{to: "<tel:+15551234567>", hdrs: []string{ct("<sip:a@192.0.2.1>")}}, code: 400},
			{req: req{to: "<isbn:2983792873>", hdrs: []string{ct("<sip:a@192.0.2.1>")}}, code: 400},
			// sips: and sip: are one AoR.
			{req: req{to: "<sips:alice@EXAMPLE.COM>", hdrs: []string{ct("<sips:alice@192.0.2.1>")}}, code: 200,
				want: []string{"sips:alice@192.0.2.1 1000 3600"}},
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			clk := newClock()
			cfg := sc.cfg
			cfg.Now = clk.Now
			r := newRegistrar(t, cfg)
			for i, st := range sc.steps {
				// The clock ticks between requests, so "most recently
				// registered" is well defined.
				clk.Advance(st.advance + time.Millisecond)
				res := register(t, r, parse(t, st.req.text()))
				if res.Code != st.code {
					t.Fatalf("step %d: %d %s, want %d", i, res.Code, res.Reason, st.code)
				}
				if st.want != nil {
					if got := summary(r, alice, clk.Now()); !slices.Equal(got, st.want) {
						t.Fatalf("step %d: bindings\n got %q\nwant %q", i, got, st.want)
					}
				}
				if st.check != nil {
					st.check(t, res, r)
				}
			}
		})
	}
}

// TestRequestDetails: the binding records where the REGISTER came from.
func TestRequestDetails(t *testing.T) {
	clk := newClock()
	r := newRegistrar(t, Config{Now: clk.Now})
	m := parse(t, req{hdrs: []string{"User-Agent: Phone/1.0", "Contact: <sip:alice@10.0.0.5:5060;transport=tcp>"}}.text())
	s, l := netip.MustParseAddrPort("[2001:db8::7]:50000"), netip.MustParseAddrPort("[2001:db8::1]:5060")
	res := r.Register(Request{Msg: m, Source: s, Local: l, Proto: transport.TCP, ConnID: 42})
	if res.Code != 200 {
		t.Fatal(res.Code, res.Reason)
	}
	b := r.Lookup(alice)
	want := Binding{AOR: alice, URI: "sip:alice@10.0.0.5:5060;transport=tcp", Q: 1000, Expires: clk.Now().Add(time.Hour),
		CallID: "call-1@ua.example.com", CSeq: 1, Source: s, Proto: transport.TCP, Local: l, ConnID: 42, UserAgent: "Phone/1.0"}
	if len(b) != 1 || fmt.Sprint(b[0]) != fmt.Sprint(want) {
		t.Fatalf("got  %+v\nwant %+v", b, want)
	}
	if a, n := r.Count(); a != 1 || n != 1 {
		t.Fatalf("count %d %d", a, n)
	}
}

// TestExpiry: Lookup hides an expired binding at once; the sweeper removes
// it from memory and from the store shortly after.
func TestExpiry(t *testing.T) {
	old := sweepEvery
	sweepEvery = 20 * time.Millisecond
	defer func() { sweepEvery = old }()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{Logger: quiet, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := newClock()
	r := newRegistrar(t, Config{Now: clk.Now, Store: st})
	register(t, r, parse(t, req{hdrs: []string{"Contact: <sip:a@192.0.2.1>;expires=60", "Contact: <sip:b@192.0.2.1>;expires=120"}}.text()))
	register(t, r, parse(t, req{to: "<sip:bob@example.com>", hdrs: []string{"Contact: <sip:bob@192.0.2.2>;expires=60"}}.text()))
	// A refresh moves bob's expiry later; the early heap entry must not
	// remove him.
	clk.Advance(30 * time.Second)
	register(t, r, parse(t, req{to: "<sip:bob@example.com>", cseq: 2, hdrs: []string{"Contact: <sip:bob@192.0.2.2>;expires=60"}}.text()))

	clk.Advance(30 * time.Second) // alice's a is due now, bob's refresh in 30 s
	if got := summary(r, alice, clk.Now()); !slices.Equal(got, []string{"sip:b@192.0.2.1 1000 60"}) {
		t.Fatalf("lookup right at expiry: %q", got)
	}
	waitFor(t, func() bool { _, n := r.Count(); return n == 2 })
	if got := summary(r, "sip:bob@example.com", clk.Now()); len(got) != 1 {
		t.Fatalf("bob lost after the stale heap entry fired: %q", got)
	}
	clk.Advance(60 * time.Second)
	waitFor(t, func() bool { a, n := r.Count(); return a == 0 && n == 0 })
	st.Sync()
	waitFor(t, func() bool { return st.Stats().Keys == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 3 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// torture loads an RFC 4475 message.
func torture(t *testing.T, name string) *sip.Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "sip", "testdata", "torture", "rfc4475", name+".dat"))
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, string(b))
}

func TestTorture(t *testing.T) {
	clk := newClock()
	for _, tc := range []struct {
		file    string
		code    int
		aor     string
		uris    []string // stored URIs, as written
		params  []string
		contact []string // Contact lines of the 200
	}{
		// §3.3.4: To is not a SIP URI: a registrar answers 400.
		{file: "unksm2", code: 400},
		// §3.3.12: without <>, ;unknownparam is a contact param.
		{file: "cparam01", code: 200, aor: "sip:watson@example.com",
			uris: []string{"sip:+19725552222@gw1.example.net"}, params: []string{";unknownparam"},
			contact: []string{"<sip:+19725552222@gw1.example.net>;unknownparam;expires=3600"}},
		// §3.3.13: inside <>, it stays a URI param of the binding.
		{file: "cparam02", code: 200, aor: "sip:watson@example.com",
			uris: []string{"sip:+19725552222@gw1.example.net;unknownparam"}, params: []string{""},
			contact: []string{"<sip:+19725552222@gw1.example.net;unknownparam>;expires=3600"}},
		// §3.3.14: the escaped ?Route= header stays inside the stored URI.
		{file: "regescrt", code: 200, aor: "sip:user@example.com",
			uris: []string{"sip:user@example.com?Route=%3Csip:sip.example.com%3E"}, params: []string{""},
			contact: []string{"<sip:user@example.com?Route=%3Csip:sip.example.com%3E>;expires=3600"}},
		// §3.1.1.4: %00 is not a terminator: two distinct bindings, and
		// the AoR keeps its NUL.
		{file: "escnull", code: 200, aor: "sip:null-\x00-null@example.com",
			uris: []string{"sip:%00@host5.example.com", "sip:%00%00@host5.example.com"}, params: []string{"", ""}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := newRegistrar(t, Config{Now: clk.Now})
			res := register(t, r, torture(t, tc.file))
			if res.Code != tc.code {
				t.Fatalf("%d %s, want %d", res.Code, res.Reason, tc.code)
			}
			if tc.code != 200 {
				if a, _ := r.Count(); a != 0 {
					t.Fatal("a failed request stored something")
				}
				return
			}
			bs := r.Lookup(tc.aor)
			var uris, params []string
			for _, b := range bs {
				uris = append(uris, b.URI)
				params = append(params, b.Params)
			}
			slices.Sort(uris)
			want := slices.Sorted(slices.Values(tc.uris))
			if !slices.Equal(uris, want) || len(params) != len(tc.params) {
				t.Fatalf("bindings %q %q, want %q", uris, params, tc.uris)
			}
			for i, b := range bs {
				if j := slices.Index(tc.uris, b.URI); tc.params[j] != params[i] {
					t.Errorf("%s params %q, want %q", b.URI, params[i], tc.params[j])
				}
			}
			if tc.contact != nil {
				if got := contactLines(res.Extra); !slices.Equal(got, tc.contact) {
					t.Errorf("200 contacts %q, want %q", got, tc.contact)
				}
			}
		})
	}
}

// TestDurability: bindings survive Close and a new registrar on the same
// store directory; expired ones are dropped on load; connection ids are
// not carried over a restart.
func TestDurability(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	open := func() (*store.Store, *Registrar) {
		// A small CompactAt: snapshots (written from the registrar's own
		// bindings, store.Own) happen while the REGISTERs go on.
		st, err := store.Open(dir, store.Options{Logger: quiet, CompactAt: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(Config{Store: st, Now: clk.Now, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return st, r
	}
	st, r := open()
	const n = 500
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exp := 3600
			if i%10 == 0 {
				exp = 100 // these will have expired at the restart
			}
			m := parse(t, req{to: fmt.Sprintf("<sip:user%d@example.com>", i), hdrs: []string{
				fmt.Sprintf("Contact: <sip:user%d@10.0.%d.%d:5060>;expires=%d", i, i/256, i%256, exp),
				fmt.Sprintf("Contact: <sip:user%d@10.1.%d.%d:5060>;q=0.5;+sip.instance=\"<urn:uuid:%d>\";reg-id=1", i, i/256, i%256, i),
				"Path: <sip:edge.example.net;lr>"}}.text())
			res := r.Register(Request{Msg: m, Source: src, Local: local, Proto: transport.TCP, ConnID: uint64(i + 1)})
			if res.Code != 200 || res.Commit == nil {
				t.Errorf("%d %s", res.Code, res.Reason)
				return
			}
			ch := make(chan error, 1)
			res.Commit.Then(func(err error) { ch <- err })
			if err := <-ch; err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	before := map[string][]Binding{}
	for i := range n {
		k := fmt.Sprintf("sip:user%d@example.com", i)
		before[k] = r.Lookup(k)
	}
	// Snapshots are written on their own goroutine: give the one the last
	// writes started time to finish.
	for deadline := time.Now().Add(10 * time.Second); st.Stats().Compactions == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if c := st.Stats().Compactions; c == 0 {
		t.Error("no snapshot was taken: the test does not cover snapshots from the registrar")
	}
	r.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Advance(200 * time.Second)
	st, r = open()
	if a, b := r.Count(); a != n || b != 2*n-n/10 {
		t.Fatalf("after restart: %d AoRs, %d bindings", a, b)
	}
	for k, old := range before {
		got := r.Lookup(k)
		want := old
		if len(old) == 2 && old[0].Expires.Before(clk.Now()) || len(old) == 2 && old[1].Expires.Before(clk.Now()) {
			want = slices.DeleteFunc(slices.Clone(old), func(b Binding) bool { return !b.Expires.After(clk.Now()) })
		}
		for i := range want {
			want[i].ConnID = 0
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s after restart:\n got %+v\nwant %+v", k, got, want)
		}
	}
	// The dropped bindings were rewritten in the store too: what a fresh
	// store (no registrar owning it) reads back has none of them.
	r.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var stale, records int
	st.Load(func(k, v []byte) error {
		records++
		if bytes.Contains(v, []byte("10.0.")) && bytes.Contains(k, []byte("0@")) {
			stale++
		}
		return nil
	})
	if stale != 0 || records != n {
		t.Fatalf("%d expired bindings still stored; %d records, want %d", stale, records, n)
	}
}

// TestDamagedRecord: an unreadable stored binding set is logged, skipped
// and deleted; the others load.
func TestDamagedRecord(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{Logger: quiet, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	r := newRegistrar(t, Config{Store: st, Now: clk.Now})
	register(t, r, parse(t, req{hdrs: []string{"Contact: <sip:alice@192.0.2.1>"}}.text()))
	st.Put([]byte("sip:broken@example.com"), []byte{recordVersion, 5, 1, 2}, nil)
	st.Put([]byte("sip:future@example.com"), []byte{99}, nil)
	r.Close()
	st.Close()

	st, err = store.Open(dir, store.Options{Logger: quiet, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r = newRegistrar(t, Config{Store: st, Now: clk.Now})
	if a, b := r.Count(); a != 1 || b != 1 || len(r.Lookup(alice)) != 1 {
		t.Fatalf("count %d %d", a, b)
	}
	st.Sync()
	if n := st.Stats().Keys; n != 1 {
		t.Fatalf("%d records left in the store, want 1", n)
	}
}

// TestCommit: the 2xx may only go out from Commit's callback, which runs
// once the record is fsynced, never before: here the committer waits 50 ms
// before writing, and the callback must not have run when Commit returns.
// A copy of the directory taken in the callback (a crash right then)
// holds the binding.
func TestCommit(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{Logger: quiet, SyncInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := newClock()
	r := newRegistrar(t, Config{Store: st, Now: clk.Now})
	res := r.Register(Request{Msg: parse(t, req{hdrs: []string{"Contact: <sip:alice@203.0.113.9:5062>"}}.text()), Source: src, Local: local, Proto: transport.UDP})
	if res.Code != 200 || res.Commit == nil {
		t.Fatalf("%d %s, commit %v", res.Code, res.Reason, res.Commit != nil)
	}
	// Lookup already sees it (the location service may route to it).
	if len(r.Lookup(alice)) != 1 {
		t.Fatal("binding not visible")
	}
	fsyncsBefore := st.Stats().Fsyncs
	called := make(chan error, 1)
	crash := t.TempDir()
	res.Commit.Then(func(err error) {
		if st.Stats().Fsyncs == fsyncsBefore {
			err = fmt.Errorf("done ran before any fsync")
		}
		// Snapshot the directory as a crash would leave it.
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			os.WriteFile(filepath.Join(crash, e.Name()), b, 0o640)
		}
		called <- err
	})
	select {
	case <-called:
		t.Fatal("done ran inside Commit, before the record was written")
	default:
	}
	if err := <-called; err != nil {
		t.Fatal(err)
	}
	st2, err := store.Open(crash, store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	r2 := newRegistrar(t, Config{Store: st2, Now: clk.Now})
	if b := r2.Lookup(alice); len(b) != 1 || b[0].URI != "sip:alice@203.0.113.9:5062" {
		t.Fatalf("after crash: %+v", b)
	}
	// Commit after the record is durable calls done at once.
	res = r.Register(Request{Msg: parse(t, req{cseq: 2, hdrs: []string{"Contact: <sip:alice@203.0.113.9:5062>;expires=0"}}.text()), Source: src, Local: local, Proto: transport.UDP})
	st.Sync()
	ok := false
	res.Commit.Then(func(err error) { ok = err == nil })
	if !ok {
		t.Fatal("late Commit did not call done at once")
	}
	// A failed write is reported to done (answered 500).
	st.Close()
	res = r.Register(Request{Msg: parse(t, req{cseq: 3, hdrs: []string{"Contact: <sip:alice@203.0.113.9:5062>"}}.text()), Source: src, Local: local, Proto: transport.UDP})
	var cerr error
	res.Commit.Then(func(err error) { cerr = err })
	if cerr == nil {
		t.Fatal("commit on a closed store succeeded")
	}
}

// TestConcurrent: registrations, queries and lookups from many goroutines
// (run with -race).
func TestConcurrent(t *testing.T) {
	old := sweepEvery
	sweepEvery = 5 * time.Millisecond
	defer func() { sweepEvery = old }()
	st, err := store.Open(t.TempDir(), store.Options{Logger: quiet, NoSync: true, CompactAt: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := newClock()
	r := newRegistrar(t, Config{Store: st, Now: clk.Now, MinExpires: time.Second})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				user := (g*7 + i) % 40
				m := parse(t, req{to: fmt.Sprintf("<sip:u%d@example.com>", user), callID: fmt.Sprintf("g%d", g), cseq: i + 1,
					hdrs: []string{fmt.Sprintf("Contact: <sip:u%d@10.0.0.%d>;expires=%d", user, g, 1+i%3)}}.text())
				res := register(t, r, m)
				if res.Code != 200 {
					t.Errorf("%d %s", res.Code, res.Reason)
					return
				}
				now := clk.Now() // Lookup's own clock reading is no earlier
				for _, b := range r.Lookup(fmt.Sprintf("sip:u%d@example.com", (user+1)%40)) {
					if !b.Expires.After(now) {
						t.Error("expired binding returned")
					}
				}
				if i%50 == 0 {
					clk.Advance(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	a, n := r.Count()
	t.Logf("%d AoRs, %d bindings, store %+v", a, n, st.Stats())
}

// TestNATFlagStored: the NAT verdict of a REGISTER is kept with the binding
// across a restart (record version 2); a version 1 record still loads.
func TestNATFlagStored(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{Logger: quiet, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Store: st, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m := parse(t, req{to: "<sip:nat@example.com>", hdrs: []string{"Contact: <sip:nat@10.77.0.10:5060>"}}.text())
	res := r.Register(Request{Msg: m, Source: netip.MustParseAddrPort("203.0.113.1:5060"), Local: local, Proto: transport.UDP, NAT: true})
	ch := make(chan error, 1)
	res.Commit.Then(func(err error) { ch <- err })
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	// A version 1 record (no flags) written beside it by an older sipedge.
	v1 := r.appendSet(nil, []binding{r.shardOf([]byte("sip:nat@example.com")).aors["sip:nat@example.com"].bs[0]})
	v1[0] = 1
	v1 = v1[:len(v1)-2] // drop the flags field and the (empty) owner
	st.Put([]byte("sip:old@example.com"), v1, nil)
	r.Close()
	st.Close()

	st, err = store.Open(dir, store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err = New(Config{Store: st, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b := r.Lookup("sip:nat@example.com"); len(b) != 1 || !b[0].NAT || b[0].Source.String() != "203.0.113.1:5060" {
		t.Fatalf("after restart: %+v", b)
	}
	if b := r.Lookup("sip:old@example.com"); len(b) != 1 || b[0].NAT {
		t.Fatalf("version 1 record: %+v", b)
	}
}

// TestRangeNATAndRemove: keep-alive targets are the NATed UDP bindings;
// Remove drops one binding and leaves the AoR's others.
func TestRangeNATAndRemove(t *testing.T) {
	r := newRegistrar(t, Config{})
	reg := func(user, contact string, nat bool, proto transport.Proto) {
		m := parse(t, req{to: "<sip:" + user + "@example.com>", hdrs: []string{"Contact: <" + contact + ">"}}.text())
		res := r.Register(Request{Msg: m, Source: src, Local: local, Proto: proto, NAT: nat})
		if res.Code != 200 {
			t.Fatal(res.Code, res.Reason)
		}
	}
	reg("a", "sip:a@10.0.0.1", true, transport.UDP)
	reg("a", "sip:a@10.0.0.2", true, transport.UDP)
	reg("b", "sip:b@10.0.0.3", false, transport.UDP) // not behind NAT
	reg("c", "sip:c@10.0.0.4", true, transport.TCP)  // the connection keeps itself open
	var got []string
	r.RangeNAT(func(aor, uri string, s netip.AddrPort, _ time.Time) { got = append(got, aor+" "+uri+" "+s.String()) })
	slices.Sort(got)
	want := []string{"sip:a@example.com sip:a@10.0.0.1 " + src.String(), "sip:a@example.com sip:a@10.0.0.2 " + src.String()}
	if !slices.Equal(got, want) {
		t.Fatalf("RangeNAT: %q, want %q", got, want)
	}
	if !r.Remove("sip:a@example.com", "sip:a@10.0.0.1") || r.Remove("sip:a@example.com", "sip:a@10.0.0.1") {
		t.Fatal("Remove must report true once, then false")
	}
	if b := r.Lookup("sip:a@example.com"); len(b) != 1 || b[0].URI != "sip:a@10.0.0.2" {
		t.Fatalf("after Remove: %+v", b)
	}
	r.Remove("sip:a@example.com", "sip:a@10.0.0.2")
	if aors, _ := r.Count(); aors != 2 {
		t.Fatalf("%d AoRs left, want 2 (b and c)", aors)
	}
}

// Range sees every unexpired binding once, and stops when asked.
func TestRange(t *testing.T) {
	clk := newClock()
	r := newRegistrar(t, Config{Now: clk.Now})
	for i, u := range []string{"alice", "bob", "carol"} {
		register(t, r, parse(t, req{to: "<sip:" + u + "@example.com>", callID: fmt.Sprintf("c%d", i),
			hdrs: []string{"Contact: <sip:" + u + "@192.0.2.1>", fmt.Sprintf("Expires: %d", 100*(i+1))}}.text()))
	}
	seen := map[string]bool{}
	r.Range(func(b Binding) bool { seen[b.AOR+" "+b.URI] = true; return true })
	if len(seen) != 3 || !seen["sip:alice@example.com sip:alice@192.0.2.1"] {
		t.Fatalf("Range saw %v", seen)
	}
	n := 0
	r.Range(func(Binding) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Range went on after false: %d", n)
	}
	clk.Advance(150 * time.Second) // alice's binding lapses
	seen = map[string]bool{}
	r.Range(func(b Binding) bool { seen[b.AOR] = true; return true })
	if len(seen) != 2 || seen["sip:alice@example.com"] {
		t.Fatalf("after alice's expiry: %v", seen)
	}
}
