package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/digest"
)

// Security against real traffic: digest authentication with sipedge's own
// client (SHA-256, RFC 7616) and sipp (MD5), replays, hijacks, and relay
// and reflection attempts that must never reach a victim. sipedge trusts
// 127.0.0.1 only; strangers send from 127.0.0.2 and up.

const authRealm = "example.com"

var authUsers = map[string]string{"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}

// secureServer starts sipedge with digest authentication for
// authUsers; authExtra is more YAML under auth (indented), extra more
// top-level YAML.
func secureServer(t *testing.T, authExtra, extra string) *server {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	for u, pw := range authUsers {
		if err := digest.AddUser(users, u, authRealm, pw); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "sipedge.yaml")
	yaml := fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\ndomains: [%s]\ntrusted_networks: [127.0.0.1/32]\n"+
		"auth:\n  users_file: %s\n%s%s", authRealm, users, authExtra, extra)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
}

// newPeerAt is a raw UDP SIP endpoint on a loopback address of its own.
func newPeerAt(t *testing.T, ip string) *sipPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sipPeer{t: t, c: c}
}

var seq atomic.Int64

// registerMsg is a REGISTER of aor's user with p's address as Contact;
// hdr is extra header lines.
func registerMsg(p *sipPeer, user, callID string, cseq int, contact, hdr string) string {
	if contact == "" {
		contact = "<sip:" + user + "@" + p.addr() + ">"
	}
	return fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKreg%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=r%d\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\nContact: %s\r\n"+
		"Expires: 600\r\nUser-Agent: e2e phone 1.0\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY, REFER, MESSAGE\r\n"+
		"Supported: path, gruu, outbound, replaces, timer\r\nAllow-Events: presence, kpml, talk, hold, conference\r\n%sContent-Length: 0\r\n\r\n",
		authRealm, p.addr(), seq.Add(1), user, authRealm, cseq, user, authRealm, callID, cseq, contact, hdr)
}

// challengeOf picks the challenge of the wanted algorithm from an answer.
func challengeOf(t *testing.T, resp, header string, alg digest.Algorithm) digest.Challenge {
	t.Helper()
	r, err := parseResponse([]byte(resp))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range r.headers[strings.ToLower(header)] {
		ch, err := digest.ParseChallenge([]byte(v))
		if err == nil && ch.Algorithm == alg {
			return ch
		}
	}
	t.Fatalf("no %s challenge in\n%s", alg, resp)
	return digest.Challenge{}
}

// registerDigest registers p as user with a password and algorithm,
// answering the 401; it returns the final answer and the credentials sent.
func registerDigest(t *testing.T, s *server, p *sipPeer, user, authUser, pw string, alg digest.Algorithm) (string, string) {
	t.Helper()
	id := fmt.Sprintf("reg-%s-%d", user, seq.Add(1))
	p.send(s.addr(), registerMsg(p, user, id, 1, "", ""))
	resp, _ := p.expect("SIP/2.0 401", id)
	ch := challengeOf(t, resp, "WWW-Authenticate", alg)
	cred := string(ch.Authorize(nil, authUser, pw, []byte("REGISTER"), []byte("sip:"+authRealm), []byte("e2ecnonce"), 1))
	p.send(s.addr(), registerMsg(p, user, id, 2, "", "Authorization: "+cred+"\r\n"))
	final, _ := p.next("SIP/2.0 ", id, 5*time.Second)
	return final, cred
}

func status(m string) string {
	if len(m) < 11 {
		return m
	}
	return m[8:11]
}

