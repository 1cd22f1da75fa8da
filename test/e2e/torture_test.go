package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Special verdicts (positive values are the final status code expected).
const (
	// silent: no response at all. Responses sent to sipedge match no
	// transaction and are dropped (RFC 4475 §3.1.1.12, §3.1.1.13), as are
	// malformed ones (§3.1.2.5, §3.1.2.19) and the broadcast Via (§3.3.10).
	silent = 0
	// neverCompletes (streams only): the message never ends, so there is no
	// answer, and the connection is closed once the idle timeout passes.
	neverCompletes = -2
	// preloadedRoute: mpart01's Route <sip:127.0.0.1:5080> is a next hop
	// outside sipedge; see checkNextHop. Under the default mime lists
	// mpart01 gets 415 (its application/octet-stream part); with the part
	// allowed it is forwarded (TestMIMEBinaryMultipart).
	preloadedRoute = -3
)

// verdicts is the final status sipedge must answer to each torture message
// sent as one UDP datagram, derived from the RFC 4475/5118 INDEX.md verdicts
// and sipedge's stage list (proxy/stages.go), for the configuration start()
// gives every instance: zero configuration (every domain is local, so the
// registrar and the location service serve it, and nobody is registered),
// DNS pointed at a closed loopback port (no host name resolves).
//
//   - REJECT requests: the parser's status (INDEX.md): 400, 505 for
//     SIP/7.0 (§3.1.2.16), 501 for an unknown method whose CSeq disagrees
//     (§3.1.2.18, RFC 3261 §8.2.1 comes first).
//   - 416 for a Request-URI scheme that is neither sip/sips nor tel (§3.3.2,
//     §3.3.3; RFC 3261 §16.3 step 1), 483 for Max-Forwards 0 (§3.3.11),
//     420 with Unsupported for Proxy-Require (§3.3.5).
//   - REGISTER for any domain: the registrar; 200 when To and Contact are
//     well formed (it does not authenticate, so §3.3.7's unknown
//     Authorization scheme is ignored), 400 when To is no SIP AoR (§3.3.4).
//   - Other initial requests (no To tag) for a user: location service, no
//     binding: 480.
//   - Requests inside a dialog (To tag) go to their Route or Request-URI
//     directly: a host name that does not resolve is 404; an IPv6 address
//     sipedge has no socket for (it listens on 127.0.0.1 only) leaves no
//     branch to start: 480.
//
// Nothing is forwarded off loopback: every forwardable request either has
// no binding, names a host that cannot resolve, or needs IPv6.
var verdicts = map[string]int{
	// RFC 4475 §3.1.1: valid messages.
	"rfc4475/wsinv.dat":      404, // in dialog, Route services.example.com: unresolvable
	"rfc4475/intmeth.dat":    480, // unknown method to a user: routed like any other, no binding
	"rfc4475/esc01.dat":      480,
	"rfc4475/escnull.dat":    200, // REGISTER: two distinct contacts with %00 (§3.1.1.4)
	"rfc4475/esc02.dat":      480, // RE%47IST%45R is not REGISTER (§3.1.1.5)
	"rfc4475/lwsdisp.dat":    480,
	"rfc4475/longreq.dat":    480,
	"rfc4475/dblreq.dat":     200, // REGISTER; the trailing INVITE is ignored (§3.1.1.8)
	"rfc4475/semiuri.dat":    480,
	"rfc4475/transports.dat": 480,
	"rfc4475/mpart01.dat":    415, // application/octet-stream is in no default mime list; the binary parts are read to find it
	"rfc4475/unreason.dat":   silent,
	"rfc4475/noreason.dat":   silent,
	// RFC 4475 §3.1.2: invalid messages.
	"rfc4475/badinv01.dat":   400,
	"rfc4475/clerr.dat":      400, // over UDP the datagram is all there is (§3.1.2.2)
	"rfc4475/ncl.dat":        400,
	"rfc4475/scalar02.dat":   400, // CSeq > 2^32-1
	"rfc4475/scalarlg.dat":   silent,
	"rfc4475/quotbal.dat":    400,
	"rfc4475/ltgtruri.dat":   400,
	"rfc4475/lwsruri.dat":    400,
	"rfc4475/lwsstart.dat":   400,
	"rfc4475/trws.dat":       400,
	"rfc4475/escruri.dat":    400,
	"rfc4475/baddate.dat":    400,
	"rfc4475/regbadct.dat":   400,
	"rfc4475/badaspec.dat":   400,
	"rfc4475/baddn.dat":      400,
	"rfc4475/badvers.dat":    505,
	"rfc4475/mismatch01.dat": 400,
	"rfc4475/mismatch02.dat": 501,
	"rfc4475/bigcode.dat":    silent,
	// RFC 4475 §3.2–3.4: transaction and application layer.
	"rfc4475/badbranch.dat": 480, // branch=z9hG4bK alone: still a request (§3.2.1)
	"rfc4475/insuf.dat":     400,
	"rfc4475/unkscm.dat":    416,
	"rfc4475/novelsc.dat":   416,
	"rfc4475/unksm2.dat":    400, // registrar: To must be a SIP or SIPS AoR (§3.3.4)
	"rfc4475/bext01.dat":    420,
	"rfc4475/invut.dat":     415, // §3.3.6's answer: the type is in no default mime list (Accept lists them)
	"rfc4475/regaut01.dat":  200,
	"rfc4475/multi01.dat":   400,
	"rfc4475/mcl01.dat":     400,
	"rfc4475/bcast.dat":     silent,
	"rfc4475/zeromf.dat":    483, // OPTIONS, but for a user, not for sipedge itself
	"rfc4475/cparam01.dat":  200,
	"rfc4475/cparam02.dat":  200,
	"rfc4475/regescrt.dat":  200,
	"rfc4475/sdp01.dat":     480, // 406 is the UAS's business (§3.3.15)
	"rfc4475/inv2543.dat":   480, // RFC 2543 syntax accepted (§3.4.1)
	// RFC 5118.
	"rfc5118/ipv6-good.dat":                     200, // REGISTER sip:[2001:db8::10]
	"rfc5118/ipv6-bad.dat":                      400, // no [ ] around the IPv6 address
	"rfc5118/port-ambiguous.dat":                200, // [2001:db8::10:5070] has no port (§4.3)
	"rfc5118/port-unambiguous.dat":              200,
	"rfc5118/via-received-param-with-delim.dat": 480, // BYE in dialog to [2001:db8::10]: no IPv6 socket
	"rfc5118/via-received-param-no-delim.dat":   480,
	"rfc5118/ipv6-in-sdp.dat":                   480,
	"rfc5118/mult-ip-in-header.dat":             404, // BYE in dialog to host.example.net: unresolvable
	"rfc5118/mult-ip-in-sdp.dat":                480,
	"rfc5118/ipv4-mapped-ipv6.dat":              480,
	"rfc5118/ipv6-bug-abnf-3-colons.dat":        480, // tolerated (§4.10), see DESIGN.md
	"rfc5118/ipv6-correct-abnf-2-colons.dat":    480,
}

