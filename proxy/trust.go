package proxy

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