// SHA-256 and SHA-512-256 with sipedge's own client (written from RFC
// 7616), MD5 too; a replayed Authorization is refused; credentials of
// another user for an AoR are refused; a stranger's REGISTER without
// credentials (also "Contact: *") changes no binding.
func TestDigestRegister(t *testing.T) {
	s := secureServer(t, "  algorithms: [MD5, SHA-256, SHA-512-256]\n", "")
	alice := newPeerAt(t, "127.0.0.2")
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512_256, digest.MD5} {
		final, cred := registerDigest(t, s, alice, "alice", "alice", authUsers["alice"], alg)
		if status(final) != "200" {
			t.Fatalf("%s: REGISTER answered %q", alg, final)
		}
		// A retransmission of the authenticated REGISTER (its 200 was
		// lost) is answered by its transaction: 200 again, no replay.
		alice.send(s.addr(), alice.lastSent)
		if m, _ := alice.next("SIP/2.0 ", field([]byte(final), "call-id", "i"), 5*time.Second); status(m) != "200" {
			t.Fatalf("%s: retransmitted REGISTER answered %q", alg, m)
		}
		// The same Authorization again, on a new transaction: a replay.
		id := fmt.Sprintf("replay-%d", seq.Add(1))
		alice.send(s.addr(), registerMsg(alice, "alice", id, 3, "", "Authorization: "+cred+"\r\n"))
		if m, _ := alice.next("SIP/2.0 ", id, 5*time.Second); status(m) != "401" {
			t.Fatalf("%s: replayed credentials answered %q", alg, m)
		}
	}
	// Wrong password: 401 again, like an unknown user.
	if final, _ := registerDigest(t, s, alice, "alice", "alice", "guess", digest.MD5); status(final) != "401" {
		t.Fatalf("wrong password: %q", final)
	}
	// bob's credentials for alice's AoR.
	mallory := newPeerAt(t, "127.0.0.3")
	if final, _ := registerDigest(t, s, mallory, "alice", "bob", authUsers["bob"], digest.MD5); status(final) != "403" {
		t.Fatalf("bob registering alice: %q", final)
	}
	// Hijacks without credentials: a new Contact, and Contact: * with
	// Expires 0 (remove all). Both challenged; alice's binding stays.
	for _, contact := range []string{"<sip:alice@127.0.0.3:5099>", "*"} {
		id := fmt.Sprintf("hijack-%d", seq.Add(1))
		msg := registerMsg(mallory, "alice", id, 1, contact, "")
		if contact == "*" {
			msg = strings.Replace(msg, "Expires: 600", "Expires: 0", 1)
		}
		mallory.send(s.addr(), msg)
		if m, _ := mallory.next("SIP/2.0 ", id, 5*time.Second); status(m) != "401" {
			t.Fatalf("unauthenticated REGISTER %s: %q", contact, m)
		}
	}
	// A call from the trusted network to alice reaches her registered
	// address, and only it.
	caller := newSIPPeer(t)
	id := "call-after-hijack"
	caller.send(s.addr(), fmt.Sprintf("INVITE sip:alice@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKh1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:caller@%s>;tag=c\r\nTo: <sip:alice@%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@%s>\r\nContent-Length: 0\r\n\r\n",
		authRealm, caller.addr(), authRealm, authRealm, id, caller.addr()))
	if m, _ := alice.expect("INVITE ", id); strings.Contains(m, "Authorization") {
		t.Fatalf("credentials forwarded:\n%s", m)
	}
	if m, _ := mallory.next("INVITE ", id, 500*time.Millisecond); m != "" {
		t.Fatal("the hijacker's contact got the call")
	}
}

