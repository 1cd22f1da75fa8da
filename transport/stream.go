package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"sipedge/sip"
)

const (
	// initialReadBuf is a stream connection's starting read buffer: most
	// SIP messages fit, and 10 000 idle connections cost 40 MiB.
	initialReadBuf = 4 << 10
	// drainTimeout and drainLimit bound how long, and how much, a
	// connection that failed framing is read (and discarded) after our
	// answer, see drainAndClose.
	drainTimeout = time.Second
	drainLimit   = 256 << 10
)

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// streamListener accepts TCP connections, with TLS on top for proto TLS.
type streamListener struct {
	l     *Layer
	proto Proto
	ln    *net.TCPListener
	addr  netip.AddrPort
}

func (l *Layer) listenStream(s spec) (*streamListener, error) {
	network, v6only := socketNetwork("tcp", s, l.v6Only(s))
	lc := net.ListenConfig{Control: listenControl(v6only, false)}
	ln, err := lc.Listen(context.Background(), network, s.addr.String())
	if err != nil {
		return nil, err
	}
	tl := ln.(*net.TCPListener)
	return &streamListener{l: l, proto: s.proto, ln: tl, addr: unmap(tl.Addr().(*net.TCPAddr).AddrPort())}, nil
}

// acceptLoop accepts until the listener is closed.
func (s *streamListener) acceptLoop() {
	l := s.l
	defer l.wg.Done()
	var delay time.Duration
	for {
		tc, err := s.ln.AcceptTCP()
		if err != nil {
			if l.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Typically EMFILE/ENFILE: back off (as net/http does) rather
			// than spin while descriptors are short.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("transport: accept error", "proto", s.proto, "local", s.addr, "err", err, "retry", delay)
			if !sleepCtx(l.ctx, delay) {
				return
			}
			continue
		}
		delay = 0
		if refuse := l.cfg.Refuse; refuse != nil {
			if ra, ok := tc.RemoteAddr().(*net.TCPAddr); ok && refuse(ra.AddrPort().Addr().Unmap()) {
				// A banned source: closed before a byte is read or a
				// TLS handshake is spent on it.
				l.stats.refusedBanned.Add(1)
				tc.Close()
				continue
			}
		}
		c := l.newConn(tc, s.proto, true)
		// A TLS connection is usable for sending only once its handshake
		// has succeeded (in serve).
		if err := l.conns.add(c, s.proto == TCP); err != nil {
			// Counted before the close, so the count is visible by the
			// time the peer sees it. Debug, not Warn: under a connection
			// flood the log would be flooded too.
			switch err {
			case ErrTooManyConns:
				l.stats.rejected.Add(1)
			case ErrTooManyFromSource:
				l.stats.rejectedSource.Add(1)
			}
			l.log.Debug("transport: connection refused", "proto", s.proto, "remote", c.remote, "err", err)
			// Nothing was read, so the close is a plain FIN; the
			// descriptor is free again at once.
			tc.Close()
			continue
		}
		l.stats.accepted.Add(1)
		l.log.Debug("transport: connection accepted", "proto", s.proto, "remote", c.remote, "local", c.local, "conn", c.id)
		go c.serve()
	}
}

// Conn is a TCP or TLS connection, accepted or dialed, or a WebSocket
// connection (WS, WSS) a client opened (ws.go). Writes are serialized so
// that concurrent senders never interleave messages.
type Conn struct {
	l       *Layer
	id      uint64
	proto   Proto
	inbound bool
	remote  netip.AddrPort
	local   netip.AddrPort
	name    string // server name verified when dialing TLS (SendDest)
	raw     *net.TCPConn
	nc      net.Conn // raw, or the *tls.Conn on top of it
	// ws is the WebSocket of a WS or WSS connection (raw and nc are nil),
	// wsst its read loop's state.
	ws   *websocket.Conn
	wsst *wsState

	wmu       sync.Mutex // serializes writes
	lastWrite atomic.Int64
	closed    atomic.Bool
	closeOnce sync.Once
}

func (l *Layer) newConn(tc *net.TCPConn, proto Proto, inbound bool) *Conn {
	c := &Conn{
		l:       l,
		id:      l.nextID.Add(1),
		proto:   proto,
		inbound: inbound,
		raw:     tc,
		nc:      tc,
	}
	if ra, ok := tc.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = unmap(ra.AddrPort())
	}
	if la, ok := tc.LocalAddr().(*net.TCPAddr); ok {
		c.local = unmap(la.AddrPort())
	}
	if proto == TLS && inbound {
		c.nc = tls.Server(tc, l.serverTLS.Load())
	}
	return c
}

