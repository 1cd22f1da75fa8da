package transport

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/internal/race"
)

func TestCallID(t *testing.T) {
	tests := []struct {
		name, msg, want string
		none            bool
	}{
		{name: "full", msg: "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: abc@h\r\n\r\n", want: "abc@h"},
		{name: "compact", msg: "SIP/2.0 200 OK\r\ni: xyz\r\nCSeq: 1 INVITE\r\n\r\n", want: "xyz"},
		{name: "case", msg: "BYE sip:a SIP/2.0\r\ncALL-iD:q1\r\n\r\n", want: "q1"},
		{name: "compact upper", msg: "BYE sip:a SIP/2.0\r\nI : q2 \r\n\r\n", want: "q2"},
		{name: "space before colon", msg: "BYE sip:a SIP/2.0\r\nCall-ID \t: \tq3\t\r\n\r\n", want: "q3"},
		{name: "bare LF", msg: "BYE sip:a SIP/2.0\nFrom: <sip:x>\nCall-ID: lf\n\n", want: "lf"},
		{name: "folded", msg: "BYE sip:a SIP/2.0\r\nCall-ID:\r\n  fold@h\r\nTo: x\r\n\r\n", want: "fold@h"},
		{name: "first of two", msg: "BYE sip:a SIP/2.0\r\ni: one\r\nCall-ID: two\r\n\r\n", want: "one"},
		{name: "last header, no end", msg: "BYE sip:a SIP/2.0\r\nCall-ID: end", want: "end"},
		{name: "only in body", msg: "MESSAGE sip:a SIP/2.0\r\nContent-Length: 13\r\n\r\nCall-ID: body", none: true},
		{name: "prefix names", msg: "BYE sip:a SIP/2.0\r\nCall-IDx: no\r\nin: no\r\nX-Call-ID: no\r\n\r\n", none: true},
		{name: "continuation looks like header", msg: "BYE sip:a SIP/2.0\r\nSubject: a\r\n i: no\r\n\r\n", none: true},
		{name: "no headers", msg: "BYE sip:a SIP/2.0", none: true},
		{name: "empty", msg: "", none: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &TapEvent{Data: []byte(tt.msg)}
			got := ev.CallID()
			if tt.none {
				if got != nil {
					t.Fatalf("CallID = %q, want nil", got)
				}
				return
			}
			if string(got) != tt.want {
				t.Fatalf("CallID = %q, want %q", got, tt.want)
			}
		})
	}
	msg := []byte("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a>\r\nTo: <sip:b>\r\ni: abc@h\r\n\r\n")
	ev := &TapEvent{Data: msg}
	if a := testing.AllocsPerRun(100, func() { _ = ev.CallID() }); a != 0 {
		t.Errorf("CallID: %.1f allocations", a)
	}
}

// tapRec is what a test tap recorded of one event.
type tapRec struct {
	dir           TapDir
	proto         Proto
	local, remote netip.AddrPort
	data, callID  string
	conn          *Conn
	at            time.Time
}

// recordTaps subscribes to l and returns the channel of copied events.
func recordTaps(t *testing.T, l *Layer) (<-chan tapRec, func()) {
	ch := make(chan tapRec, 1024)
	cancel := l.Subscribe(func(e *TapEvent) {
		ch <- tapRec{e.Dir, e.Proto, e.Local, e.Remote, string(e.Data), string(e.CallID()), e.Conn, e.Time}
	})
	t.Cleanup(cancel)
	return ch, cancel
}

func nextTap(t *testing.T, ch <-chan tapRec) tapRec {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(3 * time.Second):
		t.Fatal("timed out waiting for a tap event")
		return tapRec{}
	}
}

func noTap(t *testing.T, ch <-chan tapRec, d time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected tap event %v %q", r.dir, r.data)
	case <-time.After(d):
	}
}

func checkTap(t *testing.T, r tapRec, dir TapDir, proto Proto, local, remote netip.AddrPort, data string) {
	t.Helper()
	if r.dir != dir || r.proto != proto || r.local != local || r.remote != remote || r.data != data {
		t.Fatalf("tap event %v %v %v<->%v %q\nwant       %v %v %v<->%v %q",
			r.dir, r.proto, r.local, r.remote, r.data, dir, proto, local, remote, data)
	}
	if time.Since(r.at) > 5*time.Second || r.at.After(time.Now()) {
		t.Errorf("tap event time %v", r.at)
	}
}

func callMsg(id string, seq int) string {
	return fmt.Sprintf("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: %s\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n", id, seq)
}

