package transport

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"sipedge/sip"
)

// wsProtos runs f as a subtest for WS and WSS.
func wsProtos(t *testing.T, f func(t *testing.T, proto Proto, cert testCert)) {
	cert := newTestCert(t)
	for _, proto := range []Proto{WS, WSS} {
		t.Run(proto.String(), func(t *testing.T) { f(t, proto, cert) })
	}
}

// wsURL is the URL of a WS or WSS listener.
func wsURL(proto Proto, addr netip.AddrPort) string {
	if proto == WSS {
		return "wss://" + addr.String() + "/"
	}
	return "ws://" + addr.String() + "/"
}

// dialWS opens a WebSocket to addr offering subprotocols, closed at the
// end of the test.
func dialWS(t *testing.T, proto Proto, addr netip.AddrPort, cert testCert, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.pool, ServerName: "127.0.0.1"}}}
	c, resp, err := websocket.Dial(ctx, wsURL(proto, addr), &websocket.DialOptions{HTTPClient: hc, Subprotocols: subprotocols})
	if err == nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func wsRead(t *testing.T, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, string(b)
}

func wsSend(t *testing.T, c *websocket.Conn, typ websocket.MessageType, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// TestWebSocketMessages: each WebSocket message, text or binary, is one
// SIP message to the handler, with the connection's protocol and
// addresses; replies and Sends to the client's address go back on its
// connection, one WebSocket message each; a CRLFCRLF ping is answered.
func TestWebSocketMessages(t *testing.T) {
	wsProtos(t, func(t *testing.T, proto Proto, cert testCert) {
		rec := newRecorder(echo)
		l := startLayer(t, streamConfig(proto, cert), rec)
		addr := addrOf(t, l, proto)
		c, resp, err := dialWS(t, proto, addr, cert, "sip")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if got := c.Subprotocol(); got != "sip" || resp.Header.Get("Sec-WebSocket-Protocol") != "sip" {
			t.Fatalf("subprotocol %q, want sip", got)
		}
		// No Content-Length: the WebSocket message frames it (RFC 7118).
		msg := "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/" + proto.String() + " x.invalid;branch=z9hG4bK1\r\n\r\nhello"
		wsSend(t, c, websocket.MessageText, msg)
		g := rec.next(t)
		if g.data != msg || g.proto != proto || g.conn == nil || g.conn.Proto() != proto || g.local != addr {
			t.Fatalf("got %q %s conn %v local %s", g.data, g.proto, g.conn, g.local)
		}
		if typ, echoed := wsRead(t, c); typ != websocket.MessageText || echoed != msg {
			t.Fatalf("echo %v %q", typ, echoed)
		}
		wsSend(t, c, websocket.MessageBinary, optionsMsg)
		if g := rec.next(t); g.data != optionsMsg {
			t.Fatalf("binary: got %q", g.data)
		}
		wsRead(t, c)
		if !l.HasConn(proto, g.src) {
			t.Fatalf("HasConn(%s, %s) false", proto, g.src)
		}
		// A request to the client reuses its connection.
		if err := l.Send(proto, g.src, []byte(okMsg)); err != nil {
			t.Fatal(err)
		}
		if _, s := wsRead(t, c); s != okMsg {
			t.Fatalf("Send: got %q", s)
		}
		// A body that is not UTF-8 goes in a binary message.
		bin := bodyMsg("\xff\xfe")
		if err := l.Send(proto, g.src, []byte(bin)); err != nil {
			t.Fatal(err)
		}
		if typ, s := wsRead(t, c); typ != websocket.MessageBinary || s != bin {
			t.Fatalf("binary Send: %v %q", typ, s)
		}
		wsSend(t, c, websocket.MessageText, "\r\n\r\n")
		if _, s := wsRead(t, c); s != "\r\n" {
			t.Fatalf("ping answered %q", s)
		}
		wsSend(t, c, websocket.MessageText, "\r\n")
		rec.none(t, 50*time.Millisecond)
		st := l.Stats()
		if st.PingsAnswered != 1 || st.DatagramsDropped != 1 || st.ConnsAccepted != 1 {
			t.Fatalf("stats %+v", st)
		}
		cis, _ := l.Connections(10)
		if len(cis) != 1 || cis[0].Proto != proto || !cis[0].Inbound || !cis[0].Published {
			t.Fatalf("connections %+v", cis)
		}
	})
}

// TestWebSocketNoDial: nothing is dialed over WS: without the client's
// connection a Send fails at once.
func TestWebSocketNoDial(t *testing.T) {
	cert := newTestCert(t)
	l := startLayer(t, streamConfig(WS, cert), newRecorder(nil))
	err := l.Send(WS, netip.MustParseAddrPort("127.0.0.1:9"), []byte(optionsMsg))
	if err == nil || !strings.Contains(err.Error(), "no open WebSocket connection") {
		t.Fatalf("Send: %v", err)
	}
	if l.Stats().ConnsDialed != 0 {
		t.Fatal("dialed")
	}
}

// TestWebSocketSubprotocolRequired: RFC 7118 §4.1: a handshake that does
// not offer "sip" is refused before the upgrade.
func TestWebSocketSubprotocolRequired(t *testing.T) {
	wsProtos(t, func(t *testing.T, proto Proto, cert testCert) {
		l := startLayer(t, streamConfig(proto, cert), newRecorder(nil))
		addr := addrOf(t, l, proto)
		for _, sub := range [][]string{nil, {"chat"}, {"SIP"}} {
			_, resp, err := dialWS(t, proto, addr, cert, sub...)
			if err == nil {
				t.Fatalf("%v: handshake accepted", sub)
			}
			if resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%v: response %v, err %v", sub, resp, err)
			}
		}
		// Offered among others, it is chosen.
		c, _, err := dialWS(t, proto, addr, cert, "chat", "sip")
		if err != nil || c.Subprotocol() != "sip" {
			t.Fatalf("dial: %v", err)
		}
		if n := l.Stats().WSHandshakesRefused; n != 3 {
			t.Fatalf("refused %d, want 3", n)
		}
	})
}

