package txn

import "sipedge/sip"

// HasServer reports whether a server transaction exists for the request
// (it is a retransmission), without creating one: stages that answer
// before the transaction stage use it to leave retransmissions to the
// transaction they belong to.
func (l *Layer) HasServer(m *sip.Message, via *sip.Via) bool {
	_, ok := l.servers.get(serverKey(m, via, matchMethod(m)))
	return ok
}
