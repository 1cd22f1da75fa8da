package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestForkedEarlyMediaSipp: a user registered from two sipp callees is
// called on both at once, with media relayed. Both answer 183 with SDP
// and stream PCMU early media at once. The caller (raw sockets here) gets
// a relay port per callee in the two 183s and hears both callees at once,
// each from the port its own 183 named. One callee answers 200 naming the
// same port as its 183, the other is cancelled, and media goes on through
// the answered fork's ports until the BYE.
func TestForkedEarlyMediaSipp(t *testing.T) {
	sipp := needSipp(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "silence.ulaw"), bytes.Repeat([]byte{0xff}, 16000), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(cfg, []byte("dns:\n  servers: [\"127.0.0.1:9\"]\nmedia:\n  relay: always\n  ports: 47000-47099\n"), 0o644)
	s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"))

	// Two callees registered as "forky" with the same q: parallel forking.
	for _, sc := range []string{"early-answer.xml", "early-ring.xml"} {
		port := strconv.Itoa(freePort(t))
		uas := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), sc), "-t", "u1", "-i", "127.0.0.1",
			"-p", port, "-mi", "127.0.0.1", "-m", "1", "-nostdin", "-timeout", "40s")
		uas.Dir = dir
		var out bytes.Buffer
		uas.Stdout, uas.Stderr = &out, &out
		if err := uas.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			uas.Process.Kill()
			uas.Wait()
			if t.Failed() {
				t.Logf("%s:\n%s", sc, tail(out.Bytes()))
			}
		})
		time.Sleep(300 * time.Millisecond)
		csv := filepath.Join(dir, "forky.csv")
		os.WriteFile(csv, []byte("SEQUENTIAL\nforky;x\n"), 0o644)
		reg := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), "register-q.xml"), "-key", "q", "1.0",
			"-t", "u1", "-i", "127.0.0.1", "-inf", csv, "-key", "cport", port, "-m", "1", "-nostdin", "-timeout", "10s", s.addr())
		reg.Dir = dir
		if o, err := reg.CombinedOutput(); err != nil {
			t.Fatalf("register %s: %v\n%s", sc, err, tail(o))
		}
	}

	sig := udpConn(t)
	rtp := udpConn(t)
	px := netip.MustParseAddrPort(s.addr())
	me := sig.LocalAddr().String()
	mediaAddr := rtp.LocalAddr().(*net.UDPAddr).AddrPort()
	sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", mediaAddr.Port())
	invite := fmt.Sprintf("INVITE sip:forky@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfem1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:caller@example.com>;tag=fc1\r\nTo: <sip:forky@%s>\r\nCall-ID: fem1@test\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:caller@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		s.addr(), me, s.addr(), me, len(sdp), sdp)
	sig.WriteToUDPAddrPort([]byte(invite), px)

	// Early media: two 183s with different To tags and relay ports, and
	// RTP from both ports, before the 200 (the answering callee waits 3 s).
	early := map[string]netip.AddrPort{} // To tag → relay port its 183 named
	heard := map[netip.AddrPort]int{}
	var ok200 *response
	deadline := time.Now().Add(15 * time.Second)
	for ok200 == nil && time.Now().Before(deadline) {
		if r := recvResponse(sig, 5*time.Millisecond); r != nil {
			switch r.code {
			case 183:
				early[respToTag(r)] = sdpMedia(t, r)
			case 200:
				ok200 = r
			case 100:
			default:
				t.Fatalf("unexpected response %d", r.code)
			}
		}
		for {
			src, ok := recvFrom(rtp, time.Millisecond)
			if !ok {
				break
			}
			if ok200 == nil {
				heard[src]++
			}
		}
	}
	if ok200 == nil {
		t.Fatalf("no 200; 183s %v, early media from %v", early, heard)
	}
	if len(early) != 2 {
		t.Fatalf("183s by To tag: %v, want two", early)
	}
	var ports []netip.AddrPort
	for _, p := range early {
		ports = append(ports, p)
		if heard[p] < 5 {
			t.Errorf("early media from %v: %d packets (all: %v)", p, heard[p], heard)
		}
	}
	if ports[0] == ports[1] {
		t.Fatalf("both forks' 183s name %v", ports[0])
	}
	answered := early[respToTag(ok200)]
	if got := sdpMedia(t, ok200); got != answered {
		t.Fatalf("200 names %v, its 183 named %v", got, answered)
	}

	// ACK and, after a while, BYE along the Record-Route.
	var route strings.Builder
	for _, rr := range ok200.headers["record-route"] {
		fmt.Fprintf(&route, "Route: %s\r\n", rr)
	}
	contact := strings.Trim(ok200.get("contact"), "<>")
	to := ok200.get("to")
	inDialog := func(method, branch string, cseq int) []byte {
		return []byte(fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\n%sMax-Forwards: 70\r\n"+
			"From: <sip:caller@example.com>;tag=fc1\r\nTo: %s\r\nCall-ID: fem1@test\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
			method, contact, me, branch, route.String(), to, cseq, method))
	}
	sig.WriteToUDPAddrPort(inDialog("ACK", "z9hG4bKfem2", 1), px)
	// After the 2xx only the answered fork's port sends: the other fork's
	// ports are gone with its callee's CANCEL.
	time.Sleep(300 * time.Millisecond)
	for {
		if _, ok := recvFrom(rtp, time.Millisecond); !ok {
			break
		}
	}
	after := map[netip.AddrPort]int{}
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if src, ok := recvFrom(rtp, 50*time.Millisecond); ok {
			after[src]++
		}
	}
	if len(after) != 1 || after[answered] < 20 {
		t.Errorf("media after the answer from %v, want only %v", after, answered)
	}
	sig.WriteToUDPAddrPort(inDialog("BYE", "z9hG4bKfem3", 2), px)
	for end := time.Now().Add(5 * time.Second); ; {
		r := recvResponse(sig, 100*time.Millisecond)
		if r != nil && r.code == 200 && strings.Contains(r.get("cseq"), "BYE") {
			break
		}
		if time.Now().After(end) {
			t.Fatal("no 200 for the BYE")
		}
	}
}

