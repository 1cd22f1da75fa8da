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

// forDest returns the advertised address for proto towards dst: the
// listener bound to the address the kernel sends from towards dst (on a
// gateway, the outside listener for the outside), else a wildcard
// listener with that address filled in, else any listener of the family.
func (la *localAddrs) forDest(proto transport.Proto, dst netip.Addr) (netip.AddrPort, bool) {
	dst = dst.Unmap()
	via := la.sourceFor(dst)
	la.mu.RLock()
	var pick transport.Listener
	found, exact := false, false
	for _, l := range la.listeners {
		if l.Proto != proto || l.Addr.Addr().Is4() != dst.Is4() || exact {
			continue
		}
		if l.Addr.Addr() == via {
			pick, found, exact = l, true, true
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
	la.mu.RUnlock()
	if !found {
		return netip.AddrPort{}, false
	}
	if !pick.Addr.Addr().IsUnspecified() {
		return pick.Addr, true
	}
	return netip.AddrPortFrom(via, pick.Addr.Port()), true
}

// sourceFor returns the local address the kernel sends from towards dst:
// the address the media relay binds for a side (on a gateway, the inside
// or the outside interface).
func (la *localAddrs) sourceFor(dst netip.Addr) netip.Addr {
	dst = dst.Unmap()
	la.mu.RLock()
	src, ok := la.route[dst]
	la.mu.RUnlock()
	if ok {
		return src
	}
	src = routeSource(dst)
	la.mu.Lock()
	if la.route == nil || len(la.route) > 4096 {
		la.route = map[netip.Addr]netip.Addr{}
	}
	la.route[dst] = src
	la.mu.Unlock()
	return src
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