// A request in and its answer out are tapped over UDP with the listener's
// address, and Send and SendBatch are tapped too; keep-alives are not.
func TestTapUDP(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}}, newRecorder(echo))
	srv := addrOf(t, l, UDP)
	taps, _ := recordTaps(t, l)
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cli := c.LocalAddr().(*net.UDPAddr).AddrPort()

	_, _ = c.Write([]byte("\r\n\r\n")) // keep-alive: dropped, not tapped
	msg := callMsg("udp-1", 1)
	_, _ = c.Write([]byte(msg))
	in := nextTap(t, taps)
	checkTap(t, in, TapIn, UDP, srv, cli, msg)
	if in.callID != "udp-1" || in.conn != nil {
		t.Errorf("in: call-id %q conn %v", in.callID, in.conn)
	}
	checkTap(t, nextTap(t, taps), TapOut, UDP, srv, cli, msg) // the echo's Reply

	if err := l.Send(UDP, cli, []byte(okMsg)); err != nil {
		t.Fatal(err)
	}
	checkTap(t, nextTap(t, taps), TapOut, UDP, srv, cli, okMsg)
	if failed := l.SendBatch([]Outgoing{{UDP, cli, []byte(okMsg)}, {UDP, cli, []byte(badReqMsg)}}); failed != 0 {
		t.Fatalf("%d failed", failed)
	}
	checkTap(t, nextTap(t, taps), TapOut, UDP, srv, cli, okMsg)
	checkTap(t, nextTap(t, taps), TapOut, UDP, srv, cli, badReqMsg)
	noTap(t, taps, 50*time.Millisecond)
}

// Over TCP and TLS the connection's addresses are reported, the answer on
// the connection is tapped, and a CRLFCRLF ping and its pong are not.
func TestTapStream(t *testing.T) {
	streamProtos(t, func(t *testing.T, proto Proto, cert testCert) {
		l := startLayer(t, streamConfig(proto, cert), newRecorder(echo))
		srv := addrOf(t, l, proto)
		taps, _ := recordTaps(t, l)
		c := dialStream(t, proto, srv, cert.pool)
		cli := netip.MustParseAddrPort(c.LocalAddr().String())

		writeAll(t, c, "\r\n\r\n")
		if got := readExactly(t, c, 2); got != "\r\n" {
			t.Fatalf("pong %q", got)
		}
		msg := callMsg("stream-1", 1)
		writeAll(t, c, msg)
		in := nextTap(t, taps)
		checkTap(t, in, TapIn, proto, srv, cli, msg)
		if in.callID != "stream-1" || in.conn == nil || in.conn.Remote() != cli {
			t.Errorf("in: call-id %q conn %v", in.callID, in.conn)
		}
		out := nextTap(t, taps)
		checkTap(t, out, TapOut, proto, srv, cli, msg)
		if out.conn != in.conn {
			t.Errorf("out on conn %v, in on %v", out.conn, in.conn)
		}
		readExactly(t, c, len(msg))
		// Send reuses the connection and is tapped as well.
		if err := l.Send(proto, cli, []byte(okMsg)); err != nil {
			t.Fatal(err)
		}
		checkTap(t, nextTap(t, taps), TapOut, proto, srv, cli, okMsg)
		readExactly(t, c, len(okMsg))
		noTap(t, taps, 50*time.Millisecond)
	})
}

// After cancel no more events arrive, for this subscriber only.
func TestTapCancel(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}}, newRecorder(nil))
	a, cancelA := recordTaps(t, l)
	b, _ := recordTaps(t, l)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = l.Send(UDP, dst, []byte(okMsg))
	nextTap(t, a)
	nextTap(t, b)
	cancelA()
	cancelA() // idempotent
	_ = l.Send(UDP, dst, []byte(okMsg))
	nextTap(t, b)
	noTap(t, a, 50*time.Millisecond)
	if l.taps.subs.Load() == nil {
		t.Fatal("no subscribers left")
	}
	// A tap that cancels itself from within its own call.
	var cancelC func()
	var mu sync.Mutex
	calls := 0
	mu.Lock()
	cancelC = l.Subscribe(func(*TapEvent) {
		mu.Lock()
		calls++
		mu.Unlock()
		cancelC()
	})
	mu.Unlock()
	_ = l.Send(UDP, dst, []byte(okMsg))
	_ = l.Send(UDP, dst, []byte(okMsg))
	mu.Lock()
	if calls != 1 {
		t.Errorf("self-cancelling tap called %d times", calls)
	}
	mu.Unlock()
}

