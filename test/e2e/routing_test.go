package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// udpExchange sends msg and returns the first final response.
func udpExchange(t *testing.T, c *net.UDPConn, dst *net.UDPAddr, msg string) *response {
	t.Helper()
	c.WriteTo([]byte(msg), dst)
	buf := make([]byte, 65535)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		r, err := parseResponse(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if r.code >= 200 {
			return r
		}
	}
}

// TestUnregisteredAndLoop: an INVITE for a user with no binding gets 480;
// a user whose registered contact is sipedge itself makes the request come
// back with sipedge's own Via and loop hash: 482 (RFC 3261 §16.3 step 4).
func TestUnregisteredAndLoop(t *testing.T) {
	s := start(t)
	c, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp4", s.addr())
	me := c.LocalAddr().String()

	inv := func(user, branch string) string {
		return fmt.Sprintf("INVITE sip:%s@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\n"+
			"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", user, me, branch, user, branch)
	}
	if r := udpExchange(t, c, dst, inv("nobody", "un1")); r.code != 480 {
		t.Fatalf("unregistered callee: %d", r.code)
	}
	reg := fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKreg;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:loop@127.0.0.1>;tag=r\r\nTo: <sip:loop@127.0.0.1>\r\nCall-ID: reg\r\n"+
		"CSeq: 1 REGISTER\r\nContact: <sip:loop@%s>\r\nContent-Length: 0\r\n\r\n", me, s.addr())
	if r := udpExchange(t, c, dst, reg); r.code != 200 {
		t.Fatalf("register: %d", r.code)
	}
	if r := udpExchange(t, c, dst, inv("loop", "lo1")); r.code != 482 {
		t.Fatalf("loop: %d, want 482", r.code)
	}
}
