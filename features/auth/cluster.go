package auth

import (
	"sync"
	"time"

	"sipedge/digest"
)

// Nonces in a cluster (package cluster). The replay counter of a nonce
// (digest.Counter) lives in the memory of one instance, and asking Redis
// on every authenticated request would put a round trip on the path of
// every call. So each instance makes nonces of its own — keyed with the
// shared secret and its node name — and accepts only those: a nonce used
// with one instance is never accepted by another, where its count is
// unknown. A client that comes with another instance's nonce (its DNS
// moved it, or that instance died) has proved nothing yet; it is
// challenged again with stale=true, which tells it to retry with the new
// nonce without asking its user (RFC 7616 §3.3), so a failover costs one
// extra round trip and no failure is counted against it.

// Cluster is the cluster as the feature sees it (*cluster.Cluster).
type Cluster interface {
	Node() string
	Nodes() []string // the other live instances
}

// peers recognises the nonces of the other instances.
type peers struct {
	c      Cluster
	secret []byte
	mu     sync.Mutex
	nonces map[string]*digest.Nonces
}

// SetCluster makes the feature's nonces this instance's own (call before
// traffic flows): secret is the cluster's shared secret.
func (f *Feature) SetCluster(c Cluster, secret []byte) {
	f.nonces = digest.NewNonces(nodeKey(secret, c.Node()), NonceLifetime)
	f.peers = &peers{c: c, secret: secret, nonces: map[string]*digest.Nonces{}}
}

func nodeKey(secret []byte, node string) []byte {
	return append(append(append([]byte(nil), secret...), 0), node...)
}

// issued reports whether another live instance made nonce for realm (valid
// or expired).
func (p *peers) issued(nonce []byte, realm string, now time.Time) bool {
	for _, n := range p.c.Nodes() {
		p.mu.Lock()
		ns := p.nonces[n]
		if ns == nil {
			if len(p.nonces) > 1024 {
				clear(p.nonces) // nodes come and go; a handful live
			}
			ns = digest.NewNonces(nodeKey(p.secret, n), NonceLifetime)
			p.nonces[n] = ns
		}
		p.mu.Unlock()
		if valid, stale := ns.Check(nonce, realm, now); valid || stale {
			return true
		}
	}
	return false
}
