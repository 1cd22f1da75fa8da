package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
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

// The mime lists replace the defaults (they are not added to them), and
// an empty server_header is kept (no header).
func TestParseMIMEAndServerHeader(t *testing.T) {
	c, err := Parse([]byte("mime:\n  inbound: [Application/SDP, text/*]\nserver_header: \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.MIME.Inbound, []string{"Application/SDP", "text/*"}) || !reflect.DeepEqual(c.MIME.Outbound, DefaultMIME()) {
		t.Errorf("mime %+v", c.MIME)
	}
	if c.ServerHeader != "" {
		t.Errorf("server_header %q, want empty", c.ServerHeader)
	}
	if d := Default(); d.ServerHeader != "sipedge" || len(d.MIME.Inbound) == 0 || !reflect.DeepEqual(d.MIME.Inbound, d.MIME.Outbound) {
		t.Errorf("defaults: server_header %q, mime %+v", d.ServerHeader, d.MIME)
	}
	for _, ok := range []string{"*/*", "application/*", "application/pidf+xml", "application/media_control+xml"} {
		if !validMediaRange(ok) {
			t.Errorf("%q refused", ok)
		}
	}
}

// Every error names the key and its line and says what to write instead.
func TestErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"listen: [udp:0.0.0.0:5060]\nlisten_x: 1\n", "config:2: listen_x: unknown key"},
		{"registrar:\n  min_expires: 30s\n  maxexpires: 1h\n", "config:3: registrar.maxexpires: unknown key"},
		{"registrar:\n  min_expires: soon\n", "config:2: registrar.min_expires: \"soon\" is not a duration; write e.g. 30s"},
		{"listen: [udp:localhost:5060]\n", "config:1: listen: \"udp:localhost:5060\": want [udp:|tcp:|tls:|ws:|wss:]ip:port"},
		{"listen: [ws:127.0.0.1:8080]\ntransport:\n  websocket_origins: [\"[x\"]\n", "config:3: transport.websocket_origins: \"[x\": use a host pattern"},
		{"log:\n  level: loud\n", "config:2: log.level: \"loud\": use debug, info, warn or error"},
		{"registrar:\n  min_expires: 2h\n", "config:2: registrar.min_expires: 2h is more than max_expires 1h"},
		{"security:\n  rate:\n    requests: -1\n", "config:3: security.rate.requests: -1: use 0 (off) to 1000000"},
		{"security:\n  rate:\n    window: 10ms\n", "config:3: security.rate.window: 10ms: use 100ms to 1h"},
		{"security:\n  auth_failures:\n    ban: 0s\n", "config:3: security.auth_failures.ban: 0s: use 1s to 720h"},
		{"security:\n  max_tracked_sources: 5\n", "config:2: security.max_tracked_sources: 5: use 100 to 10000000"},
		{"security:\n  lift_bans: [everyone]\n", "config:2: security.lift_bans: \"everyone\": want all, an address such as 203.0.113.7 or a prefix"},
		{"security:\n  rate: 100\n", "config:2: security.rate: \"100\": want a mapping of keys"},
		{"registrar:\n  max_expires: 30s\n", "config:1: registrar.min_expires: 1m is more than max_expires 30s"},
		{"sessions:\n  interval: 60s\n", "config:2: sessions.interval: 1m is below min_se 90s"},
		{"nat:\n  keepalive_interval: 0s\n", "config:1: nat: keepalive_interval must be at least 1s"},
		{"tls: {key: k.pem}\n", "config:1: tls: set both cert and key"},
		{"registrar:\n  max_contacts: 0\n", "config:2: registrar.max_contacts: must be at least 1"},
		{"call_log:\n  flush: 2s\n", "config:2: call_log.flush: 2s: use a duration from 0 (each line written at once) to 1s; the default is 100ms"},
		{"trusted_networks: [everyone]\n", "config:1: trusted_networks: \"everyone\""},
		{"registrar:\n  max_contacts: lots\n", "config:2: registrar.max_contacts: \"lots\": want a whole number, e.g. 10"},
		{"tls:\n  cert: a.pem\n", "config:1: tls: set both cert and key"},
		{"tls:\n  verify_clients: require\n", "config:2: tls.verify_clients: \"require\" needs tls.ca_file"},
		{"tls:\n  verify_clients: request\n", "config:2: tls.verify_clients: \"request\" needs tls.ca_file"},
		{"tls:\n  verify_clients: always\n", "config:2: tls.verify_clients: \"always\": use none, request or require"},
		{"tls:\n  min_version: \"1.1\"\n", "config:2: tls.min_version: \"1.1\": use \"1.2\" or \"1.3\""},
		{"tls:\n  ca_file: /nonexistent/ca.pem\n", "config:2: tls.ca_file: open /nonexistent/ca.pem: no such file or directory; give a readable PEM file"},
		{"tls:\n  ca_file: /dev/null\n", "config:2: tls.ca_file: /dev/null holds no PEM certificate"},
		{"tls:\n  verify_server: sometimes\n", "config:2: tls.verify_server: \"sometimes\": want true or false"},
		{"routes:\n  - name: x\n    to: 192.0.2.1\n", "config:1: routes[0].to: \"192.0.2.1\": needs a SIP URI"},
		{"routes:\n  - to: sip:192.0.2.1\n", "config:1: routes[0].name: every route needs a name"},
		{"dns:\n  servers: [127.0.0.1]\n", "config:2: dns.servers: \"127.0.0.1\": want ip:port"},
		{"outbound_proxy: proxy.example.net\n", "config:1: outbound_proxy: \"proxy.example.net\": needs a SIP URI"},
		{"memory_limit_mb: 10\n", "config:1: memory_limit_mb: 10: use 0 (no limit) or at least 64"},
		{"media:\n  relay: sometimes\n", "config:2: media.relay: \"sometimes\": use auto, always or never"},
		{"media:\n  ports: 30001-30099\n", "config:2: media.ports: \"30001-30099\": want an even first port"},
		{"media:\n  latch: last\n", "config:2: media.latch: \"last\": use first or ssrc"},
		{"media:\n  kernel: yes\n", "config:2: media.kernel: \"yes\": use auto, on or off"},
		{"media:\n  inactivity: soon\n", "config:2: media.inactivity: \"soon\" is not a duration"},
		{"listen: [\n", "config:1: not valid YAML: did not find expected node content"},
		{"log:\n  level: info\n   format: json\n", "config:3: not valid YAML: mapping values are not allowed"},
		{"log: {level: info, colour: red}\n", "config:1: log.colour: unknown key"},
		{"routes:\n  - name: a\n    to: sip:192.0.2.1\n  - name: b\n    port: 5060\n", "config:5: routes[1].port: unknown key"},
		{"domains: example.com\n", "config:1: domains: \"example.com\": want a list, e.g. [a, b]"},
		{"symmetric_responses: maybe\n", "config:1: symmetric_responses: \"maybe\": want true or false"},
		{"store: /var/lib/sipedge\n", "config:1: store: \"/var/lib/sipedge\": want a mapping of keys"},
		{"store:\n  dir: [a, b]\n", "config:2: store.dir: want a single value, not a list or mapping"},
		{"routes: gw\n", "config:1: routes: \"gw\": want a list of routes"},
		{"- listen\n", "config:1: the file must be a mapping of keys"},
		{"just text\n", "config:1: the file must be a mapping of keys"},
		{"log:\n  level: info\n---\nlog:\n  level: debug\n", "config:3: a second YAML document"},
		{"routes:\n  - name: x\n    to: \"sip:\"\n", "config:1: routes[0].to: \"sip:\": needs a SIP URI"},
		{"outbound_proxy: sipproxy.example.net\n", "config:1: outbound_proxy: \"sipproxy.example.net\": needs a SIP URI"},
		{"limits:\n  max_message_size: 100\n", "config:2: limits.max_message_size: 100: use 1024 to 1048576"},
		{"limits:\n  max_headers: -1\n", "config:2: limits.max_headers: -1: use a positive number"},
		{"limits:\n  max_vias: -1\n", "config:2: limits.max_vias: -1: use a positive number"},
		{"mime:\n  inbound: []\n", "config:2: mime.inbound: an empty list would refuse every request with a body; list the media types to allow, or write [\"*/*\"]"},
		{"mime:\n  outbound:\n", "config:2: mime.outbound: an empty list"},
		{"mime:\n  inbound: [application]\n", "config:2: mime.inbound: \"application\": want a media type such as application/sdp"},
		{"mime:\n  inbound: [\"application/sdp;charset=x\"]\n", "config:2: mime.inbound: \"application/sdp;charset=x\": want a media type"},
		{"mime:\n  outbound: [\"*/sdp\"]\n", "config:2: mime.outbound: \"*/sdp\": want a media type"},
		{"mime:\n  inbound: [application/sdp]\n  both: []\n", "config:3: mime.both: unknown key"},
		{"server_header: \"a\\r\\nX-Evil: 1\"\n", "config:1: server_header: control characters"},
		{"limits:\n  max_transactions: 0\n", "config:2: limits.max_transactions: 0: use a positive number (default 100000)"},
		{"transport:\n  message_timeout: 0s\n", "config:2: transport.message_timeout: 0s: use a positive duration no longer than idle_timeout 5m (default 10s)"},
		{"transport:\n  idle_timeout: 30s\n  message_timeout: 1m\n", "config:3: transport.message_timeout: 1m: use a positive duration no longer than idle_timeout 30s"},
		{"transport:\n  max_connections: 0\n", "config:2: transport.max_connections: 0: use a positive number, well under the open-files limit"},
		{"transport:\n  max_connections: 50\n  max_connections_per_source: 100\n", "config:3: transport.max_connections_per_source: 100: use a positive number no larger than max_connections 50"},
		{"transport:\n  max_connections_per_source: -1\n", "config:2: transport.max_connections_per_source: -1: use a positive number"},
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

// An empty file, one with only comments and one with only "~" are the
// defaults.
func TestEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# nothing yet\n", "~\n", "---\n"} {
		c, err := Parse([]byte(in))
		if err != nil || !reflect.DeepEqual(c, Default()) {
			t.Errorf("Parse(%q) = %+v, %v; want the defaults", in, c, err)
		}
	}
}

