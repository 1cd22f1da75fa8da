package sip

// Hash is 64-bit FNV-1a, the one hash behind sipedge's transaction keys,
// the loop-detection part of its branches and its derived To tags. Each
// Add ends its part with a separator byte, so the parts ("ab", "c") and
// ("a", "bc") hash differently. It allocates nothing.
type Hash uint64

const (
	hashOffset Hash = 14695981039346656037
	hashPrime  Hash = 1099511628211
)

// NewHash returns the FNV-1a offset basis.
func NewHash() Hash { return hashOffset }

// Add hashes b as one part.
func (h Hash) Add(b []byte) Hash {
	for _, c := range b {
		h = (h ^ Hash(c)) * hashPrime
	}
	return (h ^ 0xff) * hashPrime
}

// AddString hashes s as one part.
func (h Hash) AddString(s string) Hash {
	for i := 0; i < len(s); i++ {
		h = (h ^ Hash(s[i])) * hashPrime
	}
	return (h ^ 0xff) * hashPrime
}

// AddLower hashes b as one part with ASCII letters lowered, for values
// compared case-insensitively (host names, transport tokens).
func (h Hash) AddLower(b []byte) Hash {
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ Hash(c)) * hashPrime
	}
	return (h ^ 0xff) * hashPrime
}

// AddUint64 hashes v (8 bytes, big endian) as one part: a key, a counter
// or a CSeq number.
func (h Hash) AddUint64(v uint64) Hash {
	for i := 56; i >= 0; i -= 8 {
		h = (h ^ Hash(byte(v>>uint(i)))) * hashPrime
	}
	return (h ^ 0xff) * hashPrime
}
