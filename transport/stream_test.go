package transport

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"sipedge/sip"
)

func TestStreamFraming(t *testing.T) {
	big := bodyMsg(strings.Repeat("b", 20000)) // grows the 4 KiB read buffer
	tests := []struct {
		name   string
		writes []string // written with a short pause in between
		want   []string // messages the handler must see, in order
		echo   string   // what the client must read back
	}{
		{
			name:   "two messages in one write",
			writes: []string{optionsMsg + bodyMsg("hello")},
			want:   []string{optionsMsg, bodyMsg("hello")},
			echo:   optionsMsg + bodyMsg("hello"),
		},
		{
			name:   "one message split across writes",
			writes: splitEvery(bodyMsg("split body"), 7),
			want:   []string{bodyMsg("split body")},
			echo:   bodyMsg("split body"),
		},
		{
			name:   "split inside the blank line",
			writes: []string{"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r", "\n"},
			want:   []string{optionsMsg},
			echo:   optionsMsg,
		},
		{
			name:   "message larger than the initial buffer",
			writes: []string{big[:3000], big[3000:]},
			want:   []string{big},
			echo:   big,
		},
		{
			name:   "ping answered with pong",
			writes: []string{"\r\n\r\n"},
			echo:   "\r\n",
		},
		{
			name:   "ping split, then a message",
			writes: []string{"\r\n", "\r\n" + optionsMsg},
			want:   []string{optionsMsg},
			echo:   "\r\n" + optionsMsg,
		},
		{
			name:   "pong and padding ignored",
			writes: []string{"\r\n" + optionsMsg + "\r\n", okMsg},
			want:   []string{optionsMsg, okMsg},
			echo:   optionsMsg + okMsg,
		},
	}
	streamProtos(t, func(t *testing.T, proto Proto, cert testCert) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec := newRecorder(echo)
				l := startLayer(t, streamConfig(proto, cert), rec)
				srv := addrOf(t, l, proto)
				c := dialStream(t, proto, srv, cert.pool)
				for i, w := range tt.writes {
					if i > 0 {
						time.Sleep(5 * time.Millisecond)
					}
					writeAll(t, c, w)
				}
				var conn *Conn
				for _, w := range tt.want {
					g := rec.next(t)
					if g.data != w {
						t.Fatalf("got %q, want %q", trunc(g.data), trunc(w))
					}
					if g.proto != proto || g.src != c.LocalAddr().(*net.TCPAddr).AddrPort() || g.local != srv || g.conn == nil {
						t.Errorf("packet %+v: wrong metadata", g)
					}
					if conn != nil && g.conn != conn {
						t.Error("messages of one connection came with different Conns")
					}
					conn = g.conn
				}
				rec.none(t, 20*time.Millisecond)
				if got := readExactly(t, c, len(tt.echo)); got != tt.echo {
					t.Errorf("client read %q, want %q", trunc(got), trunc(tt.echo))
				}
				if strings.Contains(tt.name, "ping") && l.Stats().PingsAnswered != 1 {
					t.Errorf("PingsAnswered = %d", l.Stats().PingsAnswered)
				}
			})
		}
	})
}

func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// A stream that cannot be framed: the handler sees FrameErr and may answer
// on the connection, which is then closed.
func TestStreamFrameError(t *testing.T) {
	tests := []struct {
		name     string
		write    string
		code     int
		wantData string // prefix of Packet.Data
	}{
		{
			name:     "two Content-Length headers",
			write:    "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 4\r\n\r\nbody" + optionsMsg,
			code:     400,
			wantData: "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 4\r\n\r\n",
		},
		{
			name:     "negative Content-Length",
			write:    "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
			code:     400,
			wantData: "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
		},
		{
			name:     "after a good message",
			write:    optionsMsg + "INVITE sip:a@b SIP/2.0\r\nContent-Length: abc\r\n\r\n",
			code:     400,
			wantData: "INVITE sip:a@b SIP/2.0\r\nContent-Length: abc\r\n\r\n",
		},
		{
			name:     "endless header section",
			write:    "OPTIONS sip:a@b SIP/2.0\r\nX: " + strings.Repeat("y", 5000),
			code:     513,
			wantData: "OPTIONS sip:a@b SIP/2.0\r\nX: yyy",
		},
		{
			name:     "body over the limit",
			write:    bodyMsg(strings.Repeat("z", 3000)),
			code:     513,
			wantData: "MESSAGE sip:a@b SIP/2.0\r\n",
		},
	}
	streamProtos(t, func(t *testing.T, proto Proto, cert testCert) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec := newRecorder(func(l *Layer, p *Packet) {
					if p.FrameErr != nil {
						_ = l.Reply(p, []byte(badReqMsg))
					}
				})
				cfg := streamConfig(proto, cert)
				cfg.Limits = &sip.Limits{MaxMessageSize: 2048}
				l := startLayer(t, cfg, rec)
				c := dialStream(t, proto, addrOf(t, l, proto), cert.pool)
				writeAll(t, c, tt.write)
				g := rec.next(t)
				if g.frameErr == nil && g.data == optionsMsg {
					g = rec.next(t) // the good message before the bad one
				}
				var pe *sip.ParseError
				if !errors.As(g.frameErr, &pe) || pe.Code != tt.code {
					t.Fatalf("FrameErr = %v, want a ParseError %d", g.frameErr, tt.code)
				}
				if !strings.HasPrefix(g.data, tt.wantData) || len(g.data) > 2049 {
					t.Errorf("Data = %q (%d bytes), want prefix %q", trunc(g.data), len(g.data), tt.wantData)
				}
				if got := expectClosed(t, c, 3*time.Second); got != badReqMsg {
					t.Errorf("client read %q before close, want the 400", got)
				}
				rec.none(t, 20*time.Millisecond)
				if s := l.Stats(); s.FrameErrors != 1 {
					t.Errorf("FrameErrors = %d", s.FrameErrors)
				}
			})
		}
	})
}

