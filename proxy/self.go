package proxy

import (
	"net"
	"net/netip"
	"strings"

	"sipedge/sip"
)

// Self knows which Request-URI hosts mean sipedge itself: its listen
// addresses (every interface address when it listens on a wildcard), the
// names it is configured with, and "localhost".
type Self struct {
	addrs map[netip.Addr]bool
	names []string // lower-case
	ports map[uint16]bool
}

// NewSelf builds the set from the bound listeners (wildcards are expanded to
// the host's interface addresses) and extra names (domains, hostnames).
func NewSelf(listen []netip.AddrPort, names []string) *Self {
	s := &Self{addrs: map[netip.Addr]bool{}, ports: map[uint16]bool{}}
	wildcard := false
	for _, ap := range listen {
		a := ap.Addr().Unmap()
		if a.IsUnspecified() {
			wildcard = true
		} else {
			s.addrs[a] = true
		}
		s.ports[ap.Port()] = true
	}
	if wildcard {
		if ifaddrs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range ifaddrs {
				if ipn, ok := ia.(*net.IPNet); ok {
					if a, ok := netip.AddrFromSlice(ipn.IP); ok {
						s.addrs[a.Unmap()] = true
					}
				}
			}
		}
	}
	s.names = append(s.names, "localhost")
	for _, n := range names {
		s.names = append(s.names, strings.ToLower(n))
	}
	return s
}

// Is reports whether host:port (as written in a URI; IPv6 with brackets,
// port 0 when absent) is sipedge. An absent port means 5060, or 5061 for
// sips (RFC 3263 §4.2 defaults).
func (s *Self) Is(host []byte, port int, sips bool) bool {
	p := uint16(port)
	if p == 0 {
		p = sip.DefaultPort(sips)
	}
	if len(s.ports) > 0 && !s.ports[p] {
		return false
	}
	if a, ok := sip.ParseIP(host); ok {
		return s.addrs[a]
	}
	for _, n := range s.names {
		if sip.EqualFold(host, n) {
			return true
		}
	}
	return false
}

// IsAddr reports whether ap is one of sipedge's own listening addresses.
func (s *Self) IsAddr(ap netip.AddrPort) bool {
	return s.addrs[ap.Addr().Unmap()] && s.ports[ap.Port()]
}
