package transport

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// udpListener is one bound UDP socket. A listen address is served by a
// group of them (see listenUDP); the first of a group is the one sends
// leave from and the one Addrs reports.
type udpListener struct {
	l       *Layer
	conn    *net.UDPConn
	addr    netip.AddrPort // bound address (unmapped)
	dual    bool           // IPv6 wildcard socket that also receives IPv4
	member  bool           // a further socket of a group: receives only
	readers int            // goroutines reading this socket
	// raw reads and writes with raw non-blocking system calls (Linux;
	// nil elsewhere: the net package's calls).
	raw *rawUDP
}

// listenUDP binds s. IPv4 addresses get "udp4" sockets; IPv6 ones "udp6"
// (IPv6-only) unless v6Only says the wildcard may be dual-stack.
//
// With several readers, s is bound by that many sockets with SO_REUSEPORT,
// one reader goroutine each. The kernel hashes each datagram's addresses
// and ports to pick the socket, so all the messages of one flow (one phone,
// one peer) are read by the same goroutine in the order they came: an ACK
// and the BYE right behind it are handled in that order, which several
// goroutines reading one socket cannot promise. Readers of different
// sockets never contend for one descriptor either. Before the group is
// made the address is bound once without SO_REUSEPORT, so a port another
// process holds (even another sipedge's group) is refused as in use rather
// than silently shared, and port 0 becomes one free port for the group.
func (l *Layer) listenUDP(s spec) ([]*udpListener, error) {
	network, v6only := socketNetwork("udp", s, l.v6Only(s))
	n := l.udpReaders
	if !reusePortGroups || n < 2 {
		u, err := l.bindUDP(network, s.addr, v6only, false)
		if err != nil {
			return nil, err
		}
		u.readers = n
		return []*udpListener{u}, nil
	}
	probe, err := l.bindUDP(network, s.addr, v6only, false)
	if err != nil {
		return nil, err
	}
	at := netip.AddrPortFrom(s.addr.Addr(), probe.addr.Port())
	probe.conn.Close()
	group := make([]*udpListener, 0, n)
	for i := range n {
		u, err := l.bindUDP(network, at, v6only, true)
		if err != nil {
			for _, g := range group {
				g.conn.Close()
			}
			return nil, err
		}
		u.readers, u.member = 1, i > 0
		group = append(group, u)
	}
	return group, nil
}

func (l *Layer) bindUDP(network string, at netip.AddrPort, v6only int, reusePort bool) (*udpListener, error) {
	lc := net.ListenConfig{Control: listenControl(v6only, reusePort)}
	pc, err := lc.ListenPacket(context.Background(), network, at.String())
	if err != nil {
		return nil, err
	}
	uc := pc.(*net.UDPConn)
	if l.cfg.UDPReadBuffer > 0 {
		// Best effort: the kernel may clamp it (net.core.rmem_max).
		_ = uc.SetReadBuffer(l.cfg.UDPReadBuffer)
	}
	bound := unmap(uc.LocalAddr().(*net.UDPAddr).AddrPort())
	return &udpListener{l: l, conn: uc, addr: bound, dual: network == "udp", raw: newRawUDP(uc)}, nil
}

// socketNetwork picks the network name for base ("udp" or "tcp") and the
// IPV6_V6ONLY value to force (-1: leave alone, IPv4 socket). A dual-stack
// socket needs the family-less name: Go itself sets IPV6_V6ONLY on "udp6"
// and "tcp6" sockets.
func socketNetwork(base string, s spec, v6only bool) (string, int) {
	a := s.addr.Addr()
	switch {
	case a.Is4():
		return base + "4", -1
	case a.IsUnspecified() && !v6only:
		return base, 0
	default:
		return base + "6", 1
	}
}

// readLoop is one reader of the socket (where SO_REUSEPORT groups are not
// available, several goroutines read one socket: the kernel hands each
// datagram to exactly one of them). The loop allocates nothing per
// datagram: the buffers and Packet are reused and sources are read in
// place.
func (u *udpListener) readLoop() {
	l := u.l
	defer l.wg.Done()
	// One byte more than the largest message, so an oversized datagram is
	// visibly oversized (n > MaxMessageSize) instead of silently truncated
	// to a size that looks acceptable: the parser then answers 513
	// (RFC 3261 §18.1.1, §21.5.14).
	size := l.maxMsg + 1
	r := u.newReader(size)
	var buf []byte
	if r == nil {
		buf = make([]byte, size)
	}
	p := new(Packet)
	var ev *TapEvent // made when first needed: most layers are never tapped
	errs := 0
	for {
		var n int
		var err error
		var src netip.AddrPort
		if r != nil {
			n, err = r.read()
		} else {
			var m int
			m, src, err = u.conn.ReadFromUDPAddrPort(buf[:cap(buf)])
			n, buf = 1, buf[:m]
		}
		if err != nil {
			if l.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (ICMP-induced ECONNREFUSED on some systems,
			// ENOBUFS, ...): keep serving, but don't spin if it persists.
			errs++
			l.log.Debug("transport: UDP read error", "local", u.addr, "err", err)
			if errs > 10 && !sleepCtx(l.ctx, 10*time.Millisecond) {
				return
			}
			continue
		}
		errs = 0
		hooks := l.reads.Load()
		if hooks != nil {
			hooks.Enter()
		}
		for i := range n {
			b := buf
			if r != nil {
				b, src = r.data(i), r.src(i)
			}
			if isKeepAliveDatagram(b) {
				// CRLF keep-alives (and runts no message can fit in) carry
				// nothing to process or answer: over UDP RFC 5626 uses STUN,
				// not CRLF, and CRLFs between messages are ignorable
				// (RFC 3261 §7.5).
				l.stats.dgramDropped.Add(1)
				continue
			}
			if len(b) > l.maxMsg {
				l.stats.dgramTooLarge.Add(1)
			}
			*p = Packet{Data: b, Proto: UDP, Src: unmap(src), Local: u.addr, udp: u}
			l.stats.received.Add(1)
			if subs := l.taps.subs.Load(); subs != nil {
				if ev == nil {
					ev = new(TapEvent)
				}
				l.tapIn(subs, ev, p)
			}
			l.dispatch(p)
		}
		if hooks != nil {
			hooks.Leave()
		}
	}
}

// isKeepAliveDatagram reports whether b is too short to be a message (< 4
// bytes) or only CR, LF and SP.
func isKeepAliveDatagram(b []byte) bool {
	if len(b) < 4 {
		return true
	}
	for _, c := range b {
		if c != '\r' && c != '\n' && c != ' ' {
			return false
		}
	}
	return true
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
