package dialplan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"sipedge/sdp"
	"sipedge/sip"
)

// fuzzRules exercise every rule kind at once.
var fuzzRules = []Rule{
	{Name: "intl", Match: `^00([1-9][0-9]*)$`, Replace: "+$1", Codecs: Codecs{Remove: []string{"G729", "101"}},
		Headers: Headers{Remove: []string{"P-Asserted-Identity"}, Set: []string{"User-Agent: edge"},
			Rewrite: []HeaderRewrite{{Header: "Diversion", Match: "sip:([0-9]+)@", Replace: "sip:+$1@"}}, Add: []string{"X-R: 1"}}},
	{Name: "nat", Prefix: "0", Strip: 1, AddPrefix: "+49", StripPrefix: "+4900", Methods: []string{"INVITE", "MESSAGE"}},
}

// FuzzApply: for any request that parses, deciding and applying the plan
// never panics, and the request as rewritten and with its header edits
// still parses (when the rewrite was accepted, as Request.Rewrite checks).
func FuzzApply(f *testing.F) {
	files, _ := filepath.Glob("testdata/golden/*.yaml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		var gc goldenCase
		if err := yaml.Unmarshal(b, &gc); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(crlf(gc.Request)))
	}
	rules, err := compile(fuzzRules, testEnv, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m sip.Message
		if m.Parse(b, nil) != nil || !m.IsRequest() {
			return
		}
		var s sdp.Session
		p := decide(rules, &m, &s)
		if p == nil || p.Code != 0 {
			return
		}
		if err := ApplyRequest(&m, p, &s); err != nil {
			return // refused edits leave the request as it was
		}
		out := m.AppendTo(nil)
		var r sip.Message
		if err := r.Parse(out, nil); err != nil {
			return // Request.Rewrite refuses it: the stage answers 500
		}
		if p.User != nil {
			if u, _ := requestUser(&r); string(u) != string(p.User) {
				t.Fatalf("user %q, want %q", u, p.User)
			}
		}
		ApplyHeaders(&r, p)
		out = r.AppendTo(nil)
		var h sip.Message
		if err := h.Parse(out, nil); err != nil {
			t.Fatalf("header edits broke the request: %v\n%q", err, out)
		}
	})
}

// FuzzHeaderLine: the "Name: value" lines of the configuration either
// give a token name and a value without control characters, or an error.
func FuzzHeaderLine(f *testing.F) {
	for _, s := range []string{"User-Agent: sipedge", "X-A:b", "X-A", ": v", "X-A: a\r\nVia: x", "X A: v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		name, value, err := headerLine(line)
		if err != nil {
			return
		}
		if !isToken(name) || value == "" || !validValue(value) || strings.ContainsAny(value, "\r\n") {
			t.Fatalf("%q accepted as %q %q", line, name, value)
		}
	})
}
