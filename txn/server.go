package txn

import (
	"net/netip"
	"sync"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

type state uint8

const (
	stProceeding state = iota // also "Trying" for non-INVITE
	stCompleted
	stConfirmed
	stAccepted // RFC 6026: INVITE answered 2xx
	stTerminated
)

// Server is a server transaction (RFC 3261 §17.2).
type Server struct {
	l      *Layer
	key    uint64
	invite bool
	Method sip.Method
	proto  transport.Proto
	dst    netip.AddrPort // where responses go (§18.2.2), fixed at creation

	mu       sync.Mutex
	state    state
	last     []byte // last response sent, for retransmission
	lastCode int
	interval time.Duration
	retrans  Timer // Timer G
	end      Timer // Timers H, I, J, L

	// owner is the owner's context (the proxy's response context), set
	// and read under mu: a CANCEL may look for it on another goroutine
	// while a deferred request sets it.
	owner any
}

// Adopt records the owner's context of the transaction unless a final
// response was already sent (a CANCEL answered it 487 while the request
// waited for DNS); it reports whether it did.
func (st *Server) Adopt(v any) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.lastCode >= 200 {
		return false
	}
	st.owner = v
	return true
}

// RespondUnowned sends a response only while no owner adopted the
// transaction (it would then be the owner's to answer) and no final one
// went out; it reports whether it did. A CANCEL for an INVITE that is still
// being routed (waiting for DNS) answers it 487 this way; the forwarding
// then finds it final in Adopt and stops.
func (st *Server) RespondUnowned(b []byte, code int) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.owner != nil || st.lastCode >= 200 {
		return false
	}
	st.respondLocked(b, code, false, nil)
	return true
}

// Owner returns what SetOwner recorded (nil before).
func (st *Server) Owner() any {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.owner
}

// ServerFor matches a request to its server transaction (§17.2.3).
//
//   - A retransmission is absorbed: the last response is sent again and
//     (st, false) is returned; the caller does nothing more.
//   - An ACK for a non-2xx final response moves the transaction to
//     Confirmed and is absorbed the same way (st, false).
//   - An ACK matching nothing (the ACK of a 2xx is its own transaction,
//     forwarded end to end) returns (nil, false).
//   - Anything else creates a transaction: (st, true). Responses will go to
//     dst over proto.
//   - Unless MaxServers transactions are live: then none is created and
//     (nil, true) is returned, counted in Stats.ServersRefused. The caller
//     answers 503 with Retry-After statelessly (RFC 3261 §21.5.4): the
//     request is new, so the client learns at once to come back or go
//     elsewhere, and the refusal costs no state.
func (l *Layer) ServerFor(m *sip.Message, via *sip.Via, proto transport.Proto, dst netip.AddrPort) (*Server, bool) {
	method := matchMethod(m)
	key := serverKey(m, via, method)
	if m.MethodKind() == sip.ACK {
		st, ok := l.servers.get(key)
		if !ok {
			return nil, false
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		switch st.state {
		case stCompleted:
			st.state = stConfirmed
			st.retrans.Stop()
			// Timer I: absorb further ACK retransmissions for T4 (UDP).
			if proto.Reliable() {
				st.endLocked()
			} else {
				st.end.Reset(l.cfg.T4)
			}
			l.stats.RequestRetransAbsorbed.Add(1)
			return st, false
		case stConfirmed:
			l.stats.RequestRetransAbsorbed.Add(1)
			return st, false
		}
		return nil, false
	}
	if st, ok := l.servers.get(key); ok {
		st.retransmission()
		return st, false
	}
	if resp, to, proto, ok := l.done.lookup(key, nil); ok {
		// A retransmission of a non-INVITE request already answered
		// (§17.2.2, Completed state): the same response again.
		l.stats.RequestRetransAbsorbed.Add(1)
		l.stats.Retransmissions.Add(1)
		l.send(proto, to, resp)
		return nil, false
	}
	if l.full() && m.MethodKind() != sip.CANCEL {
		// A CANCEL is let through: it refers to a transaction already
		// here (§9.2) and is answered at once, so it never accumulates.
		l.stats.ServersRefused.Add(1)
		return nil, true
	}
	st := &Server{
		l: l, key: key, Method: m.MethodKind(), invite: m.MethodKind() == sip.INVITE,
		proto: proto, dst: dst, interval: l.cfg.T1,
	}
	l.wheel.initTimer(&st.retrans, st, timerRetrans)
	l.wheel.initTimer(&st.end, st, timerEnd)
	if old, stored := l.servers.putIfAbsent(key, st); !stored {
		// Lost a race with another reader for the same retransmission.
		old.retransmission()
		return old, false
	}
	l.stats.ServerCreated.Add(1)
	return st, true
}

// full reports whether MaxServers server transactions are live. The count
// is the difference of two counters the layer keeps anyway: no shard lock
// is taken on the way to a new transaction.
func (l *Layer) full() bool {
	limit := l.cfg.MaxServers
	if limit < 0 {
		return false
	}
	// Terminated first: a transaction created and ended between the two
	// loads then counts as live, never as less than none.
	ended := l.stats.ServerTerminated.Load()
	live := int64(l.stats.ServerCreated.Load() - ended)
	return live >= int64(limit)
}

// FindInvite returns the INVITE server transaction a CANCEL refers to
// (same key as the INVITE: §9.2), or nil.
func (l *Layer) FindInvite(cancel *sip.Message, via *sip.Via) *Server {
	st, ok := l.servers.get(serverKey(cancel, via, []byte("INVITE")))
	if !ok {
		return nil
	}
	return st
}

func (st *Server) retransmission() {
	st.l.stats.RequestRetransAbsorbed.Add(1)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.last != nil && st.state != stAccepted && st.state != stTerminated {
		st.l.stats.Retransmissions.Add(1)
		st.l.send(st.proto, st.dst, st.last)
	}
}

// Timer kinds of the embedded timers (Timer.kind).
const (
	timerRetrans uint8 = iota // G (server), A/E (client)
	timerEnd                  // H, I, J, L (server); B/F, D, K, M (client)
	timerC                    // client INVITE: Timer C (§16.6 step 11)
)

func (st *Server) fire(kind uint8) {
	if kind == timerRetrans {
		st.timerG()
	} else {
		st.timerEnd()
	}
}

// Respond sends a response and moves the state machine (§17.2.1, §17.2.2,
// RFC 6026 §8.5–8.7). b is copied. After a final non-2xx, later responses
// are dropped except 2xx, which a proxy must forward whenever one arrives
// (§16.7 step 5).
func (st *Server) Respond(b []byte, code int) { st.respond(b, code, false, nil) }

// respond sends b, or appends it to out when out is not nil (only for
// owned responses: the bytes are sent after the lock is released).
func (st *Server) respond(b []byte, code int, owned bool, out *[]transport.Outgoing) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.respondLocked(b, code, owned, out)
}

