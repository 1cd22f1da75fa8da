package transport

import (
	"bytes"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/sip"
)

// TapDir is the direction of a tapped message.
type TapDir uint8

// Directions of a TapEvent.
const (
	TapIn  TapDir = iota + 1 // received from the network
	TapOut                   // sent to the network
)

func (d TapDir) String() string {
	switch d {
	case TapIn:
		return "in"
	case TapOut:
		return "out"
	}
	return "?"
}

// TapEvent is one SIP message the layer received or sent, as a subscriber
// of Subscribe sees it.
//
// The event and Data are valid only during the Tap call: Data points into
// a reader's buffer or the sender's message, exactly like Packet.Data, and
// the event itself is reused for the next message. Copy what you keep.
type TapEvent struct {
	Dir   TapDir
	Proto Proto
	// Local is the address of our socket. For a stream it is the local end
	// of the connection. For UDP it is the address the socket is bound to;
	// for a socket bound to a wildcard address (0.0.0.0, [::]) that is the
	// wildcard on messages received and on Reply, since which of our
	// addresses a datagram was sent to would cost an IP_PKTINFO control
	// message per read; on Send and SendBatch it is the source address the
	// kernel routes from towards Remote (see LocalFor), which is already
	// known there.
	Local netip.AddrPort
	// Remote is the peer: the source of a received message, the
	// destination of a sent one. IPv4 peers appear as 4-byte addresses.
	Remote netip.AddrPort
	// Time is when the message was read (after the read returned) or sent
	// (after the write returned).
	Time time.Time
	// Data is the message. A received one is exactly one message (or, with
	// a stream framing error, the bytes the Handler got: see
	// Packet.FrameErr). A sent one is what the caller handed to the layer:
	// over a stream, Conn.Send may be given several messages at once.
	Data []byte
	// Conn is the stream connection; nil for UDP.
	Conn *Conn
}

// CallID returns the value of the message's Call-ID header (full form
// "Call-ID" or compact form "i", RFC 3261 §7.3.3, §20.8; names compared
// case-insensitively), with surrounding white space removed, or nil if it
// has none. It scans only the header section and points into Data, so it
// allocates nothing and is valid as long as Data is.
func (e *TapEvent) CallID() []byte {
	id, _ := scanKeys(e.Data, false)
	return id
}

// MessageKeys returns, from one pass over the header section of msg, what
// TapEvent.CallID returns and the method of the CSeq header ("CSeq: 1
// INVITE" gives INVITE; nil without a CSeq header or a method in it): a
// tap that files messages by call needs both (a response's method is its
// CSeq's), and reading the headers once costs half. Like CallID it points
// into msg and allocates nothing.
func MessageKeys(msg []byte) (callID, cseqMethod []byte) { return scanKeys(msg, true) }

// scanKeys finds the Call-ID value and, when cseq is set, the CSeq method
// in the header section of msg: the first of each. Lines may end in CRLF
// or a bare LF (tolerated by the parser too); a Call-ID folded over
// several lines (RFC 3261 §7.3.1) yields the whole folded value.
func scanKeys(msg []byte, cseq bool) (id, method []byte) {
	// Skip the start line.
	i := bytes.IndexByte(msg, '\n')
	if i < 0 {
		return nil, nil
	}
	i++
	haveID, haveCSeq := false, !cseq
	for i < len(msg) && !(haveID && haveCSeq) {
		end := lineEnd(msg, i)
		line := msg[i:end]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			break // the empty line ends the header section
		}
		next := min(end+1, len(msg))
		// Only a name starting with C or I can be Call-ID, i or CSeq: most
		// lines cost one compare (a continuation line starts with SP or HT).
		if f := line[0] | 0x20; f != 'c' && f != 'i' {
			i = next
			continue
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			i = next // not a header
			continue
		}
		name := trimSPHT(line[:c])
		switch {
		case !haveID && (sip.EqualFold(name, "call-id") || sip.EqualFold(name, "i")):
			// The value runs to the end of the line and over any
			// continuation lines (which start with SP or HT).
			vEnd := end
			for vEnd+1 < len(msg) && (msg[vEnd+1] == ' ' || msg[vEnd+1] == '\t') {
				vEnd = lineEnd(msg, vEnd+1)
			}
			id, haveID = trimLWS(msg[i+c+1:vEnd]), true
		case !haveCSeq && sip.EqualFold(name, "cseq"):
			// "1 INVITE": the method follows the number and white space.
			v := bytes.TrimSpace(line[c+1:])
			if k := bytes.IndexAny(v, " \t"); k >= 0 {
				method = bytes.TrimSpace(v[k:])
			}
			haveCSeq = true
		}
		i = next
	}
	return id, method
}