func udpConn(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recvResponse reads one SIP response, nil on timeout or anything else.
func recvResponse(c *net.UDPConn, d time.Duration) *response {
	buf := make([]byte, 65535)
	c.SetReadDeadline(time.Now().Add(d))
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	r, err := parseResponse(buf[:n])
	if err != nil {
		return nil
	}
	return r
}

// recvFrom reads one datagram and returns its source.
func recvFrom(c *net.UDPConn, d time.Duration) (netip.AddrPort, bool) {
	var buf [2048]byte
	c.SetReadDeadline(time.Now().Add(d))
	_, src, err := c.ReadFromUDPAddrPort(buf[:])
	return src, err == nil
}

func respToTag(r *response) string {
	_, tag, _ := strings.Cut(r.get("to"), "tag=")
	tag, _, _ = strings.Cut(tag, ";")
	return tag
}

// sdpMedia reads the audio address of a response's SDP.
func sdpMedia(t *testing.T, r *response) netip.AddrPort {
	t.Helper()
	return sdpAddr(t, r.raw)
}

// sdpAddr reads the audio address (c= and m=audio) of a message's SDP.
func sdpAddr(t *testing.T, m string) netip.AddrPort {
	t.Helper()
	_, body, _ := strings.Cut(m, "\r\n\r\n")
	var addr, port string
	for _, l := range strings.Split(body, "\r\n") {
		if v, ok := strings.CutPrefix(l, "c=IN IP4 "); ok {
			addr = v
		}
		if v, ok := strings.CutPrefix(l, "m=audio "); ok {
			port, _, _ = strings.Cut(v, " ")
		}
	}
	ap, err := netip.ParseAddrPort(addr + ":" + port)
	if err != nil {
		t.Fatalf("SDP: %v\n%s", err, body)
	}
	return ap
}