// streamVerdicts overrides verdicts over TCP, where Content-Length frames
// the stream (RFC 3261 §18.3).
var streamVerdicts = map[string]int{
	"rfc4475/clerr.dat": neverCompletes, // waits for 9999 body bytes that never come (§3.1.2.2)
	"rfc4475/baddn.dat": neverCompletes, // the archive's file has no empty line ending the headers
}

// streamBroken are the messages after which a stream cannot be framed any
// more (negative or repeated Content-Length, §3.1.2.3, §3.3.9): 400, then
// the server closes the connection.
var streamBroken = map[string]bool{"rfc4475/ncl.dat": true, "rfc4475/mcl01.dat": true}

// toIsDefect are the requests whose To header field is what is malformed:
// their 400 echoes it as received, without a tag (the tag cannot be added to
// a value that does not parse). insuf.dat has no To at all (§3.3.1).
var toIsDefect = map[string]bool{
	"rfc4475/quotbal.dat":  true, // §3.1.2.6
	"rfc4475/badaspec.dat": true, // §3.1.2.14
	"rfc4475/baddn.dat":    true, // §3.1.2.15
}

var toTag = regexp.MustCompile(`;\s*tag\s*=\s*\S`)

func tortureFiles(t *testing.T) []string {
	var out []string
	for _, dir := range []string{"rfc4475", "rfc5118"} {
		fs, _ := filepath.Glob(filepath.Join("../../sip/testdata/torture", dir, "*.dat"))
		for _, f := range fs {
			out = append(out, dir+"/"+filepath.Base(f))
		}
	}
	if len(out) != 61 || len(verdicts) != 61 {
		t.Fatalf("%d torture files and %d verdicts, want 61", len(out), len(verdicts))
	}
	for _, f := range out {
		if _, ok := verdicts[f]; !ok {
			t.Fatalf("%s has no verdict", f)
		}
	}
	return out
}

