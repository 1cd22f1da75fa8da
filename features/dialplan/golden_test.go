package dialplan

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// Each testdata/golden/NAME.yaml holds dial-plan rules in the shape of
// the configuration's dial_plan list and a request (LF line ends, made
// CRLF here). NAME.golden is what the dial plan makes of it: the decision
// on its first line, then the request as forwarded to the first target
// after the stage and the branch hook (before the core adds its own Via
// and Record-Route). Review the diff by hand after -update.

var (
	caller = netip.MustParseAddrPort("192.0.2.5:5060")
	local  = netip.MustParseAddrPort("192.0.2.1:5060")
)

// named are the destinations other features would own.
type fixed struct{ addr string }

func (d fixed) Route(context.Context, *sip.Message, netip.AddrPort, transport.Proto) proxy.Decision {
	return proxy.Decision{Groups: [][]proxy.Target{{{Proto: transport.UDP, Addr: netip.MustParseAddrPort(d.addr)}}}}
}

var testEnv = Env{Named: map[string]proxy.Router{
	"pool:pbx":       fixed{"192.0.2.20:5060"},
	"trunk:provider": fixed{"192.0.2.30:5060"},
}}

type goldenCase struct {
	Rules   []Rule `yaml:"rules"`
	Request string `yaml:"request"`
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// run passes msg through the dial plan's stage and branch hook.
func run(t *testing.T, rules []Rule, msg string) []byte {
	t.Helper()
	var f *Feature
	core := proxytest.Harness(t, proxy.Config{}, func(c *proxy.Core) []proxy.Feature {
		var err error
		if f, err = New(c, rules, testEnv); err != nil {
			t.Fatal(err)
		}
		return []proxy.Feature{f}
	})
	r, ans := proxytest.Request(t, core, msg, caller)
	var out bytes.Buffer
	if f.stage(r) {
		if ans.Code() == 0 {
			t.Fatal("stage ended the walk without an answer")
		}
		fmt.Fprintf(&out, "answer: %d %s\n", ans.Code(), ans.Msgs[len(ans.Msgs)-1].Reason())
		return out.Bytes()
	}
	p, _ := r.Note(f.note).(*Plan)
	if p == nil {
		out.WriteString("decision: no rule\n")
	} else {
		to := "routing table"
		if p.rule.to != "" {
			to = p.rule.to
		}
		fmt.Fprintf(&out, "decision: rule=%s to=%s redirects=%d\n", p.Rule, to, p.Redirects())
	}
	target := proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("192.0.2.99:5060")}
	if d := r.Decision(); len(d.Groups) > 0 {
		target = d.Groups[0][0]
	}
	fmt.Fprintf(&out, "forwarded to %s:\n", target.Addr)
	b := r.TestBranch(&target, local)
	if err := f.branch(b); err != nil {
		t.Fatal(err)
	}
	fwd := b.Msg.AppendTo(nil)
	var m sip.Message
	if err := m.Parse(fwd, nil); err != nil {
		t.Fatalf("forwarded request does not parse: %v\n%s", err, fwd)
	}
	out.Write(fwd)
	return out.Bytes()
}

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.yaml")
	if len(files) == 0 {
		t.Fatal("no golden cases")
	}
	for _, in := range files {
		name := strings.TrimSuffix(in, ".yaml")
		t.Run(filepath.Base(name), func(t *testing.T) {
			b, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var gc goldenCase
			dec := yaml.NewDecoder(bytes.NewReader(b))
			dec.KnownFields(true)
			if err := dec.Decode(&gc); err != nil {
				t.Fatal(err)
			}
			got := run(t, gc.Rules, crlf(gc.Request))
			if *update {
				if err := os.WriteFile(name+".golden", got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(name + ".golden")
			if err != nil {
				t.Fatalf("%v (run with -update to make it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("differs from %s.golden:\n got:\n%s\nwant:\n%s", name, got, want)
			}
		})
	}
}
