package hep

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/transport"
)

// BenchmarkSenderTap: what a message costs the goroutine that tapped it
// (encoding and queueing; the collector's writer runs on its own), with
// a 700-byte message and a UDP collector on loopback that reads
// everything.
func BenchmarkSenderTap(b *testing.B) {
	coll, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer coll.Close()
	coll.SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := coll.Read(buf); err != nil {
				return
			}
		}
	}()
	s, err := Dial([]string{"udp:" + coll.LocalAddr().String()}, Agent{ID: 7, Node: "edge-1"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := []byte("INVITE sip:bob@192.0.2.20 SIP/2.0\r\n" + strings.Repeat("X-Filler: 0123456789abcdef0123456789abcdef0123456789\r\n", 12) + "\r\n")
	ev := transport.TapEvent{Dir: transport.TapIn, Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"),
		Remote: netip.MustParseAddrPort("127.0.0.9:40000"), Data: msg, Time: time.Now()}
	name := coll.LocalAddr().String()
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	tapped := uint64(0)
	for b.Loop() {
		s.Tap(&ev)
		// Every 200 messages (a 20 ms batch at 10 000 messages a second)
		// let the writer catch up, off the clock: a tight loop outruns
		// any collector, and a dropped message costs less than a sent one.
		if tapped++; tapped%200 == 0 {
			b.StopTimer()
			for st := s.Stats(); st.Sent[name]+st.Dropped[name]+st.Errors[name] < tapped; st = s.Stats() {
				time.Sleep(100 * time.Microsecond)
			}
			b.StartTimer()
		}
	}
	st := s.Stats()
	b.ReportMetric(float64(st.Dropped[name]+st.Errors[name])/float64(tapped), "lost/op")
}
