package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sipedge/config"
)

// withBody is a request from u with a body and its Content-Type (none
// when ct is empty).
func (u *udpClient) withBody(method, ruri, callID, ct, body string) []byte {
	h := ""
	if ct != "" {
		h = "Content-Type: " + ct + "\r\n"
	}
	return []byte(fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:callee@example.com>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 %s\r\nContact: <sip:probe@%s>\r\n%sContent-Length: %d\r\n\r\n%s",
		method, ruri, u.addr(), callID, callID, method, u.addr(), h, len(body), body))
}

const e2eSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

func mixed(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--sep\r\n" + p + "\r\n")
	}
	return b.String() + "--sep--\r\n"
}

// TestMIMEFilter: with the default allow-lists, an INVITE whose body is of
// a type nothing expects gets 415 with Accept (RFC 3261 §8.2.3); an SDP
// offer is handled as always (480: nobody is registered); a multipart with
// one part not allowed gets 415; one that cannot be read gets 400 naming
// the defect; so does a body without Content-Type (§20.15).
func TestMIMEFilter(t *testing.T) {
	s := start(t)
	u := newUDPClient(t, s)
	for _, tc := range []struct {
		name, ct, body string
		code           int
		reason         string
	}{
		{"unknown type", "application/x-evil", "<evil/>", 415, "Unsupported Media Type"},
		{"sdp", "application/sdp", e2eSDP, 480, ""},
		{"sdp, other case and parameters", "Application/SDP; charset=utf-8", e2eSDP, 480, ""},
		{"multipart with sdp and isup", "multipart/mixed;boundary=sep",
			mixed("Content-Type: application/sdp\r\n\r\n"+e2eSDP, "Content-Type: application/isup;version=nxv3\r\n\r\n\x01\x00\x49"), 480, ""},
		{"multipart with a part not allowed", "multipart/mixed;boundary=sep",
			mixed("Content-Type: application/sdp\r\n\r\n"+e2eSDP, "Content-Type: application/x-evil\r\n\r\nboom"), 415, "Unsupported Media Type"},
		{"multipart unterminated", "multipart/mixed;boundary=sep", "--sep\r\nContent-Type: application/sdp\r\n\r\n" + e2eSDP, 400, "Unterminated Multipart Body"},
		{"multipart without boundary", "multipart/mixed", mixed("Content-Type: application/sdp\r\n\r\n" + e2eSDP), 400, "Multipart Without Boundary"},
		{"no Content-Type", "", e2eSDP, 400, "Missing Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("mime%d", time.Now().UnixNano())
			r := u.final(u.withBody("INVITE", "sip:nobody@example.com", id, tc.ct, tc.body), 5*time.Second)
			if r == nil {
				t.Fatal("no final response")
			}
			if r.code != tc.code {
				t.Fatalf("got %d, want %d:\n%s", r.code, tc.code, r.raw)
			}
			if tc.reason != "" && !strings.HasPrefix(r.raw, fmt.Sprintf("SIP/2.0 %d %s\r\n", tc.code, tc.reason)) {
				t.Errorf("status line %q, want reason %q", strings.SplitN(r.raw, "\r\n", 2)[0], tc.reason)
			}
			accept := r.get("accept")
			if tc.code == 415 {
				if !strings.Contains(accept, "application/sdp") || !strings.Contains(accept, "multipart/mixed") || strings.Contains(accept, "x-evil") {
					t.Errorf("Accept %q: want the allow-list", accept)
				}
			} else if accept != "" {
				t.Errorf("Accept %q in a %d", accept, r.code)
			}
		})
	}
}

