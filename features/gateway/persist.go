package gateway

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"sipedge/proxy"
	"sipedge/store"
	"sipedge/transport"
)

// Persister is where confirmed passive bindings survive a restart: the
// embedded store's shape (registrar.Persister has the rules), one store
// of their own, so a phone registered through sipedge with its provider
// still gets its calls after sipedge restarts, without waiting for its
// next REGISTER. Unconfirmed (pending) bindings are not kept.
type Persister interface {
	Put(key, val []byte, done store.Done)
	Delete(key []byte, done store.Done)
	Load(fn func(key, val []byte) error) error
	Own(dump func(emit func(key, val []byte) error) error)
}

var _ Persister = (*store.Store)(nil)

// recordVersion is the first byte of a stored binding.
const recordVersion = 1

// encode writes a confirmed binding:
//
//	version(1) expires_ms(8) target_proto(1) nat(1) target(addr) local(addr)
//	local_proto(1) contact(len16+bytes) aor(len16+bytes)
//
// where addr is len8 + netip.AddrPort.MarshalBinary.
func encode(dst []byte, pb *binding) []byte {
	dst = append(dst, recordVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(pb.expires.UnixMilli()))
	dst = append(dst, byte(pb.target.Proto))
	nat := byte(0)
	if pb.target.NAT {
		nat = 1
	}
	dst = append(dst, nat)
	dst = appendAddr(dst, pb.target.Addr)
	dst = appendAddr(dst, pb.local)
	dst = append(dst, byte(pb.proto))
	dst = appendBytes(dst, pb.contact)
	return appendBytes(dst, []byte(pb.aor))
}

