package proxy

// Trusted reports whether the request came from a trusted network (the
// policy's AllowSources, configured as trusted_networks): such sources
// are served without authentication and are exempt from the per-source
// limits unless configured otherwise.
func (r *Request) Trusted() bool {
	if r.pol.AllowSources == nil {
		return true // no configuration: every source (see Policy)
	}
	src := r.pkt.Src.Addr().Unmap()
	for _, p := range r.pol.AllowSources {
		if p.Contains(src) {
			return true
		}
	}
	return false
}
