package transport

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// dialFrom connects to addr from the local address from (any port), so
// one test can be several sources on the loopback network.
func dialFrom(t *testing.T, from string, addr netip.AddrPort) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestMaxConnsPerSource: connections from one address beyond the limit are
// closed at once and counted; other addresses are not affected; the count
// goes down when a connection closes, and the table forgets the address
// when its last one does.
func TestMaxConnsPerSource(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}, MaxConnsPerSource: 2, Logger: testLogger()}, HandlerFunc(echo))
	srv := addrOf(t, l, TCP)
	a := netip.MustParseAddr("127.0.0.1")
	roundTrip := func(c net.Conn) {
		t.Helper()
		writeAll(t, c, optionsMsg)
		if got := readExactly(t, c, len(optionsMsg)); got != optionsMsg {
			t.Fatalf("read %q", got)
		}
	}
	c1, c2 := dialFrom(t, "127.0.0.1", srv), dialFrom(t, "127.0.0.1", srv)
	roundTrip(c1)
	roundTrip(c2)
	c3 := dialFrom(t, "127.0.0.1", srv)
	expectClosed(t, c3, 3*time.Second)
	if s := l.Stats(); s.ConnsRejectedPerSource != 1 || s.ConnsRejected != 0 || s.ConnsOpen != 2 {
		t.Errorf("after the third: %+v", s)
	}
	// Another address is counted on its own.
	roundTrip(dialFrom(t, "127.0.0.2", srv))
	if n := l.conns.fromSource(netip.MustParseAddr("127.0.0.2")); n != 1 {
		t.Errorf("127.0.0.2 has %d connections, want 1", n)
	}
	// A closed connection frees its place.
	c1.Close()
	waitFor(t, func() bool { return l.conns.fromSource(a) == 1 })
	roundTrip(dialFrom(t, "127.0.0.1", srv))
	roundTrip(c2)
	if n := l.conns.fromSource(a); n != 2 {
		t.Errorf("127.0.0.1 has %d connections, want 2", n)
	}
	c2.Close()
	l.conns.mu.Lock()
	before := len(l.conns.perSource)
	l.conns.mu.Unlock()
	if before != 2 {
		t.Errorf("perSource holds %d addresses, want 2", before)
	}
}

// TestPerSourceCountsOnlyAccepted: connections we dial are neither refused
// nor counted per source; the table forgets every address once its
// connections are closed (bounded memory).
func TestPerSourceCountsOnlyAccepted(t *testing.T) {
	rec := newRecorder(nil)
	l := startLayer(t, Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}, MaxConnsPerSource: 1}, rec)
	var peers []net.Listener
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		peers = append(peers, ln)
		if err := l.Send(TCP, ln.Addr().(*net.TCPAddr).AddrPort(), []byte(optionsMsg)); err != nil {
			t.Fatalf("dial %d: %v", len(peers), err)
		}
	}
	if s := l.Stats(); s.ConnsDialed != 3 || s.ConnsRejectedPerSource != 0 {
		t.Errorf("stats %+v", s)
	}
	if n := l.conns.fromSource(netip.MustParseAddr("127.0.0.1")); n != 0 {
		t.Errorf("dialed connections counted per source: %d", n)
	}
	for range 50 {
		c := dialFrom(t, "127.0.0.3", addrOf(t, l, TCP))
		writeAll(t, c, optionsMsg)
		rec.next(t)
		c.Close()
		waitFor(t, func() bool { return l.conns.fromSource(netip.MustParseAddr("127.0.0.3")) == 0 })
	}
	l.conns.mu.Lock()
	n := len(l.conns.perSource)
	l.conns.mu.Unlock()
	if n != 0 {
		t.Errorf("perSource holds %d addresses with no connection", n)
	}
}

