// Package dialplan applies dial-plan and header rules from the
// configuration: a request outside a dialog, from a trusted or
// authenticated source, whose Request-URI user
// matches a rule (by prefix or RE2 regular expression) gets its number
// rewritten (replace, strip, add a prefix), its SDP offer filtered of the
// codecs the rule removes, and goes to the rule's destination — a SIP URI,
// a named destination another feature owns (pool:NAME, trunk:NAME, through
// the same map the static routes use), or the usual routing. Each copy
// forwarded gets the rule's header edits, and a 3xx answer is relayed or
// followed as the rule says.
//
// Decision and edits are apart: the stage decides a Plan from the rules
// and the request alone; ApplyRequest and ApplyHeaders are pure steps that
// schedule byte edits on a message (golden tests under testdata/golden).
//
// Hooks: stage "dialplan" (before "locate": the number is rewritten and
// the offer filtered before anything routes on them or the media relay
// reads the offer), branch hook "dialplan" (header edits, last: after the
// edits of the core and the other features).
package dialplan

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"sipedge/proxy"
	"sipedge/sdp"
	"sipedge/sip"
)

// Feature is the dial plan of one core.
type Feature struct {
	rules atomic.Pointer[[]*compiled]
	note  proxy.Note
	log   *slog.Logger

	mu      sync.Mutex
	matched map[string]*atomic.Uint64 // by rule name; outlives a reload

	answered, rewritten, filtered, skipped, routeFailed atomic.Uint64
}

// Stats are the dial plan's counters (the metrics convention).
type Stats struct {
	Matched            map[string]uint64 `label:"rule"` // requests a rule matched, by rule name
	Rewritten          uint64            // Request-URIs rewritten
	CodecsFiltered     uint64            // SDP offers sent on with formats removed
	Answered           uint64            // requests answered by the dial plan: 484 (number left empty), 488 (no codec left), 500
	RouteFailed        uint64            // requests whose rule's destination had no target (answered as the destination said)
	HeaderEditsSkipped uint64            // header edits skipped: another hook edits that header field
}

var sdpPool = sync.Pool{New: func() any { return new(sdp.Session) }}

// New builds the dial plan of core with rules (nil: no rule; SetRules may
// add some later).
func New(core *proxy.Core, rules []Rule, env Env) (*Feature, error) {
	f := &Feature{note: core.NewNote(), log: core.Logger(), matched: map[string]*atomic.Uint64{}}
	if err := f.SetRules(rules, env); err != nil {
		return nil, err
	}
	return f, nil
}

// Rules are compiled rules, ready for Use.
type Rules struct{ c []*compiled }

// Compile checks and compiles rules against env: regular expressions,
// header edits, destinations (a named one must be in env.Named). An error
// is a *RuleError.
func Compile(rules []Rule, env Env) (*Rules, error) {
	c, err := compile(rules, env, true)
	if err != nil {
		return nil, err
	}
	return &Rules{c}, nil
}

// SetRules compiles and uses rules.
func (f *Feature) SetRules(rules []Rule, env Env) error {
	rs, err := Compile(rules, env)
	if err != nil {
		return err
	}
	f.Use(rs)
	return nil
}

// Use replaces the rules (a reload): requests already past the stage
// finish with the rule they matched.
func (f *Feature) Use(rs *Rules) {
	c := rs.c
	f.mu.Lock()
	for _, r := range c {
		if f.matched[r.name] == nil {
			f.matched[r.name] = new(atomic.Uint64)
		}
		r.hits = f.matched[r.name]
	}
	f.mu.Unlock()
	f.rules.Store(&c)
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{
		Stages: []proxy.Stage{{Name: "dialplan", Run: f.stage}},
		Branch: []proxy.BranchHook{{Name: "dialplan", Run: f.branch}},
	}
}

// Stats returns the counters.
func (f *Feature) Stats() Stats {
	f.mu.Lock()
	m := make(map[string]uint64, len(f.matched))
	for k, v := range f.matched {
		m[k] = v.Load()
	}
	f.mu.Unlock()
	return Stats{Matched: m, Rewritten: f.rewritten.Load(), CodecsFiltered: f.filtered.Load(),
		Answered: f.answered.Load(), RouteFailed: f.routeFailed.Load(), HeaderEditsSkipped: f.skipped.Load()}
}

// stage decides and applies the plan of a request outside a dialog.
func (f *Feature) stage(r *proxy.Request) bool {
	if p, _ := r.Note(f.note).(*Plan); p != nil {
		// The walk resumed here after waiting for DNS (Request.Defer):
		// the request is already rewritten.
		return f.route(r, p)
	}
	rules := f.rules.Load()
	if rules == nil || len(*rules) == 0 || r.InDialog() || r.HasFurtherRoute() {
		return false
	}
	if !r.Trusted() && !r.Authenticated() {
		// A stranger let on only because it calls a local user
		// (allow_unauthenticated_to_local): a rule could send it to a
		// provider, which the "relay" stage allowed for none but local
		// destinations (no toll fraud through the dial plan).
		return false
	}
	s := sdpPool.Get().(*sdp.Session)
	defer sdpPool.Put(s)
	p := decide(*rules, r.Msg(), s)
	if p == nil {
		return false
	}
	p.rule.hits.Add(1)
	if p.Code != 0 {
		f.answered.Add(1)
		f.log.Info("dial plan answered the request", "rule", p.Rule, "status", p.Code, "call_id", string(r.Msg().CallID()))
		r.Respond(p.Code, p.Reason, nil)
		return true
	}
	if p.User != nil || p.Formats != nil {
		if err := r.Rewrite(func(m *sip.Message) error { return ApplyRequest(m, p, s) }); err != nil {
			f.answered.Add(1)
			f.log.Warn("dial plan rewrite failed", "rule", p.Rule, "call_id", string(r.Msg().CallID()), "err", err)
			r.Respond(500, "Server Internal Error", nil)
			return true
		}
		if p.User != nil {
			f.rewritten.Add(1)
		}
		if p.Formats != nil {
			f.filtered.Add(1)
		}
	}
	r.SetNote(f.note, p)
	return f.route(r, p)
}

// route hands the request to the rule's destination, or on to "locate".
func (f *Feature) route(r *proxy.Request, p *Plan) bool {
	if n := p.rule.redirects; n > 0 {
		r.FollowRedirects(n)
	}
	if p.rule.dest == nil {
		return false
	}
	d := p.rule.dest.Route(r.Ctx(), r.Msg(), r.Src(), r.Proto())
	if d.Blocked {
		r.Defer()
		return true
	}
	if len(d.Groups) == 0 {
		f.routeFailed.Add(1)
		if d.Code == 0 {
			d.Code, d.Reason = 480, "Temporarily Unavailable"
		}
		r.Respond(d.Code, d.Reason, nil)
		return true
	}
	r.Decide(d)
	return false
}

// branch makes the rule's header edits on one forwarded copy.
func (f *Feature) branch(b *proxy.Branch) error {
	p, _ := b.Note(f.note).(*Plan)
	if p == nil || len(p.rule.headers) == 0 {
		return nil
	}
	if n := ApplyHeaders(b.Msg, p); n > 0 {
		f.skipped.Add(uint64(n))
	}
	return nil
}
