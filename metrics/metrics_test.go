package metrics

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

type inner struct {
	NoPeer  uint64
	Foreign uint64
}

type snap struct {
	Requests   uint64
	ConnsOpen  int
	LastFsync  time.Duration
	Drops      inner
	Stages     map[string]uint64        `label:"stage"`
	Up         map[string]int64         `label:"target"`
	Latency    map[string]time.Duration `label:"target"`
	Hidden     uint64                   `metric:"-"`
	unexported uint64
}

func TestWalk(t *testing.T) {
	s := snap{Requests: 7, ConnsOpen: 2, LastFsync: 1500 * time.Millisecond, Drops: inner{NoPeer: 1},
		Stages: map[string]uint64{"self": 3, "locate": 4},
		Up:     map[string]int64{"pbx/b": 0, "pbx/a": 1}, Latency: map[string]time.Duration{"pbx/a": 250 * time.Millisecond}, Hidden: 9, unexported: 1}
	var got []string
	err := Walk("proxy", s, func(x Sample) {
		l := ""
		if x.Label != "" {
			l = "{" + x.Label + "=" + x.LabelV + "}"
		}
		kind := "gauge"
		if x.Counter {
			kind = "counter"
		}
		got = append(got, x.Name+l+" "+kind+" "+strconv.FormatFloat(x.Value, 'f', -1, 64))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"proxy_requests_total counter 7",
		"proxy_conns_open gauge 2",
		"proxy_last_fsync_seconds gauge 1.5",
		"proxy_drops_no_peer_total counter 1",
		"proxy_drops_foreign_total counter 0",
		"proxy_stages_total{stage=locate} counter 4",
		"proxy_stages_total{stage=self} counter 3",
		"proxy_up{target=pbx/a} gauge 1",
		"proxy_up{target=pbx/b} gauge 0",
		"proxy_latency_seconds{target=pbx/a} gauge 0.25",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWalkRefuses(t *testing.T) {
	type badString struct{ Name string }
	type badMap struct{ M map[string]uint64 }
	type badGauges struct{ M map[string]int64 }
	for _, v := range []any{badString{}, badMap{}, badGauges{}, 3} {
		if err := Walk("x", v, func(Sample) {}); err == nil {
			t.Errorf("%T accepted", v)
		}
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"Requests": "requests", "TLSHandshakeErrors": "tls_handshake_errors", "ConnsOpen": "conns_open",
		"RTCPPackets": "rtcp_packets", "PortsInUse": "ports_in_use", "SendErrors": "send_errors", "DNSFailures": "dns_failures",
	} {
		if got := Snake(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
