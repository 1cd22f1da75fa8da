package keepalive

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
)

// The sender's parts without a socket or a timer: the probe's verdicts are
// called directly.

func TestParseMethod(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Method
		ok   bool
	}{
		{"options", Options, true},
		{"", Options, true},
		{"crlf", CRLF, true},
		{"OPTIONS", 0, false},
		{"ping", 0, false},
	} {
		if got, ok := ParseMethod(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("ParseMethod(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// fakeLocator is the location service with NATed bindings in a map.
type fakeLocator struct {
	mu       sync.Mutex
	bindings map[[2]string]time.Time // aor, contact → updated
	removed  [][2]string
}

func (l *fakeLocator) RangeNAT(fn func(aor, uri string, src netip.AddrPort, updated time.Time)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, up := range l.bindings {
		fn(k[0], k[1], netip.MustParseAddrPort("203.0.113.7:40000"), up)
	}
}

func (l *fakeLocator) Remove(aor, uri string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]string{aor, uri}
	if _, ok := l.bindings[k]; !ok {
		return false
	}
	delete(l.bindings, k)
	l.removed = append(l.removed, k)
	return true
}

func (l *fakeLocator) has(aor, uri string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.bindings[[2]string{aor, uri}]
	return ok
}

func newFeature(t *testing.T, cfg Config) (*Feature, *fakeLocator) {
	t.Helper()
	loc := &fakeLocator{bindings: map[[2]string]time.Time{
		{"alice@example.com", "sip:alice@10.0.0.5:5060"}: time.Now().Add(-time.Hour),
		{"bob@example.com", "sip:bob@10.0.0.6:5060"}:     time.Now().Add(-time.Hour),
	}}
	var f *Feature
	proxytest.Harness(t, proxy.Config{}, func(c *proxy.Core) []proxy.Feature {
		f = New(c, loc, cfg)
		return []proxy.Feature{f}
	})
	return f, loc
}

func probeFor(f *Feature, aor, uri string) *probe {
	return &probe{f: f, key: aor + "\x00" + uri, aor: aor, uri: uri, max: f.cfg.Load().MaxFailures}
}

// answer is a phone's response to a keep-alive OPTIONS.
func answer(t *testing.T, code int) *sip.Message {
	return proxytest.Parse(t, fmt.Sprintf("SIP/2.0 %d %s\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKSa1\r\n"+
		"From: <sip:sipedge@198.51.100.1>;tag=1\r\nTo: <sip:alice@10.0.0.5:5060>;tag=2\r\nCall-ID: ka\r\nCSeq: 1 OPTIONS\r\n"+
		"Content-Length: 0\r\n\r\n", code, sip.ReasonPhrase(code)))
}

func TestProbeRemovesBinding(t *testing.T) {
	const alice, aliceURI = "alice@example.com", "sip:alice@10.0.0.5:5060"
	const bob, bobURI = "bob@example.com", "sip:bob@10.0.0.6:5060"
	for _, tc := range []struct {
		name    string
		max     int
		events  []string // "timeout", "error", "200", "404", "180"
		removed bool
	}{
		{"MaxFailures timeouts", 3, []string{"timeout", "timeout", "timeout"}, true},
		{"one short", 3, []string{"timeout", "timeout"}, false},
		{"transport errors count", 2, []string{"error", "timeout"}, true},
		{"an answer starts the count again", 3, []string{"timeout", "timeout", "200", "timeout", "timeout"}, false},
		{"an error response is an answer", 2, []string{"timeout", "404", "timeout"}, false},
		{"a provisional is not", 2, []string{"timeout", "180", "timeout"}, true},
		{"default MaxFailures is 3", 0, []string{"timeout", "timeout", "timeout"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, loc := newFeature(t, Config{Interval: time.Minute, MaxFailures: tc.max})
			for _, ev := range tc.events {
				p := probeFor(f, alice, aliceURI) // each keep-alive has its own probe
				switch ev {
				case "timeout":
					p.OnTimeout(nil, false)
				case "error":
					p.OnTransportError(nil, nil)
				case "200":
					p.OnResponse(nil, answer(t, 200))
				case "404":
					p.OnResponse(nil, answer(t, 404))
				case "180":
					p.OnResponse(nil, answer(t, 180))
				}
			}
			if gone := !loc.has(alice, aliceURI); gone != tc.removed {
				t.Fatalf("binding removed %v, want %v", gone, tc.removed)
			}
			if !loc.has(bob, bobURI) {
				t.Fatal("another phone's binding was removed")
			}
			st := f.Stats()
			want := uint64(0)
			if tc.removed {
				want = 1
			}
			if st.BindingsRemoved != want {
				t.Errorf("BindingsRemoved %d, want %d", st.BindingsRemoved, want)
			}
			f.mu.Lock()
			left := len(f.failures)
			f.mu.Unlock()
			if tc.removed && left != 0 {
				t.Errorf("failure count kept after the removal: %v", f.failures)
			}
		})
	}
}

// A binding that went away by itself (unregistered) is not counted.
func TestProbeBindingAlreadyGone(t *testing.T) {
	f, _ := newFeature(t, Config{Interval: time.Minute, MaxFailures: 1})
	probeFor(f, "carol@example.com", "sip:carol@10.0.0.7").OnTimeout(nil, false)
	if st := f.Stats(); st.BindingsRemoved != 0 || st.Failures != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Without a transport nothing can be sent: each keep-alive counts as sent
// and as a send error, whatever the method.
func TestSendWithoutTransport(t *testing.T) {
	for _, m := range []Method{Options, CRLF} {
		f, _ := newFeature(t, Config{Interval: time.Minute, Method: m})
		f.send(f.cfg.Load(), &target{aor: "alice@example.com", uri: "sip:alice@10.0.0.5:5060", src: netip.MustParseAddrPort("203.0.113.7:40000")})
		if st := f.Stats(); st.Sent != 1 || st.SendErrors != 1 {
			t.Errorf("method %d: stats %+v", m, st)
		}
	}
}