// ID is unique among the layer's connections; it is what a Flow token or
// log line can refer to (RFC 5626 §5.2).
func (c *Conn) ID() uint64 { return c.id }

// Proto is TCP, TLS, WS or WSS.
func (c *Conn) Proto() Proto { return c.proto }

// Remote is the peer's address.
func (c *Conn) Remote() netip.AddrPort { return c.remote }

// Local is our end of the connection.
func (c *Conn) Local() netip.AddrPort { return c.local }

// Inbound reports whether the peer opened the connection.
func (c *Conn) Inbound() bool { return c.inbound }

// Closed reports whether the connection has been closed.
func (c *Conn) Closed() bool { return c.closed.Load() }

func (c *Conn) key() connKey { return connKey{c.proto, c.remote, c.name} }

// Send writes b, which must be one or more whole messages (over WS and
// WSS exactly one: it becomes one WebSocket message, RFC 7118), under
// the connection's write lock and deadline. A failed write may have sent
// part of a message, after which the peer can no longer frame the stream
// (RFC 3261 §18.3): the connection is closed.
func (c *Conn) Send(b []byte) error { return c.write(b, true) }

// write is Send; tap is false for what is not a SIP message (a pong). The
// tap runs under the write lock, so the connection's sent messages reach
// subscribers in the order they went out.
func (c *Conn) write(b []byte, tap bool) error {
	if c.closed.Load() {
		return ErrConnClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return ErrConnClosed
	}
	now := time.Now()
	var err error
	if c.ws != nil {
		err = c.wsWrite(b)
	} else {
		_ = c.nc.SetWriteDeadline(now.Add(c.l.cfg.WriteTimeout))
		_, err = c.nc.Write(b)
	}
	if err != nil {
		c.close("write error: " + err.Error())
		return fmt.Errorf("transport: send %s %s: %w", c.proto, c.remote, err)
	}
	c.lastWrite.Store(now.UnixNano())
	if tap {
		if subs := c.l.taps.subs.Load(); subs != nil {
			c.l.tapOut(subs, c.proto, c.local, c.remote, c, b)
		}
	}
	return nil
}

// Close closes the connection; its reader goroutine ends.
func (c *Conn) Close() { c.close("closed locally") }

// close closes the socket and forgets the connection; only the first
// reason is logged. The raw TCP socket is closed (not the tls.Conn) so no
// close_notify write can block the caller on a peer that stopped reading.
func (c *Conn) close(reason string) {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.l.conns.remove(c) // before the peer can see the close
		if c.ws != nil {
			// No close handshake: the connection is gone for us, and a
			// peer that stopped reading must not hold the caller.
			_ = c.ws.CloseNow()
		} else {
			c.raw.Close()
		}
		c.l.stats.closed.Add(1)
		c.l.log.Debug("transport: connection closed", "proto", c.proto, "remote", c.remote, "conn", c.id, "reason", reason)
	})
}

// serve runs in the connection's goroutine: TLS handshake for accepted
// TLS connections, then the read loop, then close.
func (c *Conn) serve() {
	defer c.l.wg.Done()
	reason := "handshake failed"
	defer func() { c.close(reason) }()
	first := time.Now().Add(c.l.cfg.IdleTimeout)
	if c.inbound {
		// An accepted connection has MessageTimeout for its TLS handshake
		// and its first whole message together: a peer that connects and
		// says nothing, or trickles, must not hold a connection slot (and
		// goroutine) for the idle timeout.
		first = time.Now().Add(c.l.cfg.MessageTimeout)
	}
	if tc, ok := c.nc.(*tls.Conn); ok && c.inbound {
		_ = tc.SetDeadline(first)
		if err := tc.Handshake(); err != nil {
			if !c.l.closing.Load() {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					c.l.stats.timedOut.Add(1)
					c.l.stats.msgTimeouts.Add(1)
					reason = "TLS handshake timed out"
				}
				c.l.inboundHandshakeFailed(c, err)
			}
			return
		}
		c.l.stats.tlsIn.Add(1)
		_ = tc.SetDeadline(time.Time{})
		c.l.conns.publish(c)
	}
	reason = c.readLoop(first)
}

