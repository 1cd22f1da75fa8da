package cluster

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseBatch: any message on the aor channel parses or is refused
// without a panic; what parses has increasing versions of its batch, and
// its records rebuild the message byte for byte (numbers are refused in
// any spelling but the writer's), and its node is the one
// batchNode reads from its head alone.
//
//	go test -run '^$' -fuzz '^FuzzParseBatch$' -fuzztime 60s ./cluster/
func FuzzParseBatch(f *testing.F) {
	f.Add("7 127.0.0.2:5060\n21 t:aor:sip:a@example.com 5 \x03\x01rec")
	f.Add("1 n\n1 k 0 1 j 3 abc")
	f.Add("1 n\n5 abc 0 ")
	f.Add("-1 n\n1 a 0 ")
	f.Add("99999999999999999999 n\n1 a 0 ")
	f.Fuzz(func(t *testing.T, payload string) {
		node, ws, ok := parseBatch(payload)
		if !ok {
			return
		}
		if n := batchNode(payload); n != node {
			t.Fatalf("%q: batchNode %q, parseBatch %q", payload, n, node)
		}
		g := ws[0].v / batchSpan
		var b strings.Builder
		b.WriteString(strconv.FormatInt(g, 10) + " " + node + "\n")
		for i, w := range ws {
			if w.v != g*batchSpan+int64(i) || g < 1 {
				t.Fatalf("write %d has version %d in batch %d", i, w.v, g)
			}
			b.WriteString(strconv.Itoa(len(w.key)) + " " + w.key + " " + strconv.Itoa(len(w.val)) + " " + w.val)
		}
		if b.String() != payload {
			t.Fatalf("%q parsed to %q %+v, which writes %q", payload, node, ws, b.String())
		}
	})
}

// FuzzParseBan: any message on the ban channel parses or is refused
// without a panic; a ban is of one address.
//
//	go test -run '^$' -fuzz '^FuzzParseBan$' -fuzztime 60s ./cluster/
func FuzzParseBan(f *testing.F) {
	f.Add("127.0.0.2:5060 ban 203.0.113.9/32 1800000000000 rate")
	f.Add("127.0.0.2:5060 lift 203.0.113.0/24 -62135596800000 ")
	f.Add("n ban 2001:db8::1/128 1 auth-failures")
	f.Add("n ban 10.0.0.0/8 1 rate")
	f.Fuzz(func(t *testing.T, payload string) {
		m, ok := parseBan(payload)
		if !ok {
			return
		}
		if !m.lift && !m.p.IsSingleIP() {
			t.Fatalf("a ban of %v", m.p)
		}
	})
}
