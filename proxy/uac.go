package proxy

import (
	"errors"
	"strconv"
	"sync/atomic"

	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// Requests sipedge sends as a user agent client (keep-alive OPTIONS, the
// BYE that ends a call whose session timer expired, and next OPTIONS
// probes and REGISTER to trunks) are all built here, so each gets the same
// Via, branch, Max-Forwards and framing (RFC 3261 §8.1.1).

// Originate describes a request sipedge originates.
type Originate struct {
	Method string // "OPTIONS", "BYE", ...
	URI    string // Request-URI
	Target Target // where it is sent (Proto, Addr)
	// Routes are Route values, in order (a dialog's route set, §12.2.1.1).
	Routes []string
	// From and To are whole header values, tags included; an empty From
	// is sipedge itself at its address towards the target, with a tag.
	From, To string
	CallID   string // empty: a new one
	CSeq     uint32 // 0: 1
	// Extra holds further header lines, each ending in CRLF.
	Extra []byte
}

var uacSeq atomic.Uint64

// NewID returns a token unique to this process and call (for tags,
// Call-IDs, branches): 16 hex digits, no system call.
func (c *Core) NewID() string {
	h := sip.NewHash().AddUint64(c.tagKey).AddUint64(uacSeq.Add(1))
	return string(appendHex(nil, uint64(h)))
}

var errNoRoute = errors.New("proxy: no local address towards the target")

// Originate builds the request and sends it in a client transaction whose
// answers go to h (txn.Discard when nobody waits for them).
func (c *Core) Originate(o *Originate, h txn.ClientHandler) error {
	b, branch, err := c.BuildRequest(o)
	if err != nil {
		return err
	}
	c.stats.Originated.Add(1)
	method := sip.LookupMethod([]byte(o.Method))
	if _, err := c.txn.NewClient(txn.Out{Method: method, MethodName: []byte(o.Method), Branch: branch, Msg: b,
		Dest: transport.Dest{Proto: o.Target.Proto, Addr: o.Target.Addr, Name: o.Target.Host}}, h); err != nil {
		c.stats.SendErrors.Add(1)
		return err
	}
	return nil
}

// BuildRequest writes the request o describes and returns it with its
// branch.
func (c *Core) BuildRequest(o *Originate) (msg, branch []byte, err error) {
	local, ok := c.LocalFor(o.Target.Proto, o.Target.Addr.Addr())
	if !ok {
		return nil, nil, errNoRoute
	}
	id := c.NewID()
	branch = append([]byte(sip.MagicCookie+"Sa"), id...)
	b := make([]byte, 0, 400+len(o.URI)+len(o.From)+len(o.To)+len(o.Extra))
	b = append(b, o.Method...)
	b = append(b, ' ')
	b = append(b, o.URI...)
	b = append(b, " SIP/2.0\r\nVia: SIP/2.0/"...)
	b = append(b, o.Target.Proto.String()...)
	b = append(b, ' ')
	b = AppendHostPort(b, local)
	b = append(b, ";branch="...)
	b = append(b, branch...)
	b = append(b, ";rport\r\nMax-Forwards: 70\r\n"...)
	for _, r := range o.Routes {
		b = append(b, "Route: "...)
		b = append(b, r...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "From: "...)
	if o.From != "" {
		b = append(b, o.From...)
	} else {
		b = append(b, "<sip:sipedge@"...)
		b = AppendHostPort(b, local)
		b = append(b, ">;tag="...)
		b = append(b, id...)
	}
	b = append(b, "\r\nTo: "...)
	if o.To != "" {
		b = append(b, o.To...)
	} else {
		b = append(b, '<')
		b = append(b, o.URI...)
		b = append(b, '>')
	}
	b = append(b, "\r\nCall-ID: "...)
	if o.CallID != "" {
		b = append(b, o.CallID...)
	} else {
		b = append(b, id...)
		b = append(b, "@sipedge"...)
	}
	b = append(b, "\r\nCSeq: "...)
	cseq := o.CSeq
	if cseq == 0 {
		cseq = 1
	}
	b = strconv.AppendUint(b, uint64(cseq), 10)
	b = append(b, ' ')
	b = append(b, o.Method...)
	b = append(b, "\r\n"...)
	if ua := c.cfg.UserAgent; ua != "" {
		b = append(b, "User-Agent: "...)
		b = append(b, ua...)
		b = append(b, "\r\n"...)
	}
	b = append(b, o.Extra...)
	b = append(b, "Content-Length: 0\r\n\r\n"...)
	return b, branch, nil
}

// NewTimer returns a stopped timer on the transaction layer's timing
// wheel: no goroutine or runtime timer per entry. fn runs on the wheel's
// goroutine and must not block or send.
func (c *Core) NewTimer(fn func()) *txn.Timer { return c.txn.NewTimer(fn) }
