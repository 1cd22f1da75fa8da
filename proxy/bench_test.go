package proxy

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	"sipedge/transport"
)

// BenchmarkCoreOptions measures the core's per-request path for a request
// it answers itself: parse, validate, walk the stages, build the 200, send
// it over a real UDP socket (the sendto is part of the cost).
func BenchmarkCoreOptions(b *testing.B) {
	core := New(Config{})
	layer, err := transport.New(transport.Config{Listen: []transport.ListenSpec{{Proto: transport.UDP, Addr: "127.0.0.1:0"}}}, core)
	if err != nil {
		b.Fatal(err)
	}
	if err := layer.Start(); err != nil {
		b.Fatal(err)
	}
	defer layer.Close()
	core.Attach(layer, nil)
	defer core.Close()
	px := layer.Addrs()[0].Addr
	sink := newPeer(&testing.T{})
	msg := []byte(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK0000000000;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:bench@example.com>;tag=1\r\nTo: <sip:%s>\r\nCall-ID: bench@x\r\n"+
		"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", px, sink.addr, px))
	pkt := &transport.Packet{Data: msg, Proto: transport.UDP, Src: sink.addr, Local: px}
	go func() { // drain the answers
		buf := make([]byte, 4096)
		for {
			if _, _, err := sink.conn.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
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
	sink.conn.Close()
	_ = netip.AddrPort{}
}
