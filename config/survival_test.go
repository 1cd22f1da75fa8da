package config

import (
	"strings"
	"testing"
	"time"
)

func TestSurvival(t *testing.T) {
	c, err := Parse([]byte(`survival:
  enabled: true
  upstream: sip:203.0.113.10:5060
  upstream_domains: [sip.provider.example]
  probe: {interval: 1s, timeout: 500ms, down_after: 4, up_after: 3}
  register_expires: 30s
  fallback: pool:pstn
pools:
  - name: pstn
    targets: [{uri: "sip:10.0.0.50:5060"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Survival
	if !s.Enabled || s.Upstream != "sip:203.0.113.10:5060" || s.UpstreamDomains[0] != "sip.provider.example" ||
		s.Probe.Interval.Duration != time.Second || s.Probe.DownAfter != 4 || s.RegisterExpires.Duration != 30*time.Second || s.Fallback != "pool:pstn" {
		t.Fatalf("decoded %+v", s)
	}
	on := "survival:\n  enabled: true\n  upstream: sip:203.0.113.10\n"
	for _, tc := range []struct{ yaml, want string }{
		{"survival:\n  enabled: true\n", "config:1: survival.upstream: \"\": want the provider's registrar as sip:IP[:port]"},
		{"survival:\n  enabled: true\n  upstream: sip:reg.example.com\n", "config:3: survival.upstream: \"sip:reg.example.com\": want"},
		{on + "  upstream_domains: [\"a b\"]\n", "config:4: survival.upstream_domains: upstream_domains[0] \"a b\": want a host name"},
		{on + "  probe:\n    interval: 10ms\n", "config:5: survival.probe.interval: 10ms: use 100ms to 1h"},
		{on + "  probe:\n    interval: 1s\n    timeout: 2s\n", "config:6: survival.probe.timeout: 2s is longer than the interval 1s"},
		{on + "  probe:\n    down_after: 101\n", "config:5: survival.probe.down_after: 101: use 1 to 100"},
		{on + "  probe:\n    up_after: -1\n", "config:5: survival.probe.up_after: -1: use 1 to 100"},
		{on + "  register_expires: 1s\n", "config:4: survival.register_expires: 1s: use 5s to 1h"},
		{on + "  fallback: pstn\n", "config:4: survival.fallback: \"pstn\": needs a SIP URI"},
		{on + "  fallback: pool:pstn\n", "config:4: survival.fallback: \"pool:pstn\": no pool named pstn; add it under pools"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// Off: the rest is not checked (a section kept for later).
	if _, err := Parse([]byte("survival:\n  enabled: false\n  upstream: nonsense\n")); err != nil {
		t.Errorf("off: %v", err)
	}
}
