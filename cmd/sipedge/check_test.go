package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"sipedge/config"
)

const goodConfig = `listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]
domains: [example.com]
registrar:
  min_expires: 30s
  max_expires: 2h
  default_expires: 90s
trusted_networks: [loopback, 192.0.2.0/24]
routes:
  - name: provider
    prefix: "00"
    to: sip:192.0.2.10:5060;transport=tcp
    stateless: true
media:
  ports: 20000-20999
  inactivity: 1m30s
memory_limit_mb: 900
symmetric_responses: false
`

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sipedge.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// check runs "sipedge check args..." through run, as the command line does.
func check(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(append([]string{"check"}, args...), &o, &e)
	return code, o.String(), e.String()
}

func TestCheck(t *testing.T) {
	good := writeFile(t, goodConfig)
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stdout   string // prefix
		stderr   string // prefix of the one line
		reloadOf string // file the printed YAML must load equal to; "" = defaults
	}{
		{name: "good file", args: []string{"--config", good}, stdout: "# configuration OK: " + good + "\n", reloadOf: good},
		{name: "defaults", stdout: "# configuration OK: built-in defaults\n"},
		{name: "unknown key", args: []string{"--config", writeFile(t, "log:\n  level: info\n  colour: red\n")}, code: 2,
			stderr: "sipedge: config " + "FILE" + ":3: log.colour: unknown key"},
		{name: "bad value", args: []string{"--config", writeFile(t, "media:\n  ports: 10001-10999\n")}, code: 2,
			stderr: "sipedge: config FILE:2: media.ports: \"10001-10999\": want an even first port"},
		{name: "tls listener without certificate", args: []string{"--config", writeFile(t, "listen: [tls:127.0.0.1:5061]\n")}, code: 2,
			stderr: "sipedge: --listen tls:127.0.0.1:5061 needs --tls-cert and --tls-key"},
		{name: "missing file", args: []string{"--config", "/nonexistent/sipedge.yaml"}, code: 2,
			stderr: "sipedge: config: open /nonexistent/sipedge.yaml: no such file"},
		{name: "help", args: []string{"--help"}, stdout: "sipedge check — validate a configuration file\n"},
		{name: "unknown flag", args: []string{"--listen", "x"}, code: 2, stderr: "sipedge check: flag provided but not defined: -listen"},
		{name: "stray argument", args: []string{good}, code: 2, stderr: "sipedge check: unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := check(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr)
			}
			if tc.code != 0 {
				want := tc.stderr
				if len(tc.args) > 1 {
					want = strings.ReplaceAll(want, "FILE", tc.args[1])
				}
				if stdout != "" || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
					t.Errorf("stdout %q\nstderr %q\nwant one line starting %q", stdout, stderr, want)
				}
				return
			}
			if stderr != "" || !strings.HasPrefix(stdout, tc.stdout) {
				t.Fatalf("stdout %q\nstderr %q\nwant stdout starting %q", stdout, stderr, tc.stdout)
			}
			if tc.name == "help" {
				return
			}
			// The output is a configuration file: it loads to the
			// same configuration.
			printed, err := config.Load(writeFile(t, stdout))
			if err != nil {
				t.Fatalf("the printed configuration does not load: %v\n%s", err, stdout)
			}
			want, err := config.Parse(nil)
			if tc.reloadOf != "" {
				want, err = config.Load(tc.reloadOf)
			}
			if err != nil {
				t.Fatal(err)
			}
			emptyToNil(reflect.ValueOf(printed).Elem())
			emptyToNil(reflect.ValueOf(want).Elem())
			if !reflect.DeepEqual(printed, want) {
				t.Errorf("printed configuration loads to\n%+v\nwant\n%+v", printed, want)
			}
			// Every key is printed, so defaults are visible.
			var keys map[string]any
			if err := yaml.Unmarshal([]byte(stdout), &keys); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"listen", "store", "media", "nat", "trusted_networks", "symmetric_responses", "memory_limit_mb"} {
				if _, ok := keys[k]; !ok {
					t.Errorf("key %s not printed", k)
				}
			}
		})
	}
}

// emptyToNil makes empty lists nil, since "domains: []" and no domains
// are the same configuration.
func emptyToNil(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				emptyToNil(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.SetZero()
		}
	}
}
