package e2e

import (
	"bufio"
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

// Verdicts of ../../sip/testdata/torture/*/INDEX.md as seen from outside:
// want is the final status sipedge answers; 0 = silence (responses are
// dropped, RFC 4475 §3.1.2.5, §3.1.2.19, §3.3.10); -1 = accepted by the
// parser, so any final answer except a parse error (the request is routed
// like any other, which depends on configuration).
var verdicts = map[string]int{
	"rfc4475/wsinv.dat": -1, "rfc4475/intmeth.dat": -1, "rfc4475/esc01.dat": -1,
	"rfc4475/escnull.dat": -1, "rfc4475/esc02.dat": -1, "rfc4475/lwsdisp.dat": -1,
	"rfc4475/longreq.dat": -1, "rfc4475/dblreq.dat": -1, "rfc4475/semiuri.dat": -1,
	"rfc4475/transports.dat": -1, "rfc4475/mpart01.dat": -1, "rfc4475/unreason.dat": 0,
	"rfc4475/noreason.dat": 0, "rfc4475/badinv01.dat": 400, "rfc4475/clerr.dat": 400,
	"rfc4475/ncl.dat": 400, "rfc4475/scalar02.dat": 400, "rfc4475/scalarlg.dat": 0,
	"rfc4475/quotbal.dat": 400, "rfc4475/ltgtruri.dat": 400, "rfc4475/lwsruri.dat": 400,
	"rfc4475/lwsstart.dat": 400, "rfc4475/trws.dat": 400, "rfc4475/escruri.dat": 400,
	"rfc4475/baddate.dat": 400, "rfc4475/regbadct.dat": 400, "rfc4475/badaspec.dat": 400,
	"rfc4475/baddn.dat": 400, "rfc4475/badvers.dat": 505, "rfc4475/mismatch01.dat": 400,
	"rfc4475/mismatch02.dat": 501, "rfc4475/bigcode.dat": 0, "rfc4475/badbranch.dat": -1,
	"rfc4475/insuf.dat": 400, "rfc4475/unkscm.dat": 416, "rfc4475/novelsc.dat": 416,
	"rfc4475/unksm2.dat": 400, // the registrar refuses a To that is no SIP AoR (§3.3.4)
	"rfc4475/bext01.dat": 420, "rfc4475/invut.dat": -1,
	"rfc4475/regaut01.dat": -1, "rfc4475/multi01.dat": 400, "rfc4475/mcl01.dat": 400,
	"rfc4475/bcast.dat": 0, "rfc4475/zeromf.dat": 483, "rfc4475/cparam01.dat": -1,
	"rfc4475/cparam02.dat": -1, "rfc4475/regescrt.dat": -1, "rfc4475/sdp01.dat": -1,
	"rfc4475/inv2543.dat":   -1,
	"rfc5118/ipv6-good.dat": -1, "rfc5118/ipv6-bad.dat": 400, "rfc5118/port-ambiguous.dat": -1,
	"rfc5118/port-unambiguous.dat": -1, "rfc5118/via-received-param-with-delim.dat": -1,
	"rfc5118/via-received-param-no-delim.dat": -1, "rfc5118/ipv6-in-sdp.dat": -1,
	"rfc5118/mult-ip-in-header.dat": -1, "rfc5118/mult-ip-in-sdp.dat": -1,
	"rfc5118/ipv4-mapped-ipv6.dat": -1, "rfc5118/ipv6-bug-abnf-3-colons.dat": -1,
	"rfc5118/ipv6-correct-abnf-2-colons.dat": -1,
}

// streamVerdicts overrides verdicts over TCP, where Content-Length frames
// the stream (RFC 3261 §18.3): -2 = no answer and the connection is closed
// once the idle timeout passes (the message never completes).
var streamVerdicts = map[string]int{
	"rfc4475/clerr.dat": -2, // Content-Length 9999 > body: waits for bytes that never come (RFC 4475 §3.1.2.2)
	"rfc4475/baddn.dat": -2, // the archive's file has no empty line ending the headers
}

var toTag = regexp.MustCompile(`;\s*tag\s*=`)

// parseErrors are the codes that mean "the parser refused it".
var parseErrors = map[int]bool{400: true, 413: true, 505: true, 513: true}

func tortureFiles(t *testing.T) []string {
	var out []string
	for _, dir := range []string{"rfc4475", "rfc5118"} {
		fs, _ := filepath.Glob(filepath.Join("../../sip/testdata/torture", dir, "*.dat"))
		for _, f := range fs {
			out = append(out, dir+"/"+filepath.Base(f))
		}
	}
	if len(out) != 61 {
		t.Fatalf("%d torture files, want 61", len(out))
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

// callID returns the Call-ID of a raw message ("" if none).
func callID(b []byte) string {
	for _, line := range strings.Split(string(b), "\r\n") {
		if i := strings.Index(line, ":"); i > 0 {
			n := strings.ToLower(strings.TrimSpace(line[:i]))
			if n == "call-id" || n == "i" {
				return strings.TrimSpace(line[i+1:])
			}
		}
		if line == "" {
			break
		}
	}
	return ""
}

// checkFinal asserts a final answer against a verdict.
func checkFinal(t *testing.T, name string, want int, r *response, sent []byte) {
	t.Helper()
	switch {
	case want == -1 && parseErrors[r.code]:
		t.Fatalf("%s: valid message refused with %d:\n%s", name, r.code, r.raw)
	case want > 0 && r.code != want:
		t.Fatalf("%s: answered %d, want %d:\n%s", name, r.code, want, r.raw)
	}
	if cid := callID(sent); cid != "" && r.get("call-id") != cid {
		t.Fatalf("%s: response Call-ID %q, request %q", name, r.get("call-id"), cid)
	}
	// A To tag is added to every final answer whose request To could be
	// read (RFC 3261 §8.2.6.2); a refused To is echoed as it came.
	if r.code > 100 && !parseErrors[r.code] && !toTag.MatchString(r.get("to")) {
		t.Fatalf("%s: response without To tag: %s", name, r.get("to"))
	}
	if want == 420 && r.get("unsupported") != "noProxiesSupportThis, norDoAnyProxiesSupportThis" {
		t.Fatalf("%s: Unsupported %q", name, r.get("unsupported"))
	}
}

// TestTortureUDP sends every torture message as one datagram to its own
// sipedge (so messages that share a branch are not retransmissions of each
// other) and checks the answer; afterwards OPTIONS still gets 200.
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
			if _, err := c.WriteTo(msg, dst); err != nil {
				t.Fatal(err)
			}
			want := verdicts[name]
			buf := make([]byte, 65535)
			wait := 3 * time.Second
			if want == 0 {
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
				if r.code >= 200 {
					final = r
				}
			}
			switch {
			case want == 0 && final != nil:
				t.Fatalf("a response was answered with %d; it must be dropped", final.code)
			case want != 0 && final == nil:
				t.Fatalf("no final answer, want %d", want)
			case final != nil:
				checkFinal(t, name, want, final, msg)
			}
			// sipedge still serves after the message.
			me := c.LocalAddr().String()
			c.WriteTo(options(s, "UDP "+me, "after"), dst)
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("OPTIONS after %s: %v", name, err)
				}
				if r, _ := parseResponse(buf[:n]); r != nil && r.get("call-id") == "after@probe" {
					if r.code != 200 {
						t.Fatalf("OPTIONS after %s: %d", name, r.code)
					}
					break
				}
			}
		})
	}
}

