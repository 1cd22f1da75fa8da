package registrar

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"time"

	"sipedge/transport"
)

// The store holds one record per AoR: key = AoR key, value = the AoR's
// whole binding set:
//
//	version (1) | uvarint count | count × binding
//	binding: uri, params, instance, call-id, user-agent, path (each uvarint
//	length + bytes) | varint expires (unix ms) | varint expires - updated
//	(ms) | uvarint cseq, reg-id, 1000 - q, proto | source, local (length
//	byte + netip binary form)
//
// A record whose values do not fit the binding (q over 1000, a cseq or
// reg-id beyond 32 or 31 bits, a time whose nanoseconds overflow) is as
// malformed as a truncated one: load drops it (FuzzDecodeSet).
//
// One record per AoR makes a REGISTER durable all or nothing and keeps the
// record count at the number of users; a refresh rewrites the AoR's few
// bindings, which costs little. The connection id is not stored: after a
// restart every flow is gone, and an old id could name a new, unrelated
// connection.
//
// Version 2 added a flags field after the local address (bit 0: NAT);
// version 1 records read as flags 0. Version 3 added the owner node after
// the flags (uvarint length + bytes, "" on a single instance); older
// records read as owner "".
const recordVersion = 3

const flagNAT = 1

func (r *Registrar) appendSet(dst []byte, bs []binding) []byte {
	dst = append(dst, recordVersion)
	dst = binary.AppendUvarint(dst, uint64(len(bs)))
	for i := range bs {
		b := &bs[i]
		for _, s := range [...]string{b.uri(), b.params(), b.instance(), b.callID, b.userAgent, b.path} {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
		const ms = int64(time.Millisecond)
		dst = binary.AppendVarint(dst, b.expires/ms)
		dst = binary.AppendVarint(dst, (b.expires-b.updated)/ms)
		dst = binary.AppendUvarint(dst, uint64(b.cseq))
		dst = binary.AppendUvarint(dst, uint64(b.regID))
		dst = binary.AppendUvarint(dst, uint64(1000-b.q)) // 0: one byte for the usual q
		dst = binary.AppendUvarint(dst, uint64(b.proto))
		dst = appendAddrPort(dst, b.source)
		dst = appendAddrPort(dst, r.locals.get(b.local))
		var flags uint64
		if b.nat {
			flags |= flagNAT
		}
		dst = binary.AppendUvarint(dst, flags)
		owner := r.owners.get(b.owner)
		dst = binary.AppendUvarint(dst, uint64(len(owner)))
		dst = append(dst, owner...)
	}
	return dst
}

func appendAddrPort(dst []byte, ap netip.AddrPort) []byte {
	at := len(dst)
	dst = append(dst, 0)
	dst, err := ap.AppendBinary(dst)
	if err != nil || len(dst)-at-1 > 255 {
		return dst[:at+1] // stored as the zero AddrPort
	}
	dst[at] = byte(len(dst) - at - 1)
	return dst
}

var errRecord = errors.New("registrar: malformed binding record")

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) take(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() []byte { return d.take(d.uvarint()) }

func (d *decoder) addrPort() netip.AddrPort {
	var n uint64
	if b := d.take(1); len(b) == 1 {
		n = uint64(b[0])
	}
	var ap netip.AddrPort
	if b := d.take(n); n > 0 && ap.UnmarshalBinary(b) != nil {
		d.bad = true
	}
	return ap
}

// decodeSet decodes a stored binding set (shard's User-Agent table used
// for interning; New runs before any concurrency, so no lock is needed).
func (r *Registrar) decodeSet(val []byte, sh *shard) ([]binding, error) {
	return r.decodeSetFrom(val, sh, nil)
}

// decodeSetFrom is decodeSet reusing the strings of old, the bindings
// held now, where they are equal: a refresh written by another instance
// of a cluster changes times and counters, rarely the strings, and
// installing it then allocates nothing but the slice (Replace).
func (r *Registrar) decodeSetFrom(val []byte, sh *shard, old []binding) ([]binding, error) {
	if len(val) == 0 || val[0] < 1 || val[0] > recordVersion {
		return nil, errRecord
	}
	version := val[0]
	d := decoder{b: val[1:]}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, errRecord
	}
	bs := make([]binding, 0, n)
	for range n {
		uri, params, inst := d.str(), d.str(), d.str()
		callID, ua, path := d.str(), d.str(), d.str()
		var b binding
		if len(uri) > 1<<16-1 || len(params) > 1<<16-1 {
			return nil, errRecord
		}
		var prev *binding
		for i := range old {
			if o := &old[i]; o.uri() == string(uri) && o.params() == string(params) && o.instance() == string(inst) {
				prev = o
				break
			}
		}
		if prev != nil {
			b.contact, b.uriLen, b.parLen = prev.contact, prev.uriLen, prev.parLen
		} else {
			b.setContact(uri, params, inst)
		}
		switch {
		case prev != nil && prev.callID == string(callID):
			b.callID = prev.callID
		default:
			b.callID = string(callID)
		}
		b.userAgent = sh.intern(ua)
		switch {
		case len(path) == 0:
		case prev != nil && prev.path == string(path):
			b.path = prev.path
		default:
			b.path = string(path)
		}
		// Times in ms, kept where the ns values and their difference
		// fit an int64: a wrapped product would be a bogus time that
		// does not even survive the next write.
		const ms = int64(time.Millisecond)
		const maxMs = math.MaxInt64 / ms / 2
		exp, age := d.varint(), d.varint()
		if exp < -maxMs || exp > maxMs || age < -maxMs || age > maxMs {
			return nil, errRecord
		}
		b.expires = exp * ms
		b.updated = b.expires - age*ms
		cseq, regID := d.uvarint(), d.uvarint()
		if cseq > math.MaxUint32 || regID > math.MaxInt32 {
			return nil, errRecord
		}
		b.cseq, b.regID = uint32(cseq), int32(regID)
		// 1000 - q: a qvalue is 0 to 1000 thousandths (RFC 3261 §20.10).
		if v := d.uvarint(); v <= 1000 {
			b.q = uint16(1000 - v)
		} else {
			d.bad = true
		}
		proto := d.uvarint()
		if proto > math.MaxUint8 {
			return nil, errRecord
		}
		b.proto = transport.Proto(proto)
		b.source = d.addrPort()
		b.local = r.locals.index(d.addrPort())
		if version >= 2 {
			b.nat = d.uvarint()&flagNAT != 0
		}
		if version >= 3 {
			if o := d.str(); len(o) > 0 {
				b.owner = r.owners.index(string(o))
			}
		}
		if d.bad {
			return nil, errRecord
		}
		bs = append(bs, b)
	}
	if len(d.b) != 0 {
		return nil, errRecord
	}
	return bs, nil
}