// TestMIMEDirections: the inbound list applies to sources outside
// trusted_networks, the outbound list to those inside; a reload swaps them.
func TestMIMEDirections(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sipedge.yaml")
	// No trusted network, and strangers may send to local users
	// without credentials: the source counts as inbound.
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("# nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inbound := "dns:\n  servers: [\"127.0.0.1:9\"]\ndomains: [example.org]\ntrusted_networks: []\n" +
		"auth:\n  users_file: " + users + "\n  allow_unauthenticated_to_local: true\n" +
		"mime:\n  inbound: [application/sdp]\n  outbound: [\"*/*\"]\n"
	if err := os.WriteFile(file, []byte(inbound), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file, "--data-dir", t.TempDir())
	u := newUDPClient(t, s)
	send := func(id string) *response {
		t.Helper()
		r := u.final(u.withBody("MESSAGE", "sip:nobody@example.org", id, "text/plain", "hello"), 5*time.Second)
		if r == nil {
			t.Fatal("no final response")
		}
		return r
	}
	if r := send("dir1"); r.code != 415 || r.get("accept") != "application/sdp" {
		t.Fatalf("untrusted MESSAGE: %d Accept %q, want 415 Accept application/sdp", r.code, r.get("accept"))
	}
	// Loopback trusted: the outbound list ("*/*") applies.
	s.reload(t, file, strings.Replace(inbound, "trusted_networks: []", "trusted_networks: [loopback]", 1), "configuration reloaded")
	if r := send("dir2"); r.code != 480 {
		t.Fatalf("trusted MESSAGE: %d, want 480 (no binding)", r.code)
	}
	// An empty list is refused with the reason; the lists in force stay.
	s.reload(t, file, strings.Replace(inbound, "outbound: [\"*/*\"]", "outbound: []", 1), "configuration not reloaded")
	if !strings.Contains(lastLine(s.logs(), "configuration not reloaded"), `mime.outbound: an empty list would refuse every request with a body; list the media types to allow, or write [\"*/*\"]`) {
		t.Errorf("refusal: %s", lastLine(s.logs(), "configuration not reloaded"))
	}
	if r := send("dir3"); r.code != 480 {
		t.Fatalf("after a refused reload: %d, want 480 (the refused file's trusted_networks: [] not applied)", r.code)
	}
}

// versionRE matches what a version looks like in a product token: digits
// and dots (sipedge/1.2, 1.2.3), or any "/version" part.
var versionRE = regexp.MustCompile(`\d+\.\d+|/`)

// TestServerHeader: by default the Server header of sipedge's answers (an
// OPTIONS, the probe svmap sends, and a 415) names sipedge without a
// version; server_header sets it; empty, there is none.
func TestServerHeader(t *testing.T) {
	s := start(t)
	u := newUDPClient(t, s)
	r := u.final(options(s, "UDP "+u.addr(), "srv1"), 5*time.Second)
	if r == nil || r.code != 200 {
		t.Fatalf("OPTIONS: %+v", r)
	}
	if got := r.get("server"); got != "sipedge" || versionRE.MatchString(got) {
		t.Errorf("Server %q, want \"sipedge\" without a version", got)
	}
	r = u.final(u.withBody("INVITE", "sip:nobody@example.com", "srv2", "application/x-evil", "x"), 5*time.Second)
	if r == nil || r.code != 415 || r.get("server") != "sipedge" {
		t.Fatalf("415: %+v", r)
	}

	for _, tc := range []struct{ value, want string }{{`""`, ""}, {`"Edge SBC"`, "Edge SBC"}} {
		file := filepath.Join(t.TempDir(), "sipedge.yaml")
		if err := os.WriteFile(file, []byte("dns:\n  servers: [\"127.0.0.1:9\"]\nserver_header: "+tc.value+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s := start(t, "--config", file, "--data-dir", t.TempDir())
		u := newUDPClient(t, s)
		r := u.final(options(s, "UDP "+u.addr(), "srv3"), 5*time.Second)
		if r == nil || r.code != 200 {
			t.Fatalf("OPTIONS: %+v", r)
		}
		if got := r.headers["server"]; len(got) > 1 || r.get("server") != tc.want {
			t.Errorf("server_header %s: Server %q, want %q", tc.value, got, tc.want)
		}
	}
}

// TestMIMEBinaryMultipart: RFC 4475 §3.1.1.11's MESSAGE, a multipart with
// a binary part (NUL bytes, bare LF), is read part by part and, with its
// part types allowed, forwarded to its preloaded Route byte for byte (the
// default lists refuse its application/octet-stream part: torture_test.go).
func TestMIMEBinaryMultipart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sipedge.yaml")
	lists := "[" + strings.Join(append(config.DefaultMIME(), "application/octet-stream"), ", ") + "]"
	if err := os.WriteFile(file, []byte("dns:\n  servers: [\"127.0.0.1:9\"]\nmime:\n  inbound: "+lists+"\n  outbound: "+lists+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file, "--data-dir", t.TempDir())
	hop := listenNextHop(t)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp4", s.addr())
	msg := readFile(t, "rfc4475/mpart01.dat")
	if _, err := c.WriteTo(msg, dst); err != nil {
		t.Fatal(err)
	}
	var final *response
	buf := make([]byte, 65535)
	for final == nil {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			break
		}
		if r, err := parseResponse(buf[:n]); err == nil && r.code >= 200 {
			final = r
		}
	}
	checkNextHop(t, hop, final, msg)
}