// Each scenario has its own layer, and they run concurrently: each waits
// for the timeout.
func TestStreamIdleTimeout(t *testing.T) {
	cert := newTestCert(t)
	var outer sync.WaitGroup
	for _, proto := range []Proto{TCP, TLS} {
		outer.Go(func() { t.Run(proto.String(), func(t *testing.T) { testIdle(t, proto, cert) }) })
	}
	outer.Wait()
}

// testIdle runs the idle scenarios for proto concurrently. t.Run is called
// from goroutines rather than using t.Parallel, whose limit (GOMAXPROCS)
// would serialize these mostly sleeping tests on a small machine.
func testIdle(t *testing.T, proto Proto, cert testCert) {
	var wg sync.WaitGroup
	defer wg.Wait()
	run := func(name string, f func(t *testing.T)) {
		wg.Go(func() { t.Run(name, f) })
	}
	setup := func(t *testing.T, idle time.Duration) (*recorder, net.Conn) {
		rec := newRecorder(nil)
		cfg := streamConfig(proto, cert)
		cfg.IdleTimeout = idle
		l := startLayer(t, cfg, rec)
		t.Cleanup(func() { // registered after Close, so runs before it
			if s := l.Stats(); s.ConnsTimedOut != 1 {
				t.Errorf("ConnsTimedOut = %d, want 1", s.ConnsTimedOut)
			}
		})
		return rec, dialStream(t, proto, addrOf(t, l, proto), cert.pool)
	}
	run("silent", func(t *testing.T) {
		_, c := setup(t, 300*time.Millisecond)
		start := time.Now()
		expectClosed(t, c, 3*time.Second)
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("closed after %v, before the 300ms idle timeout", d)
		}
	})
	run("incomplete message", func(t *testing.T) {
		rec, c := setup(t, 300*time.Millisecond)
		writeAll(t, c, "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc")
		expectClosed(t, c, 3*time.Second)
		rec.none(t, 10*time.Millisecond)
	})
	run("trickled message", func(t *testing.T) {
		// Bytes keep coming, but the message never completes within
		// the timeout: the deadline is not extended by them.
		_, c := setup(t, 300*time.Millisecond)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(40 * time.Millisecond):
					_ = c.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := c.Write([]byte("X")); err != nil {
						return
					}
				}
			}
		}()
		expectClosed(t, c, 3*time.Second)
		close(stop)
		<-done
	})
	run("pipelined messages", func(t *testing.T) {
		// Every write completes one message and starts the next, so
		// the buffer always ends mid-message; traffic keeps flowing,
		// so the connection must stay open past the timeout.
		rec, c := setup(t, 300*time.Millisecond)
		half := len(optionsMsg) / 2
		writeAll(t, c, optionsMsg[:half])
		for range 12 { // 600ms
			time.Sleep(50 * time.Millisecond)
			writeAll(t, c, optionsMsg[half:]+optionsMsg[:half])
		}
		for range 12 {
			if g := rec.next(t); g.data != optionsMsg {
				t.Fatalf("got %q", g.data)
			}
		}
		expectClosed(t, c, 3*time.Second) // the last half never completes
	})
	run("active connection stays", func(t *testing.T) {
		// Traffic every 50ms for longer than the timeout; the wide
		// margin keeps a loaded test machine from failing it.
		rec, c := setup(t, 400*time.Millisecond)
		// A whole message first: a connection that has sent none is
		// only given MessageTimeout, pings or not.
		writeAll(t, c, optionsMsg)
		rec.next(t)
		for range 10 {
			writeAll(t, c, "\r\n\r\n")
			readExactly(t, c, 2)
			time.Sleep(50 * time.Millisecond)
		}
		// Our own sends count as traffic too.
		writeAll(t, c, optionsMsg)
		g := rec.next(t)
		for range 10 {
			if err := g.conn.Send([]byte(okMsg)); err != nil {
				t.Fatalf("send on live connection: %v", err)
			}
			readExactly(t, c, len(okMsg))
			time.Sleep(50 * time.Millisecond)
		}
		expectClosed(t, c, 3*time.Second) // and then it goes idle
	})
}

