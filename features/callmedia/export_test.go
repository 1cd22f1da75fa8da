package callmedia

import "time"

// SetGrace shortens the time a silent side is given after the answer,
// so that a test need not wait Grace.
func (f *Feature) SetGrace(d time.Duration) { f.grace = d }