// readLoop frames the stream with sip.Frame (RFC 3261 §18.3: the header
// section ends at the first empty line, the body is Content-Length bytes)
// and hands each message to the handler. It returns why it stopped.
//
// Memory per connection is bounded: the buffer grows from initialReadBuf to
// at most MaxMessageSize+1 bytes (enough for Frame to either find a whole
// message or report it too large) and shrinks back once drained.
//
// Time is bounded too, by one read deadline that is moved only at message
// boundaries (no timer or goroutine per message, and no more deadline
// updates than reads):
//   - first, the initial deadline: an accepted connection must have sent
//     a whole message by then (MessageTimeout after the accept), or it is
//     closed, whatever it trickled meanwhile;
//   - once a message has started (its first byte read), it must be complete
//     within MessageTimeout; further bytes do not extend that, so a peer
//     that sends part of a message and stalls, or trickles it, is cut off
//     (RFC 4475 §3.1.2.2 "clerr" over TCP: wait, then close);
//   - between messages, the deadline is IdleTimeout from the last one.
//     Writes also count as traffic, so a connection we are sending on is
//     not closed just because the peer has nothing to say.
func (c *Conn) readLoop(first time.Time) string {
	l := c.l
	idle, msgTimeout := l.cfg.IdleTimeout, l.cfg.MessageTimeout
	maxBuf := l.maxMsg + 1
	buf := make([]byte, min(initialReadBuf, maxBuf))
	start, end := 0, 0 // unconsumed bytes are buf[start:end]
	noHdr := 0         // buf[start:start+noHdr] is known not to hold CRLFCRLF
	partial := false   // a message has started and is incomplete
	// established: a whole message has arrived (or we dialed): from then
	// on the idle timeout applies between messages.
	established := !c.inbound
	p := new(Packet)
	var ev *TapEvent // made when first needed: most layers are never tapped
	_ = c.nc.SetReadDeadline(first)
	for {
		if end == len(buf) {
			switch {
			case start > 0:
				end = copy(buf, buf[start:end])
				start = 0
			case len(buf) < maxBuf:
				nb := make([]byte, min(2*len(buf), maxBuf))
				end = copy(nb, buf[:end])
				buf = nb
			default:
				// Unreachable by sip.Frame's contract (it errors on more
				// than MaxMessageSize unframed bytes), but never spin.
				c.frameError(buf[start:end], &sip.ParseError{Code: 513, Reason: "Message Too Large"})
				return "framing error"
			}
		}
		n, err := c.nc.Read(buf[end:])
		end += n
		progressed := false // a message boundary was passed
		for start < end {
			u := buf[start:end]
			// Skip Frame while no header section can have ended: it would
			// rescan the whole prefix for CRLFCRLF on every read, which a
			// peer trickling bytes could turn into quadratic work.
			if u[0] != '\r' && len(u) <= l.maxMsg {
				if bytes.Index(u[max(noHdr-3, 0):], crlfcrlf) < 0 {
					noHdr = len(u)
					break
				}
			}
			fn, kind, ferr := sip.Frame(u, &l.lim)
			if ferr != nil {
				c.frameError(u, ferr)
				return "framing error"
			}
			if fn == 0 {
				break // need more bytes
			}
			switch kind {
			case sip.FrameMessage:
				established = true
				*p = Packet{Data: u[:fn:fn], Proto: c.proto, Src: c.remote, Local: c.local, Conn: c}
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
			case sip.FramePing:
				// RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong.
				// Neither is a SIP message, so neither is tapped.
				l.stats.pings.Add(1)
				if err := c.write(crlf, false); err != nil {
					return "pong write failed"
				}
			case sip.FramePong:
				// A pong, or CRLF padding between messages (RFC 3261 §7.5).
			}
			start += fn
			noHdr = 0
			progressed = true
			if c.closed.Load() {
				return "closed by handler"
			}
		}
		if start == end {
			start, end = 0, 0
			if len(buf) > initialReadBuf {
				buf = make([]byte, initialReadBuf) // give a big message's memory back
			}
		}
		wasPartial := partial
		partial = end > start && !onlyCRLF(buf[start:end])

		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				if errors.Is(err, io.EOF) {
					return "peer closed"
				}
				return "read error: " + err.Error()
			}
			if partial || !established {
				l.stats.timedOut.Add(1)
				l.stats.msgTimeouts.Add(1)
				if partial {
					return "incomplete message timed out"
				}
				return "no whole message within the message timeout"
			}
			if lw := time.Unix(0, c.lastWrite.Load()); time.Since(lw) < idle {
				_ = c.nc.SetReadDeadline(lw.Add(idle))
				continue
			}
			l.stats.timedOut.Add(1)
			return "idle timeout"
		}
		switch {
		case !established:
			// The first message's deadline stands, whatever arrives.
		case partial && (!wasPartial || progressed):
			// A message started in this read: it has MessageTimeout.
			_ = c.nc.SetReadDeadline(time.Now().Add(msgTimeout))
		case partial:
			// The same message is still pending: its deadline stands.
		default:
			// At a message boundary: idle from now.
			_ = c.nc.SetReadDeadline(time.Now().Add(idle))
		}
	}
}

