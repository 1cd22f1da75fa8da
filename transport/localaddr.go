package transport

import (
	"net"
	"net/netip"
	"sync"
)

// maxRouteCache bounds the per-destination cache: past it the cache is
// emptied and refilled, so a scan of many destinations cannot grow memory
// without bound, and a route that changed is eventually looked up again.
const maxRouteCache = 4096

// destCache remembers, per destination IP, the source address the kernel
// routes from towards it and the UDP socket Send uses for it. Finding the
// route costs a socket, a connect and a close (see routeSource): done once
// per destination, not per message.
type destCache struct {
	mu        sync.RWMutex
	listeners []Listener // as Addrs reports them, set by Start
	m         map[netip.Addr]destEntry
}

type destEntry struct {
	src   netip.Addr     // the kernel's source address towards the key
	udp   *udpListener   // socket UDP sends leave from; nil: not chosen yet
	local netip.AddrPort // LocalFor(UDP, key): the address udp sends with
}

// udpSendState is how Send picks a UDP socket, fixed at Start. With at
// most one UDP listener of dst's family the choice does not depend on the
// route, and the hot path needs no lookup at all; with several (a gateway
// with an inside and an outside address) it depends on dst, and the
// choice is cached in destCache.
type udpSendState struct {
	sole  [2]*udpListener // by family of dst (famIdx): the only candidate
	route [2]bool         // several candidates: ask destCache
}

func famIdx(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// canSend reports whether socket u can send to d's family: a dual-stack
// IPv6 wildcard socket serves IPv4 too.
func (u *udpListener) canSend(d netip.Addr) bool {
	a := u.addr.Addr()
	return a.Is4() == d.Is4() || (u.dual && d.Is4())
}

// setListeners records the bound listeners for LocalFor and decides how
// Send picks UDP sockets. Called by Start, before any Send can see a socket.
func (l *Layer) setListeners(udp []*udpListener, ls []Listener) {
	c := &l.dests
	c.mu.Lock()
	c.listeners = ls
	c.m = make(map[netip.Addr]destEntry)
	c.mu.Unlock()

	st := new(udpSendState)
	for f, d := range [2]netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		n := 0
		var first, wildcard *udpListener
		for _, u := range udp {
			if u.member {
				continue
			}
			if u.addr.Addr().Is4() == d.Is4() {
				if n++; first == nil {
					first = u
				}
			} else if wildcard == nil && u.addr.Addr().IsUnspecified() {
				wildcard = u
			}
		}
		switch {
		case n > 1:
			st.route[f] = true
		case n == 1:
			st.sole[f] = first
		case wildcard != nil && wildcard.canSend(d):
			// LocalFor's fallback: a dual-stack [::] serves IPv4.
			st.sole[f] = wildcard
		}
	}
	l.udpSend.Store(st)
}

// LocalFor returns the address sipedge is reached at over proto by a
// message to dst, the one to write into Via and Record-Route: the listener
// bound to the address the kernel sends from towards dst (on a gateway,
// the outside listener for the outside); else, among the listeners of
// dst's family, a specific one of dst's scope (loopback or not), else a
// wildcard one, else any; else a wildcard listener of the other family (a
// dual-stack [::] serves IPv4). Among equals the first listed (Addrs
// order) wins. A wildcard IP is replaced by the kernel's source address
// towards dst (RouteSource). It reports false when proto has no listener
// for dst, and before Start.
//
// Over UDP, Send and SendBatch send from the socket of the listener
// LocalFor picks, so the source address a datagram leaves with is the one
// its Via names (RFC 3261 §18.2.1 and RFC 3581 send responses there).
func (l *Layer) LocalFor(proto Proto, dst netip.Addr) (netip.AddrPort, bool) {
	dst = dst.Unmap()
	pick, via, ok := l.pickListener(proto, dst)
	if !ok {
		return netip.AddrPort{}, false
	}
	if !pick.Addr.Addr().IsUnspecified() {
		return pick.Addr, true
	}
	return netip.AddrPortFrom(via, pick.Addr.Port()), true
}

// Ranks of a listener for a destination in pickListener.
const (
	rankOtherScope = iota + 1 // specific address, loopback-ness unlike dst's
	rankWildcard              // the kernel picks the source for the route
	rankSameScope             // specific address, loopback-ness like dst's
	rankRoute                 // the very address the kernel routes from
)