func appendAddr(dst []byte, ap netip.AddrPort) []byte {
	b, _ := ap.MarshalBinary()
	dst = append(dst, byte(len(b)))
	return append(dst, b...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

var errRecord = errors.New("gateway: malformed stored binding")

// maxContact bounds a stored contact (a SIP URI a phone registered).
const maxContact = 4096

// decode reads a record written by encode; any defect is errRecord.
func decode(b []byte) (*binding, error) {
	if len(b) < 11 || b[0] != recordVersion {
		return nil, errRecord
	}
	ms := int64(binary.BigEndian.Uint64(b[1:9]))
	if ms < 0 || ms > 1<<53 {
		return nil, errRecord
	}
	pb := &binding{expires: time.UnixMilli(ms)}
	tp, nat := transport.Proto(b[9]), b[10]
	if nat > 1 || !tp.Valid() {
		return nil, errRecord
	}
	b = b[11:]
	var ok bool
	if pb.target.Addr, b, ok = readAddr(b); !ok {
		return nil, errRecord
	}
	if pb.local, b, ok = readAddr(b); !ok || len(b) < 1 {
		return nil, errRecord
	}
	pb.proto = transport.Proto(b[0])
	if !pb.proto.Valid() {
		return nil, errRecord
	}
	b = b[1:]
	var contact, aor []byte
	if contact, b, ok = readBytes(b); !ok || len(contact) == 0 || len(contact) > maxContact {
		return nil, errRecord
	}
	if aor, b, ok = readBytes(b); !ok || len(b) != 0 {
		return nil, errRecord
	}
	pb.contact = append([]byte(nil), contact...)
	pb.aor = string(aor)
	pb.target.Proto, pb.target.NAT, pb.target.URI = tp, nat == 1, pb.contact
	return pb, nil
}

func readAddr(b []byte) (netip.AddrPort, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return netip.AddrPort{}, nil, false
	}
	n := int(b[0])
	var ap netip.AddrPort
	if ap.UnmarshalBinary(b[1:1+n]) != nil || !ap.IsValid() {
		return netip.AddrPort{}, nil, false
	}
	return ap, b[1+n:], true
}

func readBytes(b []byte) ([]byte, []byte, bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}

// keyRecord holds the secret tokens are derived from: kept, so a phone's
// refresh after a restart gets the token its provider already knows (a
// new one would leave the provider with two contacts for one phone, and
// calls forked twice to it).
const keyRecord = "\x00token-key"

// load reads the stored bindings (once, before serving); lapsed ones are
// dropped from the store.
func (f *Feature) load() error {
	now := time.Now()
	var lapsed [][]byte
	haveKey := false
	err := f.p.Load(func(key, val []byte) error {
		if string(key) == keyRecord {
			if len(val) == 8 {
				f.key.Store(binary.BigEndian.Uint64(val))
				haveKey = true
			}
			return nil
		}
		pb, err := decode(val)
		if err != nil {
			f.log.Warn("passive binding record dropped", "token", string(key), "err", err)
			lapsed = append(lapsed, append([]byte(nil), key...))
			return nil
		}
		if now.After(pb.expires) {
			lapsed = append(lapsed, append([]byte(nil), key...))
			return nil
		}
		f.m[string(key)] = pb
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range lapsed {
		f.p.Delete(k, nil)
	}
	if !haveKey {
		f.p.Put([]byte(keyRecord), binary.BigEndian.AppendUint64(nil, f.key.Load()), nil)
	}
	f.p.Own(f.dump)
	if len(f.m) > 0 {
		f.log.Info("passive bindings loaded", "bindings", len(f.m), "dropped", len(lapsed))
	}
	return nil
}

// dump emits every confirmed binding (the store's snapshot).
func (f *Feature) dump(emit func(key, val []byte) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := emit([]byte(keyRecord), binary.BigEndian.AppendUint64(nil, f.key.Load())); err != nil {
		return err
	}
	var buf []byte
	for k, pb := range f.m {
		if pb.expires.IsZero() {
			continue
		}
		buf = encode(buf[:0], pb)
		if err := emit([]byte(k), buf); err != nil {
			return err
		}
	}
	return nil
}

// storeLocked writes a confirmed binding (f.mu held: writes of one token
// reach the store in order).
func (f *Feature) storeLocked(tok string, pb *binding) {
	if f.p == nil {
		return
	}
	f.buf = encode(f.buf[:0], pb)
	f.p.Put([]byte(tok), f.buf, nil)
}

// forgetLocked removes a binding and its record (f.mu held).
func (f *Feature) forgetLocked(tok string) {
	pb := f.m[tok]
	delete(f.m, tok)
	if f.p != nil && pb != nil && !pb.expires.IsZero() {
		f.p.Delete([]byte(tok), nil)
	}
}

// Range calls fn for every confirmed passive binding (the location
// service's view of phones registered elsewhere through sipedge).
func (f *Feature) Range(fn func(aor string, contact []byte, target proxy.Target, expires time.Time)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, pb := range f.m {
		if !pb.expires.IsZero() {
			fn(pb.aor, pb.contact, pb.target, pb.expires)
		}
	}
}

// Replace installs a passive binding another sipedge instance of a cluster
// confirmed (cluster.Target): the provider calls any instance, and each
// must find the phone. The record is not written back (it comes from the
// shared store). An empty val removes the binding; the token secret's
// record is not the other instance's business (SetTokenKey).
func (f *Feature) Replace(key, val []byte) error {
	if string(key) == keyRecord {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(val) == 0 {
		delete(f.m, string(key))
		return nil
	}
	pb, err := decode(val)
	if err != nil {
		return err
	}
	if old := f.m[string(key)]; old != nil && !old.pending.IsZero() {
		// This instance forwarded a REGISTER for the same phone that
		// the provider has not answered yet: keep waiting for it.
		pb.pending = old.pending
	}
	f.m[string(key)] = pb
	return nil
}

// Forget drops the confirmed bindings keep refuses (cluster.Target: after
// a lost subscription, what the shared store no longer has); pending ones
// are this instance's own and stay. It returns how many went.
func (f *Feature) Forget(keep func(token string) bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, pb := range f.m {
		if !pb.expires.IsZero() && !keep(k) {
			delete(f.m, k)
			n++
		}
	}
	return n
}

// SetTokenKey sets the secret tokens are derived from. A cluster's
// instances share one (derived from the cluster's secret), so a phone
// registered through any of them gets the same token and the provider
// keeps one contact for it. Call before serving.
func (f *Feature) SetTokenKey(k uint64) { f.key.Store(k) }
