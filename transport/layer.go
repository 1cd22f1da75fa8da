// Package transport is the socket layer of the SIP edge proxy: it binds the
// UDP, TCP, TLS and WebSocket (WS, WSS: RFC 7118, ws.go) listeners, frames
// stream connections into messages, keeps the table of open connections
// and sends messages back out (RFC 3261 §18).
//
// Received messages are handed to a Handler synchronously, in the goroutine
// that read them (one per UDP reader, one per stream connection), so the
// receive path neither spawns goroutines nor allocates per message. The
// handler must therefore not block for long and must copy Packet.Data if it
// keeps it.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/sip"
)

// Defaults for zero Config fields.
const (
	// DefaultIdleTimeout closes stream connections with no traffic. It is
	// longer than the 95–120 s keep-alive interval RFC 5626 §4.4.1
	// recommends for connection-oriented flows, so a client that keeps its
	// flow alive is never cut, while abandoned connections are reclaimed.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultConnectTimeout bounds a TCP connect plus TLS handshake. It is
	// well under Timer B/F (64*T1 = 32 s, RFC 3261 §17.1) so a dead next hop
	// fails the transaction with time left to try another target.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds one write on a stream connection: a peer
	// that stops reading must not block senders forever.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxConns caps concurrent stream connections. It leaves room
	// under the usual 20 000+ descriptor limit for UDP sockets, the media
	// relay's ports and the store's files.
	DefaultMaxConns = 10000
	// DefaultMaxConnsPerSource caps the stream connections one address
	// has open to us: enough for a PBX or an SBC in front of many phones,
	// far fewer than a flood from one host.
	DefaultMaxConnsPerSource = 100
	// DefaultMessageTimeout bounds the arrival of one message on a stream
	// once its first byte came, a new connection's first message and an
	// accepted connection's TLS handshake. A SIP message is a few
	// kilobytes: a peer that needs longer is stalling on purpose
	// (slowloris) or broken, and must not hold a connection for the whole
	// idle timeout.
	DefaultMessageTimeout = 10 * time.Second
	// DefaultUDPReadBuffer is the SO_RCVBUF asked for UDP sockets: the
	// kernel default (~200 KB) overflows in bursts of a few thousand
	// requests per second, and every drop costs the sender a 500 ms
	// retransmission. The kernel clamps it to net.core.rmem_max.
	DefaultUDPReadBuffer = 4 << 20
)

// Errors returned by the layer.
var (
	// ErrClosed is returned once Close has been called.
	ErrClosed = errors.New("transport: layer closed")
	// ErrConnClosed is returned by Conn.Send on a closed connection.
	ErrConnClosed = errors.New("transport: connection closed")
	// ErrTooManyConns is why an accepted connection was refused.
	ErrTooManyConns = errors.New("transport: too many connections")
	// ErrTooManyFromSource is why an accepted connection was refused over
	// MaxConnsPerSource.
	ErrTooManyFromSource = errors.New("transport: too many connections from this address")
)

// Packet is one received SIP message, already framed.
type Packet struct {
	// Data holds exactly one message. It points into the reader's buffer
	// and is valid only until HandleMessage returns: copy it to keep it.
	Data  []byte
	Proto Proto
	// Src is the remote address. IPv4 peers always appear as 4-byte
	// addresses, even on a dual-stack IPv6 socket.
	Src netip.AddrPort
	// Local is the address of the listener the message arrived on (for a
	// wildcard UDP listener, the wildcard address), or the local end of the
	// stream connection.
	Local netip.AddrPort
	// Conn is the stream connection the message arrived on; nil for UDP.
	Conn *Conn
	// FrameErr is non-nil when the stream could not be framed any further
	// (bad or repeated Content-Length, oversized message). Data then holds
	// the bytes received so far, cut after the header section if its end
	// was found. The handler may answer (400/413/513) with Reply; the
	// transport closes the connection when the handler returns.
	FrameErr error

	udp *udpListener // socket a UDP packet arrived on, for Reply
}

