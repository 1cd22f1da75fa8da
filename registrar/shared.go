package registrar

import "errors"

// Bindings shared by several instances (a cluster over Redis, package
// cluster): each instance keeps the whole location service in memory, as
// a single one does, and the store under it tells it of the records other
// instances wrote. Replace installs such a record without writing it back:
// the writer has already made it durable, and writing it again would echo
// it to every other instance.

// ErrUnavailable is what a shared store reports when it cannot make a
// change durable right now (its server is down or failing over). The
// REGISTER is answered 503 with Retry-After, not 500: the phone tries again
// or another instance, and nothing it was told is stored was lost.
var ErrUnavailable = errors.New("registrar: bindings store unavailable")

// Availability is implemented by a store that can tell before a write that
// it would fail (a shared store whose server is down): Register then
// answers 503 at once and leaves the bindings in memory as they were.
type Availability interface {
	Available() bool
}

// RetryAfter is the header line of the 503 sent when the store is
// unavailable (RFC 3261 §21.5.4), by Register or once a write failed.
const RetryAfter = "Retry-After: 5\r\n"

// unavailable is the answer to a REGISTER while the store is unavailable.
func unavailable() Result {
	return Result{Code: 503, Reason: "Service Unavailable", Extra: []byte(RetryAfter)}
}

// Replace installs the binding set another instance stored for key (val as
// the store holds it; empty: the AoR has no bindings any more). Expired
// bindings are dropped. Nothing is written to the store.
func (r *Registrar) Replace(key, val []byte) error {
	sh := r.shardOf(key)
	var bs []binding
	if len(val) > 0 {
		var err error
		sh.mu.Lock() // decodeSet interns in the shard's table
		var old []binding
		if a := sh.aors[string(key)]; a != nil {
			old = a.bs
		}
		bs, err = r.decodeSetFrom(val, sh, old)
		sh.mu.Unlock()
		if err != nil {
			return err
		}
	}
	now := r.cfg.Now().UnixNano()
	w := make([]work, 0, len(bs))
	for _, b := range bs {
		if b.expires > now {
			w = append(w, work{b: b})
		}
	}
	sortWork(w)
	sh.mu.Lock()
	r.apply(sh, sh.aors[string(key)], key, w)
	sh.mu.Unlock()
	return nil
}

// Forget drops every binding held in memory for AoRs that keep returns
// false for, without writing anything (a shared store's resynchronisation
// after it lost changes: what is not in the store any more is gone).
func (r *Registrar) Forget(keep func(aorKey string) bool) (n int) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k := range sh.aors {
			if !keep(k) {
				delete(sh.aors, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}
