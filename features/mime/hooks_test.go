package mime

import (
	"fmt"
	"net/netip"
	"testing"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
)

var (
	trusted   = netip.MustParseAddrPort("10.0.0.5:5060")    // in trusted_networks
	untrusted = netip.MustParseAddrPort("203.0.113.7:5060") // a phone on the Internet
)

// The stage on requests from both directions: the list of the direction
// applies, the answer carries the list of that direction, an ACK is
// dropped without an answer, and each is counted in its direction.
func TestStage(t *testing.T) {
	evil := "Content-Type: application/x-evil\r\n"
	sdp := "Content-Type: application/sdp\r\n"
	type counts struct{ in, out Direction }
	for _, tc := range []struct {
		name    string
		method  string
		src     netip.AddrPort
		headers string
		body    string
		handled bool
		code    int
		reason  string
		accept  string // Accept of the answer
		stats   counts
		out     []string // outbound list, if not the default of the table
	}{
		{"inbound sdp passes", "INVITE", untrusted, sdp, sdpBody, false, 0, "", "", counts{}, nil},
		{"inbound other type refused", "INVITE", untrusted, evil, "x", true, 415, "Unsupported Media Type",
			"application/sdp, multipart/mixed", counts{in: Direction{Refused: 1}}, nil},
		{"outbound allows everything", "INVITE", trusted, evil, "x", false, 0, "", "", counts{}, nil},
		{"outbound list applies to trusted sources", "MESSAGE", trusted, "Content-Type: application/html\r\n", "<p>", true, 415,
			"Unsupported Media Type", "text/*", counts{out: Direction{Refused: 1}}, []string{"text/*"}},
		{"outbound wildcard", "MESSAGE", trusted, "Content-Type: TEXT/html\r\n", "<p>", false, 0, "", "", counts{}, []string{"text/*"}},
		{"inbound without body passes", "INVITE", untrusted, evil, "", false, 0, "", "", counts{}, nil},
		{"inbound missing Content-Type", "INVITE", untrusted, "", sdpBody, true, 400, whyMissingType, "",
			counts{in: Direction{Malformed: 1}}, nil},
		{"inbound malformed multipart", "INVITE", untrusted, "Content-Type: multipart/mixed;boundary=b\r\n", "--b\r\n\r\nv=0\r\n", true, 400,
			whyUnterminated, "", counts{in: Direction{Malformed: 1}}, nil},
		{"inbound multipart with a part refused", "INVITE", untrusted, "Content-Type: multipart/mixed;boundary=b\r\n",
			multipart("b", part("application/sdp", sdpBody), part("application/x-evil", "x")), true, 415,
			"Unsupported Media Type", "application/sdp, multipart/mixed", counts{in: Direction{Refused: 1}}, nil},
		{"ACK refused is dropped", "ACK", untrusted, evil, "x", true, 0, "", "", counts{in: Direction{ACKDropped: 1}}, nil},
		{"ACK with sdp passes", "ACK", untrusted, sdp, sdpBody, false, 0, "", "", counts{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.out
			if out == nil {
				out = []string{"text/*", "*/*"}
			}
			f, err := New(Config{Inbound: []string{"application/sdp", "multipart/mixed"}, Outbound: out})
			if err != nil {
				t.Fatal(err)
			}
			core := proxytest.Harness(t, proxy.Config{Policy: proxy.Policy{AllowSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}},
				func(*proxy.Core) []proxy.Feature { return []proxy.Feature{f} })
			r, ans := proxytest.Request(t, core, message(tc.method, tc.headers, tc.body), tc.src)
			if got := f.stage(r); got != tc.handled {
				t.Fatalf("stage returned %v, want %v", got, tc.handled)
			}
			if ans.Code() != tc.code {
				t.Fatalf("answered %v, want %d", ans.Codes, tc.code)
			}
			if tc.code != 0 {
				resp := ans.Msgs[len(ans.Msgs)-1]
				if string(resp.Reason()) != tc.reason {
					t.Errorf("reason %q, want %q", resp.Reason(), tc.reason)
				}
				if got := string(resp.GetByName("Accept")); got != tc.accept {
					t.Errorf("Accept %q, want %q", got, tc.accept)
				}
				if resp.Get(sip.KindServer) == nil {
					t.Errorf("answer without Server header")
				}
			}
			if st := f.Stats(); st.Inbound != tc.stats.in || st.Outbound != tc.stats.out {
				t.Errorf("stats %+v, want %+v", st, tc.stats)
			}
		})
	}
}

// A reload with a bad list keeps the lists in force.
func TestSetConfigKeepsOldOnError(t *testing.T) {
	f, err := New(Config{Inbound: []string{"application/sdp"}, Outbound: []string{"application/sdp"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetConfig(Config{Inbound: []string{"*/*"}, Outbound: nil}); err == nil {
		t.Fatal("empty outbound list accepted")
	}
	if f.cfg.Load().inbound.all {
		t.Error("a refused configuration was applied")
	}
}

// The stage is where pipeline.go puts it: after the §16.3 checks, before
// routing.
func TestStageOrder(t *testing.T) {
	f, _ := New(Config{Inbound: defaults, Outbound: defaults})
	core := proxytest.Harness(t, proxy.Config{}, func(*proxy.Core) []proxy.Feature { return []proxy.Feature{f} })
	stages, _, _, _ := core.Names()
	pos := map[string]int{}
	for i, s := range stages {
		pos[s] = i
	}
	if _, ok := pos["mime"]; !ok || pos["mime"] < pos["proxy-require"] || pos["mime"] > pos["route"] {
		t.Fatalf("stages %v", fmt.Sprint(stages))
	}
}
