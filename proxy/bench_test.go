package proxy_test

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/registrar"
	"sipedge/store"
	"sipedge/transport"
)

// drain reads and drops what the core sends to p until p is closed.
func drain(p *proxytest.Peer) {
	buf := make([]byte, 4096)
	for {
		if _, _, err := p.Conn.ReadFromUDPAddrPort(buf); err != nil {
			return
		}
	}
}

// BenchmarkCoreOptions measures the core's per-request path for a request
// it answers itself: parse, validate, walk the stages, build the 200, send
// it over a real UDP socket (the sendto is part of the cost).
func BenchmarkCoreOptions(b *testing.B) {
	core, layer, px := proxytest.StartLayer(b, proxy.Config{}, nil)
	sink := proxytest.NewPeer(b)
	msg := []byte(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK0000000000;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:bench@example.com>;tag=1\r\nTo: <sip:%s>\r\nCall-ID: bench@x\r\n"+
		"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", px, sink.Addr, px))
	pkt := &transport.Packet{Data: msg, Proto: transport.UDP, Src: sink.Addr, Local: px}
	go drain(sink)
	// A new branch per request: each one is a new transaction, as in
	// real traffic (a repeated branch would be absorbed as a
	// retransmission).
	at := bytes.Index(msg, []byte("z9hG4bK")) + 7
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		strconv.AppendUint(msg[at:at], uint64(1000000000+i%1000000000), 10)
		core.HandleMessage(layer, pkt)
	}
	b.StopTimer()
	sink.Conn.Close()
}

// BenchmarkCoreRegister measures a REGISTER through the core with the
// registrar and its durable store, as the REGISTER benchmark harness sends
// them: 10 000 users refreshing with a new Call-ID each time, so every
// request is a new transaction and a new write-ahead-log record. The 200
// goes out over a real UDP socket from the store's committer.
func BenchmarkCoreRegister(b *testing.B) {
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	reg, err := registrar.New(registrar.Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	core, layer, px := proxytest.StartLayer(b, proxy.Config{Registrar: reg}, nil)
	sink := proxytest.NewPeer(b)
	go drain(sink)
	const users = 10000
	msgs := make([][]byte, users)
	for u := range msgs {
		msgs[u] = []byte(fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bK0000000000\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:user%05d@%s>;tag=1\r\nTo: <sip:user%05d@%s>\r\nCall-ID: 0000000000@bench\r\n"+
			"CSeq: 1 REGISTER\r\nContact: <sip:user%05d@%s;transport=udp>\r\nExpires: 3600\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n",
			px, sink.Addr, u, px.Addr(), u, px.Addr(), u, sink.Addr))
	}
	pkt := &transport.Packet{Proto: transport.UDP, Src: sink.Addr, Local: px}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := msgs[i%users]
		n := uint64(1000000000 + i%1000000000)
		strconv.AppendUint(m[bytes.Index(m, []byte("z9hG4bK"))+7:][:0], n, 10)
		strconv.AppendUint(m[bytes.Index(m, []byte("Call-ID: "))+9:][:0], n, 10)
		pkt.Data = m
		core.HandleMessage(layer, pkt)
	}
	b.StopTimer()
	sink.Conn.Close()
}
