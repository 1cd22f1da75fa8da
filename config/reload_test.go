package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sipedge/features/dialplan"
)

func TestDiff(t *testing.T) {
	f := false
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"nothing", func(c *Config) {}, nil},
		{"listen", func(c *Config) { c.Listen = []string{"udp:127.0.0.1:5060"} }, []string{"listen"}},
		{"listen reordered", func(c *Config) { c.Listen = []string{"[::]:5060", "0.0.0.0:5060"} }, nil},
		{"listen spelled per protocol", func(c *Config) {
			c.Listen = []string{"udp:0.0.0.0:5060", "TCP:0.0.0.0:5060", "[::]:5060", "udp:[::]:5060"}
		}, nil},
		{"listen drops tcp", func(c *Config) { c.Listen = []string{"udp:0.0.0.0:5060", "[::]:5060"} }, []string{"listen"}},
		{"tls", func(c *Config) {
			c.TLS = TLS{Cert: "new.pem", Key: "new.key", CAFile: "ca.pem", VerifyClients: "require", VerifyServer: false, MinVersion: "1.3"}
		}, nil},
		{"domains", func(c *Config) { c.Domains = []string{"example.com"} }, nil},
		{"log.level", func(c *Config) { c.Log.Level = "debug" }, nil},
		{"log.format", func(c *Config) { c.Log.Format = "json" }, []string{"log.format"}},
		{"limits", func(c *Config) { c.Limits.MaxHeaders, c.Limits.MaxVias = 10, 5 }, nil},
		{"limits.max_message_size", func(c *Config) { c.Limits.MaxMessageSize = 4096 }, []string{"limits.max_message_size"}},
		{"shutdown.drain", func(c *Config) { c.Shutdown.Drain.Duration = time.Minute }, nil},
		{"registrar", func(c *Config) {
			c.Registrar = Registrar{MinExpires: Duration{time.Second}, MaxExpires: Duration{time.Minute}, DefaultExpires: Duration{time.Minute}, MaxContacts: 1}
		}, nil},
		{"store.dir", func(c *Config) { c.Store.Dir = "/var/lib/sipedge" }, []string{"store.dir"}},
		{"transport.udp_readers", func(c *Config) { c.Transport.UDPReaders = 4 }, []string{"transport.udp_readers"}},
		{"transport.idle_timeout", func(c *Config) { c.Transport.IdleTimeout.Duration = time.Minute }, []string{"transport.idle_timeout"}},
		{"transport.message_timeout", func(c *Config) { c.Transport.MessageTimeout.Duration = time.Second }, []string{"transport.message_timeout"}},
		{"transport connection caps", func(c *Config) { c.Transport.MaxConnections, c.Transport.MaxConnectionsPerSource = 500, 5 }, nil},
		{"limits.max_transactions", func(c *Config) { c.Limits.MaxTransactions = 1000 }, []string{"limits.max_transactions"}},
		{"outbound_proxy", func(c *Config) { c.OutboundProxy = "sip:proxy.example.net" }, nil},
		{"routes", func(c *Config) { c.Routes = []Route{{Name: "gw", To: "sip:192.0.2.1"}} }, nil},
		{"media.relay", func(c *Config) { c.Media.Relay = "never" }, []string{"media.relay"}},
		{"media.ports", func(c *Config) { c.Media.Ports = "20000-20999" }, []string{"media.ports"}},
		{"media.latch", func(c *Config) { c.Media.Latch = "ssrc" }, []string{"media.latch"}},
		{"media.firewall", func(c *Config) { c.Media.Firewall = "inet filter input" }, []string{"media.firewall"}},
		{"media limits", func(c *Config) {
			c.Media.MaxCalls, c.Media.MaxCallsPerUser, c.Media.MaxStreamsPerCall = 100, 2, 4
			c.Media.Inactivity.Duration = 2 * time.Minute
		}, nil},
		{"nat", func(c *Config) {
			c.NAT = NAT{Keepalive: "crlf", KeepaliveInterval: Duration{20 * time.Second}, KeepaliveFailures: 5}
		}, nil},
		{"sessions", func(c *Config) {
			c.Sessions = Sessions{MinSE: Duration{2 * time.Minute}, Interval: Duration{30 * time.Minute}}
		}, nil},
		{"dns.servers", func(c *Config) { c.DNS.Servers = []string{"127.0.0.1:53"} }, []string{"dns.servers"}},
		{"dns.servers empty list", func(c *Config) { c.DNS.Servers = []string{} }, nil},
		{"memory_limit_mb", func(c *Config) { c.MemoryLimitMB = 512 }, nil},
		{"symmetric_responses", func(c *Config) { c.SymmetricResponses = &f }, nil},
		{"trusted_networks", func(c *Config) { c.TrustedNetworks = []string{"loopback"} }, nil},
		{"several, in the order of the file", func(c *Config) {
			c.Media.Ports = "20000-20999"
			c.Domains = []string{"example.com"}
			c.Store.Dir = "/srv/sipedge"
		}, []string{"store.dir", "media.ports"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := Default()
			tc.change(cur)
			if got := Diff(Default(), cur); !slices.Equal(got, tc.want) {
				t.Errorf("Diff = %q, want %q", got, tc.want)
			}
			if got := Diff(cur, Default()); !slices.Equal(got, tc.want) {
				t.Errorf("Diff back = %q, want %q", got, tc.want)
			}
		})
	}
	if got := Diff(nil, Default()); got != nil {
		t.Errorf("Diff(nil, Default()) = %q, want none", got)
	}
}

