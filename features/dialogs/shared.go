package dialogs

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"time"

	"sipedge/proxy"
	"sipedge/transport"
)

// Shared is where a cluster keeps the dialogs with a session timer
// (cluster.Dialogs): when the instance that follows a dialog dies, another
// one adopts it (Adopt) and ends the call with a BYE to each side once its
// session expires without a refresh — calls whose path went through the
// dead instance are then torn down, not left to hang until the phones'
// own timers, if any.
type Shared interface {
	// Save keeps the dialog's record under key until expires (when its
	// session ends) and a margin. It must not block: f.mu is held.
	Save(key string, rec []byte, expires time.Time)
	// Remove forgets it (the call ended here). Must not block either.
	Remove(key string)
	// Alive reports whether node, which owned an adopted dialog, is an
	// instance alive again (a partition that healed): then the dialog is
	// its, and the adopter lets it go without a BYE.
	Alive(node string) bool
}

// SetShared makes the feature keep its session-timer dialogs in s. Call
// before serving.
func (f *Feature) SetShared(s Shared) {
	f.mu.Lock()
	f.shared = s
	f.mu.Unlock()
}

// saveLocked writes d to the shared store, if any (f.mu held). Only
// dialogs with a session timer are shared: only they have an end to
// enforce after their instance dies.
func (f *Feature) saveLocked(d *dialog) {
	if f.shared == nil || d.interval == 0 || !d.fits() {
		return
	}
	f.rec = d.encode(f.rec[:0])
	f.shared.Save(d.key, f.rec, d.expires)
}

// Adopt installs the record of a dialog another instance (owner) followed
// until it died: this instance ends the call when its session expires,
// unless a refresh passes here first or owner turns out to be alive.
func (f *Feature) Adopt(owner string, rec []byte) error {
	d, err := decodeDialog(rec)
	if err != nil {
		return err
	}
	d.owner = owner
	f.mu.Lock()
	if f.closed || f.m[d.key] != nil {
		f.mu.Unlock()
		return nil
	}
	f.m[d.key] = d
	f.byCall[d.callKey] = d.key
	left := max(time.Until(d.expires), time.Millisecond)
	f.armForLocked(d, d.interval, left) // what is left, not a new interval
	f.saveLocked(d)                     // now this instance's: another adopts it if it dies too
	f.mu.Unlock()
	f.stats.Adopted.Add(1)
	f.log.Info("following the session timer of a call from an instance that died", "call_id", d.callID, "instance", owner, "ends_in", left.Round(time.Second))
	return nil
}

// recordVersion is the first byte of a shared dialog record.
const recordVersion = 1

var errRecord = errors.New("dialogs: malformed shared dialog record")

// Limits of a decoded record: a SIP message is at most 64 KiB, so is any
// header value in it, and a route set of more than 64 entries is no
// dialog sipedge made.
const (
	maxField  = 65535
	maxRoutes = 64
)

// fits reports whether every field of d fits the record's lengths (a
// header value near the 64 KiB message limit does not).
func (d *dialog) fits() bool {
	n := max(len(d.key), len(d.callID), len(d.from), len(d.to))
	for i := range d.legs {
		n = max(n, len(d.legs[i].ruri))
		for _, r := range d.legs[i].routes {
			n = max(n, len(r))
		}
		if len(d.legs[i].routes) > maxRoutes {
			return false
		}
	}
	return n <= maxField
}

// encode writes d:
//
//	version(1) expires_ms(8) interval_ms(8) key call_id from to call_key (each len16+bytes)
//	then for the caller and the callee: proto(1) nat(1) addr(len8+netip.AddrPort binary)
//	ruri(len16+bytes) cseq(4) routes(1 count, then len16+bytes each)
func (d *dialog) encode(dst []byte) []byte {
	dst = append(dst, recordVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(d.expires.UnixMilli()))
	dst = binary.BigEndian.AppendUint64(dst, uint64(d.interval.Milliseconds()))
	for _, s := range []string{d.key, d.callID, d.from, d.to, d.callKey} {
		dst = appendString(dst, s)
	}
	for i := range d.legs {
		l := &d.legs[i]
		nat := byte(0)
		if l.target.NAT {
			nat = 1
		}
		dst = append(dst, byte(l.target.Proto), nat)
		a, _ := l.target.Addr.MarshalBinary()
		dst = append(dst, byte(len(a)))
		dst = append(dst, a...)
		dst = appendString(dst, l.ruri)
		dst = binary.BigEndian.AppendUint32(dst, l.cseq)
		dst = append(dst, byte(len(l.routes)))
		for _, r := range l.routes {
			dst = appendString(dst, r)
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// decodeDialog reads a record written by encode; any defect is errRecord.
func decodeDialog(b []byte) (*dialog, error) {
	r := reader{b: b}
	if v, ok := r.byte(); !ok || v != recordVersion {
		return nil, errRecord
	}
	exp, ok1 := r.uint64()
	iv, ok2 := r.uint64()
	if !ok1 || !ok2 || exp > 1<<53 || iv == 0 || iv > uint64(24*time.Hour/time.Millisecond) {
		return nil, errRecord
	}
	d := &dialog{expires: time.UnixMilli(int64(exp)), interval: time.Duration(iv) * time.Millisecond}
	var ok bool
	for _, s := range []*string{&d.key, &d.callID, &d.from, &d.to, &d.callKey} {
		if *s, ok = r.string(); !ok {
			return nil, errRecord
		}
	}
	// The keys are made from the Call-ID and the tags
	// (proxy.AppendKey): the call's key begins the dialog's.
	if d.callID == "" || !strings.HasPrefix(d.callKey, d.callID) || len(d.key) <= len(d.callKey) || !strings.HasPrefix(d.key, d.callKey) {
		return nil, errRecord
	}
	for i := range d.legs {
		l := &d.legs[i]
		proto, ok1 := r.byte()
		nat, ok2 := r.byte()
		n, ok3 := r.byte()
		a, ok4 := r.bytes(int(n))
		if !ok1 || !ok2 || !ok3 || !ok4 || nat > 1 || !transport.Proto(proto).Valid() {
			return nil, errRecord
		}
		var ap netip.AddrPort
		if len(a) > 0 && ap.UnmarshalBinary(a) != nil {
			return nil, errRecord
		}
		l.target = proxy.Target{Proto: transport.Proto(proto), Addr: ap, NAT: nat == 1}
		if l.ruri, ok = r.string(); !ok {
			return nil, errRecord
		}
		if l.cseq, ok = r.uint32(); !ok {
			return nil, errRecord
		}
		nr, ok := r.byte()
		if !ok || nr > maxRoutes {
			return nil, errRecord
		}
		for range nr {
			s, ok := r.string()
			if !ok {
				return nil, errRecord
			}
			l.routes = append(l.routes, s)
		}
	}
	if len(r.b) != 0 {
		return nil, errRecord
	}
	return d, nil
}

type reader struct{ b []byte }

func (r *reader) bytes(n int) ([]byte, bool) {
	if n < 0 || len(r.b) < n {
		return nil, false
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v, true
}

func (r *reader) byte() (byte, bool) {
	v, ok := r.bytes(1)
	if !ok {
		return 0, false
	}
	return v[0], true
}

func (r *reader) uint32() (uint32, bool) {
	v, ok := r.bytes(4)
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

func (r *reader) uint64() (uint64, bool) {
	v, ok := r.bytes(8)
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

func (r *reader) string() (string, bool) {
	v, ok := r.bytes(2)
	if !ok {
		return "", false
	}
	s, ok := r.bytes(int(binary.BigEndian.Uint16(v)))
	return string(s), ok
}