// Handler receives every framed message. HandleMessage runs synchronously
// in a reader goroutine and must not call Layer.Close.
type Handler interface {
	HandleMessage(l *Layer, p *Packet)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(l *Layer, p *Packet)

// HandleMessage calls f(l, p).
func (f HandlerFunc) HandleMessage(l *Layer, p *Packet) { f(l, p) }

// ListenSpec asks for one listener. Addr is an IP literal and port:
// "0.0.0.0:5060", "[::]:5060", "127.0.0.1:0".
type ListenSpec struct {
	Proto Proto
	Addr  string
}

// Listener is a bound listener, as reported by Addrs.
type Listener struct {
	Proto Proto
	Addr  netip.AddrPort
}

func (l Listener) String() string { return l.Proto.String() + " " + l.Addr.String() }

// Config configures a Layer. Zero fields take the defaults noted.
type Config struct {
	Listen []ListenSpec

	// TLSCertFile and TLSKeyFile are PEM files for the TLS listeners
	// (required if there is one). The certificate is also offered as a
	// client certificate on outgoing TLS connections.
	TLSCertFile, TLSKeyFile string
	// TLS is how TLS peers are verified (the zero value: servers against
	// the system roots, no client certificates asked for, TLS 1.2 and
	// up); SetTLSPolicy replaces it.
	TLS TLSPolicy

	// UDPReaders is the number of reader goroutines per UDP listen
	// address (default runtime.NumCPU()); on Linux each has a socket of its
	// own in an SO_REUSEPORT group, so one flow's messages stay in order.
	UDPReaders int
	// UDPReadBuffer sets SO_RCVBUF on UDP sockets when > 0, so bursts are
	// queued rather than dropped by the kernel.
	UDPReadBuffer int

	// IdleTimeout closes a stream connection without traffic in either
	// direction between messages (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MessageTimeout closes a stream connection on which a message has
	// started and is not complete (header section and Content-Length body)
	// within it, an accepted connection that has not sent a whole first
	// message within it, and an accepted TLS connection whose handshake
	// takes longer (default DefaultMessageTimeout; at most IdleTimeout).
	MessageTimeout time.Duration
	// ConnectTimeout bounds dialing plus the TLS handshake of outgoing
	// connections (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write on a stream (default DefaultWriteTimeout).
	WriteTimeout time.Duration
	// MaxConns caps concurrent stream connections (default
	// DefaultMaxConns; negative means no cap). Accepted connections beyond
	// it are closed at once and counted in Stats.ConnsRejected. Outgoing
	// connections count towards it but are never refused: the proxy
	// itself decides where it sends.
	MaxConns int
	// MaxConnsPerSource caps the accepted stream connections open from
	// one IP address (default DefaultMaxConnsPerSource; negative means no
	// cap). Connections beyond it are closed at once and counted in
	// Stats.ConnsRejectedPerSource.
	MaxConnsPerSource int
	// Refuse, when set, is asked about each accepted connection's source
	// address: true closes it at once (a source the guard banned).
	Refuse func(netip.Addr) bool
	// WSOrigins are the origins (host patterns of path.Match, or
	// scheme://host patterns) whose pages may open WS and WSS
	// connections; empty: any origin, since SIP authenticates in SIP and
	// never with a browser's cookies. A request from the listener's own
	// host is always allowed.
	WSOrigins []string

	// Limits bounds message sizes; nil means sip.DefaultLimits.
	Limits *sip.Limits
	// Logger receives Debug connection events and Warn framing errors;
	// nil discards.
	Logger *slog.Logger
}

// Stats are cumulative counters, except ConnsOpen.
type Stats struct {
	Received          uint64 // messages handed to the Handler (UDP and streams)
	DatagramsDropped  uint64 // keep-alive (CR/LF/SP only) or runt (< 4 bytes) datagrams and WebSocket messages
	DatagramsTooLarge uint64 // datagrams over Limits.MaxMessageSize (handed up truncated)
	FrameErrors       uint64 // streams that could not be framed
	PingsAnswered     uint64 // CRLFCRLF pings answered with CRLF (RFC 5626 §3.5.1)
	ConnsAccepted     uint64
	ConnsDialed       uint64
	ConnsRejected     uint64 // accepts refused over MaxConns
	// ConnsRejectedPerSource counts accepts refused over MaxConnsPerSource.
	ConnsRejectedPerSource uint64
	// ConnsRefusedBanned counts accepts closed because Config.Refuse said
	// so (banned sources).
	ConnsRefusedBanned  uint64
	ConnsClosed         uint64
	ConnsTimedOut       uint64 // closed by the idle timeout or MessageTimeout
	WSHandshakesRefused uint64 // WebSocket handshakes refused: no sip subprotocol (RFC 7118 §4.1), origin not allowed, or invalid
	// MessageTimeouts counts the ConnsTimedOut closed by MessageTimeout: a
	// message, a first message or a TLS handshake not complete in time.
	MessageTimeouts uint64
	// TLS handshakes that succeeded and failed, on accepted (In) and
	// dialed (Out) connections. A failed outgoing one is a next hop whose
	// certificate is not trusted or not valid for its name.
	TLSHandshakesIn       uint64
	TLSHandshakesOut      uint64
	TLSHandshakeErrorsIn  uint64
	TLSHandshakeErrorsOut uint64
	// TLSClientCertsRefused counts accepted connections refused for want
	// of a trusted client certificate (TLSPolicy.VerifyClients); they are
	// also in TLSHandshakeErrorsIn.
	TLSClientCertsRefused uint64
	HandlerPanics         uint64
	ConnsOpen             int // stream connections open now
}

type counters struct {
	received, dgramDropped, dgramTooLarge, frameErrors, pings atomic.Uint64
	accepted, dialed, rejected, closed, timedOut, panics      atomic.Uint64
	tlsIn, tlsOut, tlsErrsIn, tlsErrsOut, clientCertsRefused  atomic.Uint64
	rejectedSource, msgTimeouts, refusedBanned                atomic.Uint64
	wsRefused                                                 atomic.Uint64
}

// Layer owns the sockets. Create it with New, then Start; Close releases
// everything.
type Layer struct {
	cfg        Config // with defaults applied
	h          Handler
	lim        sip.Limits
	maxMsg     int
	log        *slog.Logger
	specs      []spec
	serverTLS  atomic.Pointer[tls.Config]      // see SetTLSPolicy
	clientTLS  atomic.Pointer[tls.Config]      // see SetTLSPolicy
	cert       atomic.Pointer[tls.Certificate] // see ReloadTLS
	tlsLogged  logOnce                         // TLS failures already logged
	udpReaders int

	ctx    context.Context // cancelled by Close: aborts dials and back-offs
	cancel context.CancelFunc

	mu      sync.Mutex // guards started, closed, udp, streams
	started bool
	closed  bool
	udp     []*udpListener
	streams []*streamListener
	ws      []*wsListener

	closing atomic.Bool                    // set first thing in Close, read by reader loops
	udpSnap atomic.Pointer[[]*udpListener] // l.udp for lock-free Send
	conns   connTable
	wg      sync.WaitGroup // every goroutine the layer starts
	nextID  atomic.Uint64
	stats   counters
	taps    taps // Subscribe's subscribers
	dests   destCache
	udpSend atomic.Pointer[udpSendState] // how Send picks a UDP socket
	reads   atomic.Pointer[ReadHooks]    // see SetReadHooks
}

// ReadHooks bracket the handling of what one reader read at once: a UDP
// reader's batch of datagrams (one recvmmsg), a stream reader's message.
// Enter runs before the first message goes to the Handler, Leave after
// the last, on the reader's goroutine with no lock held. The store uses
// them to write the batch's bindings and send their 200s from the reader
// itself instead of waking its committer (store.Store.Enter).
type ReadHooks struct {
	Enter, Leave func()
}

// SetReadHooks sets the hooks of every later read; nil removes them.
func (l *Layer) SetReadHooks(h *ReadHooks) { l.reads.Store(h) }

// dispatchRead is dispatch bracketed by the read hooks, for a reader that
// hands over one message at a time.
func (l *Layer) dispatchRead(p *Packet) bool {
	h := l.reads.Load()
	if h != nil {
		h.Enter()
	}
	ok := l.dispatch(p)
	if h != nil {
		h.Leave()
	}
	return ok
}

// spec is a validated ListenSpec.
type spec struct {
	proto Proto
	addr  netip.AddrPort
	raw   string
}

// New validates cfg and loads the TLS certificate; nothing is bound until
// Start.
func New(cfg Config, h Handler) (*Layer, error) {
	if h == nil {
		return nil, errors.New("transport: nil Handler")
	}
	l := &Layer{cfg: cfg, h: h}
	if cfg.Limits != nil {
		l.lim = *cfg.Limits
	} else {
		l.lim = sip.DefaultLimits
	}
	if l.lim.MaxMessageSize <= 0 {
		l.lim.MaxMessageSize = sip.DefaultMaxMessageSize
	}
	l.maxMsg = l.lim.MaxMessageSize
	if l.cfg.IdleTimeout <= 0 {
		l.cfg.IdleTimeout = DefaultIdleTimeout
	}
	if l.cfg.ConnectTimeout <= 0 {
		l.cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if l.cfg.WriteTimeout <= 0 {
		l.cfg.WriteTimeout = DefaultWriteTimeout
	}
	if l.cfg.MaxConns == 0 {
		l.cfg.MaxConns = DefaultMaxConns
	}
	if l.cfg.MaxConnsPerSource == 0 {
		l.cfg.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	if l.cfg.MessageTimeout <= 0 {
		l.cfg.MessageTimeout = DefaultMessageTimeout
	}
	l.cfg.MessageTimeout = min(l.cfg.MessageTimeout, l.cfg.IdleTimeout)
	if l.cfg.UDPReadBuffer == 0 {
		l.cfg.UDPReadBuffer = DefaultUDPReadBuffer
	}
	l.udpReaders = cfg.UDPReaders
	if l.udpReaders <= 0 {
		l.udpReaders = runtime.NumCPU()
	}
	l.log = cfg.Logger
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}

	needTLS := false
	for i, ls := range cfg.Listen {
		if !ls.Proto.valid() {
			return nil, fmt.Errorf("transport: listener %d (%q): invalid protocol %d", i, ls.Addr, ls.Proto)
		}
		ap, err := netip.ParseAddrPort(ls.Addr)
		if err != nil {
			return nil, fmt.Errorf("transport: listener %d: bad address %q (want IP:port): %w", i, ls.Addr, err)
		}
		l.specs = append(l.specs, spec{proto: ls.Proto, addr: unmap(ap), raw: ls.Addr})
		needTLS = needTLS || ls.Proto.Secure()
	}

	if err := cfg.TLS.check(); err != nil {
		return nil, err
	}
	if needTLS || cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
			return nil, errors.New("transport: TLS listener needs TLSCertFile and TLSKeyFile")
		}
		if err := l.ReloadTLS(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	l.setTLSPolicy(cfg.TLS)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.conns.init()
	l.SetConnLimits(l.cfg.MaxConns, l.cfg.MaxConnsPerSource)
	return l, nil
}

// Start binds every listener and starts the reader and accept goroutines.
// If one address cannot be bound, the ones already bound are released and
// the error names the failing address.
func (l *Layer) Start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.started {
		return errors.New("transport: already started")
	}
	var udp []*udpListener
	var streams []*streamListener
	var wss []*wsListener
	release := func() {
		for _, u := range udp {
			u.conn.Close()
		}
		for _, s := range streams {
			s.ln.Close()
		}
		for _, w := range wss {
			w.ln.Close()
		}
	}
	for _, s := range l.specs {
		var err error
		switch s.proto {
		case UDP:
			var g []*udpListener
			if g, err = l.listenUDP(s); err == nil {
				udp = append(udp, g...)
			}
		case WS, WSS:
			var w *wsListener
			if w, err = l.listenWS(s); err == nil {
				wss = append(wss, w)
			}
		default:
			var sl *streamListener
			if sl, err = l.listenStream(s); err == nil {
				streams = append(streams, sl)
			}
		}
		if err != nil {
			release()
			return fmt.Errorf("transport: listen %s %s: %w", s.proto, s.raw, err)
		}
	}
	l.started = true
	l.udp, l.streams, l.ws = udp, streams, wss
	l.udpSnap.Store(&udp)
	l.setListeners(udp, l.addrsLocked())
	for _, u := range udp {
		for range u.readers {
			l.wg.Add(1)
			go u.readLoop()
		}
	}
	for _, s := range streams {
		l.wg.Add(1)
		go s.acceptLoop()
	}
	for _, w := range wss {
		l.wg.Add(1)
		go w.serve()
	}
	return nil
}

// v6Only decides IPV6_V6ONLY for an IPv6 wildcard listener of s's kind.
// Linux by default lets "[::]:5060" receive IPv4 as v4-mapped addresses,
// which makes a second bind of "0.0.0.0:5060" fail with EADDRINUSE; when the
// configuration also has an IPv4 listener of the same kind on that port, the
// IPv6 one is made IPv6-only so both coexist. Alone, it stays dual-stack and
// IPv4 sources are unmapped.
func (l *Layer) v6Only(s spec) bool {
	for _, o := range l.specs {
		if o.addr.Addr().Is4() && o.addr.Port() == s.addr.Port() && (o.proto == UDP) == (s.proto == UDP) {
			return true
		}
	}
	return false
}

// Close stops the listeners and every connection and waits for all the
// layer's goroutines to finish. It must not be called from a Handler.
func (l *Layer) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.closing.Store(true)
	l.cancel()
	for _, u := range l.udp {
		u.conn.Close()
	}
	for _, s := range l.streams {
		s.ln.Close()
	}
	for _, w := range l.ws {
		_ = w.srv.Close() // its listener and the handshakes in progress
	}
	l.mu.Unlock()
	for _, c := range l.conns.closeAll() {
		c.close("layer closed")
	}
	l.wg.Wait()
	return nil
}

