package proxy

import (
	"bytes"
	"net/netip"
	"slices"
	"sync"
	"time"

	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// respCtx is the response context of one proxied request (RFC 3261 §16.7):
// the server transaction, the client transactions of its branches, and the
// best final response so far. It owns a copy of the request, since branches
// of later groups (sequential forking) are built after the packet buffer is
// gone.
type respCtx struct {
	core   *Core
	st     *txn.Server
	invite bool

	mu       sync.Mutex
	req      []byte
	msg      sip.Message // parsed view of req
	via      sip.Via
	src      netip.AddrPort
	inProto  transport.Proto
	routes   int
	rr       bool
	groups   [][]Target
	next     int // next group to start
	branches []*branch
	best     []byte // best final response so far, our Via already removed
	bestCode int
	got2xx   bool
	got6xx   bool
	canceled bool // upstream CANCEL or a 2xx/6xx: cancel pending branches
	final    bool // a final response went upstream
	out      []byte
	bbuf     []byte
	starting bool   // startNextGroup is creating branches
	failover bool   // groups are RFC 3263 alternatives
	notes    *notes // nil: no stage left a note (most requests)
	// wantDialog: a stage asked for the dialog to be followed (Reply).
	wantDialog bool
	// vias: the request's Via header fields as forwarded, for the
	// responses of branches that hid them (Target.HideVias, topo.go).
	vias []byte
	// redirects: 3xx responses still to recurse on (Request.FollowRedirects);
	// tried: the Request-URIs of the targets recursion added, each at
	// most once (RFC 3261 §16.5).
	redirects int
	tried     []string
	// first and firstList hold the first branch and the list of one: most
	// requests go to one target, and the context is allocated anyway.
	// Branches are never removed from the list, so first is never reused.
	first     branch
	firstList [1]*branch
	// bbufArr holds the branch parameter being written (the client
	// transaction keeps its own copy); one holds a decision of one target
	// (an in-dialog request's), which the request it came with does not
	// outlive (forward).
	bbufArr [branchLen]byte
	one     single
}

// The views hooks get are pooled rather than kept in every response
// context: a context lives for the transaction (32 s after a 2xx) and
// thousands exist at once, while a view is needed for microseconds.
var (
	branchPool = sync.Pool{New: func() any { return new(Branch) }}
	replyPool  = sync.Pool{New: func() any { return new(Reply) }}
)

// forward runs the request through a new response context with the
// targets of its decision.
func (c *Core) forward(r *Request) {
	d := &r.decision
	ctx := &respCtx{
		core: c, st: r.st, invite: r.msg.MethodKind() == sip.INVITE,
		req: append([]byte(nil), r.msg.Bytes()...), src: r.pkt.Src, inProto: r.pkt.Proto,
		routes: r.routes, failover: d.Failover, wantDialog: r.wantDialog, redirects: r.redirects,
		// Record-Route only dialog-creating requests that are not already
		// inside a dialog: the dialog's route set is fixed by them (§16.6
		// step 4; §12.1.1).
		rr: isDialogCreating(r.msg.MethodKind()) && !r.InDialog(),
	}
	ctx.bbuf = ctx.bbufArr[:0]
	if len(d.Groups) == 1 && len(d.Groups[0]) == 1 {
		// The decision may be the request's own storage (locateStage):
		// the context keeps a copy of its one target.
		ctx.groups = ctx.one.groups(d.Groups[0][0])
	} else {
		ctx.groups = d.Groups
	}
	for _, v := range r.notes {
		if v != nil {
			n := r.notes
			ctx.notes = &n
			break
		}
	}
	if err := ctx.msg.Parse(ctx.req, r.pol.Limits); err != nil {
		r.Respond(500, "Server Internal Error", nil)
		return
	}
	ctx.via, _ = ctx.msg.TopVia()
	c.pending.Add(1)
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	if !r.st.Adopt(ctx) {
		c.pending.Add(-1)
		// A CANCEL answered the INVITE while it waited for DNS.
		ctx.final = true
		ctx.bestCode = 487
		ctx.fail()
		return
	}
	if !ctx.startNextGroup() {
		ctx.settle()
	}
}

// branch is one forwarded copy of the request.
type branch struct {
	ctx          *respCtx
	target       Target
	client       *txn.Client
	done         bool // final response, timeout or transport error
	cancelOnProv bool // CANCEL once a provisional arrives (§9.1)
	canceled     bool
	answered     bool        // some response came (NoAnswer is met)
	abandoned    bool        // counted as timed out by NoAnswer while its transaction goes on
	ended        bool        // Observer told how it ended
	noAnswer     *time.Timer // Target.NoAnswer
}

// end tells the target's observer how the branch ended, once.
func (b *branch) end(code int, local bool) {
	if b.noAnswer != nil {
		b.noAnswer.Stop()
	}
	if b.ended || b.target.Observer == nil {
		return
	}
	b.ended = true
	b.target.Observer.BranchEnded(&b.target, &b.ctx.msg, code, local)
}

// onNoAnswer: the target answered nothing within Target.NoAnswer. The
// branch counts as timed out (408), so a failover context goes on with
// its next group now; its client transaction keeps running, and a late
// answer is dealt with in OnResponse.
func (b *branch) onNoAnswer() {
	ctx := b.ctx
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	if b.answered || b.done {
		return
	}
	b.done, b.abandoned = true, true
	ctx.core.log.Info("no answer from target", "dst", b.target.Addr, "proto", b.target.Proto, "after", b.target.NoAnswer)
	if ctx.invite {
		b.cancelOnProv = true
	}
	b.end(408, true)
	ctx.consider(nil, 408)
	ctx.settle()
}

// start forwards to the next group of targets. Called with ctx.mu held.
// It returns false when no group is left.
func (ctx *respCtx) startNextGroup() bool {
	for ctx.next < len(ctx.groups) {
		group := ctx.groups[ctx.next]
		ctx.next++
		ctx.starting = true
		for i := range group {
			ctx.startBranch(&group[i])
		}
		ctx.starting = false
		if !ctx.allDone() {
			return true
		}
		// Every branch of the group failed at once (transport errors):
		// go on with the next group.
		if ctx.got2xx || ctx.got6xx || ctx.canceled || (ctx.failover && ctx.bestCode != 408 && ctx.bestCode != 503) {
			return false
		}
	}
	return false
}

func (ctx *respCtx) allDone() bool {
	for _, b := range ctx.branches {
		if !b.done {
			return false
		}
	}
	return true
}

func (ctx *respCtx) startBranch(t *Target) bool {
	c := ctx.core
	idx := len(ctx.branches)
	bv := branchPool.Get().(*Branch)
	*bv = Branch{Msg: &ctx.msg, Via: &ctx.via, Src: ctx.src, InProto: ctx.inProto, Target: t, RecordRoute: ctx.rr, notes: ctx.notes}
	out, br, ok := c.buildRequest(ctx.out[:0], ctx.bbuf[:0], bv, ctx.routes, idx)
	if ok && transport.TransportForRequest(t.Proto, len(out), 0) != t.Proto {
		// RFC 3261 §18.1.1: a request within 200 bytes of the MTU goes
		// over a congestion-controlled transport; the Via must say so.
		tcp := *t
		tcp.Proto = transport.TCP
		bv.Target = &tcp
		if out2, br2, ok2 := c.buildRequest(out[:0], br[:0], bv, ctx.routes, idx); ok2 {
			out, br, t = out2, br2, &tcp
		}
	}
	*bv = Branch{}
	branchPool.Put(bv)
	if !ok {
		c.log.Warn("cannot build request for target", "target", t.Addr, "proto", t.Proto)
		return false
	}
	ctx.out, ctx.bbuf = out, br
	if t.HideVias && ctx.vias == nil {
		// Kept apart from the request copy, which settle drops while a
		// retransmitted 2xx may still come (RFC 6026 Accepted state).
		ctx.vias = appendRequestVias(nil, &ctx.msg, &ctx.via, ctx.src)
	}
	var b *branch
	if ctx.branches == nil {
		b, ctx.branches = &ctx.first, ctx.firstList[:0]
		*b = branch{ctx: ctx, target: *t}
	} else {
		b = &branch{ctx: ctx, target: *t}
	}
	ctx.branches = append(ctx.branches, b)
	c.stats.Forwarded.Add(1)
	if t.Observer != nil {
		t.Observer.BranchStarted(&b.target, &ctx.msg)
	}
	// NewClient may call OnTransportError synchronously; that path takes
	// ctx.mu, so release it around the call.
	ctx.mu.Unlock()
	cl, err := c.txn.NewClient(txn.Out{Method: ctx.msg.MethodKind(), MethodName: ctx.msg.Method(), Branch: br, Msg: out,
		Dest: transport.Dest{Proto: t.Proto, Addr: t.Addr, Name: t.Host}}, b)
	ctx.mu.Lock()
	if err != nil {
		b.done = true
		b.end(503, true)
		return false
	}
	b.client = cl
	if t.NoAnswer > 0 && !b.answered && !b.done && ctx.next < len(ctx.groups) {
		b.noAnswer = time.AfterFunc(t.NoAnswer, b.onNoAnswer)
	}
	if ctx.canceled && !b.done && !b.canceled && ctx.invite {
		// A CANCEL (or a 2xx/6xx of another branch) came while the
		// lock was released: cancelPending skipped this branch, which
		// had no client yet. A CANCEL may go only after a provisional
		// response (§9.1).
		if cl.Proceeding() {
			b.sendCancel()
		} else {
			b.cancelOnProv = true
		}
	}
	return true
}

// OnResponse implements txn.ClientHandler (§16.7).
func (b *branch) OnResponse(cl *txn.Client, m *sip.Message) {
	ctx := b.ctx
	c := ctx.core
	code := m.StatusCode()
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	if b.client == nil {
		b.client = cl // the response overtook startBranch's bookkeeping
	}
	b.answered = true
	if b.noAnswer != nil {
		b.noAnswer.Stop()
	}
	if b.abandoned && (code < 200 || code >= 300) {
		// Too late: the branch counted as timed out and the context went
		// on. A provisional response gets it cancelled (§9.1); a
		// failure has been accounted for. Only a 2xx goes on (§16.7
		// step 5).
		if b.cancelOnProv && !b.canceled {
			b.sendCancel()
		}
		return
	}
	if (code == 401 || code == 407) && b.target.Auth != nil && b.target.authName == "" && ctx.retryAuth(b, m) {
		return
	}
	// The reply hooks schedule their edits (Contact alias, relayed SDP,
	// passive registrar contacts) and learn from the response (dialogs,
	// bindings); then our Via goes (§16.7 step 3).
	m.ResetEdits()
	if code > 100 && len(c.pipe.reply) > 0 {
		rp := replyPool.Get().(*Reply)
		*rp = Reply{Req: &ctx.msg, ReqVia: &ctx.via, Src: ctx.src, InProto: ctx.inProto, Resp: m, Code: code,
			Target: &b.target, Initial: ctx.rr, First2xx: code >= 200 && code < 300 && !ctx.got2xx, WantDialog: ctx.wantDialog, notes: ctx.notes}
		for i := range c.pipe.reply {
			c.pipe.replyRuns[i].Add(1)
			if err := c.pipe.reply[i].Run(rp); err != nil {
				c.stats.HookErrors.Add(1)
				c.log.Warn("response edit failed", "hook", c.pipe.reply[i].Name, "call_id", string(m.CallID()), "err", err)
			}
		}
		*rp = Reply{}
		replyPool.Put(rp)
	}
	if b.target.cseq != 0 {
		// A retried branch: upstream gets its own CSeq number back.
		n, _ := ctx.msg.CSeq()
		if err := setCSeq(m, n); err != nil {
			c.stats.HookErrors.Add(1)
		}
	}
	var resp []byte
	if b.target.HideVias {
		// The branch got only our Via: the request's go back (topo.go).
		resp = c.replaceVias(ctx.out[:0], m, ctx.vias)
	} else {
		resp = c.stripTopVia(ctx.out[:0], m)
	}
	ctx.out = resp
	switch {
	case code < 200:
		if b.cancelOnProv && !b.canceled {
			b.sendCancel()
		}
		// Step 5: provisional responses other than 100 go upstream now.
		if code > 100 && !ctx.final {
			ctx.st.Respond(resp, code)
		}
		return
	case code < 300:
		b.done = true
		b.end(code, false)
		// Every 2xx is forwarded at once (step 5), and the other branches
		// of an INVITE are cancelled (§16.7 step 10).
		if !ctx.final {
			c.pending.Add(-1)
		}
		ctx.got2xx, ctx.final = true, true
		ctx.st.Respond(resp, code)
		if ctx.invite {
			ctx.cancelPending()
		}
	case code < 400 && ctx.redirects > 0 && !ctx.canceled && !ctx.final && ctx.recurse(m):
		// §16.7 step 4: every contact of the 3xx is a new target, so the
		// response itself is not a candidate for the best one.
		b.done = true
		b.end(code, false)
	default:
		b.done = true
		b.end(code, false)
		ctx.consider(resp, code)
		if code >= 600 {
			ctx.got6xx = true
			ctx.cancelPending()
		}
	}
	ctx.settle()
}

// retryAuth answers a 401/407 of a next hop whose credentials sipedge
// holds (Target.Auth; RFC 3261 §22.2): the challenged branch ends, its
// response is neither relayed nor considered, and a new branch goes to the
// same target with the credentials and the CSeq number plus one. Only the
// first challenge of a branch is answered (a second one, a wrong password,
// is relayed); ACK and CANCEL are never challenged (§22.1), and a context
// that is final or cancelled does not start branches. It reports whether
// the response was absorbed. Called with ctx.mu held.
func (ctx *respCtx) retryAuth(b *branch, m *sip.Message) bool {
	k := ctx.msg.MethodKind()
	if k == sip.ACK || k == sip.CANCEL || ctx.final || ctx.canceled {
		return false
	}
	uri := b.target.URI
	if uri == nil {
		uri = ctx.msg.RequestURIBytes()
	}
	name, value, ok := b.target.Auth.Authorize(ctx.msg.Method(), uri, m)
	if !ok {
		return false
	}
	t := b.target
	t.authName, t.authValue = name, value
	n, _ := ctx.msg.CSeq()
	t.cseq = n + 1
	// b stays pending while the new branch starts (startBranch releases
	// the lock), so the context cannot finish in between.
	before := len(ctx.branches)
	ctx.startBranch(&t)
	if len(ctx.branches) == before {
		return false // not built: the challenge goes on like any response
	}
	b.done = true
	b.end(m.StatusCode(), false)
	ctx.core.stats.AuthRetries.Add(1)
	ctx.settle()
	return true
}

// maxRedirects bounds Request.FollowRedirects, and maxRedirectContacts
// the contacts of one 3xx that are followed: a redirect server cannot
// make one request fan out without end.
const (
	maxRedirects        = 5
	maxRedirectContacts = 8
)

// recurse adds the Contacts of a 3xx to the target set (RFC 3261 §16.5,
// §16.7 step 4) as groups after the current ones, highest q first, equal
// q in parallel. It does so only when it can take every contact: a SIP
// URI whose next hop is known without waiting for DNS (no lookup may run
// under ctx.mu), at most maxRedirectContacts of them, none already in the
// target set. Otherwise it adds nothing and the 3xx is treated as any
// final response (relayed to the caller when it is the best). Called with
// ctx.mu held.
func (ctx *respCtx) recurse(m *sip.Message) bool {
	type contact struct {
		t Target
		q int
	}
	var cs []contact
	for it := m.Values(sip.KindContact); ; {
		v, ok := it.Next()
		if !ok {
			break
		}
		a, err := sip.ParseAddress(v)
		if err != nil || a.Wildcard || !a.URI.IsSIP() || len(cs) == maxRedirectContacts {
			return false
		}
		uri := a.RawURI
		if i := bytes.IndexByte(uri, '?'); i >= 0 {
			uri = uri[:i] // URI headers are not part of a Request-URI (§19.1.5)
		}
		if slices.Contains(ctx.tried, string(uri)) || string(uri) == string(ctx.msg.RequestURIBytes()) {
			return false
		}
		t, ok, _ := ctx.core.resolveTarget(noBlock, &a.URI)
		if !ok {
			return false
		}
		t.URI = append([]byte(nil), uri...)
		cs = append(cs, contact{t, a.Q()})
	}
	if len(cs) == 0 {
		return false
	}
	slices.SortStableFunc(cs, func(x, y contact) int { return y.q - x.q })
	// The redirect answered for the destination: its RFC 3263
	// alternatives not tried yet are dropped.
	ctx.groups = append([][]Target(nil), ctx.groups[:ctx.next]...)
	ctx.failover = false
	for i, c := range cs {
		if i == 0 || c.q != cs[i-1].q {
			ctx.groups = append(ctx.groups, nil)
		}
		g := len(ctx.groups) - 1
		ctx.groups[g] = append(ctx.groups[g], c.t)
		ctx.tried = append(ctx.tried, string(c.t.URI))
	}
	ctx.redirects--
	ctx.core.stats.Redirects.Add(1)
	return true
}

// OnTimeout implements txn.ClientHandler: Timer B/F count as 408 (§16.7
// step 6 is fed a 408 for a branch that timed out); Timer C cancels the
// branch (§16.8).
func (b *branch) OnTimeout(cl *txn.Client, timerC bool) {
	ctx := b.ctx
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	if timerC {
		b.sendCancel()
		return
	}
	if b.abandoned {
		return // already counted when NoAnswer ran out
	}
	b.done = true
	b.end(408, true)
	ctx.consider(nil, 408)
	ctx.settle()
}

// OnTransportError implements txn.ClientHandler: counted as 503 (§16.7
// step 6 with RFC 3263 §4.3), which becomes 500 upstream if it is the best.
func (b *branch) OnTransportError(cl *txn.Client, err error) {
	ctx := b.ctx
	ctx.core.log.Info("forwarding failed", "dst", b.target.Addr, "proto", b.target.Proto, "err", err)
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	if b.abandoned {
		return
	}
	b.done = true
	b.end(503, true)
	ctx.consider(nil, 503)
	ctx.settle()
}

// consider keeps the best final response (§16.7 step 6): any 6xx, else the
// lowest class. resp nil means a response sipedge will generate (408, 503).
func (ctx *respCtx) consider(resp []byte, code int) {
	better := ctx.bestCode == 0 ||
		(code >= 600 && ctx.bestCode < 600) ||
		(ctx.bestCode < 600 && code < 600 && code/100 < ctx.bestCode/100)
	if !better {
		return
	}
	ctx.bestCode = code
	ctx.best = append(ctx.best[:0], resp...)
	if resp == nil {
		ctx.best = nil
	}
}

// cancelPending cancels every branch without a final response. A branch
// that has had no provisional response yet is cancelled when one comes
// (§9.1: a CANCEL must not be sent before).
func (ctx *respCtx) cancelPending() {
	ctx.canceled = true
	for _, b := range ctx.branches {
		if b.done || b.canceled || b.client == nil || !ctx.invite {
			continue
		}
		if b.client.Proceeding() {
			b.sendCancel()
		} else {
			b.cancelOnProv = true
		}
	}
}

func (b *branch) sendCancel() {
	if b.canceled || b.client == nil {
		return
	}
	b.canceled = true
	c := b.ctx.core
	cancel, err := txn.BuildCancel(b.client.Request())
	if err != nil {
		return
	}
	// The CANCEL is its own client transaction; its 200 is absorbed.
	if _, err := c.txn.NewClient(txn.Out{Method: sip.CANCEL, MethodName: []byte("CANCEL"), Branch: b.client.Branch(), Msg: cancel,
		Dest: b.client.Dest()}, txn.Discard{}); err != nil {
		c.stats.SendErrors.Add(1)
	}
}

// maybeFinish sends the best response upstream once every branch of the
// current group is done and no other group is to be tried (§16.7 step 4,
// step 6; §16.6 sequential search by q).
func (ctx *respCtx) maybeFinish() {
	if ctx.starting || ctx.final || !ctx.allDone() {
		return
	}
	retry := !ctx.got6xx && !ctx.canceled
	if ctx.failover && ctx.bestCode != 408 && ctx.bestCode != 503 {
		retry = false
	}
	if retry && ctx.startNextGroup() {
		return
	}
	ctx.final = true
	ctx.core.pending.Add(-1)
	ctx.fail()
	code := ctx.bestCode
	switch {
	case code == 0:
		code = 480 // no branch could be started
	case code == 503:
		// §16.7 step 6: a 503 is never forwarded; it would tell the caller
		// that this proxy is unavailable.
		code, ctx.best = 500, nil
	}
	if ctx.best != nil {
		ctx.st.Respond(ctx.best, code)
		return
	}
	ctx.out = ctx.core.responseTo(ctx.out[:0], &ctx.msg, &ctx.via, ctx.src, code, sip.ReasonPhrase(code), nil)
	ctx.st.Respond(ctx.out, code)
}

// fail runs the failure hooks: the request ends without a 2xx.
func (ctx *respCtx) fail() {
	if len(ctx.core.pipe.failure) == 0 {
		return
	}
	f := Failure{Req: &ctx.msg, Code: ctx.bestCode, notes: ctx.notes}
	for i := range ctx.core.pipe.failure {
		ctx.core.pipe.failure[i].Run(&f)
	}
}

// settle finishes the context if it can, and once the final response is
// out and every branch is done, drops the request copy and buffers: the
// server transaction keeps the context for 32 s after a 2xx (RFC 6026
// Timer L), and at thousands of calls per second those kilobytes add up.
func (ctx *respCtx) settle() {
	ctx.maybeFinish()
	if ctx.final && !ctx.starting && ctx.allDone() {
		ctx.req, ctx.out, ctx.best, ctx.bbuf, ctx.groups = nil, nil, nil, nil, nil
		ctx.msg.Recycle()
		ctx.notes = nil
	}
}

// cancel handles a CANCEL from upstream for this context (§16.10): pending
// branches are cancelled; their 487s then complete the INVITE.
func (ctx *respCtx) cancel() {
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	if ctx.final {
		return
	}
	ctx.cancelPending()
	// Groups not started yet will not be.
	ctx.next = len(ctx.groups)
	if len(ctx.branches) == 0 {
		ctx.bestCode = 487
		ctx.settle()
	}
}

// stripTopVia writes the response without its first Via value, after the
// edits already scheduled on it (reply hooks). Our Via must go whatever
// else happens: when a hook's edit overlaps it, the hooks' edits are
// dropped (counted in HookErrors) and the response goes as received minus
// the Via.
func (c *Core) stripTopVia(dst []byte, m *sip.Message) []byte {
	if err := deleteTopVia(m); err != nil {
		c.stats.HookErrors.Add(1)
		c.log.Warn("response edits dropped: they overlap the Via", "call_id", string(m.CallID()), "err", err)
		m.ResetEdits()
		_ = deleteTopVia(m) // on an unedited message it cannot overlap
	}
	return m.AppendTo(dst)
}

func deleteTopVia(m *sip.Message) error {
	i := m.Find(sip.KindVia)
	if i < 0 {
		return nil
	}
	v := m.HeaderValue(i)
	k := sip.SplitComma(v)
	if k == len(v) {
		return m.DeleteHeader(i)
	}
	s, _ := m.HeaderValueSpan(i)
	rest := skipSpace(v[k+1:])
	if off := m.Offset(rest); off > s {
		return m.Delete(s, off)
	}
	return nil
}
