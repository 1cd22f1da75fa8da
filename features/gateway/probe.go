package gateway

import (
	"strconv"
	"time"

	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/txn"
)

// Start starts probing the upstream (proxy.Starter); it sleeps while
// survival is off.
func (f *Feature) Start() {
	s := &f.surv
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go f.probeLoop()
}

// Close stops it (proxy.Closer).
func (f *Feature) Close() {
	s := &f.surv
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
}

// probeLoop sends the upstream an OPTIONS every Interval while survival
// is enabled, the first at once.
func (f *Feature) probeLoop() {
	s := &f.surv
	defer close(s.done)
	tm := time.NewTimer(0)
	defer tm.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			if !tm.Stop() {
				select {
				case <-tm.C:
				default:
				}
			}
		case <-tm.C:
		}
		c := s.cfg.Load()
		if c == nil || !c.Enabled || !c.Target.Addr.IsValid() {
			tm.Reset(time.Hour)
			continue
		}
		f.probe(c)
		tm.Reset(c.Interval)
	}
}

// probe sends one OPTIONS (RFC 3261 §11). Its answer or its timeout is
// counted once, whichever comes first; a probe still out when the next is
// due counts as failed.
func (f *Feature) probe(c *SurvivalConfig) {
	s := &f.surv
	s.mu.Lock()
	prev := s.seq
	out := !s.sent.IsZero()
	s.mu.Unlock()
	if out {
		f.probeResult(prev, false, 0, "timeout")
	}
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.sent = time.Now()
	s.mu.Unlock()
	s.stats.probes.Add(1)
	o := &proxy.Originate{Method: "OPTIONS", URI: c.Upstream, Target: proxy.Target{Proto: c.Target.Proto, Addr: c.Target.Addr, Host: c.Target.Host}}
	if err := f.core.Originate(o, &prober{f: f, seq: seq}); err != nil {
		f.probeResult(seq, false, 0, "not sent: "+err.Error())
		return
	}
	time.AfterFunc(c.Timeout, func() { f.probeResult(seq, false, 0, "timeout") })
}

// probeResult counts probe seq unless it was counted already.
func (f *Feature) probeResult(seq uint64, ok bool, status int, why string) {
	s := &f.surv
	now := time.Now()
	s.mu.Lock()
	if seq != s.seq || s.sent.IsZero() {
		s.mu.Unlock()
		return
	}
	if status != 0 {
		s.lastRTT = now.Sub(s.sent)
	}
	s.sent = time.Time{}
	s.mu.Unlock()
	if !ok {
		s.stats.probeFailures.Add(1)
		if status != 0 {
			why = "OPTIONS answered " + strconv.Itoa(status)
		} else {
			why = "OPTIONS " + why
		}
	}
	f.observe(ok, why)
}

// prober is the client transaction handler of one probe.
type prober struct {
	f   *Feature
	seq uint64
}

// OnResponse: any final answer but a 5xx shows the upstream serves SIP (a
// registrar may answer OPTIONS 404 or 405, or challenge it); a 5xx says
// it cannot serve now (RFC 3261 §21.5.4).
func (h *prober) OnResponse(_ *txn.Client, m *sip.Message) {
	code := m.StatusCode()
	if code < 200 {
		return
	}
	h.f.probeResult(h.seq, code < 500 || code >= 600, code, "")
}

func (h *prober) OnTimeout(*txn.Client, bool) { h.f.probeResult(h.seq, false, 0, "timeout") }
func (h *prober) OnTransportError(_ *txn.Client, err error) {
	h.f.probeResult(h.seq, false, 0, "transport: "+err.Error())
}

// watch marks a REGISTER or an initial INVITE sent to the upstream, so
// that how its branch ends is evidence of the upstream's health (passive
// checking: no probe needed to notice that calls time out).
func (f *Feature) watch(b *proxy.Branch) error {
	c := f.surv.cfg.Load()
	if c == nil || !c.Enabled || b.Target.Observer != nil || b.Target.Addr != c.Target.Addr {
		return nil
	}
	switch b.Msg.MethodKind() {
	case sip.REGISTER, sip.INVITE:
		b.Target.Observer = watcher{f}
	}
	return nil
}

// watcher is the BranchObserver of requests to the upstream.
type watcher struct{ f *Feature }

func (watcher) BranchStarted(*proxy.Target, *sip.Message) {}

// BranchEnded counts a timeout (408 of sipedge's own) or a 503 as a
// failure, any other answer of the upstream as an answer.
func (w watcher) BranchEnded(_ *proxy.Target, req *sip.Message, code int, local bool) {
	switch {
	case local && code == 408:
		w.f.surv.stats.passiveFailures.Add(1)
		w.f.observe(false, string(req.Method())+" timed out")
	case code == 503:
		w.f.surv.stats.passiveFailures.Add(1)
		w.f.observe(false, string(req.Method())+" answered 503")
	case local:
	default:
		w.f.observe(true, "")
	}
}