// TestMessageTimeout: the message deadline, scenario by scenario. Each has
// its own layer and they run concurrently, since each waits for a timeout.
func TestMessageTimeout(t *testing.T) {
	const mt = 400 * time.Millisecond
	cert := newTestCert(t)
	type scenario struct {
		name string
		// run drives the client side; it returns when the outcome is known.
		run func(t *testing.T, c net.Conn, rec *recorder)
		// closed: the connection must be closed by the message timeout
		// (counted once); otherwise it must stay open and count nothing.
		closed bool
	}
	trickle := func(t *testing.T, c net.Conn, s string, every time.Duration) {
		for i := range len(s) {
			if _, err := c.Write([]byte{s[i]}); err != nil {
				return // closed by the server: what is expected
			}
			time.Sleep(every)
		}
	}
	scenarios := []scenario{
		{name: "silent new connection", closed: true, run: func(t *testing.T, c net.Conn, rec *recorder) {
			start := time.Now()
			expectClosed(t, c, 5*time.Second)
			if d := time.Since(start); d < mt/2 {
				t.Errorf("closed after %v, before the %v message timeout", d, mt)
			}
		}},
		{name: "first message trickled", closed: true, run: func(t *testing.T, c net.Conn, rec *recorder) {
			start := time.Now()
			go trickle(t, c, optionsMsg, 50*time.Millisecond) // 2.4 s in all
			expectClosed(t, c, 5*time.Second)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("trickling client kept for %v", d)
			}
			rec.none(t, 10*time.Millisecond)
		}},
		{name: "stalled after a whole message", closed: true, run: func(t *testing.T, c net.Conn, rec *recorder) {
			writeAll(t, c, optionsMsg)
			rec.next(t)
			time.Sleep(2 * mt) // idle between messages: allowed
			writeAll(t, c, "OPTIONS sip:a@b SIP/2.0\r\nContent-")
			start := time.Now()
			expectClosed(t, c, 5*time.Second)
			if d := time.Since(start); d < mt/2 {
				t.Errorf("closed after %v, before the %v message timeout", d, mt)
			}
		}},
		{name: "messages in pieces within the timeout", run: func(t *testing.T, c net.Conn, rec *recorder) {
			for range 3 {
				writeAll(t, c, optionsMsg[:10])
				time.Sleep(mt / 4)
				writeAll(t, c, optionsMsg[10:])
				rec.next(t)
				time.Sleep(mt) // idle between messages: allowed
			}
		}},
		{name: "pings then silence, after a message", run: func(t *testing.T, c net.Conn, rec *recorder) {
			writeAll(t, c, optionsMsg)
			rec.next(t)
			for range 3 {
				writeAll(t, c, "\r\n\r\n")
				if got := readExactly(t, c, 2); got != "\r\n" {
					t.Fatalf("pong %q", got)
				}
				time.Sleep(mt)
			}
		}},
	}
	for _, proto := range []Proto{TCP, TLS} {
		t.Run(proto.String(), func(t *testing.T) {
			var wg sync.WaitGroup
			defer wg.Wait()
			for _, sc := range scenarios {
				wg.Go(func() {
					t.Run(sc.name, func(t *testing.T) {
						rec := newRecorder(nil)
						cfg := streamConfig(proto, cert)
						cfg.IdleTimeout, cfg.MessageTimeout = 10*time.Second, mt
						l := startLayer(t, cfg, rec)
						c := dialStream(t, proto, addrOf(t, l, proto), cert.pool)
						sc.run(t, c, rec)
						if sc.closed {
							waitFor(t, func() bool { return l.Stats().ConnsOpen == 0 })
						}
						want := uint64(0)
						if sc.closed {
							want = 1
						}
						if s := l.Stats(); s.MessageTimeouts != want || s.ConnsTimedOut != want {
							t.Errorf("MessageTimeouts %d, ConnsTimedOut %d; want %d", s.MessageTimeouts, s.ConnsTimedOut, want)
						}
					})
				})
			}
		})
	}
}