// readStream reads one framed response from a stream, or returns io.EOF
// when the server closed the connection.
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

// TestTortureTCP sends every torture message over its own TCP connection.
func TestTortureTCP(t *testing.T) {
	for _, name := range tortureFiles(t) {
		name := name
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, "--idle-timeout", "700ms")
			c, err := net.Dial("tcp4", s.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := readFile(t, name)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			want := verdicts[name]
			if w, ok := streamVerdicts[name]; ok {
				want = w
			}
			br := bufio.NewReader(c)
			wait := 3 * time.Second
			if want == 0 {
				wait = 500 * time.Millisecond
			}
			var final *response
			var rerr error
			for final == nil {
				c.SetReadDeadline(time.Now().Add(wait))
				var r *response
				r, rerr = readStream(br)
				if rerr != nil {
					break
				}
				// Over a stream the bytes after dblreq's REGISTER are a
				// second message, answered too: wait for the answer to
				// the first one.
				if r.code >= 200 && r.get("call-id") == callID(msg) {
					final = r
				}
			}
			switch {
			case want == -2:
				if final != nil {
					t.Fatalf("answered %d to a message that never completes", final.code)
				}
				// The connection must be closed by the idle timeout.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("connection not closed after the idle timeout: %v", err)
				}
			case want == 0 && final != nil:
				t.Fatalf("a response was answered with %d; it must be dropped", final.code)
			case want != 0 && final == nil:
				t.Fatalf("no final answer, want %d (%v)", want, rerr)
			case final != nil:
				checkFinal(t, name, want, final, msg)
				if name == "rfc4475/ncl.dat" || name == "rfc4475/mcl01.dat" {
					// The stream cannot be framed any more: closed after the 400.
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
					if _, err := io.Copy(io.Discard, br); err != nil {
						t.Fatalf("connection not closed after the framing error: %v", err)
					}
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
