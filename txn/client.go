package txn

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// ClientHandler receives what a client transaction passes up.
// Calls come from the goroutine that read the response, or from the timer
// wheel for timeouts; they must not block.
type ClientHandler interface {
	// OnResponse gets every response the state machine passes up:
	// provisional, the first final, and every 2xx (RFC 6026 §7.1).
	OnResponse(c *Client, m *sip.Message)
	// OnTimeout reports Timer B or F (no final response: treat as 408,
	// §16.7 step ...) or, with timerC set, Timer C on a proceeding INVITE
	// (the proxy then cancels the branch, §16.8).
	OnTimeout(c *Client, timerC bool)
	// OnTransportError reports a failed send of the request (treat as 503,
	// §8.1.3.1 and RFC 3263 §4.3: try the next target).
	OnTransportError(c *Client, err error)
}

// Client is a client transaction (RFC 3261 §17.1).
type Client struct {
	l      *Layer
	key    uint64
	invite bool
	branch []byte
	dest   transport.Dest
	req    []byte
	h      ClientHandler

	mu       sync.Mutex
	state    state
	gotProv  bool
	interval time.Duration
	retrans  Timer // A or E
	timeout  Timer // B, F, D, K, M
	timerC   Timer // INVITE only
	cFired   bool
	ack      []byte
	// branchBuf holds branch when it fits: sipedge's own branches do
	// (42 bytes), so the copy costs no allocation of its own.
	branchBuf [48]byte
}

// Out is a request a client transaction sends.
type Out struct {
	Method     sip.Method
	MethodName []byte // as in CSeq: matches responses of extension methods
	Branch     []byte // the branch of the top Via
	Msg        []byte // the request, copied
	// Dest is where it goes; over TLS a Name is sent as SNI and the
	// certificate is verified against it (the host the URI named, RFC 3263
	// §4 and RFC 5922), not against the address.
	Dest transport.Dest
}

// ErrDuplicate is returned when a client transaction with the same branch
// and method already exists.
var ErrDuplicate = errors.New("txn: duplicate client transaction")

// NewClient sends the request and runs its client transaction; what comes
// back goes to h.
func (l *Layer) NewClient(o Out, h ClientHandler) (*Client, error) {
	c := &Client{
		l: l, invite: o.Method == sip.INVITE, dest: o.Dest,
		req: append([]byte(nil), o.Msg...), h: h, interval: l.cfg.T1,
	}
	c.branch = append(c.branchBuf[:0:len(c.branchBuf)], o.Branch...)
	proto := o.Dest.Proto
	c.key = clientKey(o.Branch, o.MethodName)
	l.wheel.initTimer(&c.retrans, c, timerRetrans)
	l.wheel.initTimer(&c.timeout, c, timerEnd)
	l.wheel.initTimer(&c.timerC, c, timerC)
	// Once stored, a response read on another goroutine may reach the
	// transaction before the first send below returns, and a 2xx drops
	// c.req (Accepted): the sends use this copy of the slice.
	req := c.req
	if _, stored := l.clients.putIfAbsent(c.key, c); !stored {
		return nil, ErrDuplicate
	}
	l.stats.ClientCreated.Add(1)
	c.mu.Lock()
	T1 := l.cfg.T1
	if !proto.Reliable() {
		c.retrans.Reset(T1) // Timer A or E
	}
	c.timeout.Reset(64 * T1) // Timer B or F
	if c.invite {
		c.timerC.Reset(l.cfg.TimerC) // §16.6 step 11
	}
	c.mu.Unlock()
	if l.wouldDial(c.dest) {
		// The first send opens the connection: never on the caller's
		// goroutine (a message reader, the timer wheel). A failure
		// ends the transaction from there.
		_ = l.sendDialing(c.dest, req, func(err error) { c.transportError(err) }) // failures reach failed
		return c, nil
	}
	if err := l.sendNow(c.dest, req); err != nil {
		l.stats.SendErrors.Add(1)
		c.transportError(err)
	}
	return c, nil
}

// transportError ends the transaction on a failed send and tells its
// handler (RFC 3261 §8.1.3.1: a transport error is as a 503).
func (c *Client) transportError(err error) {
	c.mu.Lock()
	if c.state == stTerminated {
		c.mu.Unlock()
		return
	}
	c.endLocked()
	c.mu.Unlock()
	c.h.OnTransportError(c, err)
}

