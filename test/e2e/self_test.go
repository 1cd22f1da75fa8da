package e2e

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpClient is a UDP socket on loopback talking to one sipedge.
type udpClient struct {
	t   *testing.T
	c   *net.UDPConn
	dst *net.UDPAddr
}

func newUDPClient(t *testing.T, s *server) *udpClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dst, err := net.ResolveUDPAddr("udp4", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	return &udpClient{t: t, c: c, dst: dst}
}

func (u *udpClient) addr() string { return u.c.LocalAddr().String() }

// request builds a request from this client; extra is whole header lines.
func (u *udpClient) request(method, ruri, callID string, maxFwd int, extra ...string) []byte {
	var h strings.Builder
	for _, e := range extra {
		h.WriteString(e + "\r\n")
	}
	return []byte(fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
		"Max-Forwards: %d\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:callee@example.com>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 %s\r\n%sContent-Length: 0\r\n\r\n",
		method, ruri, u.addr(), callID, maxFwd, callID, method, h.String()))
}

// final sends msg and returns the final response for its Call-ID, or nil
// after wait. Provisional responses and late answers to earlier requests
// (retransmitted finals of INVITEs never ACKed) are skipped.
func (u *udpClient) final(msg []byte, wait time.Duration) *response {
	u.t.Helper()
	if _, err := u.c.WriteTo(msg, u.dst); err != nil {
		u.t.Fatal(err)
	}
	cid := callID(msg)
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		u.c.SetReadDeadline(deadline)
		n, _, err := u.c.ReadFrom(buf)
		if err != nil {
			return nil
		}
		r, err := parseResponse(buf[:n])
		if err != nil {
			u.t.Fatalf("unparsable answer: %v", err)
		}
		if r.code >= 200 && callID([]byte(r.raw)) == cid {
			return r
		}
	}
}

// TestSelfStages walks the stage list with one request per rule, for
// requests naming sipedge itself and a few that do not: OPTIONS for itself
// is answered even with Max-Forwards 0 (RFC 4475 §3.3.11), other requests
// with Max-Forwards 0 get 483 (RFC 3261 §16.3 step 3); Proxy-Require gets
// 420 whoever the request is for (§16.3 step 6); as a UAS sipedge refuses
// Require with 420 (§8.2.2.3), unknown methods with 501 and known ones it
// does not serve with 405 (§8.2.1), both with Allow; a CANCEL that matches
// nothing gets 481 (§16.10); an absent port means 5060, so sip:127.0.0.1 is
// not this instance; a tel: URI has no route configured (404).
func TestSelfStages(t *testing.T) {
	t.Parallel()
	s := start(t)
	u := newUDPClient(t, s)
	self := "sip:" + s.addr()
	for i, tc := range []struct {
		method, ruri string
		maxFwd       int
		extra        []string
		want         int
		header       string // "name: value" the answer must carry
	}{
		{"OPTIONS", self, 70, nil, 200, "allow: OPTIONS"},
		{"OPTIONS", "sip:localhost:" + strconv.Itoa(s.port), 70, nil, 200, "allow: OPTIONS"},
		{"OPTIONS", self, 0, nil, 200, "allow: OPTIONS"},
		{"INVITE", self, 0, nil, 483, ""},
		{"OPTIONS", self, 70, []string{"Require: foo, bar"}, 420, "unsupported: foo, bar"},
		{"OPTIONS", self, 70, []string{"Proxy-Require: px"}, 420, "unsupported: px"},
		{"INVITE", "sip:callee@example.com", 70, []string{"Proxy-Require: px", "Proxy-Require: py"}, 420, "unsupported: px, py"},
		{"CANCEL", self, 70, nil, 481, ""},
		{"CANCEL", "sip:callee@example.com", 70, nil, 481, ""},
		{"FOO", self, 70, nil, 501, "allow: OPTIONS"},
		{"MESSAGE", self, 70, nil, 405, "allow: OPTIONS"},
		{"INVITE", self, 70, nil, 405, "allow: OPTIONS"},
		{"OPTIONS", "sip:127.0.0.1", 70, nil, 480, ""},
		{"MESSAGE", "sip:callee@example.com", 70, nil, 480, ""},
		{"INVITE", "tel:+15555550100", 70, nil, 404, ""},
	} {
		msg := u.request(tc.method, tc.ruri, fmt.Sprintf("self%d", i), tc.maxFwd, tc.extra...)
		r := u.final(msg, 3*time.Second)
		what := fmt.Sprintf("%s %s (Max-Forwards %d, %v)", tc.method, tc.ruri, tc.maxFwd, tc.extra)
		if r == nil {
			t.Errorf("%s: no final answer, want %d", what, tc.want)
			continue
		}
		if r.code != tc.want {
			t.Errorf("%s: %d, want %d\n%s", what, r.code, tc.want, r.raw)
			continue
		}
		if tc.header != "" {
			name, val, _ := strings.Cut(tc.header, ": ")
			if r.get(name) != val {
				t.Errorf("%s: %s %q, want %q", what, name, r.get(name), val)
			}
		}
		if tc.want == 200 && (r.get("accept") == "" || len(r.headers["supported"]) == 0 || r.get("server") == "") {
			t.Errorf("%s: 200 without Accept, Supported or Server:\n%s", what, r.raw)
		}
		if !toTag.MatchString(r.get("to")) {
			t.Errorf("%s: To without tag: %s", what, r.get("to"))
		}
	}
	// An ACK is never answered (RFC 3261 §17.1.1.3), whoever it is for.
	for _, ruri := range []string{self, "sip:callee@example.com"} {
		if r := u.final(u.request("ACK", ruri, "ack-"+ruri, 70), 500*time.Millisecond); r != nil {
			t.Errorf("ACK %s answered %d", ruri, r.code)
		}
	}
}