// Send reuses the connection a client opened (RFC 5923 / RFC 3261 §18):
// the request arrives on that connection, nothing is dialed.
func TestStreamConnectionReuse(t *testing.T) {
	streamProtos(t, func(t *testing.T, proto Proto, cert testCert) {
		rec := newRecorder(nil)
		l := startLayer(t, streamConfig(proto, cert), rec)
		c := dialStream(t, proto, addrOf(t, l, proto), cert.pool)
		writeAll(t, c, optionsMsg)
		g := rec.next(t)
		clientAddr := c.LocalAddr().(*net.TCPAddr).AddrPort()
		if g.src != clientAddr || g.conn.Remote() != clientAddr || !g.conn.Inbound() || g.conn.Proto() != proto {
			t.Fatalf("src %v conn %v/%v", g.src, g.conn.Remote(), g.conn.Proto())
		}
		req := "NOTIFY sip:c@d SIP/2.0\r\nContent-Length: 0\r\n\r\n"
		if err := l.Send(proto, clientAddr, []byte(req)); err != nil {
			t.Fatal(err)
		}
		if got := readExactly(t, c, len(req)); got != req {
			t.Fatalf("client read %q", got)
		}
		// The other transport is a different key: TCP to a TLS client's
		// address must not use the TLS connection.
		other := TCP
		if proto == TCP {
			other = TLS
		}
		if conn := l.conns.lookup(connKey{proto: other, addr: clientAddr}); conn != nil {
			t.Error("connection found under the other protocol")
		}
		if s := l.Stats(); s.ConnsDialed != 0 || s.ConnsAccepted != 1 || s.ConnsOpen != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

// Send dials when no connection exists, then reuses it.
func TestSendDialsThenReuses(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rec := newRecorder(nil)
	l := startLayer(t, Config{IdleTimeout: 5 * time.Second}, rec) // client-only layer
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	if err := l.Send(TCP, dst, []byte(optionsMsg)); err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if err := l.Send(TCP, dst, []byte(bodyMsg("second"))); err != nil {
		t.Fatal(err)
	}
	want := optionsMsg + bodyMsg("second")
	if got := readExactly(t, peer, len(want)); got != want {
		t.Fatalf("peer read %q", got)
	}
	// No second connection was opened.
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond))
	if c2, err := ln.Accept(); err == nil {
		c2.Close()
		t.Fatal("Send opened a second connection")
	}
	// Responses come back on the dialed connection and reach the handler.
	writeAll(t, peer, okMsg)
	g := rec.next(t)
	if g.data != okMsg || g.src != dst || g.conn == nil || g.conn.Inbound() {
		t.Errorf("response %+v", g)
	}
	if s := l.Stats(); s.ConnsDialed != 1 {
		t.Errorf("ConnsDialed = %d", s.ConnsDialed)
	}
	// Once the peer closes, the next Send dials afresh.
	peer.Close()
	waitFor(t, func() bool { return l.Stats().ConnsOpen == 0 })
	ln.(*net.TCPListener).SetDeadline(time.Time{})
	if err := l.Send(TCP, dst, []byte(optionsMsg)); err != nil {
		t.Fatal(err)
	}
	p2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p2.Close()
	// Nothing listening: a clear error, not a hang.
	closedLn, _ := net.Listen("tcp4", "127.0.0.1:0")
	dead := closedLn.Addr().(*net.TCPAddr).AddrPort()
	closedLn.Close()
	if err := l.Send(TCP, dead, []byte(optionsMsg)); err == nil {
		t.Error("Send to a closed port succeeded")
	}
}

// Two layers over TLS: A dials B (verifying B's certificate), B answers
// with Reply on the accepted connection, A's handler gets the answer, and
// a second Send reuses the connection.
func TestSendTLSBetweenLayers(t *testing.T) {
	cert := newTestCert(t)
	b := startLayer(t, streamConfig(TLS, cert), newRecorder(func(l *Layer, p *Packet) {
		_ = l.Reply(p, []byte(okMsg))
	}))
	recA := newRecorder(nil)
	a := startLayer(t, Config{TLS: TLSPolicy{CAs: cert.pool}}, recA)
	dst := addrOf(t, b, TLS)
	for range 2 {
		if err := a.Send(TLS, dst, []byte(optionsMsg)); err != nil {
			t.Fatal(err)
		}
		if g := recA.next(t); g.data != okMsg || g.proto != TLS || g.src != dst {
			t.Fatalf("A got %+v", g)
		}
	}
	if sa, sb := a.Stats(), b.Stats(); sa.ConnsDialed != 1 || sb.ConnsAccepted != 1 {
		t.Errorf("dialed %d accepted %d, want 1 and 1", sa.ConnsDialed, sb.ConnsAccepted)
	}

	// Without the root, verification fails.
	c := startLayer(t, Config{}, newRecorder(nil))
	if err := c.Send(TLS, dst, []byte(optionsMsg)); err == nil {
		t.Error("TLS Send to a self-signed server verified against system roots")
	}
	if c.Stats().ConnsOpen != 0 {
		t.Error("failed TLS connection left in the table")
	}
}

// Reply falls back to a new connection to Src when the original is gone.
func TestReplyFallsBackToNewConnection(t *testing.T) {
	rec := newRecorder(nil)
	l := startLayer(t, Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}, IdleTimeout: 5 * time.Second}, rec)
	// The client's port must be free to listen on after it closed: from
	// its own loopback address, no other test's connection (all from
	// 127.0.0.1) can have taken it meanwhile.
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 77)}}
	c, err := d.Dial("tcp", addrOf(t, l, TCP).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	writeAll(t, c, optionsMsg)
	g := rec.next(t)
	src := c.LocalAddr().String()
	// We close first, so TIME_WAIT stays on our side and the client's port
	// is free again once it has closed too.
	g.conn.Close()
	expectClosed(t, c, 3*time.Second)
	c.Close()
	waitFor(t, func() bool { return l.Stats().ConnsOpen == 0 })
	// The client now listens on the port it connected from.
	var ln net.Listener
	waitFor(t, func() bool {
		ln, err = net.Listen("tcp4", src)
		return err == nil
	})
	defer ln.Close()
	if err := l.Reply(&g.pkt, []byte(okMsg)); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if got := readExactly(t, peer, len(okMsg)); got != okMsg {
		t.Errorf("read %q", got)
	}
}