// Addrs returns the bound listeners, with the ports actually chosen.
func (l *Layer) Addrs() []Listener {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addrsLocked()
}

func (l *Layer) addrsLocked() []Listener {
	var out []Listener
	for _, u := range l.udp {
		if !u.member {
			out = append(out, Listener{Proto: UDP, Addr: u.addr})
		}
	}
	for _, s := range l.streams {
		out = append(out, Listener{Proto: s.proto, Addr: s.addr})
	}
	for _, w := range l.ws {
		out = append(out, Listener{Proto: w.proto, Addr: w.addr})
	}
	return out
}

// Reply sends b back where p came from (RFC 3261 §18.2.2): over UDP from the
// socket p arrived on, so the source address the peer (and its NAT) sees is
// the one it sent to; over a stream on p.Conn. If that connection is gone,
// it falls back to Send, which reuses another connection to p.Src or opens
// a new one. (§18.2.2 says to connect to the Via sent-by; for a NATed client
// with rport that is p.Src — a proxy wanting the literal sent-by calls
// Send itself.)
func (l *Layer) Reply(p *Packet, b []byte) error {
	if p.Proto == UDP && p.udp != nil {
		if err := p.udp.writeTo(b, p.Src); err != nil {
			return fmt.Errorf("transport: reply UDP %s: %w", p.Src, err)
		}
		if subs := l.taps.subs.Load(); subs != nil {
			l.tapOut(subs, UDP, p.udp.addr, p.Src, nil, b)
		}
		return nil
	}
	if p.Conn != nil {
		err := p.Conn.Send(b)
		if err == nil || l.closing.Load() {
			return err
		}
		// The connection failed (and Send closed it): try another.
	}
	return l.Send(p.Proto, p.Src, b)
}

