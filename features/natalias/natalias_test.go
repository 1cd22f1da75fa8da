package natalias_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sipedge/features/natalias"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
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
	location := &proxy.LocationRouter{Registrar: reg}
	_, px := proxytest.StartCore(t, proxy.Config{Policy: proxy.Policy{Router: &proxy.Table{Location: location}}, Registrar: reg,
		Txn: txn.Config{T1: 500 * time.Millisecond}},
		func(*proxy.Core) []proxy.Feature { return []proxy.Feature{natalias.New()} })

	phone, caller := proxytest.NewPeer(t), proxytest.NewPeer(t)
	const private = "10.77.0.10:5060"
	phone.Send(px, "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP "+private+";branch=z9hG4bKr1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg1\r\n"+
		"CSeq: 1 REGISTER\r\nContact: <sip:alice@"+private+">\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
	phone.Expect(200)
	if b := reg.Lookup("sip:alice@example.com"); len(b) != 1 || !b[0].NAT {
		t.Fatalf("binding %+v: want NAT detected (Via %s, source %s)", b, private, phone.Addr)
	}

	// (1) the INVITE reaches the phone through its mapping.
	caller.Send(px, fmt.Sprintf("INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKc1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>\r\nCall-ID: nat1\r\n"+
		"CSeq: 1 INVITE\r\nContact: <sip:bob@%s>\r\nContent-Length: 0\r\n\r\n", caller.Addr, caller.Addr))
	caller.Expect(100)
	inv := phone.ExpectRequest("INVITE")
	if got := string(inv.RequestURIBytes()); got != "sip:alice@"+private {
		t.Errorf("Request-URI %q, want the registered contact", got)
	}
	if strings.Contains(string(inv.Get(sip.KindContact)), "alias=") {
		t.Errorf("a caller not behind NAT got an alias: %s", inv.Get(sip.KindContact))
	}
	// (2) its 200 carries the alias to the caller.
	ok := strings.Replace(phone.Answer(inv, 200, "a1"), "Contact: <sip:uas@"+phone.Addr.String()+">", "Contact: <sip:alice@"+private+">", 1)
	phone.Send(px, ok)
	r200 := caller.Expect(200)
	contact := string(r200.Get(sip.KindContact))
	wantAlias := fmt.Sprintf("<sip:alice@%s;alias=%s~%d~1>", private, phone.Addr.Addr(), phone.Addr.Port())
	if contact != wantAlias {
		t.Fatalf("Contact in 200 %q, want %q", contact, wantAlias)
	}
	// (3) the caller's BYE to that Contact reaches the phone, alias gone.
	rr := string(r200.Get(sip.KindRecordRoute))
	caller.Send(px, fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKc2;rport\r\nRoute: %s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>;tag=a1\r\nCall-ID: nat1\r\n"+
		"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", contact[1:len(contact)-1], caller.Addr, rr))
	bye := phone.ExpectRequest("BYE")
	if got := string(bye.RequestURIBytes()); got != "sip:alice@"+private {
		t.Errorf("BYE Request-URI %q, want the phone's own contact without alias", got)
	}
	phone.Send(px, phone.Answer(bye, 200, "a1"))
	caller.Expect(200)

	// (4) the phone's own INVITE: its Contact gets the alias.
	phone.Send(px, "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP "+private+";branch=z9hG4bKp1;rport\r\n"+
		"Route: <sip:"+caller.Addr.String()+";lr>\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a2\r\nTo: <sip:bob@example.com>\r\nCall-ID: nat2\r\n"+
		"CSeq: 1 INVITE\r\nContact: sip:alice@"+private+"\r\nContent-Length: 0\r\n\r\n")
	phone.Expect(100)
	out := caller.ExpectRequest("INVITE")
	want := fmt.Sprintf("<sip:alice@%s;alias=%s~%d~1>", private, phone.Addr.Addr(), phone.Addr.Port())
	if got := string(out.Get(sip.KindContact)); got != want {
		t.Errorf("forwarded Contact %q, want %q (angle brackets added: the alias is a URI parameter)", got, want)
	}
}
