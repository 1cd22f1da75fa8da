package proxy

import (
	"net"
	"net/netip"
	"sync"

	"sipedge/transport"
)

// localAddrs picks the address sipedge writes into Via and Record-Route for
// a message leaving over proto towards dst: the listener of that transport
// and address family, with a wildcard IP replaced by the source address the
// kernel would route from (found once per destination with an unsent UDP
// "connect", then cached).
type localAddrs struct {
	mu        sync.RWMutex
	listeners []transport.Listener
	route     map[netip.Addr]netip.Addr
}

func (la *localAddrs) set(ls []transport.Listener) {
	la.mu.Lock()
	la.listeners = append([]transport.Listener(nil), ls...)
	la.route = map[netip.Addr]netip.Addr{}
	la.mu.Unlock()
}

// forDest returns the advertised address for proto towards dst.
func (la *localAddrs) forDest(proto transport.Proto, dst netip.Addr) (netip.AddrPort, bool) {
	la.mu.RLock()
	var pick transport.Listener
	found := false
	for _, l := range la.listeners {
		if l.Proto != proto || l.Addr.Addr().Is4() != dst.Is4() {
			continue
		}
		if !found || (!l.Addr.Addr().IsUnspecified() && pick.Addr.Addr().IsUnspecified() && sameScope(l.Addr.Addr(), dst)) {
			pick, found = l, true
		}
	}
	if !found {
		// A dual-stack [::] listener serves IPv4 too.
		for _, l := range la.listeners {
			if l.Proto == proto && l.Addr.Addr().IsUnspecified() {
				pick, found = l, true
				break
			}
		}
	}
	src, cached := la.route[dst]
	la.mu.RUnlock()
	if !found {
		return netip.AddrPort{}, false
	}
	ip := pick.Addr.Addr()
	if !ip.IsUnspecified() {
		return pick.Addr, true
	}
	if !cached {
		src = routeSource(dst)
		la.mu.Lock()
		if len(la.route) > 4096 {
			la.route = map[netip.Addr]netip.Addr{}
		}
		la.route[dst] = src
		la.mu.Unlock()
	}
	return netip.AddrPortFrom(src, pick.Addr.Port()), true
}

func sameScope(a, b netip.Addr) bool { return a.IsLoopback() == b.IsLoopback() }

// routeSource asks the kernel which source address reaches dst: connecting
// a UDP socket sends nothing but selects the route.
func routeSource(dst netip.Addr) netip.Addr {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		if dst.Is4() {
			return netip.MustParseAddr("127.0.0.1")
		}
		return netip.IPv6Loopback()
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}
