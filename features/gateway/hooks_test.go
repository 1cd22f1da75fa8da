package gateway

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

// The hooks on fake messages: no socket, no sleep.

var (
	phone    = netip.MustParseAddrPort("10.0.0.5:5060")     // a phone talking to sipedge directly
	natSrc   = netip.MustParseAddrPort("203.0.113.7:40000") // where a NATed phone's packets come from
	local    = netip.MustParseAddrPort("198.51.100.1:5060") // sipedge towards the provider
	provider = proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("198.51.100.20:5060")}
)

// register is a REGISTER from a phone that thinks it is at via, with
// contact as its Contact header value.
func register(via, contact string) string {
	return fmt.Sprintf("REGISTER sip:provider.example SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKr1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@provider.example>;tag=r1\r\nTo: <sip:alice@provider.example>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\n"+
		"Contact: %s\r\nContent-Length: 0\r\n\r\n", via, contact)
}

// ok200 is the provider's 200 to register listing contacts.
func ok200(contacts ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKSe0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKr1\r\n"+
		"From: <sip:alice@provider.example>;tag=r1\r\nTo: <sip:alice@provider.example>;tag=p1\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\n", local, phone)
	for _, c := range contacts {
		fmt.Fprintf(&b, "Contact: %s\r\n", c)
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

func harness(t *testing.T) (*Feature, *proxy.Core) {
	t.Helper()
	var f *Feature
	core := proxytest.Harness(t, proxy.Config{Self: proxy.NewSelf([]netip.AddrPort{local}, nil)}, func(c *proxy.Core) []proxy.Feature {
		var err error
		if f, err = New(c, nil); err != nil {
			t.Fatal(err)
		}
		return []proxy.Feature{f}
	})
	return f, core
}

// forward runs the branch hook on msg from src towards target and returns
// the Contact as forwarded.
func forward(t *testing.T, f *Feature, core *proxy.Core, msg string, src netip.AddrPort, target proxy.Target) string {
	t.Helper()
	r, _ := proxytest.Request(t, core, msg, src)
	b := r.TestBranch(&target, local)
	if err := f.contact(b); err != nil {
		t.Fatal(err)
	}
	return string(proxytest.Edited(t, b.Msg).Get(sip.KindContact))
}

func TestContactRewritten(t *testing.T) {
	phoneURI := "sip:alice@" + phone.String()
	tok := func(f *Feature, src netip.AddrPort) string { return f.token([]byte(phoneURI), src) }
	tcp := provider
	tcp.Proto = transport.TCP
	for _, tc := range []struct {
		name     string
		msg      string
		src      netip.AddrPort
		target   proxy.Target
		want     func(f *Feature) string // "" : untouched
		wantNAT  bool
		bindings int
	}{
		{"REGISTER over UDP", register(phone.String(), "<"+phoneURI+">;expires=600"), phone, provider,
			func(f *Feature) string {
				return "<sip:alice@" + local.String() + ";sipedge=" + tok(f, phone) + ">;expires=600"
			}, false, 1},
		{"REGISTER to a provider over TCP", register(phone.String(), "<"+phoneURI+">"), phone, tcp,
			func(f *Feature) string {
				return "<sip:alice@" + local.String() + ";transport=tcp;sipedge=" + tok(f, phone) + ">"
			}, false, 1},
		{"REGISTER from a NATed phone", register(phone.String(), "<"+phoneURI+">"), natSrc, provider,
			func(f *Feature) string { return "<sip:alice@" + local.String() + ";sipedge=" + tok(f, natSrc) + ">" }, true, 1},
		{"not a REGISTER", strings.NewReplacer("REGISTER sip:", "OPTIONS sip:", "1 REGISTER", "1 OPTIONS").Replace(register(phone.String(), "<"+phoneURI+">")), phone, provider,
			nil, false, 0},
		{"REGISTER through another proxy", register("198.51.100.9:5060;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP "+phone.String(), "<"+phoneURI+">"),
			netip.MustParseAddrPort("198.51.100.9:5060"), provider, nil, false, 0},
		{"wildcard", register(phone.String(), "*"), phone, provider, nil, false, 0},
		{"no angle brackets", register(phone.String(), phoneURI), phone, provider, nil, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core := harness(t)
			r, _ := proxytest.Request(t, core, tc.msg, tc.src)
			orig := string(r.Msg().Get(sip.KindContact))
			got := forward(t, f, core, tc.msg, tc.src, tc.target)
			want := orig
			if tc.want != nil {
				want = tc.want(f)
			}
			if got != want {
				t.Errorf("Contact %q, want %q", got, want)
			}
			if f.Bindings() != tc.bindings {
				t.Fatalf("%d bindings, want %d", f.Bindings(), tc.bindings)
			}
			for _, pb := range f.m {
				if !pb.expires.IsZero() || string(pb.contact) != phoneURI || pb.local != local || pb.proto != tc.target.Proto {
					t.Errorf("binding %+v: want pending, the phone's contact, sipedge's address", pb)
				}
				wantAddr := phone
				if tc.wantNAT {
					wantAddr = natSrc
				}
				if pb.target.Addr != wantAddr || pb.target.NAT != tc.wantNAT || string(pb.target.URI) != phoneURI {
					t.Errorf("binding target %+v, want %s NAT %v", pb.target, wantAddr, tc.wantNAT)
				}
			}
		})
	}
}