// Every key is changed in turn: Diff reports it exactly when it is a
// restart key, and nothing else.
func TestDiffEveryKey(t *testing.T) {
	n := 0
	walkKeys(reflect.TypeFor[Config](), "", nil, func(path string, index []int) {
		n++
		cur := Default()
		change(t, path, reflect.ValueOf(cur).Elem().FieldByIndex(index))
		got := Diff(Default(), cur)
		var want []string
		if keyClass[path] == restart {
			want = []string{path}
		}
		if !slices.Equal(got, want) {
			t.Errorf("changing %s: Diff = %q, want %q", path, got, want)
		}
	})
	if n != len(keyClass) {
		t.Errorf("walked %d keys, keyClass has %d", n, len(keyClass))
	}
}

// change sets v to a value different from the default.
func change(t *testing.T, path string, v reflect.Value) {
	switch v.Interface().(type) {
	case string:
		v.SetString(v.String() + "x")
	case int:
		v.SetInt(v.Int() + 1)
	case bool:
		v.SetBool(!v.Bool())
	case *bool:
		b := v.IsNil() || !*v.Interface().(*bool)
		v.Set(reflect.ValueOf(&b))
	case *int:
		i := 1
		if !v.IsNil() {
			i += *v.Interface().(*int)
		}
		v.Set(reflect.ValueOf(&i))
	case Duration:
		v.Set(reflect.ValueOf(Duration{v.Interface().(Duration).Duration + time.Second}))
	case []string:
		v.Set(reflect.ValueOf(append(slices.Clone(v.Interface().([]string)), "udp:192.0.2.1:5060")))
	case map[string][]string:
		v.Set(reflect.ValueOf(map[string][]string{"x": {"y"}}))
	case []Route:
		v.Set(reflect.ValueOf([]Route{{Name: "x", To: "sip:192.0.2.1"}}))
	case []Trunk:
		v.Set(reflect.ValueOf([]Trunk{{Name: "x", Registrar: "sip:192.0.2.1", Username: "u", Password: "p"}}))
	case []dialplan.Rule:
		v.Set(reflect.ValueOf([]dialplan.Rule{{Name: "x", Prefix: "0"}}))
	case []Pool:
		v.Set(reflect.ValueOf([]Pool{{Name: "x", Targets: []PoolTarget{{URI: "sip:192.0.2.1"}}}}))
	case *Redis:
		v.Set(reflect.ValueOf(&Redis{Addrs: []string{"127.0.0.1:6379"}}))
	default:
		t.Fatalf("%s: the test does not know how to change a %s", path, v.Type())
	}
}

// A new key must be classified: every key of Config is in keyClass and
// every entry of keyClass is a key of Config.
func TestEveryKeyClassified(t *testing.T) {
	seen := map[string]bool{}
	walkKeys(reflect.TypeFor[Config](), "", nil, func(path string, _ []int) {
		seen[path] = true
		if keyClass[path] == 0 {
			t.Errorf("%s is neither reloadable nor restart: add it to keyClass in reload.go and to the reload table in docs/CONFIG.md", path)
		}
	})
	for k := range keyClass {
		if !seen[k] {
			t.Errorf("keyClass lists %s, which Config does not have", k)
		}
	}
}

// docs/CONFIG.md has one reload table row per key, saying what keyClass says.
func TestReloadTableInDocs(t *testing.T) {
	b, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` +\\| (reloaded|restart) ")
	doc := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		if _, dup := doc[m[1]]; dup {
			t.Errorf("docs/CONFIG.md: %s twice in the reload table", m[1])
		}
		doc[m[1]] = m[2]
	}
	for k, c := range keyClass {
		want := map[reloadClass]string{reloadable: "reloaded", restart: "restart"}[c]
		if doc[k] != want {
			t.Errorf("docs/CONFIG.md reload table: %s is %q, want %q", k, doc[k], want)
		}
		delete(doc, k)
	}
	for k := range doc {
		t.Errorf("docs/CONFIG.md reload table lists %s, which is not a key", k)
	}
}

func TestRestartError(t *testing.T) {
	if err := RestartError(nil); err != nil {
		t.Errorf("RestartError(nil) = %v", err)
	}
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{[]string{"listen"}, "config: listen cannot change while sipedge runs; restart to apply (the running configuration is kept)"},
		{[]string{"store.dir", "media.ports"}, "config: store.dir, media.ports cannot change while sipedge runs; restart to apply (the running configuration is kept)"},
	} {
		err := RestartError(tc.keys)
		if err == nil || err.Error() != tc.want || strings.Contains(err.Error(), "\n") {
			t.Errorf("RestartError(%q) = %v, want %q", tc.keys, err, tc.want)
		}
	}
}
