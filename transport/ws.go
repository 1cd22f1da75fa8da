package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"sipedge/sip"
)

// SIP over WebSocket (RFC 7118). A WS or WSS listener is an HTTP server of
// its own (net/http, with github.com/coder/websocket for the upgrade) that
// accepts only the WebSocket handshake for the "sip" subprotocol. Each
// upgraded connection is a Conn like an accepted TCP or TLS one: it is in
// the connection table under (WS or WSS, the client's address), so
// requests to a client registered over it go back on it, and it has the
// same limits, message timeout, idle timeout and tap. Framing is the
// WebSocket's: one SIP message per WebSocket message, text or binary
// (RFC 7118), parsed like a datagram (a Content-Length, if present,
// cuts the body; RFC 3261 §18.3).

// wsSubprotocol is the WebSocket subprotocol of SIP (RFC 7118 §4.1, IANA
// "WebSocket Subprotocol Name Registry").
const wsSubprotocol = "sip"

// wsMaxHeaderBytes bounds the HTTP request of a WebSocket handshake: a
// few hundred bytes from a browser; cookies for other uses of the host
// name may add some.
const wsMaxHeaderBytes = 16 << 10

// wsListener serves SIP over WebSocket on one address.
type wsListener struct {
	l     *Layer
	proto Proto // WS or WSS
	ln    net.Listener
	addr  netip.AddrPort
	srv   *http.Server
}

func (l *Layer) listenWS(s spec) (*wsListener, error) {
	network, v6only := socketNetwork("tcp", s, l.v6Only(s))
	lc := net.ListenConfig{Control: listenControl(v6only, false)}
	ln, err := lc.Listen(context.Background(), network, s.addr.String())
	if err != nil {
		return nil, err
	}
	w := &wsListener{l: l, proto: s.proto, addr: unmap(ln.Addr().(*net.TCPAddr).AddrPort())}
	ln = wsRefuseListener{Listener: ln, l: l}
	if s.proto == WSS {
		// The TLS listeners' configuration, whatever it is at each
		// handshake: the same certificate (ReloadTLS) and policy
		// (SetTLSPolicy). It offers no ALPN protocol, so the client stays
		// on HTTP/1.1, where the WebSocket handshake lives (RFC 6455 §4).
		ln = tls.NewListener(ln, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return l.serverTLS.Load(), nil
		}})
	}
	w.ln = ln
	// The same hardening as the operations HTTP server (package admin):
	// bounded header reads and size, errors to the log at Debug. The
	// handshake must arrive within MessageTimeout, like a stream
	// connection's first message; an upgraded connection has no HTTP
	// deadlines left (the WebSocket read loop keeps its own).
	w.srv = &http.Server{
		Handler:           w,
		ReadHeaderTimeout: l.cfg.MessageTimeout,
		IdleTimeout:       l.cfg.MessageTimeout,
		MaxHeaderBytes:    wsMaxHeaderBytes,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // no HTTP/2
		ErrorLog:          log.New(slogWriter{l.log}, "", 0),
	}
	return w, nil
}

// slogWriter sends net/http's error log (TLS handshake errors, bad
// requests: mostly scanners) to the layer's logger at Debug.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("transport: websocket http: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

// wsRefuseListener closes connections from sources Config.Refuse names
// before a byte of HTTP or TLS is spent on them, as the TCP listeners do.
type wsRefuseListener struct {
	net.Listener
	l *Layer
}

func (r wsRefuseListener) Accept() (net.Conn, error) {
	for {
		c, err := r.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if refuse := r.l.cfg.Refuse; refuse != nil {
			if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok && refuse(ra.AddrPort().Addr().Unmap()) {
				r.l.stats.refusedBanned.Add(1)
				c.Close()
				continue
			}
		}
		return c, nil
	}
}

// serve runs the HTTP server until the layer closes.
func (w *wsListener) serve() {
	defer w.l.wg.Done()
	if err := w.srv.Serve(w.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !w.l.closing.Load() {
		w.l.log.Warn("transport: websocket listener stopped", "proto", w.proto, "local", w.addr, "err", err)
	}
}

// offersSIP reports whether the handshake's Sec-WebSocket-Protocol
// header fields list "sip" (compared case-sensitively, RFC 6455 §4.1 and
// §11.3.4).
func offersSIP(vals []string) bool {
	for _, v := range vals {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == wsSubprotocol {
				return true
			}
		}
	}
	return false
}