// Branch is the branch of the request's top Via.
func (c *Client) Branch() []byte { return c.branch }

// Dest is where the request goes.
func (c *Client) Dest() transport.Dest { return c.dest }

// Request returns the request bytes the transaction sends; nil once a
// 2xx accepted an INVITE (there is nothing left to send or cancel).
func (c *Client) Request() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.req
}

// ClientResponse matches a response to its client transaction by the top
// Via branch and CSeq method (§17.1.3) and runs it through the state
// machine. It returns false when no transaction matches: a proxy then
// forwards the response statelessly (§16.7 step 1... "process as a stateless
// proxy").
func (l *Layer) ClientResponse(m *sip.Message) bool {
	via, err := m.TopVia()
	if err != nil {
		return false
	}
	_, method := m.CSeq()
	c, ok := l.clients.get(clientKey(via.Branch, method))
	if !ok {
		return false
	}
	c.receive(m)
	return true
}

func (c *Client) receive(m *sip.Message) {
	code := m.StatusCode()
	T1, T4 := c.l.cfg.T1, c.l.cfg.T4
	pass := false
	var resendACK []byte
	c.mu.Lock()
	switch {
	case c.state == stTerminated:
	case code < 200:
		if c.state == stProceeding {
			pass = true
			c.gotProv = true
			if c.invite {
				c.retrans.Stop() // no more Timer A once proceeding
				c.timeout.Stop() // Timer B applies to Calling only
				if c.invite && !c.cFired {
					c.timerC.Reset(c.l.cfg.TimerC)
				}
			} else if !c.dest.Proto.Reliable() {
				c.interval = c.l.cfg.T2 // §17.1.2.2: retransmit at T2 in Proceeding
			}
		}
	case c.invite && code < 300:
		// RFC 6026 §7.2: Accepted; every 2xx (retransmissions and other
		// forks) is passed up for the proxy to forward.
		pass = true
		if c.state != stAccepted {
			c.state = stAccepted
			c.stopAll()
			c.timeout.Reset(64 * T1) // Timer M
			// Accepted only passes 2xx up for 32 s: the request is never
			// sent again nor cancelled, and its bytes need not be kept
			// that long (at 800 calls/s, 25 000 INVITEs).
			c.req = nil
		}
	case c.invite:
		if c.state == stProceeding {
			pass = true
			c.state = stCompleted
			c.stopAll()
			c.ack = buildACK(c.req, m)
			if c.dest.Proto.Reliable() {
				c.timeout.Reset(time.Millisecond) // Timer D = 0
			} else {
				c.timeout.Reset(c.l.cfg.TimerD) // Timer D
			}
		} else {
			c.l.stats.ResponseRetransAbsorbed.Add(1)
		}
		resendACK = c.ack
	default: // non-INVITE final
		if c.state == stProceeding {
			pass = true
			c.state = stCompleted
			c.stopAll()
			if c.dest.Proto.Reliable() {
				c.endLocked()
			} else {
				c.timeout.Reset(T4) // Timer K
			}
		} else {
			c.l.stats.ResponseRetransAbsorbed.Add(1)
		}
	}
	c.mu.Unlock()
	if resendACK != nil {
		c.l.sendDest(c.dest, resendACK) // §17.1.1.3: ACK every non-2xx final
	}
	if pass {
		c.h.OnResponse(c, m)
	}
}

func (c *Client) stopAll() {
	c.retrans.Stop()
	c.timeout.Stop()
	if c.invite {
		c.timerC.Stop()
	}
}

func (c *Client) timerRetrans() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stProceeding || (c.invite && c.gotProv) {
		return
	}
	c.l.stats.Retransmissions.Add(1)
	c.l.sendDest(c.dest, c.req)
	if c.invite {
		c.interval *= 2 // Timer A doubles without bound (§17.1.1.2)
	} else if !c.gotProv {
		c.interval *= 2 // Timer E doubles up to T2 (§17.1.2.2)
		if c.interval > c.l.cfg.T2 {
			c.interval = c.l.cfg.T2
		}
	}
	c.retrans.Reset(c.interval)
}

