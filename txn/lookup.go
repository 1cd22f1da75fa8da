package txn

import "sipedge/sip"

// HasServer reports whether a server transaction exists for the request
// (it is a retransmission), without creating one: stages that answer
// before the transaction stage use it to leave retransmissions to the
// transaction they belong to. A non-INVITE transaction already answered
// (Completed, kept in the done table until Timer J) counts: its
// retransmissions get the same answer again.
func (l *Layer) HasServer(m *sip.Message, via *sip.Via) bool {
	key := serverKey(m, via, matchMethod(m))
	if _, ok := l.servers.get(key); ok {
		return true
	}
	return l.done.has(key)
}

// has reports whether a completed transaction with this key is kept.
func (c *completed) has(key uint64) bool {
	sh := &c.shards[key%32]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.expire(c.now().UnixNano())
	_, ok := sh.idx[key]
	return ok
}