// A call between two phones outside the trusted networks: the caller
// answers a 407, the callee is reached, and its BYE (in-dialog, without
// credentials) comes back through sipedge's signed Record-Route.
func TestDigestCall(t *testing.T) {
	s := secureServer(t, "", "")
	alice, bob := newPeerAt(t, "127.0.0.2"), newPeerAt(t, "127.0.0.3")
	for _, p := range []struct {
		peer *sipPeer
		user string
	}{{alice, "alice"}, {bob, "bob"}} {
		if final, _ := registerDigest(t, s, p.peer, p.user, p.user, authUsers[p.user], digest.MD5); status(final) != "200" {
			t.Fatalf("%s: %q", p.user, final)
		}
	}
	id := "digest-call"
	inv := func(cseq int, hdr string) string {
		return fmt.Sprintf("INVITE sip:bob@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKinv%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:alice@%s>;tag=alice\r\nTo: <sip:bob@%s>\r\nCall-ID: %s\r\nCSeq: %d INVITE\r\nContact: <sip:alice@%s>\r\n"+
			"User-Agent: e2e phone\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n%sContent-Length: 0\r\n\r\n",
			authRealm, alice.addr(), cseq, authRealm, authRealm, id, cseq, alice.addr(), hdr)
	}
	alice.send(s.addr(), inv(1, ""))
	resp, _ := alice.expect("SIP/2.0 407", id)
	r, _ := parseResponse([]byte(resp))
	alice.send(s.addr(), fmt.Sprintf("ACK sip:bob@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKinv1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@%s>;tag=alice\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		authRealm, alice.addr(), authRealm, r.get("to"), id))
	ch := challengeOf(t, resp, "Proxy-Authenticate", digest.MD5)
	cred := string(ch.Authorize(nil, "alice", authUsers["alice"], []byte("INVITE"), []byte("sip:bob@"+authRealm), []byte("c1"), 1))
	alice.send(s.addr(), inv(2, "Proxy-Authorization: "+cred+"\r\n"))
	req, from := bob.expect("INVITE ", id)
	if strings.Contains(req, "Proxy-Authorization") {
		t.Fatalf("credentials for sipedge forwarded to the callee:\n%s", req)
	}
	if !strings.Contains(req, ";ck=") {
		t.Fatalf("Record-Route not signed:\n%s", req)
	}
	bob.send(from, reply(req, 200, bob.addr()))
	ok, _ := alice.expect("SIP/2.0 200", id)
	okr, _ := parseResponse([]byte(ok))
	// The callee hangs up: its route set is the Record-Route in order.
	var routes strings.Builder
	for _, rr := range okr.headers["record-route"] {
		routes.WriteString("Route: " + rr + "\r\n")
	}
	bye := fmt.Sprintf("BYE sip:alice@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKbye1;rport\r\nMax-Forwards: 70\r\n%s"+
		"From: <sip:bob@%s>;tag=callee\r\nTo: <sip:alice@%s>;tag=alice\r\nCall-ID: %s\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
		alice.addr(), bob.addr(), routes.String(), authRealm, authRealm, id)
	bob.send(s.addr(), bye)
	got, _ := alice.expect("BYE ", id)
	_ = got
	// The same BYE with the signature taken off is a relay attempt.
	forged := strings.Replace(bye, ";ck=", ";xx=", -1)
	forged = strings.Replace(forged, "z9hG4bKbye1", "z9hG4bKbye2", 1)
	bob.send(s.addr(), forged)
	if m, _ := bob.next("SIP/2.0 ", id, 5*time.Second); status(m) != "403" {
		t.Fatalf("unsigned in-dialog request from a stranger: %q", m)
	}
}

// sipp (Debian's 3.6, MD5 only) registers with digest and calls through
// a 407, over UDP from outside the trusted networks.
func TestDigestSipp(t *testing.T) {
	sipp := needSipp(t)
	s := secureServer(t, "", "")
	dir := t.TempDir()
	csv := filepath.Join(dir, "users.csv")
	os.WriteFile(csv, []byte("SEQUENTIAL\ncarol;"+authUsers["carol"]+"\n"), 0o644)
	reg := exec.Command(sipp, "-sf", mustAbs(t, "testdata/register-auth.xml"), "-inf", csv, "-au", "carol", "-ap", authUsers["carol"], "-i", "127.0.0.4", "-p", "0",
		"-m", "1", "-timeout", "15s", "-trace_err", "-error_file", filepath.Join(dir, "reg.err"), s.addr())
	reg.Dir = dir
	if out, err := reg.CombinedOutput(); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "reg.err"))
		t.Fatalf("sipp REGISTER with digest: %v\n%s\n%s", err, tail(out), b)
	}
	// carol (sipp) calls bob (a raw peer) through a 407.
	bob := newPeerAt(t, "127.0.0.3")
	if final, _ := registerDigest(t, s, bob, "bob", "bob", authUsers["bob"], digest.MD5); status(final) != "200" {
		t.Fatalf("bob: %q", final)
	}
	done := make(chan error, 1)
	uac := exec.Command(sipp, "-sf", mustAbs(t, "testdata/uac-auth.xml"), "-inf", csv, "-s", "bob", "-au", "carol", "-ap", authUsers["carol"], "-i", "127.0.0.4", "-p", "0",
		"-m", "1", "-timeout", "20s", "-trace_err", "-error_file", filepath.Join(dir, "uac.err"), s.addr())
	uac.Dir = dir
	var out []byte
	go func() {
		var err error
		out, err = uac.CombinedOutput()
		done <- err
	}()
	// bob answers the INVITE and the BYE.
	var callID string
	deadline := time.Now().Add(15 * time.Second)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		bob.c.SetReadDeadline(deadline)
		n, from, err := bob.c.ReadFrom(buf)
		if err != nil {
			break
		}
		m := string(buf[:n])
		switch {
		case strings.HasPrefix(m, "INVITE "):
			callID = field(buf[:n], "call-id", "i")
			bob.send(from.String(), reply(m, 200, bob.addr()))
		case strings.HasPrefix(m, "BYE "):
			bob.send(from.String(), reply(m, 200, bob.addr()))
			deadline = time.Now() // done
		}
	}
	if err := <-done; err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "uac.err"))
		t.Fatalf("sipp call with digest (call %q): %v\n%s\n%s", callID, err, tail(out), b)
	}
	if callID == "" {
		t.Fatal("the call never reached bob")
	}
}

// victim is a UDP listener on the trusted address that must never hear
// from sipedge on a stranger's behalf.
type victim struct {
	c       *net.UDPConn
	packets atomic.Int64
}

func newVictim(t *testing.T) *victim {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	v := &victim{c: c}
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			v.packets.Add(1)
		}
	}()
	t.Cleanup(func() { c.Close() })
	return v
}