// ServeHTTP upgrades a WebSocket handshake for the sip subprotocol and runs
// the connection's read loop in the handler's goroutine.
func (w *wsListener) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	l := w.l
	// RFC 7118 §4.1: the client MUST offer "sip"; a server that does not
	// answer with it is refused by the client. A handshake without it is
	// refused here, before the upgrade, with a reason an HTTP client can
	// read: whatever the client speaks, it is not SIP.
	if !offersSIP(r.Header.Values("Sec-WebSocket-Protocol")) {
		l.stats.wsRefused.Add(1)
		l.log.Debug("transport: websocket handshake without the sip subprotocol refused", "proto", w.proto, "remote", r.RemoteAddr)
		http.Error(rw, "the WebSocket subprotocol \"sip\" is required (RFC 7118)", http.StatusBadRequest)
		return
	}
	var remote, local netip.AddrPort
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		remote = unmap(ap)
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		local = unmap(la.AddrPort())
	}
	c := &Conn{l: l, id: l.nextID.Add(1), proto: w.proto, inbound: true, remote: remote, local: local, wsst: new(wsState)}
	opts := &websocket.AcceptOptions{
		Subprotocols: []string{wsSubprotocol},
		// Compression is off: SIP messages are small, and each
		// compressed connection keeps a window of memory.
		CompressionMode: websocket.CompressionDisabled,
		// Pongs (to the pings of keepAlive) are traffic like messages.
		OnPongReceived: func(context.Context, []byte) { c.wsst.lastRead.Store(time.Now().UnixNano()) },
	}
	if origins := l.cfg.WSOrigins; len(origins) > 0 {
		opts.OriginPatterns = origins
	} else {
		// SIP authenticates in SIP (digest), never with the browser's
		// cookies, so a page from any origin may connect unless the
		// configuration lists the allowed ones.
		opts.InsecureSkipVerify = true
	}
	ws, err := websocket.Accept(rw, r, opts)
	if err != nil {
		l.stats.wsRefused.Add(1)
		l.log.Debug("transport: websocket handshake failed", "proto", w.proto, "remote", remote, "err", err)
		return
	}
	c.ws = ws
	c.wsst.lastRead.Store(time.Now().UnixNano())
	if err := l.conns.add(c, true); err != nil {
		switch err {
		case ErrTooManyConns:
			l.stats.rejected.Add(1)
		case ErrTooManyFromSource:
			l.stats.rejectedSource.Add(1)
		}
		l.log.Debug("transport: connection refused", "proto", w.proto, "remote", remote, "err", err)
		if err == ErrClosed {
			_ = ws.CloseNow()
			return
		}
		// 1013 Try Again Later (IANA WebSocket Close Code registry).
		_ = ws.Close(websocket.StatusTryAgainLater, "too many connections")
		return
	}
	l.stats.accepted.Add(1)
	l.log.Debug("transport: connection accepted", "proto", w.proto, "remote", remote, "local", local, "conn", c.id)
	c.serveWS()
}

// wsState is what a WebSocket connection's timer reads of its read loop.
type wsState struct {
	lastRead  atomic.Int64 // a whole message (or a pong) arrived, unix ns
	msgStart  atomic.Int64 // a message's first frame arrived and its end has not; 0: none
	pinging   atomic.Bool  // a keep-alive ping is out
	wdMu      sync.Mutex   // serializes the timer's decisions
	wdReason  string       // why the timer closed the connection (under wdMu)
	wdTimer   *time.Timer
	wdCancel  context.CancelFunc
	wdFirst   time.Time // the first message's deadline
	wdStarted atomic.Bool
}

// serveWS runs in the handler's goroutine: the read loop, then close.
func (c *Conn) serveWS() {
	defer c.l.wg.Done()
	reason := c.wsReadLoop()
	c.close(reason)
}

