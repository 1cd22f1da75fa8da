package registrar

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"sipedge/transport"
)

// The stored form of an AoR's bindings: a version byte, a count, then per
// binding its fields as varints and length-prefixed strings. Hand-written
// because it is read 100 000 times at every start and must stay small.

const codecVersion = 1

var errCodec = errors.New("registrar: bad stored binding")

func encodeBindings(bs []Binding) []byte {
	b := make([]byte, 0, 160*len(bs))
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(len(bs)))
	for i := range bs {
		x := &bs[i]
		for _, s := range []string{x.URI, x.Params, x.CallID, x.Instance, x.UserAgent} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.AppendUvarint(b, uint64(x.Q))
		b = binary.AppendVarint(b, x.Expires.Unix())
		b = binary.AppendUvarint(b, uint64(x.CSeq))
		b = binary.AppendUvarint(b, uint64(x.RegID))
		b = binary.AppendUvarint(b, uint64(len(x.Path)))
		for _, p := range x.Path {
			b = binary.AppendUvarint(b, uint64(len(p)))
			b = append(b, p...)
		}
		for _, ap := range []netip.AddrPort{x.Source, x.Local} {
			a, _ := ap.MarshalBinary()
			b = binary.AppendUvarint(b, uint64(len(a)))
			b = append(b, a...)
		}
		b = append(b, byte(x.Proto))
		b = binary.AppendUvarint(b, x.ConnID)
	}
	return b
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCodec
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCodec
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errCodec
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func decodeBindings(aor string, val []byte) ([]Binding, error) {
	if len(val) == 0 || val[0] != codecVersion {
		return nil, errCodec
	}
	r := &reader{b: val[1:]}
	n := r.uvarint()
	if n > 10000 {
		return nil, errCodec
	}
	bs := make([]Binding, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		x := Binding{AOR: aor}
		x.URI = string(r.bytes())
		x.Params = string(r.bytes())
		x.CallID = string(r.bytes())
		x.Instance = string(r.bytes())
		x.UserAgent = string(r.bytes())
		x.Q = int(r.uvarint())
		x.Expires = time.Unix(r.varint(), 0)
		x.CSeq = uint32(r.uvarint())
		x.RegID = int(r.uvarint())
		np := r.uvarint()
		if np > 64 {
			return nil, errCodec
		}
		for j := uint64(0); j < np && r.err == nil; j++ {
			x.Path = append(x.Path, string(r.bytes()))
		}
		for _, ap := range []*netip.AddrPort{&x.Source, &x.Local} {
			if a := r.bytes(); r.err == nil && len(a) > 0 {
				if err := ap.UnmarshalBinary(a); err != nil {
					return nil, errCodec
				}
			}
		}
		if len(r.b) < 1 {
			return nil, errCodec
		}
		x.Proto = transport.Proto(r.b[0])
		r.b = r.b[1:]
		x.ConnID = r.uvarint()
		bs = append(bs, x)
	}
	if r.err != nil {
		return nil, r.err
	}
	return bs, nil
}