func readFile(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Join("../../sip/testdata/torture", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var lws = regexp.MustCompile(`[ \t]+`)

// field returns the first value of a header field (by any of its names) in
// the header section of a raw message, unfolded, LWS runs as one space;
// "" when absent.
func field(raw []byte, names ...string) string {
	head := raw
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		head = raw[:i]
	}
	for _, line := range splitFolded(head)[1:] {
		i := strings.IndexByte(line, ':')
		if i <= 0 {
			continue
		}
		n := strings.ToLower(strings.TrimSpace(line[:i]))
		for _, want := range names {
			if n == want {
				return strings.TrimSpace(lws.ReplaceAllString(line[i+1:], " "))
			}
		}
	}
	return ""
}

// splitFolded splits a header section into logical lines: a line starting
// with SP or HTAB continues the previous one (RFC 3261 §7.3.1).
func splitFolded(head []byte) []string {
	var out []string
	for _, l := range strings.Split(string(head), "\r\n") {
		if len(out) > 0 && l != "" && (l[0] == ' ' || l[0] == '\t') {
			out[len(out)-1] += " " + l
			continue
		}
		out = append(out, l)
	}
	return out
}

// callID returns the Call-ID of a raw message ("" if none).
func callID(b []byte) string { return field(b, "call-id", "i") }

// checkFinal asserts a final answer against a verdict: its code, the
// Call-ID and CSeq echoed (RFC 3261 §8.2.6.2), a To tag, and for 420 the
// Unsupported list (§3.3.5).
func checkFinal(t *testing.T, name string, want int, r *response, sent []byte) {
	t.Helper()
	if want > 0 && r.code != want {
		t.Fatalf("%s: answered %d, want %d:\n%s", name, r.code, want, r.raw)
	}
	resp := []byte(r.raw)
	if cid := callID(sent); callID(resp) != cid {
		t.Errorf("%s: response Call-ID %q, request %q", name, callID(resp), cid)
	}
	if cs := field(sent, "cseq"); field(resp, "cseq") != cs {
		t.Errorf("%s: response CSeq %q, request %q", name, field(resp, "cseq"), cs)
	}
	if to := field(sent, "to", "t"); to != "" && !toIsDefect[name] && !toTag.MatchString(field(resp, "to", "t")) {
		t.Errorf("%s: response To without a tag: %q", name, field(resp, "to", "t"))
	}
	if r.code == 420 && r.get("unsupported") != "noProxiesSupportThis, norDoAnyProxiesSupportThis" {
		t.Errorf("%s: Unsupported %q, want both Proxy-Require tags", name, r.get("unsupported"))
	}
}

// TestTortureUDP sends every torture message as one datagram to its own
// sipedge (so REGISTERs of one message do not route another, and messages
// that share a branch are not retransmissions of each other) and checks the
// answer; afterwards an OPTIONS for sipedge itself still gets 200.
func TestTortureUDP(t *testing.T) {
	for _, name := range tortureFiles(t) {
		name := name
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t)
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			dst, _ := net.ResolveUDPAddr("udp4", s.addr())
			msg := readFile(t, name)
			want := verdicts[name]
			var hop *nextHop
			if want == preloadedRoute {
				hop = listenNextHop(t)
			}
			if _, err := c.WriteTo(msg, dst); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 65535)
			wait := 3 * time.Second
			if want == silent {
				wait = 500 * time.Millisecond
			}
			var final *response
			for final == nil {
				c.SetReadDeadline(time.Now().Add(wait))
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					break
				}
				r, err := parseResponse(buf[:n])
				if err != nil {
					t.Fatalf("unparsable answer: %v", err)
				}
				if got, sent := callID([]byte(r.raw)), callID(msg); got != sent {
					// dblreq: the INVITE after the REGISTER is not a
					// message of its own over UDP (§3.1.1.8).
					t.Fatalf("answer for Call-ID %q, sent %q:\n%s", got, sent, r.raw)
				}
				if r.code >= 200 {
					final = r
				}
			}
			switch {
			case want == silent && final != nil:
				t.Fatalf("a response was answered with %d; it must be dropped", final.code)
			case want == preloadedRoute:
				checkNextHop(t, hop, final, msg)
			case want != silent && final == nil:
				t.Fatalf("no final answer, want %d", want)
			case final != nil:
				checkFinal(t, name, want, final, msg)
			}
			// sipedge still serves after the message. Retransmissions of
			// an INVITE's final answer (never ACKed here, RFC 3261
			// §17.2.1) may still arrive; anything else may not.
			c.WriteTo(options(s, "UDP "+c.LocalAddr().String(), "after"), dst)
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("OPTIONS after %s: %v", name, err)
				}
				r, err := parseResponse(buf[:n])
				if err != nil {
					t.Fatalf("unparsable answer: %v", err)
				}
				if cid := callID([]byte(r.raw)); cid == "after@probe" {
					if r.code != 200 {
						t.Fatalf("OPTIONS after %s: %d", name, r.code)
					}
					break
				} else if cid != callID(msg) {
					t.Fatalf("unexpected answer while waiting for OPTIONS:\n%s", r.raw)
				}
			}
		})
	}
}