// wsReadLoop reads one WebSocket message at a time and hands each to the
// handler as one SIP message. It returns why it stopped.
//
// Time is bounded as on a TCP connection (see readLoop), by one timer
// (watch): a new connection must send a whole message within
// MessageTimeout; a message whose first frame arrived must be complete
// within MessageTimeout; between messages, after IdleTimeout without
// traffic either way, sipedge sends a WebSocket ping (RFC 6455 §5.5.2)
// and closes the connection if no pong comes within MessageTimeout.
// Browsers send no keep-alives of their own and register for ten minutes
// or more: the ping keeps a quiet but live client's connection, which is
// the only way to reach it, and finds a dead one.
//
// Memory is bounded by MaxMessageSize: a larger message is answered 513
// (the handler gets its header section, with FrameErr) and the
// connection is closed with 1009 Message Too Big (RFC 6455 §7.4.1).
func (c *Conn) wsReadLoop() string {
	l := c.l
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	st := c.wsst
	st.wdCancel = cancel
	st.wdFirst = time.Now().Add(l.cfg.MessageTimeout)
	st.wdMu.Lock()
	st.wdTimer = time.AfterFunc(l.cfg.MessageTimeout, c.watch)
	st.wdMu.Unlock()
	defer func() {
		st.wdMu.Lock()
		st.wdTimer.Stop()
		st.wdMu.Unlock()
	}()
	// The library's own limit is off: readWSMessage enforces
	// MaxMessageSize, so an oversized message can still be answered.
	c.ws.SetReadLimit(-1)
	buf := make([]byte, min(initialReadBuf, l.maxMsg+1))
	p := new(Packet)
	var ev *TapEvent
	for {
		_, r, err := c.ws.Reader(ctx)
		if err != nil {
			return c.wsStopReason(err)
		}
		st.msgStart.Store(time.Now().UnixNano())
		c.rearm()
		var n int
		buf, n, err = readWSMessage(r, buf, l.maxMsg)
		if err != nil && !errors.Is(err, errWSTooLarge) {
			return c.wsStopReason(err)
		}
		st.msgStart.Store(0)
		st.lastRead.Store(time.Now().UnixNano())
		st.wdStarted.Store(true)
		data := buf[:n:n]
		if err != nil {
			c.wsTooLarge(data)
			return "message too large"
		}
		switch wsClassify(data) {
		case wsMessage:
			*p = Packet{Data: data, Proto: c.proto, Src: c.remote, Local: c.local, Conn: c}
			l.stats.received.Add(1)
			if subs := l.taps.subs.Load(); subs != nil {
				if ev == nil {
					ev = new(TapEvent)
				}
				l.tapIn(subs, ev, p)
			}
			if !l.dispatchRead(p) {
				return "handler panic"
			}
		case wsPing:
			// RFC 5626 §3.5.1's keep-alive in a WebSocket message, as
			// some clients (SIP.js) send it: answered with CRLF.
			l.stats.pings.Add(1)
			if err := c.write(crlf, false); err != nil {
				return "pong write failed"
			}
		default:
			// CRLF padding or a runt: nothing to parse, as for a datagram.
			l.stats.dgramDropped.Add(1)
		}
		if len(buf) > initialReadBuf {
			buf = make([]byte, initialReadBuf) // give a big message's memory back
		}
		if c.closed.Load() {
			return "closed by handler"
		}
	}
}

// errWSTooLarge: a WebSocket message over MaxMessageSize.
var errWSTooLarge = errors.New("transport: WebSocket message too large")

// readWSMessage reads one WebSocket message from r into buf, growing it
// up to max+1 bytes. Past max it stops with errWSTooLarge and returns the
// bytes read so far (max+1), the rest of the message unread.
func readWSMessage(r io.Reader, buf []byte, max int) ([]byte, int, error) {
	n := 0
	for {
		if n == len(buf) {
			if len(buf) > max {
				return buf, n, errWSTooLarge
			}
			nb := make([]byte, min(2*len(buf), max+1))
			copy(nb, buf[:n])
			buf = nb
		}
		k, err := r.Read(buf[n:])
		n += k
		if errors.Is(err, io.EOF) {
			if n > max {
				return buf, n, errWSTooLarge
			}
			return buf, n, nil
		}
		if err != nil {
			return buf, n, err
		}
	}
}

// wsKind is what a WebSocket message holds.
type wsKind uint8

const (
	wsMessage wsKind = iota // a SIP message (as far as framing goes)
	wsPing                  // CRLFCRLF: a keep-alive ping
	wsBlank                 // white space only, or fewer than 4 bytes
)

// wsClassify sorts a WebSocket message as the UDP listeners sort a
// datagram: white space only (CRLF keep-alives) or a runt under 4 bytes is
// not a message; a CRLFCRLF ping is answered.
func wsClassify(b []byte) wsKind {
	if string(b) == "\r\n\r\n" {
		return wsPing
	}
	if len(b) < 4 {
		return wsBlank
	}
	for _, ch := range b {
		if ch != '\r' && ch != '\n' && ch != ' ' && ch != '\t' {
			return wsMessage
		}
	}
	return wsBlank
}

