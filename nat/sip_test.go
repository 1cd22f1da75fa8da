package nat

import (
	"net/netip"
	"strings"
	"testing"

	"sipedge/sip"
	"sipedge/transport"
)

func msg(t *testing.T, via, contact string) *sip.Message {
	t.Helper()
	s := "INVITE sip:bob@example.com SIP/2.0\r\nVia: " + via + "\r\nFrom: <sip:a@example.com>;tag=1\r\n" +
		"To: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
	if contact != "" {
		s += "Contact: " + contact + "\r\n"
	}
	s += "Content-Length: 0\r\n\r\n"
	var m sip.Message
	if err := m.Parse([]byte(s), nil); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestBehindRequest(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.5:40000")
	tests := []struct {
		name, via, contact string
		want               bool
	}{
		{"private Via and Contact from a public source", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1", "<sip:a@10.0.0.5:5060>", true},
		{"public and matching", "SIP/2.0/UDP 203.0.113.5:40000;branch=z9hG4bK1", "<sip:a@203.0.113.5:40000>", false},
		{"Via matches, Contact private", "SIP/2.0/UDP 203.0.113.5:40000;branch=z9hG4bK1", "<sip:a@192.168.1.2>", true},
		{"Via port differs (NAT kept the address)", "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK1", "<sip:a@203.0.113.5:40000>", true},
		{"host names are taken at their word", "SIP/2.0/UDP pc.example.com;branch=z9hG4bK1", "<sip:a@pc.example.com>", false},
		{"no Contact, Via matches", "SIP/2.0/UDP 203.0.113.5:40000;branch=z9hG4bK1", "", false},
	}
	for _, tc := range tests {
		m := msg(t, tc.via, tc.contact)
		v, _ := m.TopVia()
		if got := BehindRequest(m, &v, src); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

func TestAliasContact(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.5:40000")
	tests := []struct{ name, contact, want string }{
		{"angle brackets", "<sip:a@10.0.0.5:5060>;expires=60", "<sip:a@10.0.0.5:5060;alias=203.0.113.5~40000~1>;expires=60"},
		{"no angle brackets get them", "sip:a@10.0.0.5:5060", "<sip:a@10.0.0.5:5060;alias=203.0.113.5~40000~1>"},
		{"before URI headers", "<sip:a@10.0.0.5?X=1>", "<sip:a@10.0.0.5;alias=203.0.113.5~40000~1?X=1>"},
		{"already aliased: untouched", "<sip:a@10.0.0.5;alias=1.2.3.4~5~1>", "<sip:a@10.0.0.5;alias=1.2.3.4~5~1>"},
		{"host name: untouched", "<sip:a@pc.example.com>", "<sip:a@pc.example.com>"},
		{"wildcard: untouched", "*", "*"},
	}
	for _, tc := range tests {
		m := msg(t, "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1", tc.contact)
		if err := AliasContact(m, src, transport.UDP); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		out := string(m.AppendTo(nil))
		if !strings.Contains(out, "\r\nContact: "+tc.want+"\r\n") {
			t.Errorf("%s: got\n%s", tc.name, out)
		}
	}
}

// TestAliasWebSocketContact: a WebSocket client's Contact is aliased with
// its connection's address whatever host it names; nothing else is.
func TestAliasWebSocketContact(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.5:40000")
	tests := []struct {
		name, contact string
		proto         transport.Proto
		want          string
	}{
		{"WSS .invalid host", "<sip:a@df7jal23ls0d.invalid;transport=ws>;+sip.ice", transport.WSS,
			"<sip:a@df7jal23ls0d.invalid;transport=ws;alias=203.0.113.5~40000~6>;+sip.ice"},
		{"WS IP host", "sip:a@10.0.0.5", transport.WS, "<sip:a@10.0.0.5;alias=203.0.113.5~40000~5>"},
		{"already aliased: untouched", "<sip:a@x.invalid;alias=1.2.3.4~5~5>", transport.WS, "<sip:a@x.invalid;alias=1.2.3.4~5~5>"},
		{"wildcard: untouched", "*", transport.WS, "*"},
		{"not WebSocket: untouched", "<sip:a@x.invalid>", transport.TCP, "<sip:a@x.invalid>"},
	}
	for _, tc := range tests {
		m := msg(t, "SIP/2.0/WSS x.invalid;branch=z9hG4bK1", tc.contact)
		if err := AliasWebSocketContact(m, src, tc.proto); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		out := string(m.AppendTo(nil))
		if !strings.Contains(out, "\r\nContact: "+tc.want+"\r\n") {
			t.Errorf("%s: got\n%s", tc.name, out)
		}
	}
}

func TestAliasTargetAndStrip(t *testing.T) {
	s := "BYE sip:a@10.0.0.5:5060;alias=203.0.113.5~40000~2;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2\r\nFrom: <sip:b@example.com>;tag=2\r\nTo: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
	var m sip.Message
	if err := m.Parse([]byte(s), nil); err != nil {
		t.Fatal(err)
	}
	if FromUA(&m) {
		t.Error("two Vias: not straight from the UA")
	}
	u, _ := m.RequestURI()
	ap, proto, ok := AliasTarget(&u)
	if !ok || ap != netip.MustParseAddrPort("203.0.113.5:40000") || proto != transport.TCP {
		t.Fatalf("AliasTarget: %v %v %v", ap, proto, ok)
	}
	if err := StripRURIAlias(&m); err != nil {
		t.Fatal(err)
	}
	if out := string(m.AppendTo(nil)); !strings.HasPrefix(out, "BYE sip:a@10.0.0.5:5060;transport=tcp SIP/2.0\r\n") {
		t.Fatalf("alias not stripped:\n%s", out)
	}
	u2, _ := sip.ParseURI([]byte("sip:a@10.0.0.5"))
	if _, _, ok := AliasTarget(&u2); ok {
		t.Error("no alias: no target")
	}
}