// readStream reads one framed response from a stream (by Content-Length,
// RFC 3261 §18.3), or returns io.EOF when the server closed the connection.
func readStream(br *bufio.Reader) (*response, error) {
	var head strings.Builder
	cl := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if line == "\r\n" && head.Len() == 0 {
			continue // keep-alive CRLF
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
		if i := strings.Index(line, ":"); i > 0 {
			n := strings.ToLower(strings.TrimSpace(line[:i]))
			if n == "content-length" || n == "l" {
				cl, _ = strconv.Atoi(strings.TrimSpace(line[i+1:]))
			}
		}
	}
	body := make([]byte, cl)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return parseResponse([]byte(head.String() + string(body)))
}

// dblreqInvite is the Call-ID of the INVITE that follows dblreq.dat's
// REGISTER (RFC 4475 §3.1.1.8).
const dblreqInvite = "dblreq.0ha0isnda977644900765@192.0.2.15"

// TestTortureTCP sends every torture message over its own TCP connection
// to its own sipedge.
func TestTortureTCP(t *testing.T) {
	for _, name := range tortureFiles(t) {
		name := name
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want := verdicts[name]
			if w, ok := streamVerdicts[name]; ok {
				want = w
			}
			// Only the messages that never complete get a short idle
			// timeout: for the others a close must come from sipedge's
			// verdict on the stream, not from idleness.
			var s *server
			if want == neverCompletes {
				s = start(t, "--idle-timeout", "500ms")
			} else {
				s = start(t)
			}
			msg := readFile(t, name)
			var hop *nextHop
			if want == preloadedRoute {
				hop = listenNextHop(t)
			}
			c, err := net.Dial("tcp4", s.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			wait := 3 * time.Second
			if want == silent {
				wait = 500 * time.Millisecond
			}
			var final, trailing *response
			var rerr error
			for final == nil || (name == "rfc4475/dblreq.dat" && trailing == nil) {
				c.SetReadDeadline(time.Now().Add(wait))
				var r *response
				r, rerr = readStream(br)
				if rerr != nil {
					break
				}
				switch cid := callID([]byte(r.raw)); {
				case r.code < 200:
				case cid == callID(msg):
					final = r
				case name == "rfc4475/dblreq.dat" && cid == dblreqInvite:
					trailing = r
				default:
					t.Fatalf("answer for another Call-ID:\n%s", r.raw)
				}
			}
			switch {
			case want == neverCompletes:
				if final != nil {
					t.Fatalf("answered %d to a message that never completes", final.code)
				}
				// The connection must be closed by the idle timeout (the
				// read above already waited past it).
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("connection not closed after the idle timeout: %v", err)
				}
			case want == silent && final != nil:
				t.Fatalf("a response was answered with %d; it must be dropped", final.code)
			case want == silent:
				// The dropped response left the stream in step: the same
				// connection still carries a request.
				c.Write(options(s, "TCP "+c.LocalAddr().String(), "samecon"))
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if r, err := readStream(br); err != nil || r.code != 200 {
					t.Fatalf("OPTIONS on the same connection after %s: %v %v", name, r, err)
				}
			case want == preloadedRoute:
				checkNextHop(t, hop, final, msg)
			case final == nil:
				t.Fatalf("no final answer, want %d (%v)", want, rerr)
			default:
				checkFinal(t, name, want, final, msg)
			}
			if name == "rfc4475/dblreq.dat" {
				// Over a stream Content-Length 0 ends the REGISTER, the
				// CRLF after it is a keep-alive, and the 450 trailing
				// octets are a complete INVITE of their own (RFC 3261
				// §18.3): unlike in a datagram (§3.1.1.8) they are the
				// next message, and it is routed like any other INVITE
				// (no binding for joe@example.com: 480).
				if trailing == nil || trailing.code != 480 {
					t.Fatalf("the INVITE after the REGISTER on the stream: %v, want 480", trailing)
				}
			}
			if streamBroken[name] {
				// The stream cannot be framed any more: closed after the
				// 400, long before the (default 5 min) idle timeout.
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := io.Copy(io.Discard, br); err != nil {
					t.Fatalf("connection not closed after the framing error: %v", err)
				}
			}
			// A fresh connection still gets 200 for OPTIONS.
			c2, err := net.Dial("tcp4", s.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			c2.Write(options(s, "TCP "+c2.LocalAddr().String(), "aftertcp"))
			c2.SetReadDeadline(time.Now().Add(3 * time.Second))
			r, err := readStream(bufio.NewReader(c2))
			if err != nil || r.code != 200 {
				t.Fatalf("OPTIONS after %s: %v %v", name, r, err)
			}
		})
	}
}

