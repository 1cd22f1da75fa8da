package pool

import (
	"fmt"
	"time"

	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/txn"
)

// Start starts probing (proxy.Starter).
func (f *Feature) Start() {
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.loop()
}

// Close stops it (proxy.Closer).
func (f *Feature) Close() {
	if f.stop != nil {
		close(f.stop)
		<-f.done
		f.stop = nil
	}
}

// loop sends each target its probe when due: the first at once (a target
// new to the configuration is checked before it has waited an interval),
// then every Interval of its pool. It sleeps until the next one is due,
// or a new configuration comes.
func (f *Feature) loop() {
	defer close(f.done)
	tm := time.NewTimer(time.Hour)
	defer tm.Stop()
	lastSweep := time.Now()
	for {
		now := time.Now()
		wake := now.Add(time.Minute)
		for _, p := range f.cur.Load().pools {
			for _, m := range p.members {
				st := m.st
				st.mu.Lock()
				due := !now.Before(st.next)
				if due {
					st.next = now.Add(p.probe.Interval)
				}
				next := st.next
				st.mu.Unlock()
				if due {
					f.probe(p, m, now)
				}
				if next.Before(wake) {
					wake = next
				}
			}
		}
		if now.Sub(lastSweep) > time.Minute {
			f.sweep(now)
			lastSweep = now
		}
		tm.Reset(time.Until(wake))
		select {
		case <-f.stop:
			return
		case <-f.kick:
			if !tm.Stop() {
				<-tm.C
			}
		case <-tm.C:
		}
	}
}

// probe sends one OPTIONS to a target (RFC 3261 §11: the request a
// server answers like an INVITE, without setting up anything). Its answer
// or its timeout is counted once, whichever comes first.
func (f *Feature) probe(p *Pool, m *member, now time.Time) {
	st := m.st
	st.mu.Lock()
	if !st.sent.IsZero() {
		// The previous probe is still out (Timeout > Interval cannot be
		// configured, but a slow send may do it): it counts as failed.
		prev := st.seq
		st.mu.Unlock()
		f.result(st, prev, probeResult{err: "timeout"})
		st.mu.Lock()
	}
	st.seq++
	seq := st.seq
	st.sent = now
	st.mu.Unlock()
	f.stats.probes.Add(1)
	o := &proxy.Originate{Method: "OPTIONS", URI: m.cfg.URI, Target: proxy.Target{Proto: m.target.Proto, Addr: m.target.Addr}}
	if err := f.core.Originate(o, &prober{f: f, st: st, seq: seq}); err != nil {
		f.result(st, seq, probeResult{err: "not sent: " + err.Error()})
		return
	}
	time.AfterFunc(p.probe.Timeout, func() { f.result(st, seq, probeResult{err: "timeout"}) })
}

// prober is the client transaction handler of one probe.
type prober struct {
	f   *Feature
	st  *state
	seq uint64
}

// OnResponse: any final answer but a 5xx shows the target serves SIP
// (a PBX may well answer OPTIONS 404 or 405, or challenge it); a 5xx says
// it cannot serve now (503 overloaded or in maintenance, RFC 3261
// §21.5.4).
func (h *prober) OnResponse(_ *txn.Client, m *sip.Message) {
	code := m.StatusCode()
	if code < 200 {
		return
	}
	h.f.result(h.st, h.seq, probeResult{ok: code < 500 || code >= 600, status: code})
}

func (h *prober) OnTimeout(*txn.Client, bool) { h.f.result(h.st, h.seq, probeResult{err: "timeout"}) }
func (h *prober) OnTransportError(_ *txn.Client, err error) {
	h.f.result(h.st, h.seq, probeResult{err: "transport: " + err.Error()})
}

// result counts probe seq of st, unless it was counted already (the
// answer and the timeout race; the later one is dropped).
func (f *Feature) result(st *state, seq uint64, r probeResult) {
	now := time.Now()
	st.mu.Lock()
	if seq != st.seq || st.sent.IsZero() {
		st.mu.Unlock()
		return
	}
	if r.status != 0 {
		r.latency = now.Sub(st.sent)
	}
	st.sent, r.at = time.Time{}, now
	st.last = r
	if r.status != 0 {
		// Latency of any answer, even a 5xx: the round trip is what it is.
		st.lat.add(r.latency)
	}
	if !r.ok {
		st.failures++
		if r.status != 0 {
			st.why = fmt.Sprintf("OPTIONS answered %d", r.status)
		} else {
			st.why = "OPTIONS " + r.err
		}
	}
	changed := st.h.observe(r.ok, st.downAfter, st.upAfter, now)
	st.mu.Unlock()
	if !r.ok {
		f.stats.probeFailures.Add(1)
	}
	if changed {
		f.changed(st)
	}
}
