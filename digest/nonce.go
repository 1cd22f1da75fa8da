package digest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

// NonceLen is the length of a nonce made by Nonces: base64url of an 8-byte
// time and a 16-byte MAC.
const NonceLen = 32

const (
	macLen = 16
	// maxDrift is how far in the future a nonce's time may be: another
	// process sharing the key may have a clock a little ahead.
	maxDrift = 3 * time.Second
	// maxRealm bounds the realm bytes hashed into a nonce's MAC.
	maxRealm = 256
)

// Nonces makes and checks nonces without keeping any state per nonce
// (RFC 7616 §3.3 suggests a time stamp and a private key). A nonce is
//
//	base64url(T || HMAC-SHA256(key, T || realm)[:16])
//
// with T the issue time in Unix nanoseconds, big-endian: the server knows
// a nonce is its own and how old it is from the nonce alone. Binding the
// realm keeps a nonce issued for one realm from being answered in another.
type Nonces struct {
	lifetime time.Duration
	macs     sync.Pool // of *nonceMAC
}

type nonceMAC struct {
	h   hash.Hash
	in  [8 + maxRealm]byte
	sum [sha256.Size]byte
}

// NewNonces returns nonces keyed with key that stay valid for lifetime.
// Processes that share a key accept each other's nonces. An empty key is
// replaced by a random one: nonces then die with the process.
func NewNonces(key []byte, lifetime time.Duration) *Nonces {
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key)
	}
	k := append([]byte(nil), key...)
	n := &Nonces{lifetime: lifetime}
	n.macs.New = func() any { return &nonceMAC{h: hmac.New(sha256.New, k)} }
	return n
}

// Lifetime returns how long a nonce stays valid.
func (n *Nonces) Lifetime() time.Duration { return n.lifetime }

// mac computes the nonce's MAC of t and realm into m.sum.
func (m *nonceMAC) mac(t []byte, realm string) []byte {
	m.h.Reset()
	k := copy(m.in[:8], t)
	k += copy(m.in[8:], realm)
	m.h.Write(m.in[:k])
	if len(realm) > maxRealm {
		m.h.Write([]byte(realm[maxRealm:])) // not on any real path
	}
	return m.h.Sum(m.sum[:0])[:macLen]
}

// Append appends a new nonce for realm, issued at now, to dst.
func (n *Nonces) Append(dst []byte, realm string, now time.Time) []byte {
	var raw [8 + macLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	m := n.macs.Get().(*nonceMAC)
	copy(raw[8:], m.mac(raw[:8], realm))
	n.macs.Put(m)
	return base64.RawURLEncoding.AppendEncode(dst, raw[:])
}

// Check tells whether nonce is one of these nonces, made for realm. A nonce
// whose MAC is right and whose age is at most the lifetime is valid. One
// whose MAC is right but that is older is stale: the server challenges
// again with stale=true (RFC 2617 §3.2.1), which tells the client that its
// password was right and it may retry without asking its user. Anything
// else — a foreign or altered nonce, another realm's, or one dated more
// than 3 s in the future — is neither. Check allocates nothing.
func (n *Nonces) Check(nonce []byte, realm string, now time.Time) (valid, stale bool) {
	t, raw, ok := decodeNonce(nonce)
	if !ok {
		return false, false
	}
	m := n.macs.Get().(*nonceMAC)
	good := hmac.Equal(m.mac(raw[:8], realm), raw[8:])
	n.macs.Put(m)
	if !good {
		return false, false
	}
	age := now.UnixNano() - t
	switch {
	case age < -int64(maxDrift):
		return false, false
	case age > int64(n.lifetime):
		return false, true
	}
	return true, false
}

// decodeNonce returns the issue time of a nonce in the format of Nonces,
// without checking its MAC.
func decodeNonce(nonce []byte) (int64, [8 + macLen]byte, bool) {
	var raw [8 + macLen]byte
	if len(nonce) != NonceLen {
		return 0, raw, false
	}
	if k, err := base64.RawURLEncoding.Decode(raw[:], nonce); err != nil || k != len(raw) {
		return 0, raw, false
	}
	return int64(binary.BigEndian.Uint64(raw[:8])), raw, true
}