// Send sends b to dst over proto.
//
// For TCP, TLS, WS and WSS it first looks for an open connection to dst in the
// connection table, including connections the peer opened to us: reusing
// them is how requests reach clients behind NATs and firewalls (RFC 3261
// §18, RFC 5923, RFC 5626 §5.3). Only if none exists does it dial, and
// concurrent Sends to the same destination share one dial; WS and WSS are
// never dialed (only the client opens them), so without the client's
// connection the Send fails.
//
// For UDP it sends from the socket of the listener LocalFor picks for dst,
// so the source address and port are the well-known ones the peer expects
// and the ones the message's Via names (on a gateway, the outside
// listener's for the outside, not whichever socket comes first).
func (l *Layer) Send(proto Proto, dst netip.AddrPort, b []byte) error {
	return l.send(connKey{proto: proto, addr: dst}, b)
}

// Dest is where SendDest sends.
type Dest struct {
	Proto Proto
	Addr  netip.AddrPort
	// Name is the host name the destination was resolved from (RFC 3263):
	// for TLS, the name the server's certificate must be valid for, also
	// sent as SNI (RFC 5922 §7.2, RFC 6066 §3). Go checks it against the
	// certificate's DNS names (not a sip: URI SAN). Empty means the
	// address itself, as Send does. Ignored for UDP and TCP, where no
	// identity is checked.
	Name string
}