// lineEnd returns the index of the LF ending the line that starts at i, or
// len(b).
func lineEnd(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(b)
}

func trimSPHT(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func isLWSByte(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimLWS(b []byte) []byte {
	for len(b) > 0 && isLWSByte(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isLWSByte(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// Tap receives TapEvents. It runs synchronously on the I/O path, in the
// goroutine that read or sent the message, which is what keeps Data valid
// without a copy and the events of one socket in order; so a slow Tap slows
// that socket. A Tap that needs time copies what it wants and hands it to
// a goroutine of its own. It must not call Layer.Close.
type Tap func(*TapEvent)

// tapSub is one subscription.
type tapSub struct {
	f   Tap
	off atomic.Bool // cancelled: skip even if still in a snapshot
}

// taps is the set of subscribers. The message paths only load subs: nil
// (no subscriber) costs one atomic load and a branch per message. The
// slice a non-nil pointer points to is never modified, only replaced.
type taps struct {
	mu   sync.Mutex // serializes Subscribe and cancel
	subs atomic.Pointer[[]*tapSub]
}

// tapEvents recycles the events of the send paths, which, unlike readers,
// have no per-goroutine state to keep one in: a TapEvent handed to a
// function value escapes, and a pool keeps that from being an allocation
// per message.
var tapEvents = sync.Pool{New: func() any { return new(TapEvent) }}

// Subscribe makes t receive every SIP message the layer receives (before
// the Handler sees it) and sends (Reply, Send, SendBatch, Conn.Send), over
// UDP, TCP and TLS. Keep-alives are not SIP messages and are not tapped:
// CRLF datagrams and runts (dropped unread), CRLFCRLF pings and CRLF pongs
// on streams (RFC 5626 §3.5.1, §4.4.1).
//
// Events of one socket (a UDP socket's reads, a stream connection's reads,
// a stream connection's writes) reach t in order. Sends from different
// goroutines over UDP are not ordered among themselves, as they are not on
// the wire either.
//
// Subscribe and cancel may be called at any time, from any goroutine,
// including from within a Tap. Once cancel has returned, t is not called
// for any message read or sent afterwards; a call already running may
// finish. cancel may be called more than once.
func (l *Layer) Subscribe(t Tap) (cancel func()) {
	if t == nil {
		return func() {}
	}
	s := &tapSub{f: t}
	ts := &l.taps
	ts.mu.Lock()
	var n []*tapSub
	if old := ts.subs.Load(); old != nil {
		n = append(n, *old...)
	}
	n = append(n, s)
	ts.subs.Store(&n)
	ts.mu.Unlock()
	return func() { l.unsubscribe(s) }
}

func (l *Layer) unsubscribe(s *tapSub) {
	ts := &l.taps
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if s.off.Swap(true) {
		return
	}
	old := ts.subs.Load()
	if old == nil {
		return
	}
	n := make([]*tapSub, 0, len(*old))
	for _, o := range *old {
		if o != s {
			n = append(n, o)
		}
	}
	if len(n) == 0 {
		ts.subs.Store(nil)
		return
	}
	ts.subs.Store(&n)
}

// tapOut reports a sent message to subs (the non-nil snapshot the caller
// loaded).
func (l *Layer) tapOut(subs *[]*tapSub, proto Proto, local, remote netip.AddrPort, c *Conn, b []byte) {
	ev := tapEvents.Get().(*TapEvent)
	*ev = TapEvent{Dir: TapOut, Proto: proto, Local: local, Remote: remote, Time: time.Now(), Data: b, Conn: c}
	l.deliver(subs, ev)
	*ev = TapEvent{} // keep neither the caller's bytes nor the Conn alive
	tapEvents.Put(ev)
}

// tapIn reports a received message to subs, using the reader's own event.
func (l *Layer) tapIn(subs *[]*tapSub, ev *TapEvent, p *Packet) {
	*ev = TapEvent{Dir: TapIn, Proto: p.Proto, Local: p.Local, Remote: p.Src, Time: time.Now(), Data: p.Data, Conn: p.Conn}
	l.deliver(subs, ev)
	*ev = TapEvent{}
}

func (l *Layer) deliver(subs *[]*tapSub, ev *TapEvent) {
	for _, s := range *subs {
		if !s.off.Load() {
			l.callTap(s, ev)
		}
	}
}

// callTap runs one Tap. Like a Handler panic, a Tap panic must not take the
// proxy down: it is logged and the message goes on.
func (l *Layer) callTap(s *tapSub, ev *TapEvent) {
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("transport: tap panic", "dir", ev.Dir, "proto", ev.Proto, "remote", ev.Remote,
				"panic", r, "stack", string(debug.Stack()))
		}
	}()
	s.f(ev)
}
