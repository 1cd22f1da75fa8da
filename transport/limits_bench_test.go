package transport

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkStreamReceive measures the stream receive path, framing and
// deadline handling included: messages written one per write (a read per
// message, the deadline moved at every boundary) and sixteen per write.
func BenchmarkStreamReceive(b *testing.B) {
	for _, per := range []int{1, 16} {
		name := "one-per-write"
		if per > 1 {
			name = "16-per-write"
		}
		b.Run(name, func(b *testing.B) {
			var n atomic.Int64
			done := make(chan struct{}, 1)
			var want atomic.Int64
			h := HandlerFunc(func(l *Layer, p *Packet) {
				if n.Add(1) == want.Load() {
					done <- struct{}{}
				}
			})
			l, err := New(Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}}, h)
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Start(); err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			c, err := net.Dial("tcp", l.Addrs()[0].Addr.String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			chunk := []byte(strings.Repeat(benchMsg, per))
			writes := (b.N + per - 1) / per
			want.Store(int64(writes * per))
			b.SetBytes(int64(len(benchMsg)))
			b.ReportAllocs()
			b.ResetTimer()
			for range writes {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(time.Minute):
				b.Fatalf("%d of %d messages received", n.Load(), want.Load())
			}
		})
	}
}

// BenchmarkAccept measures accepting (and closing) a connection, limits
// checked.
func BenchmarkAccept(b *testing.B) {
	l, err := New(Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}}, HandlerFunc(func(*Layer, *Packet) {}))
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Start(); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	addr := l.Addrs()[0].Addr.String()
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		// One message, so the connection is established and its close
		// seen only after it was counted.
		if _, err := c.Write([]byte(benchMsg)); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

const benchMsg = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: <sip:alice@example.com>\r\n" +
	"From: <sip:alice@example.com>;tag=456248\r\n" +
	"Call-ID: 843817637684230@998sdasdh09\r\n" +
	"CSeq: 1826 REGISTER\r\n" +
	"Contact: <sip:alice@192.0.2.10:5060;transport=tcp>\r\n" +
	"Expires: 3600\r\n" +
	"Content-Length: 0\r\n\r\n"
