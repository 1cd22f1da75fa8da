package config

import (
	"strings"
	"testing"
	"time"
)

func TestPools(t *testing.T) {
	c, err := Parse([]byte(`pools:
  - name: pbx
    algorithm: priority
    targets:
      - uri: sip:192.0.2.10:5060
        weight: 2
        priority: 1
      - uri: "sip:[2001:db8::10]:5060;transport=tcp"
    probe: {interval: 5s, timeout: 1s, down_after: 4, up_after: 3}
    answer_timeout: 1500ms
routes:
  - name: office
    prefix: "1"
    to: pool:pbx
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Pools[0]
	if p.Name != "pbx" || p.Algorithm != "priority" || len(p.Targets) != 2 || p.Targets[0].Weight != 2 || p.Targets[0].Priority != 1 ||
		p.Probe.Interval.Duration != 5*time.Second || p.Probe.DownAfter != 4 || p.AnswerTimeout.Duration != 1500*time.Millisecond {
		t.Fatalf("decoded %+v", p)
	}
	pools := "pools:\n  - name: pbx\n    targets:\n      - uri: sip:192.0.2.10\n"
	for _, tc := range []struct{ yaml, want string }{
		{"pools:\n  - targets: [{uri: sip:192.0.2.1}]\n", "config:2: pools[0].name: \"\": every pool needs a name"},
		{pools + "  - name: pbx\n    targets: [{uri: sip:192.0.2.2}]\n", "config:5: pools[1].name: \"pbx\": two pools have this name"},
		{"pools:\n  - name: pbx\n    algorithm: round-robin\n    targets: [{uri: sip:192.0.2.1}]\n", "config:3: pools[0].algorithm: \"round-robin\": use weighted"},
		{"pools:\n  - name: pbx\n", "config:2: pools[0].targets: a pool needs at least one target"},
		{"pools:\n  - name: pbx\n    targets:\n      - uri: sip:192.0.2.1\n      - uri: sip:pbx.example.com\n", "config:5: pools[0].targets[1].uri: \"sip:pbx.example.com\": want sip:IP[:port]"},
		{"pools:\n  - name: pbx\n    targets:\n      - uri: sip:100@192.0.2.1\n", "config:4: pools[0].targets[0].uri: \"sip:100@192.0.2.1\": want sip:IP"},
		{"pools:\n  - name: pbx\n    targets:\n      - uri: sip:192.0.2.1\n      - uri: sip:192.0.2.1\n", "config:5: pools[0].targets[1].uri: \"sip:192.0.2.1\" is listed twice"},
		{pools + "        weight: -1\n", "config:5: pools[0].targets[0].weight: -1: use 1 to 1000"},
		{pools + "    probe:\n      interval: 10ms\n", "config:6: pools[0].probe.interval: 10ms: use 100ms to 1h"},
		{pools + "    probe:\n      interval: 1s\n      timeout: 2s\n", "config:7: pools[0].probe.timeout: 2s is longer than the interval 1s"},
		{pools + "    probe: {down_after: -1}\n", "config:5: pools[0].probe.down_after: -1: use 1 to 100"},
		{pools + "    answer_timeout: 1m\n", "config:5: pools[0].answer_timeout: 1m: use 50ms to 32s"},
		{pools + "routes:\n  - name: r\n    to: pool:pbz\n", "config:5: routes[0].to: \"pool:pbz\": no pool named pbz"},
		{pools + "    probe: {every: 1s}\n", "config:5"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant prefix %q", tc.yaml, err, tc.want)
		}
	}
}
