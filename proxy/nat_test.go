package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sipedge/registrar"
	"sipedge/sip"
	"sipedge/txn"
)

// TestNATedPhone plays a phone behind NAT: it writes 10.77.0.10:5060 in
// Via and Contact but its packets come from a loopback socket (the "NAT
// mapping"). sipedge must (1) send the incoming INVITE to where the
// REGISTER came from, (2) give the caller a Contact with the phone's real
// address as alias, (3) route the caller's BYE, sent to that Contact, back
// through the mapping with the alias removed, and (4) alias the Contact of
// the phone's own outgoing INVITE.
func TestNATedPhone(t *testing.T) {
	reg, err := registrar.New(registrar.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	location := &LocationRouter{Registrar: reg}
	_, px := startCore(t, Config{Router: &Table{Location: location}, Registrar: reg, Txn: txn.Config{T1: 500 * time.Millisecond}})

	phone, caller := newPeer(t), newPeer(t)
	const private = "10.77.0.10:5060"
	phone.send(px, "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP "+private+";branch=z9hG4bKr1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg1\r\n"+
		"CSeq: 1 REGISTER\r\nContact: <sip:alice@"+private+">\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
	phone.expect(200)
	if b := reg.Lookup("sip:alice@example.com"); len(b) != 1 || !b[0].NAT {
		t.Fatalf("binding %+v: want NAT detected (Via %s, source %s)", b, private, phone.addr)
	}

	// (1) the INVITE reaches the phone through its mapping.
	caller.send(px, fmt.Sprintf("INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKc1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>\r\nCall-ID: nat1\r\n"+
		"CSeq: 1 INVITE\r\nContact: <sip:bob@%s>\r\nContent-Length: 0\r\n\r\n", caller.addr, caller.addr))
	caller.expect(100)
	inv := phone.expectRequest("INVITE")
	if got := string(inv.RequestURIBytes()); got != "sip:alice@"+private {
		t.Errorf("Request-URI %q, want the registered contact", got)
	}
	if strings.Contains(string(inv.Get(sip.KindContact)), "alias=") {
		t.Errorf("a caller not behind NAT got an alias: %s", inv.Get(sip.KindContact))
	}
	// (2) its 200 carries the alias to the caller.
	ok := strings.Replace(phone.answer(inv, 200, "a1"), "Contact: <sip:uas@"+phone.addr.String()+">", "Contact: <sip:alice@"+private+">", 1)
	phone.send(px, ok)
	r200 := caller.expect(200)
	contact := string(r200.Get(sip.KindContact))
	wantAlias := fmt.Sprintf("<sip:alice@%s;alias=%s~%d~1>", private, phone.addr.Addr(), phone.addr.Port())
	if contact != wantAlias {
		t.Fatalf("Contact in 200 %q, want %q", contact, wantAlias)
	}
	// (3) the caller's BYE to that Contact reaches the phone, alias gone.
	rr := string(r200.Get(sip.KindRecordRoute))
	caller.send(px, fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKc2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>;tag=a1\r\nCall-ID: nat1\r\n"+
		"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", contact[1:len(contact)-1], caller.addr, rr))
	bye := phone.expectRequest("BYE")
	if got := string(bye.RequestURIBytes()); got != "sip:alice@"+private {
		t.Errorf("BYE Request-URI %q, want the phone's own contact without alias", got)
	}
	phone.send(px, phone.answer(bye, 200, "a1"))
	caller.expect(200)

	// (4) the phone's own INVITE: its Contact gets the alias.
	phone.send(px, "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP "+private+";branch=z9hG4bKp1;rport\r\n"+
		"Route: <sip:"+caller.addr.String()+";lr>\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a2\r\nTo: <sip:bob@example.com>\r\nCall-ID: nat2\r\n"+
		"CSeq: 1 INVITE\r\nContact: sip:alice@"+private+"\r\nContent-Length: 0\r\n\r\n")
	phone.expect(100)
	out := caller.expectRequest("INVITE")
	want := fmt.Sprintf("<sip:alice@%s;alias=%s~%d~1>", private, phone.addr.Addr(), phone.addr.Port())
	if got := string(out.Get(sip.KindContact)); got != want {
		t.Errorf("forwarded Contact %q, want %q (angle brackets added: the alias is a URI parameter)", got, want)
	}
}

// TestKeepAlives: a phone registered from behind NAT gets OPTIONS at its
// real address every interval; when it stops answering, its binding is
// removed after MaxFailures probes. A phone not behind NAT gets none.
func TestKeepAlives(t *testing.T) {
	reg, err := registrar.New(registrar.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	core, px := startCore(t, Config{Router: &Table{Location: &LocationRouter{Registrar: reg}}, Registrar: reg,
		Txn: txn.Config{T1: 20 * time.Millisecond, T2: 80 * time.Millisecond, T4: 100 * time.Millisecond, Tick: 5 * time.Millisecond}})

	natted, direct := newPeer(t), newPeer(t)
	register := func(p *peer, user, hostport string) {
		p.send(px, "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP "+hostport+";branch=z9hG4bK"+user+";rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:"+user+"@example.com>;tag=r\r\nTo: <sip:"+user+"@example.com>\r\nCall-ID: "+user+"\r\n"+
			"CSeq: 1 REGISTER\r\nContact: <sip:"+user+"@"+hostport+">\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
		p.expect(200)
	}
	register(natted, "natted", "10.77.0.10:5060")
	register(direct, "direct", direct.addr.String())
	core.StartKeepAlives(KeepAlive{Interval: 300 * time.Millisecond, MaxFailures: 2})

	// Answer two probes: the binding stays.
	for i := 0; i < 2; i++ {
		o := natted.expectRequest("OPTIONS")
		if got := string(o.RequestURIBytes()); got != "sip:natted@10.77.0.10:5060" {
			t.Fatalf("keep-alive Request-URI %q", got)
		}
		natted.send(px, natted.answer(o, 200, "ka"))
	}
	if m := direct.recv(400 * time.Millisecond); m != nil {
		t.Fatalf("a phone not behind NAT got %s", firstLine(m))
	}
	// Stop answering: after two unanswered probes the binding is gone.
	deadline := time.Now().Add(10 * time.Second)
	for len(reg.Lookup("sip:natted@example.com")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("binding still there after unanswered keep-alives; stats %d sent, %d failed",
				core.Stats().KeepAlives.Load(), core.Stats().KeepAliveFailures.Load())
		}
		natted.recv(50 * time.Millisecond) // swallow probes and retransmissions
	}
	if core.Stats().BindingsRemoved.Load() != 1 || len(reg.Lookup("sip:direct@example.com")) != 1 {
		t.Fatalf("removed %d bindings; the direct phone's binding must stay", core.Stats().BindingsRemoved.Load())
	}
}