// TestWebSocketOrigins: with WSOrigins set, a page from another origin is
// refused; without, any is allowed.
func TestWebSocketOrigins(t *testing.T) {
	cert := newTestCert(t)
	cfg := streamConfig(WS, cert)
	cfg.WSOrigins = []string{"phone.example.com"}
	l := startLayer(t, cfg, newRecorder(nil))
	addr := addrOf(t, l, WS)
	dial := func(origin string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		h := http.Header{}
		h.Set("Origin", origin)
		c, _, err := websocket.Dial(ctx, wsURL(WS, addr), &websocket.DialOptions{Subprotocols: []string{"sip"}, HTTPHeader: h})
		if err == nil {
			c.CloseNow()
		}
		return err
	}
	if err := dial("https://phone.example.com"); err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	if err := dial("https://evil.example.net"); err == nil {
		t.Fatal("other origin accepted")
	}
}

// TestWebSocketTooLarge: a message over MaxMessageSize reaches the handler
// as a frame error (its head, to answer 513) and the connection closes
// with 1009.
func TestWebSocketTooLarge(t *testing.T) {
	cert := newTestCert(t)
	cfg := streamConfig(WS, cert)
	cfg.Limits = &sip.Limits{MaxMessageSize: 1000}
	rec := newRecorder(func(l *Layer, p *Packet) {
		if p.FrameErr != nil {
			_ = l.Reply(p, []byte("SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n"))
		}
	})
	l := startLayer(t, cfg, rec)
	c, _, err := dialWS(t, WS, addrOf(t, l, WS), cert, "sip")
	if err != nil {
		t.Fatal(err)
	}
	big := bodyMsg(strings.Repeat("x", 3000))
	wsSend(t, c, websocket.MessageText, big)
	g := rec.next(t)
	if g.frameErr == nil || !strings.HasSuffix(g.data, "\r\n\r\n") || len(g.data) > 200 {
		t.Fatalf("got %q, err %v", g.data, g.frameErr)
	}
	if _, s := wsRead(t, c); !strings.HasPrefix(s, "SIP/2.0 513") {
		t.Fatalf("answer %q", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("close: %v", err)
	}
	if l.Stats().FrameErrors != 1 {
		t.Fatal("not counted")
	}
}

// TestWebSocketTimeouts: a connection that sends no message within the
// message timeout is closed; an idle one is pinged and kept while its
// client answers.
func TestWebSocketTimeouts(t *testing.T) {
	cert := newTestCert(t)
	cfg := streamConfig(WS, cert)
	cfg.IdleTimeout = 200 * time.Millisecond
	cfg.MessageTimeout = 150 * time.Millisecond
	rec := newRecorder(nil)
	l := startLayer(t, cfg, rec)
	addr := addrOf(t, l, WS)

	silent, _, err := dialWS(t, WS, addr, cert, "sip")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, _, err := silent.Read(ctx); err == nil {
		t.Fatal("silent connection not closed")
	}

	live, _, err := dialWS(t, WS, addr, cert, "sip")
	if err != nil {
		t.Fatal(err)
	}
	wsSend(t, live, websocket.MessageText, optionsMsg)
	g := rec.next(t)
	// The client's reader answers pings; no message comes for three
	// idle timeouts, and the connection stays.
	readErr := make(chan error, 1)
	go func() {
		_, _, err := live.Read(context.Background())
		readErr <- err
	}()
	time.Sleep(700 * time.Millisecond)
	if !l.HasConn(WS, g.src) {
		t.Fatalf("live connection closed: %v", <-readErr)
	}
	live.CloseNow()
	<-readErr
	st := l.Stats()
	if st.ConnsTimedOut != 1 || st.MessageTimeouts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestWebSocketClose: closing the layer closes its WebSocket connections
// (the goroutine check of TestMain catches a read loop left behind).
func TestWebSocketClose(t *testing.T) {
	cert := newTestCert(t)
	l, err := New(streamConfig(WSS, cert), newRecorder(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	c, _, err := dialWS(t, WSS, addrOf(t, l, WSS), cert, "sip")
	if err != nil {
		t.Fatal(err)
	}
	wsSend(t, c, websocket.MessageText, optionsMsg)
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("still open")
	}
}

// TestWSClassify is the table of what a WebSocket message holds.
func TestWSClassify(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want wsKind
	}{
		{"\r\n\r\n", wsPing},
		{"\r\n", wsBlank},
		{"", wsBlank},
		{"abc", wsBlank},
		{" \r\n\t\r\n", wsBlank},
		{optionsMsg, wsMessage},
		{"SIP/", wsMessage},
	} {
		if got := wsClassify([]byte(tc.in)); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.in, got, tc.want)
		}
	}
}

// FuzzWSMessage: whatever a WebSocket message holds, reading and sorting
// it neither panics nor keeps more than the limit.
func FuzzWSMessage(f *testing.F) {
	f.Add([]byte(optionsMsg), 64)
	f.Add([]byte("\r\n\r\n"), 10)
	f.Add([]byte(bodyMsg("\xff")), 1)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max <= 0 || max > 1<<16 {
			max = 1 + max&0xffff
		}
		buf, n, err := readWSMessage(strings.NewReader(string(b)), make([]byte, min(4, max+1)), max)
		if err == nil && (n != len(b) || string(buf[:n]) != string(b)) {
			t.Fatalf("read %q of %q", buf[:n], b)
		}
		if err != nil && (len(b) <= max || n != max+1) {
			t.Fatalf("len %d max %d: n %d err %v", len(b), max, n, err)
		}
		if len(buf) > max+1 {
			t.Fatalf("buffer %d over max %d", len(buf), max)
		}
		_ = wsClassify(buf[:n])
	})
}