// nextHop plays the element named by mpart01.dat's preloaded Route,
// <sip:127.0.0.1:5080> (RFC 4475 §3.1.1.11): it receives the forwarded
// MESSAGE and answers 200.
type nextHop struct {
	got chan []byte // the forwarded request
}

const nextHopAddr = "127.0.0.1:5080"

// listenNextHop listens where mpart01 is routed (UDP and TCP: the copy is
// larger than 1300 bytes once sipedge adds its Via, so it goes over TCP,
// RFC 3261 §18.1.1). If another program holds the port (a Kamailio
// benchmark uses 5080) the test cannot know what answers there, and it
// returns nil.
func listenNextHop(t *testing.T) *nextHop {
	l, err := net.Listen("tcp4", nextHopAddr)
	if err != nil {
		t.Logf("%s is taken (%v): cannot check what sipedge forwards", nextHopAddr, err)
		return nil
	}
	u, err := net.ListenPacket("udp4", nextHopAddr)
	if err != nil {
		l.Close()
		t.Logf("%s is taken (%v): cannot check what sipedge forwards", nextHopAddr, err)
		return nil
	}
	t.Cleanup(func() { l.Close(); u.Close() })
	h := &nextHop{got: make(chan []byte, 2)}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := readFramed(bufio.NewReader(c))
		if err != nil {
			return
		}
		h.got <- req
		c.Write(okFor(req))
		time.Sleep(time.Second) // let sipedge read the answer before the close
	}()
	go func() {
		buf := make([]byte, 65535)
		n, from, err := u.ReadFrom(buf)
		if err != nil {
			return
		}
		req := append([]byte(nil), buf[:n]...)
		h.got <- req
		u.WriteTo(okFor(req), from)
	}()
	return h
}