// onlyCRLF reports whether b holds only CR and LF (the start of a ping or
// pong, not of a message).
func onlyCRLF(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// frameError handles a stream that sip.Frame gave up on: the handler gets
// the received bytes (cut after the header section, if its end is there)
// so it can answer 400/413/513 over this very connection, and then the
// connection is closed, because the start of the next message can no
// longer be found (RFC 3261 §18.3).
func (c *Conn) frameError(b []byte, ferr error) {
	l := c.l
	l.stats.frameErrors.Add(1)
	l.log.Warn("transport: framing error, closing connection",
		"proto", c.proto, "remote", c.remote, "conn", c.id, "err", ferr)
	if i := bytes.Index(b, crlfcrlf); i >= 0 {
		b = b[:i+4]
	}
	p := &Packet{Data: b[:len(b):len(b)], Proto: c.proto, Src: c.remote, Local: c.local, Conn: c, FrameErr: ferr}
	if subs := l.taps.subs.Load(); subs != nil {
		l.tapIn(subs, new(TapEvent), p) // once per connection at most
	}
	l.dispatchRead(p)
	c.drainAndClose()
}

// drainAndClose shuts down the write side and discards what the peer still
// sends for a short while before closing. Closing a socket with unread
// input makes the kernel send a RST, which can destroy our error response
// before the peer has read it.
func (c *Conn) drainAndClose() {
	if c.closed.Load() {
		return
	}
	c.l.conns.unpublish(c) // no new Sends on a dying connection
	c.wmu.Lock()
	c.closed.Store(true) // Send now fails; close() still runs below
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.CloseWrite() // close_notify, bounded by its own deadline
	}
	_ = c.raw.CloseWrite()
	c.wmu.Unlock()
	_ = c.raw.SetReadDeadline(time.Now().Add(min(drainTimeout, c.l.cfg.IdleTimeout)))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.raw, drainLimit))
}

// dial opens a connection to k, registers it and starts its reader: the
// responses to what we send on it come back on it (RFC 3261 §18.1.2).
func (l *Layer) dial(k connKey) (*Conn, error) {
	proto, dst := k.proto, k.addr
	ctx, cancel := context.WithTimeout(l.ctx, l.cfg.ConnectTimeout)
	defer cancel()
	if proto.WebSocket() {
		return nil, wsDial(k)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		if l.closing.Load() {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("transport: dial %s %s: %w", proto, dst, err)
	}
	tc := nc.(*net.TCPConn)
	c := l.newConn(tc, proto, false)
	c.remote, c.name = dst, k.name
	if proto == TLS {
		cfg := l.clientTLS.Load().Clone()
		// The server certificate is checked against the name the caller
		// gave (SendDest: the SIP domain the next hop was resolved from,
		// RFC 5922 §4.1, also sent as SNI, RFC 6066 §3), else against the
		// address itself (an IP SAN).
		cfg.ServerName = k.name
		if cfg.ServerName == "" {
			cfg.ServerName = dst.Addr().WithZone("").String()
		}
		tlc := tls.Client(tc, cfg)
		if err := tlc.HandshakeContext(ctx); err != nil {
			tc.Close()
			if l.closing.Load() {
				return nil, ErrClosed
			}
			l.outboundHandshakeFailed(dst, cfg.ServerName, err)
			return nil, fmt.Errorf("transport: TLS handshake with %s (%s): %w", dst, cfg.ServerName, err)
		}
		l.stats.tlsOut.Add(1)
		c.nc = tlc
	}
	if err := l.conns.add(c, true); err != nil {
		tc.Close()
		return nil, err
	}
	l.stats.dialed.Add(1)
	l.log.Debug("transport: connection dialed", "proto", proto, "remote", dst, "local", c.local, "conn", c.id)
	go c.serve()
	return c, nil
}
