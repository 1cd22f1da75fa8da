package e2e

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// register sends a REGISTER for user from u with the given Contact header
// value and extra header lines, and returns the final response.
func (u *udpClient) register(s *server, user, callID string, cseq int, contact string, extra ...string) *response {
	u.t.Helper()
	var h strings.Builder
	for _, e := range extra {
		h.WriteString(e + "\r\n")
	}
	msg := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKr%s%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=r1\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\nContact: %s\r\n%sContent-Length: 0\r\n\r\n",
		s.addr(), u.addr(), callID, cseq, user, s.addr(), user, s.addr(), callID, cseq, contact, h.String())
	r := u.final([]byte(msg), 3*time.Second)
	if r == nil {
		u.t.Fatalf("no answer to REGISTER of %s", user)
	}
	return r
}

// TestOwnResponsesCarryReceivedRport: the responses sipedge itself
// generates (100 Trying, the registrar's 200, a local 4xx, OPTIONS 200)
// carry received and a filled rport in the top Via (RFC 3261 §18.2.1,
// RFC 3581 §4): a phone behind NAT learns its public address from them.
func TestOwnResponsesCarryReceivedRport(t *testing.T) {
	s := start(t)
	u := newUDPClient(t, s)
	port := u.c.LocalAddr().(*net.UDPAddr).Port
	// The phone believes it is 10.1.2.3:5062 (a private address behind a
	// NAT); the packet comes from 127.0.0.1:port.
	const sentBy = "10.1.2.3:5062"
	want := ";rport=" + strconv.Itoa(port) + ";received=127.0.0.1"
	send := func(method, ruri, callID string, extra ...string) *response {
		msg := strings.Replace(string(u.request(method, ruri, callID, 70, extra...)), "SIP/2.0/UDP "+u.addr(), "SIP/2.0/UDP "+sentBy, 1)
		r := u.final([]byte(msg), 3*time.Second)
		if r == nil {
			t.Fatalf("%s: no answer", method)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *response
		code int
	}{
		{"OPTIONS for sipedge", send("OPTIONS", "sip:"+s.addr(), "own-opt"), 200},
		{"REGISTER", send("REGISTER", "sip:"+s.addr(), "own-reg", "Contact: <sip:dave@"+sentBy+">"), 200},
		{"local 480 for a user without binding", send("MESSAGE", "sip:nobody@"+s.addr(), "own-480"), 480},
	} {
		if tc.r.code != tc.code {
			t.Errorf("%s: got %d, want %d", tc.name, tc.r.code, tc.code)
			continue
		}
		if via := tc.r.get("via"); !strings.HasPrefix(via, "SIP/2.0/UDP "+sentBy+";branch=") || !strings.HasSuffix(via, want) {
			t.Errorf("%s: top Via %q, want received and rport filled (%s)", tc.name, via, want)
		}
	}
	// 100 Trying of an INVITE for a user without binding, then its 480.
	inv := strings.Replace(string(u.request("INVITE", "sip:nobody@"+s.addr(), "own-inv", 70)), "SIP/2.0/UDP "+u.addr(), "SIP/2.0/UDP "+sentBy, 1)
	if _, err := u.c.WriteTo([]byte(inv), u.dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	u.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := u.c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseResponse(buf[:n])
	if err != nil || r.code != 100 || !strings.HasSuffix(r.get("via"), want) {
		t.Fatalf("100 Trying: %v %v", err, r)
	}
}

// TestOptionsForUser: an OPTIONS for a user at sipedge's address is the
// user's to answer (RFC 3261 §11): it is routed to the registered phone,
// and gets 480 for a user without a binding; sipedge answers OPTIONS only
// for itself (no user part).
func TestOptionsForUser(t *testing.T) {
	s := start(t)
	phone := newUDPClient(t, s)
	if r := phone.register(s, "carol", "opt-reg", 1, "<sip:carol@"+phone.addr()+">"); r.code != 200 {
		t.Fatalf("REGISTER: %d", r.code)
	}
	caller := newUDPClient(t, s)
	msg := caller.request("OPTIONS", "sip:carol@"+s.addr(), "opt-user", 70)
	if _, err := caller.c.WriteTo(msg, caller.dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	phone.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := phone.c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("the OPTIONS for carol did not reach her phone: %v", err)
	}
	req := string(buf[:n])
	if !strings.HasPrefix(req, "OPTIONS sip:carol@"+phone.addr()+" SIP/2.0\r\n") {
		t.Fatalf("phone got %q", req[:min(len(req), 80)])
	}
	// The phone answers 200; the caller gets it through sipedge.
	if _, err := phone.c.WriteTo(answerOK(req), from); err != nil {
		t.Fatal(err)
	}
	caller.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err = caller.c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer for the caller: %v", err)
	}
	if r, err := parseResponse(buf[:n]); err != nil || r.code != 200 || !strings.Contains(r.get("contact"), "carol") {
		t.Fatalf("caller got %v %v, want the phone's 200", err, r)
	}
	if r := caller.final(caller.request("OPTIONS", "sip:nobody@"+s.addr(), "opt-nobody", 70), 3*time.Second); r == nil || (r.code != 480 && r.code != 404) {
		t.Fatalf("OPTIONS for an unknown user: %v, want 480 or 404", r)
	}
	if r := caller.final(caller.request("OPTIONS", "sip:"+s.addr(), "opt-self", 70), 3*time.Second); r == nil || r.code != 200 || !strings.Contains(r.get("allow"), "OPTIONS") {
		t.Fatalf("OPTIONS for sipedge: %v, want its own 200 with Allow", r)
	}
}

// answerOK is a UAS's 200 to req: its Vias, From, To with a tag, Call-ID,
// CSeq, and a Contact.
func answerOK(req string) []byte {
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, line := range strings.Split(req, "\r\n") {
		l := strings.ToLower(line)
		switch {
		case strings.HasPrefix(l, "via:"), strings.HasPrefix(l, "from:"), strings.HasPrefix(l, "call-id:"),
			strings.HasPrefix(l, "cseq:"), strings.HasPrefix(l, "record-route:"):
			b.WriteString(line + "\r\n")
		case strings.HasPrefix(l, "to:"):
			b.WriteString(line + ";tag=uas1\r\n")
		}
	}
	b.WriteString("Contact: <sip:carol@127.0.0.1>\r\nContent-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// TestInstanceKeepsOneBinding: a phone that re-registers or unregisters
// with a changed Contact but the same +sip.instance (as a phone does once
// it learnt its public address) replaces or removes its one binding (RFC
// 5627 §6); later calls do not fork to the dead contact.
func TestInstanceKeepsOneBinding(t *testing.T) {
	s := start(t)
	u := newUDPClient(t, s)
	inst := `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"`
	r := u.register(s, "erin", "inst", 1, "<sip:erin@10.0.0.5:5060>"+inst)
	if r.code != 200 || len(r.headers["contact"]) != 1 {
		t.Fatalf("first REGISTER: %d %v", r.code, r.headers["contact"])
	}
	r = u.register(s, "erin", "inst", 2, "<sip:erin@"+u.addr()+">"+inst)
	if r.code != 200 || len(r.headers["contact"]) != 1 || !strings.Contains(r.headers["contact"][0], u.addr()) {
		t.Fatalf("re-REGISTER with a new Contact, same instance: %d %v, want the one new binding", r.code, r.headers["contact"])
	}
	r = u.register(s, "erin", "inst", 3, "<sip:erin@203.0.113.9:5060>"+inst, "Expires: 0")
	if r.code != 200 || len(r.headers["contact"]) != 0 {
		t.Fatalf("de-REGISTER with another Contact, same instance: %d %v, want no binding left", r.code, r.headers["contact"])
	}
	caller := newUDPClient(t, s)
	if r := caller.final(caller.request("MESSAGE", "sip:erin@"+s.addr(), "inst-msg", 70), 3*time.Second); r == nil || r.code != 480 {
		t.Fatalf("request for erin after de-registration: %v, want 480", r)
	}
}
