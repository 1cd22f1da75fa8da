package topohide

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Tokens are the hidden values (a Contact URI, a Call-ID, a Route set)
// encrypted under sipedge's key so that sipedge alone reads them back and
// needs no state to do so (the way Kamailio's topoh masks addresses): a
// synthetic IV, the first 16 bytes of HMAC-SHA256 over the kind and the
// value, then the value under AES-256-CTR with that IV, base64url-encoded
// without padding (RFC 4648 §5: characters allowed in a Call-ID word, a
// URI user part and a URI parameter, RFC 3261 §25.1). The same value
// always gives the same token, so retransmissions and every request of a
// dialog map alike; the IV doubles as the MAC checked on decoding
// (the SIV construction of RFC 5297, with HMAC for its PRF).

// Token kinds: a token made for one place is not accepted in another.
const (
	kindContact byte = 'c'
	kindCallID  byte = 'i'
	kindRoutes  byte = 'r'
)

const (
	ivLen = 16
	// maxToken bounds what is decoded: a hidden value longer than a
	// SIP header value sipedge accepts cannot be one of ours.
	maxToken = 4096
)

var b64 = base64.RawURLEncoding

// codec encodes and decodes tokens with keys derived from the master key.
type codec struct {
	block  cipher.Block
	macKey []byte
}

func newCodec(master []byte) (*codec, error) {
	if len(master) != keyLen {
		return nil, fmt.Errorf("topohide: key is %d bytes, want %d", len(master), keyLen)
	}
	derive := func(label string) []byte {
		h := hmac.New(sha256.New, master)
		h.Write([]byte(label))
		return h.Sum(nil)
	}
	block, err := aes.NewCipher(derive("sipedge topohide enc"))
	if err != nil {
		return nil, err
	}
	return &codec{block: block, macKey: derive("sipedge topohide mac")}, nil
}

func (c *codec) iv(kind byte, v []byte) [ivLen]byte {
	h := hmac.New(sha256.New, c.macKey)
	h.Write([]byte{kind})
	h.Write(v)
	var sum [sha256.Size]byte
	var iv [ivLen]byte
	copy(iv[:], h.Sum(sum[:0]))
	return iv
}

// appendToken writes the token of v (of the given kind) to dst.
func (c *codec) appendToken(dst []byte, kind byte, v []byte) []byte {
	iv := c.iv(kind, v)
	raw := make([]byte, ivLen+len(v))
	copy(raw, iv[:])
	cipher.NewCTR(c.block, iv[:]).XORKeyStream(raw[ivLen:], v)
	return b64.AppendEncode(dst, raw)
}

// decode returns the value of a token of the given kind; ok is false for
// anything sipedge did not make with its key (altered, of another kind,
// or made under another key).
func (c *codec) decode(kind byte, tok []byte) (v []byte, ok bool) {
	if len(tok) > maxToken || len(tok) < b64.EncodedLen(ivLen) {
		return nil, false
	}
	raw, err := b64.AppendDecode(nil, tok)
	if err != nil || len(raw) < ivLen {
		return nil, false
	}
	v = raw[ivLen:]
	cipher.NewCTR(c.block, raw[:ivLen]).XORKeyStream(v, v)
	iv := c.iv(kind, v)
	if !hmac.Equal(iv[:], raw[:ivLen]) {
		return nil, false
	}
	return v, true
}

const keyLen = 32

// KeyFile is the file under the store directory that holds the key.
const KeyFile = "topohide.key"

// LoadKey reads the key from dir/topohide.key, making it at first start:
// a restarted sipedge must read the tokens that are in dialogs still
// running. The file is created whole (written aside, then linked into
// place) so a crash never leaves half a key, and two processes starting
// at once end up with the same one.
func LoadKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	for range 2 {
		k, err := os.ReadFile(path)
		if err == nil {
			if len(k) != keyLen {
				return nil, fmt.Errorf("%s: %d bytes, want %d (remove it to make a new key; calls in progress through peers will then fail)", path, len(k), keyLen)
			}
			return k, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		k = make([]byte, keyLen)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		tmp, err := os.CreateTemp(dir, KeyFile+".*")
		if err != nil {
			return nil, err
		}
		_, werr := tmp.Write(k)
		serr := tmp.Sync()
		cerr := tmp.Close()
		if err := errors.Join(werr, serr, cerr); err != nil {
			os.Remove(tmp.Name())
			return nil, err
		}
		// Link fails when another process made the key first: read its.
		lerr := os.Link(tmp.Name(), path)
		os.Remove(tmp.Name())
		if lerr == nil {
			return k, nil
		}
		if !errors.Is(lerr, os.ErrExist) {
			return nil, lerr
		}
	}
	return nil, fmt.Errorf("%s: cannot be read or made", path)
}