func (c *Client) timerTimeout() {
	c.mu.Lock()
	timedOut := c.state == stProceeding
	c.endLocked()
	c.mu.Unlock()
	if timedOut {
		c.l.stats.Timeouts.Add(1)
		c.h.OnTimeout(c, false) // Timer B or F, or the hard stop after C
	}
}

func (c *Client) fire(kind uint8) {
	switch kind {
	case timerRetrans:
		c.timerRetrans()
	case timerEnd:
		c.timerTimeout()
	default:
		c.timerCFired()
	}
}

func (c *Client) timerCFired() {
	c.mu.Lock()
	if c.state != stProceeding || c.cFired {
		c.mu.Unlock()
		return
	}
	c.cFired = true
	prov := c.gotProv
	if prov {
		// The proxy cancels the branch; if the callee never answers the
		// CANCEL either, end the transaction after 64*T1 more.
		c.timeout.Reset(64 * c.l.cfg.T1)
	} else {
		c.endLocked()
	}
	c.mu.Unlock()
	c.l.stats.Timeouts.Add(1)
	c.h.OnTimeout(c, prov)
}

// endLocked terminates the transaction. c.mu is held.
func (c *Client) endLocked() {
	if c.state == stTerminated {
		return
	}
	c.state = stTerminated
	c.stopAll()
	c.l.clients.del(c.key)
	c.l.stats.ClientTerminated.Add(1)
}

// Proceeding reports whether a provisional response was received and no
// final one yet: the condition under which a CANCEL may be sent (§9.1).
func (c *Client) Proceeding() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stProceeding && c.gotProv
}

// Done reports whether the transaction has a final response or ended.
func (c *Client) Done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != stProceeding
}

// buildACK builds the ACK for a non-2xx final response (§17.1.1.3): the
// Request-URI, Call-ID, From, top Via and Route of the request, the To of the
// response, CSeq with the same number and method ACK.
func buildACK(req []byte, resp *sip.Message) []byte {
	var r sip.Message
	if r.Parse(req, nil) != nil {
		return nil
	}
	n, _ := r.CSeq()
	b := make([]byte, 0, 512)
	b = append(b, "ACK "...)
	b = append(b, r.RequestURIBytes()...)
	b = append(b, " SIP/2.0\r\n"...)
	b = appendCommon(b, &r, resp.Get(sip.KindTo))
	b = append(b, "CSeq: "...)
	b = strconv.AppendUint(b, uint64(n), 10)
	b = append(b, " ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"...)
	return b
}

// BuildCancel builds the CANCEL for a request (§9.1): same Request-URI,
// Call-ID, To, From, top Via (so the same branch) and Route, CSeq number with
// method CANCEL.
func BuildCancel(req []byte) ([]byte, error) {
	var r sip.Message
	if err := r.Parse(req, nil); err != nil {
		return nil, err
	}
	n, _ := r.CSeq()
	b := make([]byte, 0, 512)
	b = append(b, "CANCEL "...)
	b = append(b, r.RequestURIBytes()...)
	b = append(b, " SIP/2.0\r\n"...)
	b = appendCommon(b, &r, r.Get(sip.KindTo))
	b = append(b, "CSeq: "...)
	b = strconv.AppendUint(b, uint64(n), 10)
	b = append(b, " CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"...)
	return b, nil
}

func appendCommon(b []byte, r *sip.Message, to []byte) []byte {
	if v, ok := topViaValue(r); ok {
		b = append(b, "Via: "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	for i := r.Find(sip.KindRoute); i >= 0; i = r.FindNext(sip.KindRoute, i) {
		b = append(b, "Route: "...)
		b = append(b, r.HeaderValue(i)...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "From: "...)
	b = append(b, r.Get(sip.KindFrom)...)
	b = append(b, "\r\nTo: "...)
	b = append(b, to...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, r.CallID()...)
	return append(b, "\r\n"...)
}

// Discard is the ClientHandler of requests whose answers nobody waits for
// (a CANCEL, a BYE sipedge sends to end a call): what comes back is
// absorbed by the transaction.
type Discard struct{}

func (Discard) OnResponse(*Client, *sip.Message) {}
func (Discard) OnTimeout(*Client, bool)          {}
func (Discard) OnTransportError(*Client, error)  {}