// A slow subscriber sees exactly the messages received between its
// subscribe and its cancel, each intact (its Data was not overwritten by
// the reads that followed) and in the order of its socket, over UDP and TCP.
func TestTapSlowSubscriberOrder(t *testing.T) {
	cert := newTestCert(t)
	for _, proto := range []Proto{UDP, TCP} {
		t.Run(proto.String(), func(t *testing.T) {
			const before, during, after = 10, 20, 10
			rec := newRecorder(nil)
			cfg := streamConfig(proto, cert)
			l := startLayer(t, cfg, rec)
			srv := addrOf(t, l, proto)
			var send func(string)
			if proto == UDP {
				c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(srv))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				send = func(s string) { _, _ = c.Write([]byte(s)) }
			} else {
				c := dialStream(t, proto, srv, nil)
				send = func(s string) { writeAll(t, c, s) }
			}
			for i := range before {
				send(callMsg("slow", i))
				rec.next(t)
			}
			var (
				mu     sync.Mutex
				seen   []string
				cancel func()
				done   = make(chan struct{})
			)
			mu.Lock()
			cancel = l.Subscribe(func(e *TapEvent) {
				time.Sleep(2 * time.Millisecond) // slower than the sender
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, string(e.Data))
				if len(seen) == during {
					cancel()
					close(done)
				}
			})
			mu.Unlock()
			for i := range during + after {
				send(callMsg("slow", before+i))
			}
			for range during + after {
				rec.next(t)
			}
			<-done
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != during {
				t.Fatalf("saw %d messages, want %d", len(seen), during)
			}
			for i, s := range seen {
				if want := callMsg("slow", before+i); s != want {
					t.Fatalf("event %d = %q, want %q", i, s, want)
				}
			}
		})
	}
}

// A Tap that panics does not stop the message or the layer.
func TestTapPanic(t *testing.T) {
	rec := newRecorder(nil)
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}}, rec)
	l.Subscribe(func(*TapEvent) { panic("tap") })
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addrOf(t, l, UDP)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte(optionsMsg))
	if g := rec.next(t); g.data != optionsMsg {
		t.Fatalf("got %q", g.data)
	}
}

// udpSink is a UDP socket that discards what it receives.
func udpSink(tb testing.TB) netip.AddrPort {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Sending and receiving allocate nothing, tapped or not.
func TestTapNoAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	done := make(chan struct{}, 1)
	l := startLayer(t, Config{Listen: []ListenSpec{{UDP, "127.0.0.1:0"}}, UDPReaders: 1},
		HandlerFunc(func(*Layer, *Packet) { done <- struct{}{} }))
	dst := udpSink(t)
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addrOf(t, l, UDP)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte(callMsg("allocs", 1))
	var sink atomic.Int64
	for _, tapped := range []bool{false, true} {
		if tapped {
			l.Subscribe(func(e *TapEvent) { sink.Add(int64(len(e.CallID()))) })
		}
		if a := testing.AllocsPerRun(200, func() { _ = l.Send(UDP, dst, msg) }); a != 0 {
			t.Errorf("tapped %v: Send: %.1f allocations", tapped, a)
		}
		if a := testing.AllocsPerRun(200, func() {
			_, _ = c.Write(msg)
			<-done
		}); a >= 1 {
			t.Errorf("tapped %v: receive: %.1f allocations", tapped, a)
		}
	}
	if sink.Load() == 0 {
		t.Error("tap never called")
	}
}

// BenchmarkSendUDP is Send of one datagram over loopback, without a
// subscriber (the cost of the tap hook is one atomic load) and with one
// that reads the Call-ID; "routed" has two IPv4 listeners, so the socket
// is chosen per destination (one cached map lookup).
func BenchmarkSendUDP(b *testing.B) {
	for _, bm := range []struct {
		name   string
		tapped bool
		listen []ListenSpec
	}{
		{"notap", false, []ListenSpec{{UDP, "127.0.0.1:0"}}},
		{"tap", true, []ListenSpec{{UDP, "127.0.0.1:0"}}},
		{"routed", false, []ListenSpec{{UDP, "127.0.0.2:0"}, {UDP, "127.0.0.1:0"}}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			l, err := New(Config{Listen: bm.listen, UDPReaders: 1}, newRecorder(nil))
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Start(); err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var n int
			if bm.tapped {
				l.Subscribe(func(e *TapEvent) { n += len(e.CallID()) })
			}
			dst := udpSink(b)
			msg := []byte(callMsg("bench", 1))
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Send(UDP, dst, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