// TestRouteNextHop: a request with a preloaded Route naming another element
// goes there (RFC 3261 §16.4, §16.6 step 6). With ;lr the next hop is a
// loose router: Request-URI and Route are forwarded unchanged. Without ;lr
// it is a strict router, and §16.6 step 6 says the proxy MUST put the
// Request-URI last in Route and the first Route URI in the Request-URI.
// The next hop's 200 comes back to the sender either way.
func TestRouteNextHop(t *testing.T) {
	t.Parallel()
	s := start(t)
	u := newUDPClient(t, s)
	hop, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hop.Close()
	hopURI := "sip:" + hop.LocalAddr().String()
	const target = "sip:kumiko@example.org"
	for _, tc := range []struct {
		name, route, wantRURI, wantRoute string
	}{
		{"loose", "<" + hopURI + ";lr>", target, "<" + hopURI + ";lr>"},
		{"strict", "<" + hopURI + ">", hopURI, "<" + target + ">"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := u.request("MESSAGE", target, "route-"+tc.name, 70, "Route: "+tc.route)
			if _, err := u.c.WriteTo(msg, u.dst); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 65535)
			hop.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, from, err := hop.ReadFrom(buf)
			if err != nil {
				t.Fatalf("nothing reached the Route's next hop: %v", err)
			}
			fwd := append([]byte(nil), buf[:n]...)
			hop.WriteTo(okFor(fwd), from)
			line := strings.SplitN(string(fwd), "\r\n", 2)[0]
			if want := "MESSAGE " + tc.wantRURI + " SIP/2.0"; line != want {
				t.Errorf("forwarded request line %q, want %q (RFC 3261 §16.6 step 6)", line, want)
			}
			if got := field(fwd, "route"); got != tc.wantRoute {
				t.Errorf("forwarded Route %q, want %q (RFC 3261 §16.6 step 6)", got, tc.wantRoute)
			}
			u.c.SetReadDeadline(time.Now().Add(3 * time.Second))
			for {
				n, _, err := u.c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("the next hop's 200 did not come back: %v", err)
				}
				if r, _ := parseResponse(buf[:n]); r != nil && r.code == 200 && callID(buf[:n]) == "route-"+tc.name {
					break
				}
			}
		})
	}
}
