// Package systemd holds the tests of the systemd unit shipped in
// contrib/systemd: what it grants and how it runs sipedge.
package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// unit is a unit file read as systemd reads it: sections of key=value
// lines; a key set twice keeps every value, in order (list settings such
// as AmbientCapabilities add up).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: a continued line: keep each setting on one", path, n)
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not key=value in a section", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of key, failing when it is missing or set
// more than once.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %q, want one value", section, key, v)
	}
	return v[0]
}

// words splits every value of a list setting.
func (u unit) words(section, key string) []string {
	var w []string
	for _, v := range u[section][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// The service runs sipedge as its own unprivileged user with only
// CAP_NET_BIND_SERVICE; reload is SIGHUP and stop a draining SIGTERM.
func TestServiceUnit(t *testing.T) {
	u := parseUnit(t, "sipedge.service")
	for _, k := range []string{"User", "Group"} {
		if v := u.one(t, "Service", k); v == "" || v == "root" || v == "0" {
			t.Errorf("%s=%q: sipedge must not run as root", k, v)
		}
	}
	if u["Service"]["DynamicUser"] != nil {
		t.Error("DynamicUser: the store's files need a stable owner")
	}
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if w := u.words("Service", k); !slices.Equal(w, []string{"CAP_NET_BIND_SERVICE"}) {
			t.Errorf("%s = %q, want only CAP_NET_BIND_SERVICE (CAP_NET_ADMIN comes from the drop-in)", k, w)
		}
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "KillSignal": "SIGTERM",
		"ExecReload": "/bin/kill -HUP $MAINPID", "StateDirectory": "sipedge", "Type": "simple",
	} {
		if v := u.one(t, "Service", k); v != want {
			t.Errorf("%s=%q, want %q", k, v, want)
		}
	}
	start := strings.Fields(u.one(t, "Service", "ExecStart"))
	if len(start) < 3 || filepath.Base(start[0]) != "sipedge" || start[1] != "--config" {
		t.Errorf("ExecStart=%q", start)
	}
	if pre := strings.Fields(u.one(t, "Service", "ExecStartPre")); len(pre) < 4 || pre[0] != start[0] || pre[1] != "check" || pre[3] != start[2] {
		t.Errorf("ExecStartPre=%q: want %s check --config %s", pre, start[0], start[2])
	}
	// The drain (shutdown.drain, 30 s by default) must fit in the stop
	// timeout.
	if v := u.one(t, "Service", "TimeoutStopSec"); v != "60" {
		t.Errorf("TimeoutStopSec=%q", v)
	}
	if af := u.words("Service", "RestrictAddressFamilies"); !slices.Contains(af, "AF_NETLINK") || !slices.Contains(af, "AF_INET6") {
		t.Errorf("RestrictAddressFamilies=%q: nftables and IPv6 need AF_NETLINK and AF_INET6", af)
	}
	if v := u.one(t, "Install", "WantedBy"); v != "multi-user.target" {
		t.Errorf("WantedBy=%q", v)
	}
}

// The drop-in adds CAP_NET_ADMIN, to the ambient and the bounding set,
// and nothing else.
func TestNetAdminDropIn(t *testing.T) {
	u := parseUnit(t, "sipedge-net-admin.conf")
	if len(u) != 1 || len(u["Service"]) != 2 {
		t.Fatalf("drop-in: %v, want [Service] with two settings", u)
	}
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if w := u.words("Service", k); !slices.Equal(w, []string{"CAP_NET_ADMIN"}) {
			t.Errorf("%s = %q, want CAP_NET_ADMIN", k, w)
		}
	}
}

// systemd itself reads the unit, alone and with the drop-in: no unknown
// setting, no bad value. ExecStart must name an executable that exists,
// so the check runs on a copy naming this test's binary.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (TestServiceUnit checks the keys)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("sipedge.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unitFile := filepath.Join(dir, "sipedge.service")
	if err := os.WriteFile(unitFile, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/sipedge", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(what string) {
		t.Helper()
		out, err := exec.Command(analyze, "verify", unitFile).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) != 0 {
			t.Errorf("systemd-analyze verify, %s: %v\n%s", what, err, out)
		}
	}
	verify("the unit")
	dropIn, err := os.ReadFile("sipedge-net-admin.conf")
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, "sipedge.service.d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "net-admin.conf"), dropIn, 0o644); err != nil {
		t.Fatal(err)
	}
	verify("with the CAP_NET_ADMIN drop-in")
	// The check can fail: an unknown key is reported.
	if err := os.WriteFile(filepath.Join(d, "bad.conf"), []byte("[Service]\nAmbientCapability=CAP_NET_ADMIN\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(analyze, "verify", unitFile).CombinedOutput(); !strings.Contains(string(out), "AmbientCapability") {
		t.Errorf("systemd-analyze verify did not report an unknown key:\n%s", out)
	}
}