// SendDest is Send to d. With d.Name over TLS it uses, or dials, a
// connection whose server was verified for that name: a connection to the
// same address verified for another name, or for none (dialed by Send or
// opened by the peer), is not used for it.
func (l *Layer) SendDest(d Dest, b []byte) error {
	return l.send(destKey(d), b)
}

// destKey is the connection-table key of d: over TLS with a name, the
// name too. DNS names compare case-insensitively (RFC 4343): one key, one
// connection, whatever the spelling. Lower-case names cost nothing.
func destKey(d Dest) connKey {
	k := connKey{proto: d.Proto, addr: d.Addr}
	if d.Proto == TLS && d.Name != "" {
		k.name = strings.TrimSuffix(lowerASCII(d.Name), ".")
	}
	return k
}

// lowerASCII lower-cases s, allocating only if it has an upper-case letter.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func (l *Layer) send(k connKey, b []byte) error {
	proto, dst := k.proto, unmap(k.addr)
	k.addr = dst
	if !dst.IsValid() || dst.Port() == 0 {
		return fmt.Errorf("transport: send %s: invalid destination %s", proto, dst)
	}
	if l.closing.Load() {
		return ErrClosed
	}
	switch proto {
	case UDP:
		u, local := l.udpTo(dst.Addr())
		if u == nil {
			return fmt.Errorf("transport: send UDP %s: no UDP listener for this address family", dst)
		}
		if err := u.writeTo(b, dst); err != nil {
			return fmt.Errorf("transport: send UDP %s: %w", dst, err)
		}
		if subs := l.taps.subs.Load(); subs != nil {
			l.tapOut(subs, UDP, l.udpLocal(local, dst.Addr()), dst, nil, b)
		}
		return nil
	case TCP, TLS, WS, WSS:
		for attempt := 0; ; attempt++ {
			c, err := l.connFor(k)
			if err != nil {
				return err
			}
			err = c.Send(b)
			// A connection closed between lookup and write wrote nothing:
			// safe to try once more with a fresh one.
			if errors.Is(err, ErrConnClosed) && attempt == 0 && !l.closing.Load() {
				continue
			}
			return err
		}
	}
	return fmt.Errorf("transport: send: invalid protocol %s", proto)
}

