package config

import (
	"slices"
	"strings"
	"testing"
)

// hep: several collectors, the capture id, and the former single-collector
// keys as aliases that load into the new ones.
func TestHEPKeys(t *testing.T) {
	for _, tc := range []struct {
		yaml       string
		collectors []string
		id         int
	}{
		{"", nil, 2001},
		{"hep:\n  collectors: [udp:127.0.0.1:9060, \"udp:[::1]:9060\", homer.example.net:9060]\n  capture_id: 7\n",
			[]string{"udp:127.0.0.1:9060", "udp:[::1]:9060", "homer.example.net:9060"}, 7},
		// The same address over UDP and over TCP: two collectors.
		{"hep:\n  collectors: [udp:127.0.0.1:9060, tcp:127.0.0.1:9060]\n", []string{"udp:127.0.0.1:9060", "tcp:127.0.0.1:9060"}, 2001},
		{"hep:\n  collector: udp:127.0.0.1:9060\n  id: 77\n", []string{"udp:127.0.0.1:9060"}, 77},
		{"hep:\n  collector: udp:127.0.0.1:9060\n", []string{"udp:127.0.0.1:9060"}, 2001},
		{"hep:\n  collectors: [udp:127.0.0.1:9060]\n  id: 0\n", []string{"udp:127.0.0.1:9060"}, 0},
		{"hep:\n  capture_id: 4294967295\n", nil, 4294967295},
	} {
		c, err := Parse([]byte(tc.yaml))
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if !slices.Equal(c.HEP.Collectors, tc.collectors) || c.HEP.CaptureID != tc.id || c.HEP.Collector != "" || c.HEP.ID != nil {
			t.Errorf("%q: %+v", tc.yaml, c.HEP)
		}
	}
	for _, tc := range []struct{ yaml, want string }{
		{"hep:\n  collectors: [udp:127.0.0.1:9060]\n  collector: udp:127.0.0.1:9061\n",
			"config:3: hep.collector: the former name of collectors; write only collectors: [udp:host:port, ...]"},
		{"hep:\n  id: 1\n  capture_id: 2\n", "config:2: hep.id: the former name of capture_id; write only capture_id"},
		{"hep:\n  collectors: [tls:127.0.0.1:9061]\n", `config:2: hep.collectors: "tls:127.0.0.1:9061": HEP over TLS is not supported; use udp: or tcp:`},
		{"hep:\n  collector: 127.0.0.1\n", `config:2: hep.collector: "127.0.0.1": want udp:host:port or tcp:host:port, e.g. udp:127.0.0.1:9060`},
		{"hep:\n  collectors: [tcp:127.0.0.1:9061, \"tcp:127.0.0.1:9061\"]\n",
			`config:2: hep.collectors: "tcp:127.0.0.1:9061" and "tcp:127.0.0.1:9061" are the same collector; list it once`},
		{"hep:\n  collectors: [udp:127.0.0.1:9060, 127.0.0.1:9060]\n",
			`config:2: hep.collectors: "udp:127.0.0.1:9060" and "127.0.0.1:9060" are the same collector; list it once`},
		{"hep:\n  collectors: [\"udp:[::1]:9060\", \"[0:0::1]:9060\"]\n", `config:2: hep.collectors: "udp:[::1]:9060" and "[0:0::1]:9060" are the same collector`},
		{"hep:\n  capture_id: -1\n", "config:2: hep.capture_id: -1: use 0 to 4294967295"},
		{"hep:\n  id: 4294967296\n", "config:2: hep.id: 4294967296: use 0 to 4294967295"},
		{"hep:\n  collectors: udp:127.0.0.1:9060\n", `config:2: hep.collectors: "udp:127.0.0.1:9060": want a list, e.g. [a, b]`},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant prefix %s", tc.yaml, err, tc.want)
		}
	}
}

// The former spelling and the new one of the same collectors are the same
// configuration: a reload from one to the other changes nothing.
func TestHEPAliasesReload(t *testing.T) {
	old, err := Parse([]byte("hep:\n  collector: udp:127.0.0.1:9060\n  id: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := Parse([]byte("hep:\n  collectors: [udp:127.0.0.1:9060]\n  capture_id: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(old, cur); len(d) != 0 {
		t.Errorf("Diff = %q, want none", d)
	}
	more, err := Parse([]byte("hep:\n  collectors: [udp:127.0.0.1:9060, udp:127.0.0.1:9061]\n  capture_id: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(cur, more); !slices.Equal(d, []string{"hep.collectors"}) {
		t.Errorf("Diff = %q, want hep.collectors", d)
	}
}
