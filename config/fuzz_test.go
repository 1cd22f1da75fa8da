package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse: no input makes the loader panic; every error says where
// (a line) or what (a key); what loads writes back as YAML that loads to
// the same configuration (sipedge check prints it).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Not the example of docs/CONFIG.md (TestDocExample loads it): at 6 KB
	// it makes every new input's minimisation slow.
	def, err := yaml.Marshal(Default())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(def)
	for _, s := range []string{"", "listen: [\n", "log: {level: info, colour: red}\n", "a: 1\n---\nb: 2\n",
		"routes:\n  - name: x\n    to: sip:[::1]\n", "registrar:\n  max_expires: 30s\n", "media: &m {relay: auto}\nnat: *m\n",
		"security:\n  lift_bans: [all, 192.0.2.1, \"2001:db8::/32\"]\n  rate: {requests: 5, window: 1s}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%q: error %T %q is not a *config.Error", b, err, err)
			}
			if ce.Line <= 0 && ce.Key == "" {
				t.Fatalf("%q: error %q names neither a line nor a key", b, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("%q: error %q is more than one line", b, err)
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("%q: loads but does not marshal: %v", b, err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("%q: loads, but what it writes back does not: %v\n%s", b, err, out)
		}
		emptyToNil(reflect.ValueOf(c).Elem())
		emptyToNil(reflect.ValueOf(c2).Elem())
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("%q: loads to\n%+v\nbut its YAML\n%s\nloads to\n%+v", b, c, out, c2)
		}
	})
}

// emptyToNil makes empty lists nil: "domains: []" and no domains are the
// same configuration.
func emptyToNil(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				emptyToNil(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			v.SetZero()
		}
	}
}
