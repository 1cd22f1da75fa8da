package cluster

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseWrite: any message on the aor channel parses or is refused
// without a panic; what parses names a key inside the message and a
// version of at least 1, and its parts rebuild the message.
//
//	go test -run '^$' -fuzz '^FuzzParseWrite$' -fuzztime 60s ./cluster/
func FuzzParseWrite(f *testing.F) {
	f.Add("127.0.0.2:5060 7 21 t:aor:sip:a@example.com\x03\x01rec")
	f.Add("n 1 0 ")
	f.Add("n 1 5 abc")
	f.Add("n -1 1 ab")
	f.Add("n 99999999999999999999 1 a")
	f.Fuzz(func(t *testing.T, payload string) {
		node, v, key, val, ok := parseWrite(payload)
		if !ok {
			return
		}
		if v < 1 || node == "" {
			t.Fatalf("accepted version %d node %q", v, node)
		}
		// The key and record are the message's tail, the key as long
		// as the message says.
		head, ok := strings.CutSuffix(payload, key+val)
		if !ok || !strings.HasPrefix(head, node+" ") || !strings.HasSuffix(head, " ") {
			t.Fatalf("parts %q %d %q %q are not %q", node, v, key, val, payload)
		}
		f := strings.Fields(head)
		if n, err := strconv.Atoi(f[len(f)-1]); err != nil || n != len(key) {
			t.Fatalf("key %q of %d bytes, message says %q", key, len(key), f[len(f)-1])
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