// wsTooLarge hands the head of an oversized message to the handler (to
// answer 513, RFC 3261 §21.5.14) and closes the connection with 1009.
func (c *Conn) wsTooLarge(b []byte) {
	l := c.l
	l.stats.frameErrors.Add(1)
	ferr := &sip.ParseError{Code: 513, Reason: "Message Too Large"}
	l.log.Warn("transport: WebSocket message too large, closing connection",
		"proto", c.proto, "remote", c.remote, "conn", c.id, "err", ferr)
	if i := strings.Index(string(b), "\r\n\r\n"); i >= 0 {
		b = b[:i+4]
	}
	p := &Packet{Data: b[:len(b):len(b)], Proto: c.proto, Src: c.remote, Local: c.local, Conn: c, FrameErr: ferr}
	if subs := l.taps.subs.Load(); subs != nil {
		l.tapIn(subs, new(TapEvent), p)
	}
	l.dispatchRead(p)
	c.l.conns.unpublish(c)
	// The close handshake (bounded by the library) lets the answer reach
	// the peer before the TCP connection goes.
	_ = c.ws.Close(websocket.StatusMessageTooBig, "SIP message too large")
}

// wsStopReason turns a read error into close's reason.
func (c *Conn) wsStopReason(err error) string {
	c.wsst.wdMu.Lock()
	reason := c.wsst.wdReason
	c.wsst.wdMu.Unlock()
	switch {
	case reason != "":
		return reason
	case c.l.closing.Load():
		return "layer closed"
	case websocket.CloseStatus(err) != -1:
		return fmt.Sprintf("peer closed (%d)", websocket.CloseStatus(err))
	case errors.Is(err, io.EOF):
		return "peer closed"
	}
	return "read error: " + err.Error()
}

// rearm makes the timer fire by the current message's deadline.
func (c *Conn) rearm() {
	st := c.wsst
	st.wdMu.Lock()
	defer st.wdMu.Unlock()
	if st.wdReason == "" && st.wdStarted.Load() {
		st.wdTimer.Reset(c.l.cfg.MessageTimeout)
	}
}

// watch is the connection's timer: it closes a connection whose first
// message, or current message, is late, and pings one idle for
// IdleTimeout (see wsReadLoop).
func (c *Conn) watch() {
	st := c.wsst
	l := c.l
	st.wdMu.Lock()
	defer st.wdMu.Unlock()
	if st.wdReason != "" || c.closed.Load() {
		return
	}
	now := time.Now()
	var deadline time.Time
	var late string
	switch {
	case !st.wdStarted.Load():
		deadline, late = st.wdFirst, "no whole message within the message timeout"
	case st.msgStart.Load() != 0:
		deadline, late = time.Unix(0, st.msgStart.Load()).Add(l.cfg.MessageTimeout), "incomplete message timed out"
	default:
		last := max(st.lastRead.Load(), c.lastWrite.Load())
		deadline = time.Unix(0, last).Add(l.cfg.IdleTimeout)
		if now.Before(deadline) {
			break
		}
		if st.pinging.CompareAndSwap(false, true) {
			l.wg.Add(1)
			go c.keepAlive()
		}
		deadline = now.Add(l.cfg.MessageTimeout)
	}
	if now.Before(deadline) {
		st.wdTimer.Reset(deadline.Sub(now))
		return
	}
	l.stats.timedOut.Add(1)
	l.stats.msgTimeouts.Add(1)
	st.wdReason = late
	st.wdCancel() // the library closes the connection; the read loop returns
}

// keepAlive pings an idle connection; no pong within MessageTimeout closes
// it.
func (c *Conn) keepAlive() {
	defer c.l.wg.Done()
	st := c.wsst
	ctx, cancel := context.WithTimeout(c.l.ctx, c.l.cfg.MessageTimeout)
	defer cancel()
	err := c.ws.Ping(ctx)
	st.pinging.Store(false)
	if err == nil {
		st.lastRead.Store(time.Now().UnixNano())
		return
	}
	st.wdMu.Lock()
	if st.wdReason == "" && !c.closed.Load() && !c.l.closing.Load() {
		c.l.stats.timedOut.Add(1)
		st.wdReason = "idle timeout (no answer to a WebSocket ping)"
	}
	st.wdMu.Unlock()
	st.wdCancel()
}

// wsWrite sends b as one WebSocket message: text when it is UTF-8, as SIP
// messages almost always are, else binary (RFC 7118; RFC 6455 §5.6: a text message
// must be valid UTF-8; a body may not be).
func (c *Conn) wsWrite(b []byte) error {
	typ := websocket.MessageText
	if !utf8.Valid(b) {
		typ = websocket.MessageBinary
	}
	ctx, cancel := context.WithTimeout(c.l.ctx, c.l.cfg.WriteTimeout)
	defer cancel()
	return c.ws.Write(ctx, typ, b)
}

// wsDial is why Send cannot open a WebSocket connection: only clients
// open them (RFC 7118: the SIP WebSocket server answers on the
// connection the client opened).
func wsDial(k connKey) error {
	return fmt.Errorf("transport: send %s %s: no open WebSocket connection (a WebSocket client must connect first)", k.proto, k.addr)
}