// respondLocked is respond with st.mu held.
func (st *Server) respondLocked(b []byte, code int, owned bool, out *[]transport.Outgoing) {
	switch st.state {
	case stTerminated:
		if code >= 200 && code < 300 && st.invite {
			st.l.sendOrAppend(out, st.proto, st.dst, b) // late 2xx: forward statelessly
		}
		return
	case stCompleted, stConfirmed:
		if !(code >= 200 && code < 300 && st.invite) {
			return
		}
	case stAccepted:
		if code < 200 || code >= 300 {
			return
		}
	}
	switch {
	case st.invite && code >= 200 && code < 300:
		// Accepted (RFC 6026 §8.7) absorbs a repeated INVITE without
		// answering it, and each 2xx the proxy forwards is sent as it
		// comes: the response is not kept for the 32 s of Timer L.
		st.last = nil
	case !st.invite && code >= 200:
		// A non-INVITE transaction ends with its final response: over
		// UDP the completed table keeps its own copy for Timer J
		// (below), over a stream nothing is resent. No copy here.
		st.last = nil
	case owned:
		st.last = b
	case st.invite && cap(st.last) == 0:
		// An INVITE's 100 and then its 180 or 183 usually share one
		// buffer: room for the larger one from the start.
		st.last = append(make([]byte, 0, max(len(b), provisionalReserve)), b...)
	default:
		st.last = append(st.last[:0], b...)
	}
	st.lastCode = code
	st.l.sendOrAppend(out, st.proto, st.dst, b)
	if code < 200 {
		return
	}
	T1 := st.l.cfg.T1
	switch {
	case st.invite && code < 300:
		if st.state != stAccepted {
			st.state = stAccepted
			st.end.Reset(64 * T1) // Timer L
		}
	case st.invite:
		st.state = stCompleted
		if !st.proto.Reliable() {
			st.retrans.Reset(st.interval) // Timer G
		}
		st.end.Reset(64 * T1) // Timer H
	default:
		st.state = stCompleted
		if !st.proto.Reliable() {
			// Timer J: what is left to do is answering retransmissions
			// of the request, which the completed table does in a form
			// the garbage collector need not scan (txn/completed.go).
			st.l.done.add(st.key, st.dst, st.proto, b, time.Now().Add(64*T1))
		}
		st.endLocked()
	}
}

// provisionalReserve is the room an INVITE's first response gets for the
// next (a 180 with Record-Route and Contact is a few hundred bytes).
const provisionalReserve = 1024

// Final reports whether a final response has been sent.
func (st *Server) Final() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lastCode >= 200
}

// LastCode returns the last response code sent (0 if none).
func (st *Server) LastCode() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lastCode
}

func (st *Server) timerG() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.state != stCompleted {
		return
	}
	st.l.stats.Retransmissions.Add(1)
	st.l.send(st.proto, st.dst, st.last)
	st.interval *= 2
	if st.interval > st.l.cfg.T2 {
		st.interval = st.l.cfg.T2
	}
	st.retrans.Reset(st.interval)
}

func (st *Server) timerEnd() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.endLocked()
}

// endLocked terminates the transaction. st.mu is held.
func (st *Server) endLocked() {
	if st.state == stTerminated {
		return
	}
	st.state = stTerminated
	st.retrans.Stop()
	st.end.Stop()
	st.l.servers.del(st.key)
	st.l.stats.ServerTerminated.Add(1)
}
