package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"sipedge/nat"
)

func TestDefaults(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 2 || c.Registrar.MaxExpires.Duration != time.Hour || len(c.Domains) != 0 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(`
listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]
domains: [example.com]
registrar:
  min_expires: 30s
  max_expires: 2h
  default_expires: 10m
  max_contacts: 3
trusted_networks: [loopback, 192.0.2.0/24]
memory_limit_mb: 900
routes:
  - name: provider
    prefix: "00"
    to: sip:192.0.2.10:5060
dns:
  servers: [127.0.0.1:5353]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Registrar.DefaultExpires.Duration != 10*time.Minute || c.Routes[0].Prefix != "00" || c.MemoryLimitMB != 900 || c.Log.Level != "info" {
		t.Fatalf("%+v", c)
	}
}

// Every error names the key and its line and says what to write instead.
func TestErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"listen: [udp:0.0.0.0:5060]\nlisten_x: 1\n", "config:2: listen_x: unknown key"},
		{"registrar:\n  min_expires: 30s\n  maxexpires: 1h\n", "config:3: maxexpires: unknown key"},
		{"registrar:\n  min_expires: soon\n", "config:2: \"soon\" is not a duration"},
		{"listen: [udp:localhost:5060]\n", "config:1: listen: \"udp:localhost:5060\": want [udp:|tcp:|tls:]ip:port"},
		{"log:\n  level: loud\n", "config:2: log.level: \"loud\": use debug, info, warn or error"},
		{"registrar:\n  min_expires: 2h\n", "config:2: registrar.min_expires: 2h0m0s is more than max_expires"},
		{"registrar:\n  max_contacts: 0\n", "config:2: registrar.max_contacts: must be at least 1"},
		{"trusted_networks: [everyone]\n", "config:1: trusted_networks: \"everyone\""},
		{"registrar:\n  max_contacts: lots\n", "config:2: cannot unmarshal !!str `lots` into int"},
		{"tls:\n  cert: a.pem\n", "config:2: tls: set both cert and key"},
		{"routes:\n  - name: x\n    to: 192.0.2.1\n", "config:1: routes[0].to: \"192.0.2.1\": needs a SIP URI"},
		{"routes:\n  - to: sip:192.0.2.1\n", "config:1: routes[0].name: every route needs a name"},
		{"dns:\n  servers: [127.0.0.1]\n", "config:2: dns.servers: \"127.0.0.1\": want ip:port"},
		{"outbound_proxy: proxy.example.net\n", "config:1: outbound_proxy: \"proxy.example.net\": needs a SIP URI"},
		{"memory_limit_mb: 10\n", "config:1: memory_limit_mb: 10: use 0 (no limit) or at least 64"},
		{"media:\n  relay: sometimes\n", "config:2: media.relay: \"sometimes\": use auto, always or never"},
		{"media:\n  ports: 30001-30099\n", "config:2: media.ports: \"30001-30099\": want an even first port"},
		{"media:\n  latch: last\n", "config:2: media.latch: \"last\": use first or ssrc"},
		{"media:\n  inactivity: soon\n", "config:2: \"soon\" is not a duration"},
		{"listen: [\n", "config"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant prefix %q", tc.yaml, err, tc.want)
		}
	}
}

// "private" in trusted_networks is exactly nat.PrivatePrefixes, so what is
// trusted and what counts as behind NAT cannot drift apart.
func TestParseNetworks(t *testing.T) {
	priv, err := ParseNetworks("private")
	if err != nil || !slices.Equal(priv, nat.PrivatePrefixes()) {
		t.Fatalf("ParseNetworks(private) = %v, %v; want nat.PrivatePrefixes() %v", priv, err, nat.PrivatePrefixes())
	}
	for _, tc := range []struct {
		networks string
		addr     string
		want     bool
	}{
		{"private", "10.1.2.3", true},
		{"private", "172.31.255.255", true},
		{"private", "172.32.0.1", false},
		{"private", "192.168.1.1", true},
		{"private", "100.64.0.1", true},
		{"private", "169.254.10.20", true}, // IPv4 link-local, as fe80::/10
		{"private", "fd00::1", true},
		{"private", "fe80::1", true},
		{"private", "127.0.0.1", false}, // loopback is its own keyword
		{"private", "203.0.113.1", false},
		{"private", "2001:db8::1", false},
		{"loopback", "127.9.9.9", true},
		{"loopback", "::1", true},
		{"loopback", "10.0.0.1", false},
		{"192.0.2.7/24", "192.0.2.200", true},
		{"192.0.2.7/24", "192.0.3.1", false},
	} {
		ps, err := ParseNetworks(tc.networks)
		if err != nil {
			t.Fatalf("ParseNetworks(%q): %v", tc.networks, err)
		}
		a := netip.MustParseAddr(tc.addr)
		got := slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
		if got != tc.want {
			t.Errorf("%s contains %s = %v, want %v", tc.networks, tc.addr, got, tc.want)
		}
		if tc.networks == "private" && !a.IsLoopback() && got != nat.Private(a) {
			t.Errorf("trusted_networks private and nat.Private disagree on %s", a)
		}
	}
}
