package transport

// SetConnLimits changes MaxConns and MaxConnsPerSource while the layer runs
// (negative: no cap; 0: the default). The new values apply to the next
// connection accepted: connections already open are never closed for
// them, they count towards the new caps until they close.
func (l *Layer) SetConnLimits(maxConns, perSource int) {
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}
	if perSource == 0 {
		perSource = DefaultMaxConnsPerSource
	}
	t := &l.conns
	t.mu.Lock()
	t.maxConns, t.maxPerSource = max(maxConns, 0), max(perSource, 0)
	t.mu.Unlock()
}
