package sip

import (
	"errors"
	"testing"
)

func TestParseViaTable(t *testing.T) {
	type want struct {
		transport string
		host      string
		port      int
		branch    string
		hasBranch bool
		rfc3261   bool
		received  string
		maddr     string
		rport     int
		hasRPort  bool
		ttl       int
		params    string
	}
	tests := []struct {
		name string
		in   string
		err  bool
		w    want
	}{
		{"basic UDP", "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds", false, want{
			transport: "UDP", host: "pc33.atlanta.com", branch: "z9hG4bK776asdhds", hasBranch: true, rfc3261: true,
			params: ";branch=z9hG4bK776asdhds"}},
		{"all params", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=192.0.2.2;rport=5061;maddr=224.2.0.1;ttl=16", false, want{
			transport: "UDP", host: "192.0.2.1", port: 5060, branch: "z9hG4bK1", hasBranch: true, rfc3261: true,
			received: "192.0.2.2", rport: 5061, hasRPort: true, maddr: "224.2.0.1", ttl: 16,
			params: ";branch=z9hG4bK1;received=192.0.2.2;rport=5061;maddr=224.2.0.1;ttl=16"}},
		{"rport without value (RFC 3581 request)", "SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bKnashds8", false, want{
			transport: "UDP", host: "192.0.2.1", branch: "z9hG4bKnashds8", hasBranch: true, rfc3261: true,
			hasRPort: true, params: ";rport;branch=z9hG4bKnashds8"}},
		{"rport filled in (RFC 3581 response)", "SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKnashds8", false, want{
			transport: "UDP", host: "10.1.1.1", port: 4540, branch: "z9hG4bKnashds8", hasBranch: true, rfc3261: true,
			received: "192.0.2.1", rport: 9988, hasRPort: true, params: ";received=192.0.2.1;rport=9988;branch=z9hG4bKnashds8"}},
		{"received IPv6 with brackets (RFC 5118 §4.5)", "SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111", false, want{
			transport: "UDP", host: "[2001:db8::9:1]", branch: "z9hG4bKas3-111", hasBranch: true, rfc3261: true,
			received: "[2001:db8::9:255]", params: ";received=[2001:db8::9:255];branch=z9hG4bKas3-111"}},
		{"received IPv6 without brackets", "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3", false, want{
			transport: "UDP", host: "[2001:db8::9:1]", branch: "z9hG4bKas3", hasBranch: true, rfc3261: true,
			received: "2001:db8::9:255", params: ";received=2001:db8::9:255;branch=z9hG4bKas3"}},
		{"IPv6 sent-by with port", "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111", false, want{
			transport: "UDP", host: "[2001:db8::9:1]", port: 6050, branch: "z9hG4bKas3-111", hasBranch: true, rfc3261: true,
			params: ";branch=z9hG4bKas3-111"}},
		{"IPv4-mapped IPv6 sent-by", "SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbzz", false, want{
			transport: "UDP", host: "[::ffff:192.0.2.10]", port: 19823, branch: "z9hG4bKbzz", hasBranch: true, rfc3261: true,
			params: ";branch=z9hG4bKbzz"}},
		{"maddr and ttl", "SIP/2.0/UDP h.example.com;maddr=239.255.255.1;ttl=255;branch=z9hG4bKm", false, want{
			transport: "UDP", host: "h.example.com", branch: "z9hG4bKm", hasBranch: true, rfc3261: true,
			maddr: "239.255.255.1", ttl: 255, params: ";maddr=239.255.255.1;ttl=255;branch=z9hG4bKm"}},
		{"LWS around / ; = and :", "SIP / 2.0 / UDP   192.0.2.1 : 5060 ; branch = z9hG4bK1 ; rport ; received = 192.0.2.9", false, want{
			transport: "UDP", host: "192.0.2.1", port: 5060, branch: "z9hG4bK1", hasBranch: true, rfc3261: true,
			hasRPort: true, received: "192.0.2.9", params: " ; branch = z9hG4bK1 ; rport ; received = 192.0.2.9"}},
		{"folded LWS (wsinv)", "SIP  /   2.0\r\n  /\r\n  UDP\r\n  192.0.2.2;\r\n  branch=390skdjuw", false, want{
			transport: "UDP", host: "192.0.2.2", branch: "390skdjuw", hasBranch: true, params: ";\r\n  branch=390skdjuw"}},
		{"tab before sent-by", "SIP/2.0/TCP\t192.0.2.1;branch=z9hG4bKt", false, want{
			transport: "TCP", host: "192.0.2.1", branch: "z9hG4bKt", hasBranch: true, rfc3261: true, params: ";branch=z9hG4bKt"}},
		{"surrounding LWS trimmed", "  SIP/2.0/UDP h  ", false, want{transport: "UDP", host: "h"}},
		{"lowercase protocol name", "sip/2.0/udp h;branch=z9hG4bKx", false, want{
			transport: "udp", host: "h", branch: "z9hG4bKx", hasBranch: true, rfc3261: true, params: ";branch=z9hG4bKx"}},
		{"TCP", "SIP/2.0/TCP h:5060", false, want{transport: "TCP", host: "h", port: 5060}},
		{"TLS", "SIP/2.0/TLS h:5061", false, want{transport: "TLS", host: "h", port: 5061}},
		{"SCTP", "SIP/2.0/SCTP h", false, want{transport: "SCTP", host: "h"}},
		{"WS", "SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKws", false, want{
			transport: "WS", host: "df7jal23ls0d.invalid", branch: "z9hG4bKws", hasBranch: true, rfc3261: true, params: ";branch=z9hG4bKws"}},
		{"WSS", "SIP/2.0/WSS h:443", false, want{transport: "WSS", host: "h", port: 443}},
		{"unknown transport", "SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKu", false, want{
			transport: "UNKNOWN", host: "t4.example.com", branch: "z9hG4bKu", hasBranch: true, rfc3261: true, params: ";branch=z9hG4bKu"}},
		{"port 65535", "SIP/2.0/UDP h:65535", false, want{transport: "UDP", host: "h", port: 65535}},
		{"missing branch", "SIP/2.0/UDP 192.0.2.1:5060;received=192.0.2.7", false, want{
			transport: "UDP", host: "192.0.2.1", port: 5060, received: "192.0.2.7", params: ";received=192.0.2.7"}},
		{"bare magic cookie", "SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK", false, want{
			transport: "UDP", host: "192.0.2.105", branch: "z9hG4bK", hasBranch: true, rfc3261: false, params: ";branch=z9hG4bK"}},
		{"RFC 2543 branch", "SIP/2.0/UDP h;branch=390skdjuw", false, want{
			transport: "UDP", host: "h", branch: "390skdjuw", hasBranch: true, rfc3261: false, params: ";branch=390skdjuw"}},
		{"cookie not at start", "SIP/2.0/UDP h;branch=xz9hG4bK1", false, want{
			transport: "UDP", host: "h", branch: "xz9hG4bK1", hasBranch: true, rfc3261: false, params: ";branch=xz9hG4bK1"}},
		{"branch name case-insensitive", "SIP/2.0/UDP h;BRANCH=z9hG4bKq", false, want{
			transport: "UDP", host: "h", branch: "z9hG4bKq", hasBranch: true, rfc3261: true, params: ";BRANCH=z9hG4bKq"}},
		{"unknown params kept", "SIP/2.0/UDP h;branch=z9hG4bKz;alias;x=\"q;v\"", false, want{
			transport: "UDP", host: "h", branch: "z9hG4bKz", hasBranch: true, rfc3261: true, params: ";branch=z9hG4bKz;alias;x=\"q;v\""}},

		// errors
		{"empty", "", true, want{}},
		{"bad protocol name", "SIPX/2.0/UDP h;branch=z9hG4bK1", true, want{}},
		{"HTTP", "HTTP/1.1/TCP h", true, want{}},
		{"bad version 3.0", "SIP/3.0/UDP h;branch=z9hG4bK1", true, want{}},
		{"bad version 2", "SIP/2/UDP h", true, want{}},
		{"missing transport", "SIP/2.0/ h", true, want{}},
		{"missing second slash", "SIP/2.0 UDP h", true, want{}},
		{"missing sent-by", "SIP/2.0/UDP", true, want{}},
		{"no LWS before sent-by", "SIP/2.0/UDP;branch=z9hG4bK1", true, want{}},
		{"empty param ;;", "SIP/2.0/UDP h;;branch=z9hG4bK1", true, want{}},
		{"trailing ;", "SIP/2.0/UDP h;branch=z9hG4bK1;", true, want{}},
		{"port 65536", "SIP/2.0/UDP h:65536;branch=z9hG4bK1", true, want{}},
		{"port 99999", "SIP/2.0/UDP h:99999", true, want{}},
		{"empty port", "SIP/2.0/UDP h:;branch=z9hG4bK1", true, want{}},
		{"branch without value", "SIP/2.0/UDP h;branch", true, want{}},
		{"branch with empty value", "SIP/2.0/UDP h;branch=", true, want{}},
		{"rport with empty value", "SIP/2.0/UDP h;rport=", true, want{}},
		{"rport 65536", "SIP/2.0/UDP h;rport=65536", true, want{}},
		{"rport not numeric", "SIP/2.0/UDP h;rport=abc", true, want{}},
		{"ttl 256", "SIP/2.0/UDP h;ttl=256", true, want{}},
		{"ttl without value", "SIP/2.0/UDP h;ttl", true, want{}},
		{"unterminated IPv6", "SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK1", true, want{}},
		{"bad IPv6", "SIP/2.0/UDP [2001:xyz::1]", true, want{}},
		{"junk after sent-by", "SIP/2.0/UDP h junk", true, want{}},
		{"two values (comma not split here)", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b", true, want{}},
		{"unterminated quoted param", "SIP/2.0/UDP h;x=\"abc", true, want{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ParseVia([]byte(tc.in))
			if tc.err {
				if !errors.Is(err, ErrVia) {
					t.Fatalf("ParseVia(%q) error = %v, want ErrVia", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseVia(%q): %v", tc.in, err)
			}
			w := tc.w
			eq(t, "transport", v.Transport, w.transport)
			eq(t, "host", v.Host, w.host)
			if v.Port != w.port {
				t.Errorf("port = %d, want %d", v.Port, w.port)
			}
			eq(t, "branch", v.Branch, w.branch)
			if v.HasBranch != w.hasBranch {
				t.Errorf("HasBranch = %v, want %v", v.HasBranch, w.hasBranch)
			}
			if v.RFC3261Branch() != w.rfc3261 {
				t.Errorf("RFC3261Branch = %v, want %v", v.RFC3261Branch(), w.rfc3261)
			}
			eq(t, "received", v.Received, w.received)
			eq(t, "maddr", v.Maddr, w.maddr)
			if v.RPort != w.rport || v.HasRPort != w.hasRPort {
				t.Errorf("rport = %d %v, want %d %v", v.RPort, v.HasRPort, w.rport, w.hasRPort)
			}
			if v.TTL != w.ttl {
				t.Errorf("ttl = %d, want %d", v.TTL, w.ttl)
			}
			eq(t, "params", v.Params, w.params)
			if b, ok := v.Params.Get("branch"); ok != w.hasBranch || string(b) != w.branch {
				t.Errorf("Params.Get(branch) = %q %v", b, ok)
			}
		})
	}
}

func TestParamsTable(t *testing.T) {
	type kv struct{ name, value string }
	tests := []struct {
		name  string
		in    string
		valid bool
		want  []kv // every parameter in order; value "<nil>" for none
	}{
		{"empty", "", true, nil},
		{"LWS only", "  ", true, nil},
		{"one", ";tag=1", true, []kv{{"tag", "1"}}},
		{"valueless", ";lr", true, []kv{{"lr", "<nil>"}}},
		{"several with LWS", " ; a = 1 ;b; c=\"x y\"", true, []kv{{"a", "1"}, {"b", "<nil>"}, {"c", "\"x y\""}}},
		{"host values", ";received=[2001:db8::1];maddr=192.0.2.1", true, []kv{{"received", "[2001:db8::1]"}, {"maddr", "192.0.2.1"}}},
		{"quoted with escaped quote", `;x="a\"b";y=2`, true, []kv{{"x", `"a\"b"`}, {"y", "2"}}},
		{"folded", ";a=1\r\n ;b=2", true, []kv{{"a", "1"}, {"b", "2"}}},
		{"empty name", ";;a", false, nil},
		{"empty value", ";a=", false, nil},
		{"trailing ;", ";a;", false, []kv{{"a", "<nil>"}}},
		{"no leading ;", "a=1", false, nil},
		{"unterminated quote", `;a="x`, false, nil},
		{"CR in quoted-pair", ";a=\"x\\\r\"", false, nil},
		{"junk after value", ";a=1 b", false, []kv{{"a", "1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Params(tc.in)
			if got := p.Valid(); got != tc.valid {
				t.Errorf("Valid() = %v, want %v", got, tc.valid)
			}
			var got []kv
			for {
				n, v, rest, ok, err := p.Next()
				if !ok {
					if (err == nil) != tc.valid {
						t.Errorf("Next error = %v, valid %v", err, tc.valid)
					}
					break
				}
				val := "<nil>"
				if v != nil {
					val = string(v)
				}
				got = append(got, kv{string(n), val})
				p = rest
			}
			if len(got) != len(tc.want) {
				t.Fatalf("params %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("param %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
			if tc.valid {
				for _, w := range tc.want {
					v, ok := Params(tc.in).Get(w.name)
					if !ok || (w.value == "<nil>") != (v == nil) || (v != nil && string(v) != w.value) {
						t.Errorf("Get(%q) = %q %v", w.name, v, ok)
					}
				}
				if _, ok := Params(tc.in).Get("absent"); ok {
					t.Error("Get(absent) found")
				}
			}
		})
	}
}
