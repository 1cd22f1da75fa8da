package digest

import (
	"sipedge/sip"

	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"sync"
)

// Algorithm is a digest algorithm (RFC 7616 §3.3, RFC 8760 §2.1). The
// "-sess" variants are not supported: SIP user agents rarely offer them
// and they need state per client nonce.
type Algorithm uint8

// The supported algorithms; MD5 is the zero value because a challenge or
// credentials without an algorithm parameter mean MD5 (RFC 2617 §3.2.1).
const (
	MD5 Algorithm = iota
	SHA256
	SHA512_256
	numAlgorithms
)

var algorithmNames = [numAlgorithms]string{"MD5", "SHA-256", "SHA-512-256"}

// String returns the algorithm's token as written in the algorithm
// parameter: "MD5", "SHA-256" or "SHA-512-256".
func (a Algorithm) String() string {
	if a < numAlgorithms {
		return algorithmNames[a]
	}
	return "unknown"
}

// ParseAlgorithm reads an algorithm parameter's value, case-insensitively.
// An empty value (no parameter) is MD5 (RFC 2617 §3.2.1). The "-sess"
// variants and anything else are not supported: false.
func ParseAlgorithm(b []byte) (Algorithm, bool) {
	if len(b) == 0 {
		return MD5, true
	}
	for a := MD5; a < numAlgorithms; a++ {
		if equalFold(b, algorithmNames[a]) {
			return a, true
		}
	}
	return 0, false
}

// size is the length of the algorithm's hash in bytes; its hex form is
// twice as long.
func (a Algorithm) size() int {
	if a == MD5 {
		return md5.Size
	}
	return sha256.Size // SHA-512/256 is 32 bytes too
}

// strength orders the algorithms for ChooseChallenge (RFC 8760 §2.4: the
// strongest one supported).
func (a Algorithm) strength() int { return int(a) }

// HA1 returns H(user ":" realm ":" password) in lower-case hex: the secret
// the users file keeps instead of the password (RFC 7616 §3.4.2).
func HA1(a Algorithm, user, realm, password string) string {
	s := getHasher(a)
	defer putHasher(s)
	h := s.h
	h.Reset()
	h.Write([]byte(user))
	h.Write(colon)
	h.Write([]byte(realm))
	h.Write(colon)
	h.Write([]byte(password))
	return string(s.hexSum(&s.a1))
}

var colon = []byte{':'}

// hasher is a hash with the scratch space of one verification, pooled so
// that the verify path allocates nothing: the hash state, its sums and the
// hex strings all live here.
type hasher struct {
	h    hash.Hash
	a    Algorithm
	n    int // hash size in bytes
	sum  [sha256.Size]byte
	a1   [2 * sha256.Size]byte
	a2   [2 * sha256.Size]byte
	resp [2 * sha256.Size]byte
}

// hexSum finishes the hash into dst as lower-case hex.
func (s *hasher) hexSum(dst *[2 * sha256.Size]byte) []byte {
	sum := s.h.Sum(s.sum[:0])
	hex.Encode(dst[:], sum)
	return dst[:2*s.n]
}

var hasherPools = [numAlgorithms]sync.Pool{
	MD5:        {New: func() any { return &hasher{h: md5.New(), a: MD5, n: md5.Size} }},
	SHA256:     {New: func() any { return &hasher{h: sha256.New(), a: SHA256, n: sha256.Size} }},
	SHA512_256: {New: func() any { return &hasher{h: sha512.New512_256(), a: SHA512_256, n: sha512.Size256} }},
}

func getHasher(a Algorithm) *hasher { return hasherPools[a].Get().(*hasher) }

func putHasher(s *hasher) { hasherPools[s.a].Put(s) }

// equalFold compares ASCII case-insensitively (the message layer's rule).
func equalFold(b []byte, s string) bool { return sip.EqualFold(b, s) }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