// pickListener is LocalFor's choice of listener, with the route source.
func (l *Layer) pickListener(proto Proto, dst netip.Addr) (pick Listener, via netip.Addr, found bool) {
	via = l.RouteSource(dst)
	c := &l.dests
	c.mu.RLock()
	defer c.mu.RUnlock()
	best := 0
	for _, ls := range c.listeners {
		a := ls.Addr.Addr()
		if ls.Proto != proto || a.Is4() != dst.Is4() {
			continue
		}
		r := rankOtherScope
		switch {
		case a == via:
			r = rankRoute
		case a.IsUnspecified():
			r = rankWildcard
		case sameScope(a, dst):
			r = rankSameScope
		}
		if r > best {
			pick, best = ls, r
		}
	}
	if best > 0 {
		return pick, via, true
	}
	// A dual-stack [::] listener serves IPv4 too.
	for _, ls := range c.listeners {
		if ls.Proto == proto && ls.Addr.Addr().IsUnspecified() {
			return ls, via, true
		}
	}
	return pick, via, false
}

func sameScope(a, b netip.Addr) bool { return a.IsLoopback() == b.IsLoopback() }

// RouteSource returns the local address the kernel sends from towards dst
// (on a gateway, the inside or the outside address): the address to
// advertise, or for the media relay to bind, for that side. The answer is
// cached per destination. If the kernel has no route it is the loopback
// address of dst's family.
func (l *Layer) RouteSource(dst netip.Addr) netip.Addr {
	dst = dst.Unmap()
	c := &l.dests
	c.mu.RLock()
	e, ok := c.m[dst]
	c.mu.RUnlock()
	if ok {
		return e.src
	}
	src := routeSource(dst)
	c.mu.Lock()
	if e, ok := c.m[dst]; ok {
		src = e.src // another goroutine was first
	} else {
		c.put(dst, destEntry{src: src})
	}
	c.mu.Unlock()
	return src
}

// put stores e for dst, emptying a full cache first. c.mu is held.
func (c *destCache) put(dst netip.Addr, e destEntry) {
	if c.m == nil || len(c.m) >= maxRouteCache {
		c.m = make(map[netip.Addr]destEntry)
	}
	c.m[dst] = e
}

// routeSource asks the kernel which source address reaches dst: connecting
// a UDP socket sends nothing but selects the route (and the source address,
// RFC 6724 for IPv6).
func routeSource(dst netip.Addr) netip.Addr {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		if dst.Is4() {
			return netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		return netip.IPv6Loopback()
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// udpTo returns the socket a datagram to dst (unmapped) leaves from and the
// address it leaves with, as far as known without a lookup: with a sole
// candidate bound to a wildcard address local is that wildcard (see
// udpLocal). nil means no UDP socket can reach dst's family. Without
// several candidates this is one atomic load; with several, one map lookup
// under a read lock once the destination has been seen.
func (l *Layer) udpTo(dst netip.Addr) (u *udpListener, local netip.AddrPort) {
	st := l.udpSend.Load()
	if st == nil {
		return nil, netip.AddrPort{} // not started
	}
	f := famIdx(dst)
	if !st.route[f] {
		if u = st.sole[f]; u == nil {
			return nil, netip.AddrPort{}
		}
		return u, u.addr
	}
	c := &l.dests
	c.mu.RLock()
	e := c.m[dst]
	c.mu.RUnlock()
	if e.udp != nil {
		return e.udp, e.local
	}
	return l.pickUDP(dst)
}

// pickUDP finds the socket of the listener LocalFor picks for dst and
// caches it. (For an SO_REUSEPORT group, the group's first socket: which
// socket of a group sends makes no difference to the peer.)
func (l *Layer) pickUDP(dst netip.Addr) (*udpListener, netip.AddrPort) {
	pick, via, ok := l.pickListener(UDP, dst)
	if !ok {
		return nil, netip.AddrPort{}
	}
	var u *udpListener
	if snap := l.udpSnap.Load(); snap != nil {
		for _, s := range *snap {
			if !s.member && s.addr == pick.Addr && s.canSend(dst) {
				u = s
				break
			}
		}
	}
	if u == nil {
		return nil, netip.AddrPort{}
	}
	local := pick.Addr
	if local.Addr().IsUnspecified() {
		local = netip.AddrPortFrom(via, local.Port())
	}
	c := &l.dests
	c.mu.Lock()
	c.put(dst, destEntry{src: via, udp: u, local: local})
	c.mu.Unlock()
	return u, local
}

// udpLocal completes udpTo's local address for the tap: a wildcard socket
// sends with the kernel's source address towards dst.
func (l *Layer) udpLocal(local netip.AddrPort, dst netip.Addr) netip.AddrPort {
	if local.Addr().IsUnspecified() {
		return netip.AddrPortFrom(l.RouteSource(dst), local.Port())
	}
	return local
}
