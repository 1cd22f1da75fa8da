// Package arch holds the test of sipedge's import rules: the shape that
// keeps features in their own packages (docs/DESIGN.md, "Packages").
package arch

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "sipedge/"

// imports returns, for every package of the module, its non-test imports
// inside the module.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "sipedge/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		var in []string
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, mod) {
				in = append(in, strings.TrimPrefix(imp, mod))
			}
		}
		m[strings.TrimPrefix(f[0], mod)] = in
	}
	return m
}

func feature(p string) (string, bool) {
	if !strings.HasPrefix(p, "features/") {
		return "", false
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(p, "features/"), "/")
	return name, true
}

// violations applies the rules to an import graph:
//   - no feature package imports another feature package;
//   - the proxy core imports no feature package (features plug in through
//     proxy.Feature; cmd wires them);
//   - the layers below the proxy (sip, transport, txn, store, registrar,
//     resolve, nat, sdp, media) import neither proxy nor features;
//   - only cmd imports config and resolve (adapters at the edge).
func violations(g map[string][]string) []string {
	low := map[string]bool{"sip": true, "transport": true, "txn": true, "store": true, "registrar": true,
		"resolve": true, "nat": true, "sdp": true, "media": true}
	var bad []string
	for p, deps := range g {
		pf, isFeature := feature(p)
		for _, d := range deps {
			df, depFeature := feature(d)
			switch {
			case isFeature && depFeature && df != pf:
				bad = append(bad, p+" imports feature "+d+": features meet only through proxy's hooks")
			case (p == "proxy" || strings.HasPrefix(p, "proxy/")) && depFeature:
				bad = append(bad, p+" imports feature "+d+": the core must not know its features")
			case low[strings.SplitN(p, "/", 2)[0]] && (d == "proxy" || strings.HasPrefix(d, "proxy/") || depFeature):
				bad = append(bad, p+" imports "+d+": lower layers do not import the proxy or features")
			case (d == "config" || d == "resolve") && !strings.HasPrefix(p, "cmd/") && !strings.HasPrefix(p, "bench/") && p != "test/e2e":
				bad = append(bad, p+" imports "+d+": only cmd reads the configuration and the DNS resolver")
			}
		}
	}
	return bad
}

// TestImportRules checks the rules on the module's real import graph.
func TestImportRules(t *testing.T) {
	g := imports(t)
	if len(g) < 10 || len(g["proxy"]) == 0 {
		t.Fatalf("go list found %d packages; the module layout changed?", len(g))
	}
	for _, v := range violations(g) {
		t.Error(v)
	}
}

// TestRulesCatchViolations shows each rule can fail.
func TestRulesCatchViolations(t *testing.T) {
	for _, g := range []map[string][]string{
		{"features/callmedia": {"proxy", "features/dialogs"}},
		{"proxy": {"sip", "features/gateway"}},
		{"registrar": {"proxy"}},
		{"txn": {"features/natalias"}},
		{"proxy": {"config"}},
		{"features/gateway": {"resolve"}},
	} {
		if len(violations(g)) != 1 {
			t.Errorf("%v: want one violation, got %v", g, violations(g))
		}
	}
	ok := map[string][]string{"features/callmedia": {"proxy", "media", "sdp", "nat"}, "cmd/sipedge": {"config", "resolve", "features/dialogs"}}
	if v := violations(ok); len(v) != 0 {
		t.Errorf("allowed graph refused: %v", v)
	}
}