func TestReplyLearnsAndRestores(t *testing.T) {
	phoneURI := "sip:alice@" + phone.String()
	for _, tc := range []struct {
		name      string
		resp      func(ours string) string
		method    string
		want      string // Contact the phone gets, "" : as the provider sent it
		confirmed bool
		bindings  int
	}{
		{"200 lists ours", func(ours string) string { return ok200("<" + ours + ">;expires=600") }, "REGISTER",
			"<" + phoneURI + ">;expires=600", true, 1},
		{"200 lists ours, Expires header", func(ours string) string {
			return strings.Replace(ok200("<"+ours+">"), "Content-Length", "Expires: 300\r\nContent-Length", 1)
		}, "REGISTER", "<" + phoneURI + ">", true, 1},
		{"200 lists ours with expires=0 (unregistered)", func(ours string) string { return ok200("<" + ours + ">;expires=0") }, "REGISTER",
			"<" + phoneURI + ">;expires=0", false, 0},
		{"200 lists ours without any expiry", func(ours string) string { return ok200("<" + ours + ">") }, "REGISTER",
			"<" + phoneURI + ">", false, 0},
		{"200 lists none of ours", func(string) string { return ok200("<sip:other@192.0.2.1>;expires=600") }, "REGISTER",
			"", false, 0},
		{"401", func(ours string) string {
			return strings.Replace(ok200("<"+ours+">;expires=600"), "200 OK", "401 Unauthorized", 1)
		}, "REGISTER", "", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, core := harness(t)
			msg := register(phone.String(), "<"+phoneURI+">;expires=600")
			fwd := forward(t, f, core, msg, phone, provider)
			a, err := sip.ParseAddress([]byte(fwd))
			if err != nil {
				t.Fatal(err)
			}
			ours := string(a.RawURI)
			r, _ := proxytest.Request(t, core, msg, phone)
			resp := proxytest.Parse(t, tc.resp(ours))
			sent := string(resp.Get(sip.KindContact))
			if err := f.reply(r.TestReply(resp, &provider, true)); err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = sent
			}
			if got := string(proxytest.Edited(t, resp).Get(sip.KindContact)); got != want {
				t.Errorf("Contact to the phone %q, want %q", got, want)
			}
			if f.Bindings() != tc.bindings {
				t.Fatalf("%d bindings, want %d", f.Bindings(), tc.bindings)
			}
			_, claimed, ok := f.resolve(&a.URI)
			if !claimed || ok != tc.confirmed {
				t.Errorf("resolve after the reply: claimed %v ok %v, want confirmed %v", claimed, ok, tc.confirmed)
			}
		})
	}
}

