package transport

import (
	"net/netip"
	"sort"
	"time"
)

// ConnInfo describes one open stream connection (the operations API).
type ConnInfo struct {
	ID        uint64
	Proto     Proto
	Local     netip.AddrPort
	Remote    netip.AddrPort
	Inbound   bool   // the peer opened it
	Name      string // the name a dialed TLS connection was verified for
	Published bool   // usable for sending (a TLS connection once its handshake is done)
	LastWrite time.Time
}

// Connections lists the open stream connections, oldest first, at most
// limit of them, and how many are open.
func (l *Layer) Connections(limit int) ([]ConnInfo, int) {
	t := &l.conns
	t.mu.Lock()
	out := make([]ConnInfo, 0, min(limit, len(t.all)))
	total := len(t.all)
	for c := range t.all {
		if len(out) == limit {
			break
		}
		_, pub := t.byKey[c.key()]
		var lw time.Time
		if n := c.lastWrite.Load(); n != 0 {
			lw = time.Unix(0, n)
		}
		out = append(out, ConnInfo{ID: c.id, Proto: c.proto, Local: c.local, Remote: c.remote, Inbound: c.inbound,
			Name: c.name, Published: pub, LastWrite: lw})
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, total
}