// The example in docs/CONFIG.md, which shows every key, is a valid file.
func TestDocExample(t *testing.T) {
	b, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/CONFIG.md: no yaml example")
	}
	if _, err := Parse([]byte(example)); err != nil {
		t.Fatalf("docs/CONFIG.md example: %v", err)
	}
}

// The TLS verification keys: defaults, and a file that sets them all with
// a readable CA bundle.
func TestTLSKeys(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (TLS{VerifyClients: "none", VerifyServer: true, MinVersion: "1.2"}); c.TLS != want {
		t.Fatalf("defaults %+v, want %+v", c.TLS, want)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Parse([]byte("tls:\n  ca_file: " + ca + "\n  verify_clients: require\n  verify_server: false\n  min_version: \"1.3\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (TLS{CAFile: ca, VerifyClients: "require", VerifyServer: false, MinVersion: "1.3"}); c.TLS != want {
		t.Fatalf("got %+v, want %+v", c.TLS, want)
	}
}

func TestSecurity(t *testing.T) {
	c, err := Parse([]byte("security:\n  rate: {requests: 0}\n  lift_bans: [all, 203.0.113.7, \"::ffff:198.51.100.1\", 2001:db8::/32]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Security.Rate.Requests != 0 || c.Security.Rate.Window.Duration != 2*time.Second || c.Security.AuthFailures.PerSource != 10 {
		t.Errorf("%+v", c.Security)
	}
	want := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"), netip.MustParsePrefix("203.0.113.7/32"),
		netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("2001:db8::/32")}
	if got := c.Security.LiftPrefixes(); !slices.Equal(got, want) {
		t.Errorf("LiftPrefixes = %v, want %v", got, want)
	}
}

// The example configurations shipped in contrib/examples load.
func TestContribExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "contrib", "examples", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// dial_plan: the example loads with its rules; a wrong rule is refused
// with the key inside the rule and its line.
func TestDialPlan(t *testing.T) {
	c, err := Load(filepath.Join("..", "contrib", "examples", "dialplan.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DialPlan) != 4 || c.DialPlan[2].Name != "national" || c.DialPlan[2].Headers.Remove[0] != "P-Asserted-Identity" {
		t.Fatalf("dial_plan %+v", c.DialPlan)
	}
	for _, tc := range []struct{ in, want string }{
		{"dial_plan:\n  - name: a\n    prefix: \"0\"\n    headers:\n      set:\n        - \"X-A: 1\"\n        - \"Via: x\"\n",
			"config:7: dial_plan[0].headers.set[1]: Via cannot be edited: the core adds and removes Via"},
		{"dial_plan:\n  - name: a\n    prefix: \"0\"\n  - name: b\n    match: \"(\"\n",
			"config:5: dial_plan[1].match: \"(\" is not a regular expression"},
		{"dial_plan:\n  - prefix: \"0\"\n", "config:2: dial_plan[0].name: every rule needs a name"},
		{"dial_plan:\n  - name: a\n    prefix: \"0\"\n    redirects: always\n", "config:4: dial_plan[0].redirects: \"always\": use relay"},
		{"dial_plan:\n  - name: a\n    prefix: \"0\"\n    codecs: {remove: [\"G 729\"]}\n", "config:4: dial_plan[0].codecs.remove[0]: \"G 729\": a payload type"},
		{"dial_plan:\n  - name: a\n    prefx: \"0\"\n", "config:3: dial_plan[0].prefx: unknown key"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s...", tc.in, err, tc.want)
		}
	}
}
