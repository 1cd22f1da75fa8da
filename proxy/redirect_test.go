package proxy_test

import (
	"context"
	"fmt"
	"net/netip"
	"sipedge/transport"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
)

// stageFeature plugs one function in as the "dialplan" stage: what the
// core offers such a stage (Rewrite, FollowRedirects) is tested here
// without the feature package.
type stageFeature func(r *proxy.Request) bool

func (f stageFeature) Hooks() proxy.Hooks {
	return proxy.Hooks{Stages: []proxy.Stage{{Name: "dialplan", Run: f}}}
}

// redirectTo is a 3xx from p whose Contact names to instead of p.
func redirectTo(p *proxytest.Peer, req *sip.Message, code int, contacts ...string) string {
	a := p.Answer(req, code, "r1")
	i := strings.Index(a, "Contact: ")
	j := strings.Index(a[i:], "\r\n") + i + 2
	var c strings.Builder
	for _, ct := range contacts {
		c.WriteString("Contact: " + ct + "\r\n")
	}
	return a[:i] + c.String() + a[j:]
}

func TestFollowRedirects(t *testing.T) {
	uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	core, px := proxytest.Start(t, proxytest.To(a.Addr), func(*proxy.Core) []proxy.Feature {
		return []proxy.Feature{stageFeature(func(r *proxy.Request) bool {
			r.FollowRedirects(1)
			return false
		})}
	})
	uac.Send(px, proxytest.Invite(uac, px, "redir", "z9hG4bKd1"))
	ia := a.ExpectRequest("INVITE")
	// RFC 3261 §16.5: the contacts of the 3xx become targets; the one with
	// the higher q first, the 3xx itself is not relayed.
	a.Send(px, redirectTo(a, ia, 302, fmt.Sprintf("<sip:low@%s>;q=0.1", a.Addr), fmt.Sprintf("<sip:carol@%s>;q=0.9", b.Addr)))
	a.ExpectRequest("ACK")
	ib := b.ExpectRequest("INVITE")
	if got := string(ib.RequestURIBytes()); got != "sip:carol@"+b.Addr.String() {
		t.Fatalf("Request-URI of the recursed branch %q", got)
	}
	b.Send(px, b.Answer(ib, 486, "b1"))
	b.ExpectRequest("ACK")
	// The lower-q contact comes next (sequential by q).
	il := a.ExpectRequest("INVITE")
	if got := string(il.RequestURIBytes()); got != "sip:low@"+a.Addr.String() {
		t.Fatalf("second contact %q", got)
	}
	// A second 3xx is over the bound: it is relayed as any final response
	// would be, and is the best (3xx beats 4xx, §16.7 step 6).
	a.Send(px, redirectTo(a, il, 302, fmt.Sprintf("<sip:dave@%s>", b.Addr)))
	a.ExpectRequest("ACK")
	uac.Expect(302)
	if n := core.Stats().Redirects; n != 1 {
		t.Errorf("Redirects = %d, want 1", n)
	}
}

func TestRedirectRelayedByDefault(t *testing.T) {
	uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := start(t, proxytest.To(a.Addr))
	uac.Send(px, proxytest.Invite(uac, px, "relay3xx", "z9hG4bKd2"))
	ia := a.ExpectRequest("INVITE")
	a.Send(px, redirectTo(a, ia, 302, fmt.Sprintf("<sip:carol@%s>", b.Addr)))
	a.ExpectRequest("ACK")
	r := uac.Expect(302)
	if !strings.Contains(string(r.Get(sip.KindContact)), "carol@") {
		t.Fatalf("3xx Contact lost: %q", r.Get(sip.KindContact))
	}
	if m := b.Recv(200 * time.Millisecond); m != nil {
		t.Fatalf("followed without being asked: %s", proxytest.FirstLine(m))
	}
}

// A 3xx whose contacts cannot all be followed (a host name not cached,
// a tel URI) is relayed whole: recursing on some contacts would mean
// removing them from the response (§16.7 step 4).
func TestRedirectNotFollowable(t *testing.T) {
	uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := proxytest.Start(t, proxytest.To(a.Addr), func(*proxy.Core) []proxy.Feature {
		return []proxy.Feature{stageFeature(func(r *proxy.Request) bool { r.FollowRedirects(3); return false })}
	})
	uac.Send(px, proxytest.Invite(uac, px, "nofollow", "z9hG4bKd3"))
	ia := a.ExpectRequest("INVITE")
	a.Send(px, redirectTo(a, ia, 301, fmt.Sprintf("<sip:carol@%s>", b.Addr), "<tel:+15551234>"))
	a.ExpectRequest("ACK")
	uac.Expect(301)
	if m := b.Recv(200 * time.Millisecond); m != nil {
		t.Fatalf("followed part of a 3xx: %s", proxytest.FirstLine(m))
	}
}

// Rewrite: a stage before locate changes the Request-URI, and the router,
// the loop hash and the forwarded request all see the new one.
func TestRewriteRequestURI(t *testing.T) {
	uac, a := proxytest.NewPeer(t), proxytest.NewPeer(t)
	var routed atomic.Value
	router := routerFunc(func(m *sip.Message) proxy.Decision {
		routed.Store(string(m.RequestURIBytes()))
		return proxytest.To(a.Addr).Route(context.Background(), m, uac.Addr, transport.UDP)
	})
	_, px := proxytest.Start(t, router, func(*proxy.Core) []proxy.Feature {
		return []proxy.Feature{stageFeature(func(r *proxy.Request) bool {
			err := r.Rewrite(func(m *sip.Message) error {
				s, e := m.RequestURISpan()
				return m.Replace(s, e, []byte("sip:+4930123@example.com"))
			})
			if err != nil {
				t.Error(err)
			}
			return false
		})}
	})
	uac.Send(px, proxytest.Invite(uac, px, "rewrite", "z9hG4bKd4"))
	ia := a.ExpectRequest("INVITE")
	if got := string(ia.RequestURIBytes()); got != "sip:+4930123@example.com" {
		t.Fatalf("forwarded Request-URI %q", got)
	}
	if got := routed.Load(); got != "sip:+4930123@example.com" {
		t.Fatalf("router saw %q", got)
	}
	a.Send(px, a.Answer(ia, 200, "t1"))
	uac.Expect(200)
}

type routerFunc func(m *sip.Message) proxy.Decision

func (f routerFunc) Route(_ context.Context, m *sip.Message, _ netip.AddrPort, _ transport.Proto) proxy.Decision {
	return f(m)
}

// A stage right before "locate" that decides (Request.Decide) is not
// overruled by it.
func TestDecideBeforeLocate(t *testing.T) {
	uac, a, b := proxytest.NewPeer(t), proxytest.NewPeer(t), proxytest.NewPeer(t)
	_, px := proxytest.Start(t, proxytest.To(a.Addr), func(*proxy.Core) []proxy.Feature {
		return []proxy.Feature{stageFeature(func(r *proxy.Request) bool {
			r.Decide(proxytest.To(b.Addr).Route(context.Background(), r.Msg(), r.Src(), r.Proto()))
			return false
		})}
	})
	uac.Send(px, proxytest.Invite(uac, px, "decide", "z9hG4bKd5"))
	ib := b.ExpectRequest("INVITE")
	b.Send(px, b.Answer(ib, 200, "t1"))
	uac.Expect(200)
	if m := a.Recv(100 * time.Millisecond); m != nil {
		t.Fatalf("locate routed the request again: %s", proxytest.FirstLine(m))
	}
}
