package registrar

import (
	"errors"
	"time"
)

// Limits are the registrar's policy that may change while it runs
// (reload): the registration interval bounds (RFC 3261 §10.3 step 7) and
// the bindings per AoR. Zero fields take the defaults (60 s, 3600 s,
// 3600 s, 10).
type Limits struct {
	MinExpires, MaxExpires, DefaultExpires time.Duration
	MaxContacts                            int
}

// limits is Limits as a REGISTER reads it: one atomic load, seconds.
type limits struct {
	minExp, maxExp, defEx int64
	maxContacts           int
}

// SetLimits replaces the limits; REGISTERs that arrive after it use them,
// bindings already made keep their expiry.
func (r *Registrar) SetLimits(l Limits) error {
	if l.MinExpires == 0 {
		l.MinExpires = 60 * time.Second
	}
	if l.MaxExpires == 0 {
		l.MaxExpires = 3600 * time.Second
	}
	if l.DefaultExpires == 0 {
		l.DefaultExpires = 3600 * time.Second
	}
	if l.MaxContacts == 0 {
		l.MaxContacts = 10
	}
	if l.MinExpires < 0 || l.MaxExpires < l.MinExpires || l.MaxContacts < 0 {
		return errors.New("registrar: need 0 <= MinExpires <= MaxExpires and MaxContacts >= 0")
	}
	r.lim.Store(&limits{
		minExp:      int64(l.MinExpires / time.Second),
		maxExp:      int64(l.MaxExpires / time.Second),
		defEx:       int64(min(max(l.DefaultExpires, l.MinExpires), l.MaxExpires) / time.Second),
		maxContacts: l.MaxContacts,
	})
	return nil
}

// Stats is a snapshot of the registrar (the metrics convention of package
// metrics).
type Stats struct {
	AORs     int // addresses-of-record with at least one binding
	Bindings int // bindings now
}

// Stats counts the bindings (one shard lock at a time).
func (r *Registrar) Stats() Stats {
	a, b := r.Count()
	return Stats{AORs: a, Bindings: b}
}
