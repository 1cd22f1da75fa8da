package pool

import "time"

// health is a target's up/down state with hysteresis: DownAfter failures
// in a row take an up target down, UpAfter successful probes in a row
// bring a down one back. Thresholds of one flap: a single lost UDP
// datagram would take a healthy PBX out, and a single answer from a
// rebooting one would bring it back before it can take calls.
type health struct {
	up    bool
	fails int       // failures in a row while up
	oks   int       // successful probes in a row while down
	since time.Time // when up last changed (start: when it was first seen)
}

// observe counts one probe result (or a request's outcome): ok or not. It
// reports whether the state changed.
func (h *health) observe(ok bool, downAfter, upAfter int, now time.Time) bool {
	if ok {
		h.fails = 0
		if h.up {
			return false
		}
		h.oks++
		if h.oks < upAfter {
			return false
		}
		h.up, h.oks, h.since = true, 0, now
		return true
	}
	h.oks = 0
	if !h.up {
		return false
	}
	h.fails++
	if h.fails < downAfter {
		return false
	}
	h.up, h.fails, h.since = false, 0, now
	return true
}

// passive counts a forwarded request's outcome. A failure counts like a
// failed probe; a success only clears the failures of an up target: a
// down target gets no new requests, and what it answers late proves less
// than a probe (it may be shedding load), so only probes bring it back.
func (h *health) passive(ok bool, downAfter, upAfter int, now time.Time) bool {
	if ok {
		if h.up {
			h.fails = 0
		}
		return false
	}
	return h.observe(false, downAfter, upAfter, now)
}

// latency keeps a target's probe round-trip time: the last one and a
// smoothed mean (weight 1/8 for the new sample, as TCP's SRTT, RFC 6298
// §2), so one slow answer does not hide the trend.
type latency struct {
	last, smooth time.Duration
}

func (l *latency) add(d time.Duration) {
	l.last = d
	if l.smooth == 0 {
		l.smooth = d
		return
	}
	l.smooth += (d - l.smooth) / 8
}