func TestResolver(t *testing.T) {
	f, core := harness(t)
	phoneURI := "sip:alice@" + phone.String()
	fwd := forward(t, f, core, register(phone.String(), "<"+phoneURI+">"), phone, provider)
	a, err := sip.ParseAddress([]byte(fwd))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := a.URI.Param(Param)
	resolve := func(s string) (proxy.Target, bool, bool) {
		u, err := sip.ParseURI([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return f.resolve(&u)
	}
	for _, tc := range []struct {
		uri         string
		claimed, ok bool
	}{
		{"sip:alice@" + local.String(), false, false},                          // no token: not ours
		{"sip:alice@192.0.2.1:5060;sipedge=" + string(tok), false, false},      // another host's parameter
		{"sip:alice@" + local.String() + ";sipedge=0123456789ab", true, false}, // unknown token
		{string(a.RawURI), true, false},                                        // not confirmed yet
	} {
		if _, claimed, ok := resolve(tc.uri); claimed != tc.claimed || ok != tc.ok {
			t.Errorf("%s: claimed %v ok %v, want %v %v", tc.uri, claimed, ok, tc.claimed, tc.ok)
		}
	}
	r, _ := proxytest.Request(t, core, register(phone.String(), "<"+phoneURI+">"), phone)
	if err := f.reply(r.TestReply(proxytest.Parse(t, ok200("<"+string(a.RawURI)+">;expires=600")), &provider, true)); err != nil {
		t.Fatal(err)
	}
	tg, claimed, ok := resolve(string(a.RawURI))
	if !claimed || !ok || tg.Addr != phone || tg.Proto != transport.UDP || string(tg.URI) != phoneURI {
		t.Fatalf("confirmed: claimed %v ok %v target %+v", claimed, ok, tg)
	}
	// Lapsed: claimed, not routed.
	f.mu.Lock()
	f.m[string(tok)].expires = time.Now().Add(-time.Second)
	f.mu.Unlock()
	if _, claimed, ok := resolve(string(a.RawURI)); !claimed || ok {
		t.Fatalf("lapsed: claimed %v ok %v", claimed, ok)
	}
}

func TestStage(t *testing.T) {
	f, core := harness(t)
	phoneURI := "sip:alice@" + phone.String()
	fwd := forward(t, f, core, register(phone.String(), "<"+phoneURI+">"), phone, provider)
	a, _ := sip.ParseAddress([]byte(fwd))
	r, _ := proxytest.Request(t, core, register(phone.String(), "<"+phoneURI+">"), phone)
	if err := f.reply(r.TestReply(proxytest.Parse(t, ok200("<"+string(a.RawURI)+">;expires=600")), &provider, true)); err != nil {
		t.Fatal(err)
	}
	caller := netip.MustParseAddrPort("198.51.100.20:5060")
	request := func(method, ruri, extra string) string {
		return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKc1;rport\r\nMax-Forwards: 70\r\n%s"+
			"From: <sip:bob@provider.example>;tag=b1\r\nTo: <sip:alice@provider.example>\r\nCall-ID: call1\r\nCSeq: 1 %s\r\n"+
			"Content-Length: 0\r\n\r\n", method, ruri, caller, extra, method)
	}
	for _, tc := range []struct {
		name   string
		msg    string
		done   bool // answered
		code   int
		target bool // decided for the phone
	}{
		{"INVITE for a confirmed contact", request("INVITE", string(a.RawURI), ""), false, 0, true},
		{"BYE for a confirmed contact", request("BYE", string(a.RawURI), ""), false, 0, true},
		{"INVITE for an unknown token", request("INVITE", "sip:alice@"+local.String()+";sipedge=0123456789ab", ""), true, 480, false},
		{"INVITE without a token", request("INVITE", "sip:alice@"+local.String(), ""), false, 0, false},
		{"REGISTER with a token", request("REGISTER", string(a.RawURI), ""), false, 0, false},
		{"a further Route: not decided here", request("INVITE", string(a.RawURI), "Route: <sip:192.0.2.1;lr>\r\n"), false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ans := proxytest.Request(t, core, tc.msg, caller)
			if done := f.stage(r); done != tc.done || ans.Code() != tc.code {
				t.Fatalf("stage done %v answered %v; want %v %d", done, ans.Codes, tc.done, tc.code)
			}
			d := r.Decision()
			if decided := len(d.Groups) > 0; decided != tc.target {
				t.Fatalf("decision %+v", d)
			}
			if tc.target {
				tg := d.Groups[0][0]
				if tg.Addr != phone || string(tg.URI) != phoneURI {
					t.Errorf("target %+v, want the phone's contact %s", tg, phoneURI)
				}
			}
		})
	}
}