func TestMaxConns(t *testing.T) {
	rec := newRecorder(echo)
	l := startLayer(t, Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}, MaxConns: 1}, rec)
	srv := addrOf(t, l, TCP)
	c1 := dialStream(t, TCP, srv, nil)
	writeAll(t, c1, optionsMsg)
	rec.next(t)
	c2 := dialStream(t, TCP, srv, nil)
	expectClosed(t, c2, 3*time.Second)
	// The first connection still works.
	writeAll(t, c1, optionsMsg)
	if got := readExactly(t, c1, 2*len(optionsMsg)); got != optionsMsg+optionsMsg {
		t.Errorf("read %q", got)
	}
	if s := l.Stats(); s.ConnsRejected != 1 || s.ConnsOpen != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A panicking handler is contained: the stream is dropped, the layer lives.
func TestHandlerPanic(t *testing.T) {
	h := HandlerFunc(func(l *Layer, p *Packet) {
		if strings.HasPrefix(string(p.Data), "PANIC") {
			panic("boom")
		}
		_ = l.Reply(p, p.Data)
	})
	l := startLayer(t, Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}, {UDP, "127.0.0.1:0"}}, UDPReaders: 1}, h)
	c := dialStream(t, TCP, addrOf(t, l, TCP), nil)
	writeAll(t, c, "PANIC sip:a@b SIP/2.0\r\n\r\n")
	expectClosed(t, c, 3*time.Second)
	u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addrOf(t, l, UDP)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_, _ = u.Write([]byte("PANIC sip:a@b SIP/2.0\r\n\r\n"))
	_, _ = u.Write([]byte(optionsMsg))
	buf := make([]byte, 2000)
	_ = u.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != optionsMsg {
		t.Fatalf("UDP after panic: %q %v", buf[:n], err)
	}
	if s := l.Stats(); s.HandlerPanics != 2 {
		t.Errorf("HandlerPanics = %d", s.HandlerPanics)
	}
}

// A TLS listener must not be held by a client that never handshakes: the
// handshake has MessageTimeout.
func TestTLSHandshakeTimeout(t *testing.T) {
	cert := newTestCert(t)
	cfg := streamConfig(TLS, cert)
	cfg.MessageTimeout = 200 * time.Millisecond
	cfg.IdleTimeout = 10 * time.Second
	l := startLayer(t, cfg, newRecorder(nil))
	c := dialStream(t, TCP, addrOf(t, l, TLS), nil) // plain TCP: no ClientHello
	expectClosed(t, c, 3*time.Second)
	waitFor(t, func() bool { return l.Stats().ConnsOpen == 0 })
	if s := l.Stats(); s.TLSHandshakeErrorsIn != 1 || s.MessageTimeouts != 1 || s.ConnsTimedOut != 1 {
		t.Errorf("stats %+v", s)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
