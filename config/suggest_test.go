package config

import (
	"slices"
	"testing"
)

// A misspelt key gets the nearest valid key of the same mapping, a key
// written at the wrong level the place where it belongs, anything else
// the plain message; the whole line is checked.
func TestUnknownKeySuggestions(t *testing.T) {
	const plain = "unknown key; check its spelling and indentation (see docs/CONFIG.md for every key)"
	for _, tc := range []struct{ yaml, want string }{
		{"registrar:\n  max_expire: 1h\n", `config:2: registrar.max_expire: unknown key; did you mean "max_expires"?`},
		{"registrar:\n  maxexpires: 1h\n", `config:2: registrar.maxexpires: unknown key; did you mean "max_expires"?`},
		{"registrar: {min_expire: 30s}\n", `config:1: registrar.min_expire: unknown key; did you mean "min_expires"?`},
		{"registrar:\n  max_contatcs: 3\n", `config:2: registrar.max_contatcs: unknown key; did you mean "max_contacts"?`}, // a swap is one edit
		{"log:\n  Level: debug\n", `config:2: log.Level: unknown key; did you mean "level"?`},
		{"log: {level: info, colour: red}\n", "config:1: log.colour: " + plain},
		{"lisen: [udp:127.0.0.1:5060]\n", `config:1: lisen: unknown key; did you mean "listen"?`},
		{"listen_x: 1\n", `config:1: listen_x: unknown key; did you mean "listen"?`},
		{"media:\n  max_call: 10\n", `config:2: media.max_call: unknown key; did you mean "max_calls"?`},
		{"routes:\n  - name: a\n    too: sip:192.0.2.1\n", `config:3: routes[0].too: unknown key; did you mean "to"?`},
		{"routes:\n  - name: a\n    port: 5060\n", "config:3: routes[0].port: " + plain},
		{"hep:\n  colector: udp:127.0.0.1:9060\n", `config:2: hep.colector: unknown key; did you mean "collectors"?`}, // not the former "collector"
		{"hep:\n  capture: 7\n", "config:2: hep.capture: " + plain},
		{"tls:\n  verify_client: none\n", `config:2: tls.verify_client: unknown key; did you mean "verify_clients"?`},
		// Short keys allow one edit only.
		{"log:\n  lvl: info\n", "config:2: log.lvl: " + plain},
		{"security:\n  rate:\n    bans: 1m\n", `config:3: security.rate.bans: unknown key; did you mean "ban"?`},
		// Ties are all named.
		{"nat:\n  keepalive_failure: 2\n", `config:2: nat.keepalive_failure: unknown key; did you mean "keepalive_failures"?`},
		{"security:\n  rate:\n    windoww: 1s\n", `config:3: security.rate.windoww: unknown key; did you mean "window"?`},
		// Right key, wrong level.
		{"max_expires: 1h\n", "config:1: max_expires: unknown key here; did you mean registrar.max_expires? (check the indentation)"},
		{"security:\n  requests: 5\n", "config:2: security.requests: unknown key here; did you mean security.rate.requests? (check the indentation)"},
		{"security:\n  ban: 5m\n", "config:2: security.ban: unknown key here; did you mean security.rate.ban or security.auth_failures.ban? (check the indentation)"},
		{"nat:\n  registrar: {}\n", "config:2: nat.registrar: unknown key here; did you mean registrar? (check the indentation)"},
		{"registrar:\n  domains: [a]\n", "config:2: registrar.domains: unknown key here; did you mean domains? (check the indentation)"},
		// Former names are not offered for a key at the wrong level either.
		{"collector: udp:127.0.0.1:9060\n", "config:1: collector: " + plain},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"max_expires", "max_expires", 0},
		{"max_expire", "max_expires", 1},   // insertion
		{"maxx_expires", "max_expires", 1}, // deletion
		{"max_axpires", "max_expires", 1},  // substitution
		{"max_epxires", "max_expires", 1},  // swap of neighbours
		{"ca", "abc", 3},                   // OSA: no edit of a swapped pair
		{"min_expire", "max_expires", 3},
		{"colour", "format", 5},
		{"kitten", "sitting", 3},
	} {
		if d := distance(tc.a, tc.b); d != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
		if d := distance(tc.b, tc.a); d != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d (symmetric)", tc.b, tc.a, d, tc.d)
		}
	}
}

func TestNearest(t *testing.T) {
	keys := []string{"inbound", "outbound", "to", "ban", "bans_x"}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"inbund", []string{"inbound"}},
		{"outbond", []string{"outbound"}},
		{"INBOUND", []string{"inbound"}},
		{"tp", []string{"to"}},
		{"x", nil}, // one edit from nothing: not a typing error of "to"
		{"bn", []string{"ban"}},
		{"bans", []string{"ban"}}, // "bans_x" is two edits away; "ban" one
		{"bound", []string{"inbound"}},
		{"sound", nil},
		{string(make([]byte, 100)), nil},
	} {
		if got := nearest(tc.name, keys); !slices.Equal(got, tc.want) {
			t.Errorf("nearest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := nearest("ab", []string{"ac", "ad", "abc"}); !slices.Equal(got, []string{"ac", "ad", "abc"}) {
		t.Errorf("ties: %q", got)
	}
}
