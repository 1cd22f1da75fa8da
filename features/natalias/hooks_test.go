package natalias

import (
	"fmt"
	"net/netip"
	"testing"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// The hooks on fake messages: no socket, no timer.

var (
	natSrc = netip.MustParseAddrPort("203.0.113.7:40000") // the NAT's mapping
	local  = netip.MustParseAddrPort("198.51.100.1:5060") // sipedge
	callee = proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("198.51.100.20:5060")}
)

// request is a request from a UA that thinks it is at via, with contact
// as its Contact header value.
func request(method, via, contact string) string {
	return fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 %s\r\n"+
		"Contact: %s\r\nContent-Length: 0\r\n\r\n", method, via, method, contact)
}

func TestBranchHook(t *testing.T) {
	alias := ";alias=203.0.113.7~40000~1"
	for _, tc := range []struct {
		name string
		msg  string
		src  netip.AddrPort
		want string // Contact as forwarded
	}{
		{"NATed UA gets alias", request("INVITE", "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>"), natSrc,
			"<sip:alice@10.0.0.5:5060" + alias + ">"},
		{"NATed UA, Contact parameters kept after the URI", request("INVITE", "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060;transport=udp>;expires=60"), natSrc,
			"<sip:alice@10.0.0.5:5060;transport=udp" + alias + ">;expires=60"},
		{"Contact without angle brackets gets them", request("INVITE", "10.0.0.5:5060", "sip:alice@10.0.0.5:5060"), natSrc,
			"<sip:alice@10.0.0.5:5060" + alias + ">"},
		{"private Contact from a public source", request("INVITE", "203.0.113.7:40000", "<sip:alice@10.0.0.5:5060>"), natSrc,
			"<sip:alice@10.0.0.5:5060" + alias + ">"},
		{"not NATed: untouched", request("INVITE", "203.0.113.7:40000", "<sip:alice@203.0.113.7:40000>"), natSrc,
			"<sip:alice@203.0.113.7:40000>"},
		{"REGISTER untouched", request("REGISTER", "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>"), natSrc,
			"<sip:alice@10.0.0.5:5060>"},
		{"behind another proxy (two Vias): untouched",
			request("INVITE", "198.51.100.9:5060;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP 10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>"), natSrc,
			"<sip:alice@10.0.0.5:5060>"},
		{"already aliased: untouched", request("INVITE", "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060;alias=192.0.2.1~5060~1>"), natSrc,
			"<sip:alice@10.0.0.5:5060;alias=192.0.2.1~5060~1>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := New()
			core := proxytest.Harness(t, proxy.Config{}, func(*proxy.Core) []proxy.Feature { return []proxy.Feature{f} })
			r, ans := proxytest.Request(t, core, tc.msg, tc.src)
			b := r.TestBranch(&callee, local)
			if err := f.branch(b); err != nil {
				t.Fatal(err)
			}
			out := proxytest.Edited(t, b.Msg)
			if got := string(out.Get(sip.KindContact)); got != tc.want {
				t.Errorf("Contact %q, want %q", got, tc.want)
			}
			if tc.want == string(r.Msg().Get(sip.KindContact)) && b.Msg.Edited() {
				t.Errorf("message edited although the Contact stays")
			}
			if ans.Code() != 0 {
				t.Errorf("a branch hook answered %d", ans.Code())
			}
		})
	}
}

func TestReplyHook(t *testing.T) {
	natted := proxy.Target{Proto: transport.UDP, Addr: natSrc, NAT: true}
	direct := proxy.Target{Proto: transport.UDP, Addr: natSrc}
	tcpNAT := proxy.Target{Proto: transport.TCP, Addr: natSrc, NAT: true}
	ws := proxy.Target{Proto: transport.WSS, Addr: natSrc}
	const contact = "<sip:bob@10.0.0.9:5060>"
	for _, tc := range []struct {
		name   string
		code   int
		target proxy.Target
		want   string
	}{
		{"180 from a NAT target", 180, natted, "<sip:bob@10.0.0.9:5060;alias=203.0.113.7~40000~1>"},
		{"183 from a NAT target", 183, natted, "<sip:bob@10.0.0.9:5060;alias=203.0.113.7~40000~1>"},
		{"200 from a NAT target", 200, natted, "<sip:bob@10.0.0.9:5060;alias=203.0.113.7~40000~1>"},
		{"200 over TCP names the transport", 200, tcpNAT, "<sip:bob@10.0.0.9:5060;alias=203.0.113.7~40000~2>"},
		{"100 untouched", 100, natted, contact},
		{"486 untouched", 486, natted, contact},
		{"302 untouched", 302, natted, contact},
		{"200 from a target not behind NAT untouched", 200, direct, contact},
		{"200 from a WebSocket client (never marked NAT)", 200, ws, "<sip:bob@10.0.0.9:5060;alias=203.0.113.7~40000~6>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := New()
			core := proxytest.Harness(t, proxy.Config{}, func(*proxy.Core) []proxy.Feature { return []proxy.Feature{f} })
			r, _ := proxytest.Request(t, core, request("INVITE", "198.51.100.30:5060", "<sip:alice@198.51.100.30:5060>"),
				netip.MustParseAddrPort("198.51.100.30:5060"))
			resp := proxytest.Parse(t, fmt.Sprintf("SIP/2.0 %d %s\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKSe0\r\n"+
				"Via: SIP/2.0/UDP 198.51.100.30:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"+
				"To: <sip:bob@example.com>;tag=b1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: %s\r\nContent-Length: 0\r\n\r\n",
				tc.code, sip.ReasonPhrase(tc.code), contact))
			rp := r.TestReply(resp, &tc.target, true)
			if err := f.reply(rp); err != nil {
				t.Fatal(err)
			}
			if got := string(proxytest.Edited(t, resp).Get(sip.KindContact)); got != tc.want {
				t.Errorf("Contact %q, want %q", got, tc.want)
			}
		})
	}
}

// The hooks are where pipeline.go puts them.
func TestHookNames(t *testing.T) {
	core := proxytest.Harness(t, proxy.Config{}, func(*proxy.Core) []proxy.Feature { return []proxy.Feature{New()} })
	_, branch, reply, _ := core.Names()
	if fmt.Sprint(branch) != "[nat-alias]" || fmt.Sprint(reply) != "[nat-alias]" {
		t.Fatalf("branch hooks %v, reply hooks %v", branch, reply)
	}
}