// appendPath appends one Path value to the encoded list.
func appendPath(dst, v []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

// splitPath decodes the encoded list (nil when empty).
func splitPath(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for len(s) > 0 {
		n, w := binary.Uvarint([]byte(s[:min(len(s), binary.MaxVarintLen64)]))
		if w <= 0 || n > uint64(len(s)-w) {
			break
		}
		out = append(out, s[w:w+int(n)])
		s = s[w+int(n):]
	}
	return out
}

// dump writes every AoR's binding set for a store snapshot (store.Own):
// the store keeps no copy of its own. Each shard is encoded under its read
// lock into a buffer and emitted after the lock is released, so the disk
// never holds up a REGISTER.
func (r *Registrar) dump(emit func(key, val []byte) error) error {
	var buf []byte
	var ends []int // per AoR: end of key, end of record, in buf
	for i := range r.shards {
		sh := &r.shards[i]
		buf, ends = buf[:0], ends[:0]
		sh.mu.RLock()
		for k, a := range sh.aors {
			if len(a.bs) == 0 {
				continue
			}
			buf = append(buf, k...)
			ends = append(ends, len(buf))
			buf = r.appendSet(buf, a.bs)
			ends = append(ends, len(buf))
		}
		sh.mu.RUnlock()
		start := 0
		for j := 0; j < len(ends); j += 2 {
			if err := emit(buf[start:ends[j]], buf[ends[j]:ends[j+1]]); err != nil {
				return err
			}
			start = ends[j+1]
		}
		if cap(buf) > 8<<20 {
			buf = nil
		}
	}
	return nil
}

// load rebuilds the bindings from the store (New, before the sweeper
// starts). Expired bindings are dropped and their records rewritten.
func (r *Registrar) load() error {
	now := r.cfg.Now().UnixNano()
	var fix []string
	nb := 0
	err := r.cfg.Store.Load(func(key, val []byte) error {
		sh := r.shardOf(key)
		bs, err := r.decodeSet(val, sh)
		if err != nil {
			r.log.Warn("registrar: dropping an unreadable stored binding set", "aor", string(key), "err", err)
			fix = append(fix, string(key))
			return nil
		}
		live := bs[:0]
		for _, b := range bs {
			if b.expires > now {
				live = append(live, b)
			}
		}
		if len(live) != len(bs) {
			fix = append(fix, string(key))
		}
		if len(live) == 0 {
			return nil
		}
		ks := string(key)
		a := &aor{bs: live[:len(live):len(live)]}
		a.sched = live[0].expires
		for i := range live {
			a.sched = min(a.sched, live[i].expires)
		}
		sh.aors[ks] = a
		sh.exp = append(sh.exp, expEntry{when: a.sched, key: ks})
		nb += len(live)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range r.shards {
		heapify(r.shards[i].exp)
	}
	// Rewrite what was dropped (no need to wait: if lost, it is dropped
	// again next time).
	for _, k := range fix {
		sh := r.shardOf(bytesOf(k))
		if a := sh.aors[k]; a != nil {
			sh.enc = r.appendSet(sh.enc[:0], a.bs)
			r.cfg.Store.Put(bytesOf(k), sh.enc, nil)
		} else {
			r.cfg.Store.Delete(bytesOf(k), nil)
		}
	}
	aors, _ := r.Count()
	r.log.Info("registrar: bindings loaded", "aors", aors, "bindings", nb, "dropped_records", len(fix))
	return nil
}
