package calllog

// Call returns the call with this Call-ID: the one in progress if there
// is one, else the last that ended with it (a caller that repeats an
// INVITE after a failure reuses its Call-ID). The table is keyed by
// Call-ID and the caller's tag, which the API does not know, so the calls
// in progress are scanned: a look-up holds the lock for about a
// microsecond per hundred calls in progress, and is made per API request,
// never per message.
func (f *Feature) Call(callID string) (Record, bool) {
	r, active, ok := f.call(callID)
	if active {
		// As Calls: the media of a call in progress is read outside the
		// lock (the relay's counters).
		r.Media = f.mediaOf(callID)
	}
	return r, ok
}

func (f *Feature) call(callID string) (r Record, active, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var found *call
	for _, c := range f.calls {
		// Forked INVITEs with one Call-ID and several From tags are
		// rare; the newest wins.
		if c.rec.CallID == callID && (found == nil || c.rec.Start.After(found.rec.Start)) {
			found = c
		}
	}
	if found != nil {
		return found.rec, true, true
	}
	for i := 0; i < min(f.recentN, recentCalls); i++ {
		if r := &f.recent[(f.recentN-1-i)%recentCalls]; r.CallID == callID {
			return *r, false, true
		}
	}
	return Record{}, false, false
}