// TestMessageTimeoutDefaults: MessageTimeout defaults, and never exceeds
// IdleTimeout (a connection idle between messages is closed by then
// anyway).
func TestMessageTimeoutDefaults(t *testing.T) {
	h := HandlerFunc(func(*Layer, *Packet) {})
	for _, tc := range []struct {
		idle, msg, want time.Duration
	}{
		{0, 0, DefaultMessageTimeout},
		{time.Minute, 2 * time.Second, 2 * time.Second},
		{time.Second, 5 * time.Second, time.Second},
		{0, -1, DefaultMessageTimeout},
	} {
		l, err := New(Config{IdleTimeout: tc.idle, MessageTimeout: tc.msg}, h)
		if err != nil {
			t.Fatal(err)
		}
		if l.cfg.MessageTimeout != tc.want {
			t.Errorf("idle %v, message %v: MessageTimeout %v, want %v", tc.idle, tc.msg, l.cfg.MessageTimeout, tc.want)
		}
		if l.cfg.MaxConnsPerSource != DefaultMaxConnsPerSource {
			t.Errorf("MaxConnsPerSource %d", l.cfg.MaxConnsPerSource)
		}
		l.Close()
	}
}

// TestSetConnLimits: new caps apply to the next accept; open connections
// are kept even when they are now over the cap.
func TestSetConnLimits(t *testing.T) {
	rec := newRecorder(nil)
	l := startLayer(t, Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}, MaxConnsPerSource: 1}, rec)
	srv := addrOf(t, l, TCP)
	c1 := dialFrom(t, "127.0.0.1", srv)
	writeAll(t, c1, optionsMsg)
	rec.next(t)
	expectClosed(t, dialFrom(t, "127.0.0.1", srv), 3*time.Second)
	l.SetConnLimits(-1, 3)
	var open []net.Conn
	for range 2 {
		c := dialFrom(t, "127.0.0.1", srv)
		writeAll(t, c, optionsMsg)
		rec.next(t)
		open = append(open, c)
	}
	expectClosed(t, dialFrom(t, "127.0.0.1", srv), 3*time.Second)
	l.SetConnLimits(2, -1) // 3 open: over the total cap, none closed
	expectClosed(t, dialFrom(t, "127.0.0.2", srv), 3*time.Second)
	for _, c := range append(open, c1) {
		writeAll(t, c, optionsMsg)
		rec.next(t)
	}
	if s := l.Stats(); s.ConnsRejectedPerSource != 2 || s.ConnsRejected != 1 || s.ConnsOpen != 3 {
		t.Errorf("stats %+v", s)
	}
}

// A source Config.Refuse names (a banned one) is closed at accept; others
// are served.
func TestRefuseAtAccept(t *testing.T) {
	banned := netip.MustParseAddr("127.0.0.2")
	l := startLayer(t, Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}, Logger: testLogger(),
		Refuse: func(a netip.Addr) bool { return a == banned }}, HandlerFunc(echo))
	srv := addrOf(t, l, TCP)
	expectClosed(t, dialFrom(t, "127.0.0.2", srv), 3*time.Second)
	c := dialFrom(t, "127.0.0.1", srv)
	writeAll(t, c, optionsMsg)
	if got := readExactly(t, c, len(optionsMsg)); got != optionsMsg {
		t.Fatalf("read %q", got)
	}
	if s := l.Stats(); s.ConnsRefusedBanned != 1 || s.ConnsAccepted != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Connections lists the open connections with their ends.
func TestConnections(t *testing.T) {
	l := startLayer(t, Config{Listen: []ListenSpec{{TCP, "127.0.0.1:0"}}, Logger: testLogger()}, HandlerFunc(echo))
	srv := addrOf(t, l, TCP)
	c := dialFrom(t, "127.0.0.3", srv)
	writeAll(t, c, optionsMsg)
	readExactly(t, c, len(optionsMsg))
	// The writer stamps LastWrite once its write returned, which may be
	// after the client has read the reply.
	list, total := l.Connections(10)
	for deadline := time.Now().Add(5 * time.Second); len(list) == 1 && list[0].LastWrite.IsZero() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		list, total = l.Connections(10)
	}
	if total != 1 || len(list) != 1 {
		t.Fatalf("%d of %d: %+v", len(list), total, list)
	}
	ci := list[0]
	if ci.Proto != TCP || !ci.Inbound || ci.Remote.Addr().String() != "127.0.0.3" || ci.Local != srv || !ci.Published || ci.LastWrite.IsZero() {
		t.Fatalf("%+v", ci)
	}
	if list, total := l.Connections(0); len(list) != 0 || total != 1 {
		t.Fatalf("limit 0: %d of %d", len(list), total)
	}
}