// readFramed reads one message from a stream by its Content-Length.
func readFramed(br *bufio.Reader) ([]byte, error) {
	var msg []byte
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		msg = append(msg, line...)
		if string(line) == "\r\n" {
			break
		}
	}
	cl, _ := strconv.Atoi(field(msg, "content-length", "l"))
	body := make([]byte, cl)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return append(msg, body...), nil
}

// okFor builds the 200 a UAS answers to req (RFC 3261 §8.2.6).
func okFor(req []byte) []byte {
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	end := bytes.Index(req, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(req)
	}
	for _, line := range splitFolded(req[:end])[1:] {
		n := strings.ToLower(strings.TrimSpace(line[:max(strings.IndexByte(line, ':'), 0)]))
		switch n {
		case "via", "v", "from", "f", "call-id", "i", "cseq":
			b.WriteString(line + "\r\n")
		case "to", "t":
			b.WriteString(line + ";tag=hop\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// checkNextHop: with the next hop ours, the MESSAGE must reach it with its
// binary multipart body byte for byte (bare LF and NUL included, §3.1.1.11)
// and Max-Forwards decremented, and its 200 must come back. With the port
// taken by another program, any final answer that is not a parse error is
// fine (what answers there is not ours to know).
func checkNextHop(t *testing.T, h *nextHop, final *response, sent []byte) {
	t.Helper()
	if h == nil {
		if final != nil && (final.code == 400 || final.code == 413 || final.code == 513) {
			t.Fatalf("valid message refused:\n%s", final.raw)
		}
		return
	}
	var fwd []byte
	select {
	case fwd = <-h.got:
	case <-time.After(2 * time.Second):
		t.Fatalf("nothing reached %s; sipedge answered %v", nextHopAddr, final)
	}
	body := sent[bytes.Index(sent, []byte("\r\n\r\n"))+4:]
	if i := bytes.Index(fwd, []byte("\r\n\r\n")); i < 0 || !bytes.Equal(fwd[i+4:], body) {
		t.Errorf("the forwarded body is not the received one, byte for byte")
	}
	if mf := field(fwd, "max-forwards"); mf != "69" {
		t.Errorf("forwarded Max-Forwards %q, want 69", mf)
	}
	if final == nil {
		t.Fatal("the next hop's 200 was not relayed")
	}
	checkFinal(t, "rfc4475/mpart01.dat", 200, final, sent)
	if !strings.Contains(final.get("to"), "tag=hop") {
		t.Errorf("relayed 200 is not the next hop's: %s", final.raw)
	}
}

// String makes failures print a response readably.
func (r *response) String() string {
	if r == nil {
		return "<none>"
	}
	return fmt.Sprintf("%d (%s)", r.code, strings.SplitN(r.raw, "\r\n", 2)[0])
}