// Stats returns a snapshot of the counters.
func (l *Layer) Stats() Stats {
	s := &l.stats
	return Stats{
		Received:               s.received.Load(),
		DatagramsDropped:       s.dgramDropped.Load(),
		DatagramsTooLarge:      s.dgramTooLarge.Load(),
		FrameErrors:            s.frameErrors.Load(),
		PingsAnswered:          s.pings.Load(),
		ConnsAccepted:          s.accepted.Load(),
		ConnsDialed:            s.dialed.Load(),
		ConnsRejected:          s.rejected.Load(),
		ConnsRejectedPerSource: s.rejectedSource.Load(),
		ConnsRefusedBanned:     s.refusedBanned.Load(),
		ConnsClosed:            s.closed.Load(),
		ConnsTimedOut:          s.timedOut.Load(),
		WSHandshakesRefused:    s.wsRefused.Load(),
		MessageTimeouts:        s.msgTimeouts.Load(),
		TLSHandshakesIn:        s.tlsIn.Load(),
		TLSHandshakesOut:       s.tlsOut.Load(),
		TLSHandshakeErrorsIn:   s.tlsErrsIn.Load(),
		TLSHandshakeErrorsOut:  s.tlsErrsOut.Load(),
		TLSClientCertsRefused:  s.clientCertsRefused.Load(),
		HandlerPanics:          s.panics.Load(),
		ConnsOpen:              l.conns.len(),
	}
}

// dispatch runs the handler. A panicking handler must not take the whole
// edge proxy (every call in progress) down with it: the panic is logged and
// counted, and dispatch reports false so a stream reader drops the
// connection whose state may now be inconsistent.
func (l *Layer) dispatch(p *Packet) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			l.stats.panics.Add(1)
			l.log.Error("transport: handler panic", "proto", p.Proto, "remote", p.Src,
				"panic", r, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	l.h.HandleMessage(l, p)
	return true
}

// unmap turns a v4-mapped IPv6 address (::ffff:a.b.c.d) into a plain IPv4
// one, so one peer has one key in the connection table and one spelling in
// Via received parameters.
func unmap(ap netip.AddrPort) netip.AddrPort {
	if a := ap.Addr(); a.Is4In6() {
		return netip.AddrPortFrom(a.Unmap(), ap.Port())
	}
	return ap
}
