package registrar

import "sipedge/store"

// Persister is what the registrar needs from the durable store under it:
// the seam between the location service and its persistence. *store.Store,
// sipedge's embedded write-ahead log, implements it; a Redis-backed store
// (bindings shared by several sipedge instances) is meant to implement it
// too, without the registrar changing.
//
// Records are opaque to the persister: the key is the canonical AoR key
// (AORKey) and the value the AoR's whole binding set (record.go), so a
// REGISTER is one record, durable all or nothing. An implementation must
// keep these rules, which the registrar relies on:
//
//   - Put and Delete copy key and val and return at once (they are called
//     with a shard lock held). Writes of one key take effect in the order
//     they were called.
//   - done, when not nil, is told exactly once: Stored(nil) once the write
//     is durable, Stored(err) if it could not be made durable. It may run
//     on another goroutine, or before Put returns; it must not be made to
//     wait on the registrar. The caller answers a REGISTER 200 only from
//     it. A failed write may leave the persister refusing all later ones.
//   - Load calls fn for every live record, once each, in any order; key
//     and val are valid only during the call and fn does not call the
//     persister. New calls it once, before anything else.
//   - Own is called once, after Load: the registrar keeps every live record
//     in memory, and dump emits them all (emit copies key and val; dump may
//     run concurrently with Put and Delete). A store that writes snapshots
//     may use it instead of keeping its own copy; one that keeps the data
//     itself (Redis) may ignore it.
type Persister interface {
	Put(key, val []byte, done store.Done)
	Delete(key []byte, done store.Done)
	Load(fn func(key, val []byte) error) error
	Own(dump func(emit func(key, val []byte) error) error)
}

var _ Persister = (*store.Store)(nil)
