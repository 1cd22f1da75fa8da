package proxy_test

import (
	"fmt"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/txn"
)

func BenchmarkCall(b *testing.B) {
	uac, uas := proxytest.NewPeer(b), proxytest.NewPeer(b)
	_, px := proxytest.StartCore(b, proxy.Config{Policy: proxy.Policy{Router: proxytest.To(uas.Addr)}, Txn: txn.Config{T1: 500 * time.Millisecond}}, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bc%d", i)
		uac.Send(px, proxytest.Invite(uac, px, id, "z9hG4bK"+id))
		uac.Expect(100)
		inv := uas.ExpectRequest("INVITE")
		uas.Send(px, uas.Answer(inv, 200, "t"+id))
		ok := uac.Expect(200)
		to := string(ok.Get(sip.KindTo))
		bye := fmt.Sprintf("BYE sip:uas@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKb%s;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:alice@example.com>;tag=a1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", uas.Addr, uac.Addr, id, to, id)
		uac.Send(px, bye)
		bm := uas.ExpectRequest("BYE")
		uas.Send(px, uas.Answer(bm, 200, "t"+id))
		uac.Expect(200)
	}
}
