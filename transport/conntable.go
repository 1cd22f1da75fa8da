package transport

import (
	"net/netip"
	"sync"
)

// connKey identifies a stream connection by protocol and remote address.
// RFC 3261 §18 and RFC 5923 reuse a connection for anything sent to the
// same transport, IP and port, whoever opened it: a request to a client
// behind a NAT can only get through on the connection the client opened.
//
// name is the server name a dialed TLS connection was verified for
// (SendDest), empty for every other connection: one verified for a name
// serves only that name, since the same address may serve several
// domains with different certificates, and an accepted connection proves
// no name of the peer's at all.
type connKey struct {
	proto Proto
	addr  netip.AddrPort
	name  string
}

// dialCall is one dial in progress; concurrent Sends to the same key wait
// for it instead of opening connections of their own.
type dialCall struct {
	done chan struct{}
	c    *Conn
	err  error
}

// connTable holds every open stream connection.
type connTable struct {
	mu     sync.Mutex
	closed bool                  // Close has run: no more connections
	all    map[*Conn]struct{}    // every connection, for MaxConns and Close
	byKey  map[connKey]*Conn     // connections usable for sending
	dials  map[connKey]*dialCall // dials in progress
	// perSource counts the open accepted connections of each remote
	// address, for MaxConnsPerSource. An address is removed when its
	// last connection closes, so the map never holds more entries than
	// there are open connections, whatever the number of addresses seen.
	perSource map[netip.Addr]int
	// maxConns and maxPerSource are MaxConns and MaxConnsPerSource (0:
	// no cap), see SetConnLimits.
	maxConns, maxPerSource int
}

func (t *connTable) init() {
	t.all = make(map[*Conn]struct{})
	t.perSource = make(map[netip.Addr]int)
	t.byKey = make(map[connKey]*Conn)
	t.dials = make(map[connKey]*dialCall)
}

// add registers c, and makes it available to Send if publish is set (a TLS
// connection is published only after its handshake). An accepted
// connection is refused when MaxConns connections, or MaxConnsPerSource
// from its address, are open; one we dialed never is (the proxy itself
// decides where it sends) but counts towards MaxConns. On success the
// caller must start c.serve: the WaitGroup count for it is taken here,
// under the same lock that Close takes, so no goroutine can start after
// Close has collected the connections.
func (t *connTable) add(c *Conn, publish bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if c.inbound {
		if t.maxConns > 0 && len(t.all) >= t.maxConns {
			return ErrTooManyConns
		}
		src := c.remote.Addr()
		n := t.perSource[src]
		if t.maxPerSource > 0 && n >= t.maxPerSource {
			return ErrTooManyFromSource
		}
		t.perSource[src] = n + 1
	}
	t.all[c] = struct{}{}
	if publish {
		t.byKey[c.key()] = c
	}
	c.l.wg.Add(1)
	return nil
}

// publish makes an already added connection available to Send. A newer
// connection from the same address replaces an older one in the index (the
// older stays open until it closes on its own).
func (t *connTable) publish(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.all[c]; ok && !c.closed.Load() {
		t.byKey[c.key()] = c
	}
}

// unpublish hides c from Send while it is being shut down.
func (t *connTable) unpublish(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKey[c.key()] == c {
		delete(t.byKey, c.key())
	}
}

// remove forgets c. Only a connection add accepted is counted down, and
// only once (close calls remove once).
func (t *connTable) remove(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.all[c]; !ok {
		return
	}
	delete(t.all, c)
	if c.inbound {
		src := c.remote.Addr()
		if n := t.perSource[src] - 1; n > 0 {
			t.perSource[src] = n
		} else {
			delete(t.perSource, src)
		}
	}
	if t.byKey[c.key()] == c {
		delete(t.byKey, c.key())
	}
}

// lookup returns the open connection for k, if any.
func (t *connTable) lookup(k connKey) *Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.byKey[k]; c != nil && !c.closed.Load() {
		return c
	}
	return nil
}

// closeAll marks the table closed and returns the connections to close.
func (t *connTable) closeAll() []*Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	out := make([]*Conn, 0, len(t.all))
	for c := range t.all {
		out = append(out, c)
	}
	return out
}

func (t *connTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.all)
}

// fromSource returns the number of open accepted connections from a.
func (t *connTable) fromSource(a netip.Addr) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.perSource[a]
}

// connFor returns an open connection to dst over proto, dialing one if
// needed. Concurrent callers for the same destination share a single dial.
func (l *Layer) connFor(k connKey) (*Conn, error) {
	t := &l.conns
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	if c := t.byKey[k]; c != nil && !c.closed.Load() {
		t.mu.Unlock()
		return c, nil
	}
	if d := t.dials[k]; d != nil {
		t.mu.Unlock()
		select {
		case <-d.done:
			return d.c, d.err
		case <-l.ctx.Done():
			return nil, ErrClosed
		}
	}
	d := &dialCall{done: make(chan struct{})}
	t.dials[k] = d
	t.mu.Unlock()

	d.c, d.err = l.dial(k) // publishes d.c before the dial is forgotten

	t.mu.Lock()
	delete(t.dials, k)
	t.mu.Unlock()
	close(d.done)
	return d.c, d.err
}

// HasConn reports whether an open connection to dst over proto exists, for
// example the flow a phone registered over (RFC 5626 §5.3): a request can
// reuse it instead of opening a new connection.
func (l *Layer) HasConn(proto Proto, dst netip.AddrPort) bool {
	return l.conns.lookup(connKey{proto: proto, addr: unmap(dst)}) != nil
}

// HasConnDest reports whether SendDest(d) would use an open connection
// (over TLS with a name: one verified for that name).
func (l *Layer) HasConnDest(d Dest) bool {
	k := destKey(d)
	k.addr = unmap(k.addr)
	return l.conns.lookup(k) != nil
}
