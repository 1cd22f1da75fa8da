package proxy

import "net/netip"

// Trusted reports whether the request came from a trusted network (the
// policy's AllowSources, configured as trusted_networks): such sources
// are served without authentication and are exempt from the per-source
// limits unless configured otherwise.
//
// Several stages and the response path ask; the answer is worked out once
// per request (the policy is a snapshot for the whole walk).
func (r *Request) Trusted() bool {
	if r.trust == trustUnknown {
		r.trust = trustNo
		if r.pol.AllowSources == nil {
			r.trust = trustYes // no configuration: every source (see Policy)
		} else {
			src := r.pkt.Src.Addr().Unmap()
			for _, p := range r.pol.AllowSources {
				if p.Contains(src) {
					r.trust = trustYes
					break
				}
			}
			if r.trust == trustNo {
				if p := r.core.peers.Load(); p != nil && (*p).IsPeer(src) {
					r.trust = trustYes // another instance of the cluster
				}
			}
		}
	}
	return r.trust == trustYes
}

// Values of Request.trust.
const (
	trustUnknown = iota
	trustNo
	trustYes
)

// Peers are the other instances of a cluster sharing the bindings
// (package cluster): they hand each other requests for the phones whose
// flows they hold, and are served like a trusted network.
type Peers interface {
	IsPeer(a netip.Addr) bool
}

// SetPeers makes the instances p names trusted sources (nil: none).
func (c *Core) SetPeers(p Peers) {
	if p == nil {
		c.peers.Store(nil)
		return
	}
	c.peers.Store(&p)
}