func (v *victim) addr() string { return v.c.LocalAddr().String() }

// The open-relay disguises, unauthenticated, over UDP and TCP: each is
// refused and the victim hears nothing.
func TestNoOpenRelay(t *testing.T) {
	s := secureServer(t, "", "")
	v := newVictim(t)
	self := s.addr()
	for _, proto := range []string{"udp", "tcp"} {
		for _, tc := range []struct{ name, ruri, hdr string }{
			{"IP-literal Request-URI", "sip:victim@" + v.addr(), ""},
			{"foreign domain", "sip:victim@elsewhere.example.net", ""},
			{"Route to the victim", "sip:bob@" + authRealm, "Route: <sip:" + v.addr() + ";lr>\r\n"},
			{"our Route, then the victim", "sip:bob@" + authRealm, "Route: <sip:" + self + ";lr>, <sip:" + v.addr() + ";lr>\r\n"},
			{"maddr", "sip:bob@" + authRealm + ";maddr=127.0.0.1", ""},
			{"strict routing", "sip:" + self, "Route: <sip:victim@" + v.addr() + ">\r\n"},
			{"in-dialog with our unsigned Route", "sip:victim@" + v.addr(), "Route: <sip:" + self + ";lr>\r\n"},
		} {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				id := fmt.Sprintf("relay-%d", seq.Add(1))
				to := "<sip:victim@elsewhere.example.net>"
				if strings.HasPrefix(tc.name, "in-dialog") {
					to += ";tag=t1"
				}
				msg := fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/%s 127.0.0.5:5060;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n%s"+
					"From: <sip:x@elsewhere.example.net>;tag=f\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.5>\r\n"+
					"User-Agent: relay attempt with enough bytes to be answered\r\nContent-Length: 0\r\n\r\n",
					tc.ruri, strings.ToUpper(proto), id, tc.hdr, to, id)
				resp := sendFrom(t, proto, "127.0.0.5", self, msg, id)
				if c := status(resp); c != "403" && c != "407" {
					t.Fatalf("answered %q", resp)
				}
			})
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := v.packets.Load(); n != 0 {
		t.Fatalf("the victim received %d packets", n)
	}
}

// sendFrom sends msg from a loopback address over udp or tcp and returns
// the first final answer with this Call-ID ("" after 5 s).
func sendFrom(t *testing.T, proto, ip, to, msg, callID string) string {
	t.Helper()
	if proto == "udp" {
		p := newPeerAt(t, ip)
		p.send(to, msg)
		for {
			m, _ := p.next("SIP/2.0 ", callID, 5*time.Second)
			if m == "" || status(m) >= "200" {
				return m
			}
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg = strings.Replace(msg, "127.0.0.5:5060", c.LocalAddr().String(), 1)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	var acc []byte
	for {
		n, err := c.Read(buf)
		acc = append(acc, buf[:n]...)
		for _, m := range strings.SplitAfter(string(acc), "\r\n\r\n") {
			if strings.HasPrefix(m, "SIP/2.0 ") && status(m) >= "200" {
				return m
			}
		}
		if err != nil {
			return ""
		}
	}
}

// Reflection: a forged response with sipedge's Via on top and the
// victim's below, and a request whose Via has maddr= the victim, both
// from a stranger: the victim hears nothing.
func TestNoReflection(t *testing.T) {
	s := secureServer(t, "", "")
	v := newVictim(t)
	attacker := newPeerAt(t, "127.0.0.6")
	forged := fmt.Sprintf("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKSe0123456789abcdef.0123456789abcdef;rport\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bKvictim\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: reflect-1\r\n"+
		"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", s.addr(), v.addr())
	for i := 0; i < 5; i++ {
		attacker.send(s.addr(), forged)
	}
	vh, vp, _ := net.SplitHostPort(v.addr())
	req := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%s;branch=z9hG4bKmaddr;maddr=%s\r\nMax-Forwards: 70\r\n"+
		"From: <sip:x@elsewhere.example.net>;tag=f\r\nTo: <sip:%s>\r\nCall-ID: reflect-2\r\nCSeq: 1 OPTIONS\r\n"+
		"User-Agent: reflection attempt padded to be answered\r\nContent-Length: 0\r\n\r\n", s.addr(), vh, vp, vh, s.addr())
	attacker.send(s.addr(), req)
	// The answer to the OPTIONS goes back to the attacker's own address.
	if m, _ := attacker.next("SIP/2.0 ", "reflect-2", 5*time.Second); m == "" {
		t.Fatal("no answer at the request's source")
	}
	time.Sleep(500 * time.Millisecond)
	if n := v.packets.Load(); n != 0 {
		t.Fatalf("the victim received %d packets", n)
	}
}
