package proxy

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"sipedge/sip"
	"sipedge/transport"
)

// The pipeline: four named lists that every message walks, each kept in
// order in this one file (the way Kamailio has request, branch, onreply
// and failure routes, and CoreDNS one plugin order). The core provides the
// RFC 3261 §16 entries; feature packages (features/...) provide the rest
// through a Feature. An entry that no feature provides is not in the list,
// so a feature that is off costs nothing on the hot path.
//
//   - stages: a request, until one stage answers, forwards or absorbs it;
//   - branch hooks: each copy of a request about to be sent to one target
//     (schedule edits on its message);
//   - reply hooks: each response of a branch before it is relayed or
//     absorbed (schedule edits; learn from it);
//   - failure hooks: a forwarded request that ends without a 2xx.

// stageOrder is the order every request follows: the one list to read to
// know what sipedge does with a request. Entries marked (f) come from
// feature packages.
var stageOrder = []string{
	"guard",           // (f) banned sources dropped unanswered; per-source rate counted
	"ack",             // ACK of a non-2xx: absorbed by its transaction
	"access",          // trusted networks; others only when a feature authenticates
	"auth",            // (f) digest authentication (RFC 3261 §22, RFC 8760)
	"scheme",          // RFC 3261 §16.3 step 1: 416
	"max-forwards",    // §16.3 step 3: 483
	"loop",            // §16.3 step 4: 482
	"proxy-require",   // §16.3 step 6: 420
	"mime",            // (f) body media types allowed per direction: 415, 400
	"route",           // §16.4: our own Route entries
	"relay",           // strangers reach local destinations only (no open relay)
	"survival-route",  // (f) upstream down: in-dialog requests sent on past its Route entries
	"stateless-route", // §16.11: routes configured stateless
	"media-ack",       // (f) SDP answer in the ACK of a 2xx (late offer)
	"stateless",       // ACK of a 2xx: forwarded without a transaction
	"transaction",     // retransmissions absorbed; server transaction; 100 Trying
	"cancel",          // §16.10
	"pool-calls",      // (f) a BYE ends a call counted on a pool target (least active calls)
	"drain",           // graceful shutdown: 503 to new dialogs
	"peer-flow",       // (f) cluster: a request another instance routed here for a flow held here goes to it
	"passive",         // (f) calls for phones registered elsewhere through sipedge
	"survival",        // (f) upstream down: REGISTERs answered here, calls to local phones or the fallback
	"trunk-in",        // (f) calls on a trunk's registered contact: routed by the trunk's inbound rule
	"registrar",       // REGISTER for a local domain (§10.3)
	"self",            // requests for sipedge itself (no user part)
	"session-min",     // (f) RFC 4028 §8.1: 422 below Min-SE
	"topo-route",      // (f) a Route set hidden from a peer comes back: its first entry is the next hop
	"dialplan",        // (f) dial-plan rules: Request-URI rewritten, codecs filtered, destination decided, 3xx followed
	"locate",          // §16.5: targets (Route set, location service, routes, DNS)
	"sips",            // RFC 3261 §26.2.2: a SIPS request goes on over TLS only; else 480
	"calllog-end",     // (f) the call log: a BYE ends a call (before "dialog" reports it ended)
	"dialog",          // (f) in-dialog requests: CSeq, BYE ends the dialog
	"media",           // (f) SDP offers: relay ports, rewrite, 403/488/503
	"calllog-start",   // (f) the call log: an INVITE about to be forwarded starts a call
	"forward",         // §16.6: branches and the response context
}

// branchOrder is the order of the edits made to each forwarded copy,
// between the core's §16.6 edits (Request-URI, Max-Forwards, Route) and
// its Record-Route and Via, which come last.
var branchOrder = []string{
	"credentials",     // (f) sipedge's own realm's credentials removed (RFC 3261 §22.3)
	"nat-alias",       // (f) Contact of a NATed UA gets ;alias=
	"passive-contact", // (f) REGISTER to an outside registrar: our Contact
	"survival-watch",  // (f) REGISTER or INVITE to the upstream: its timeout or 503 is evidence it is down
	"session-expires", // (f) RFC 4028 §8.1: ask for a session timer
	"media-sdp",       // (f) the relay's SDP instead of the UA's
	"topo-hide",       // (f) towards a peer: Vias, inside Contact, Record-Route, Call-ID hidden; back from one: restored
	"trunk-cseq",      // (f) a caller's request in a dialog whose INVITE sipedge authenticated to a trunk: CSeq + 1
	"dialplan",        // (f) the header rules of the dial-plan rule that matched: add, remove, set, rewrite
}

// replyOrder is the order of the hooks a response of a branch passes
// before the core removes its Via (§16.7 step 3) and relays it.
var replyOrder = []string{
	"nat-alias",       // (f) Contact of a NATed callee gets ;alias=
	"media-sdp",       // (f) the relay's SDP in the answer
	"passive-restore", // (f) 2xx to REGISTER: learn bindings, give the phone its Contact back
	"dialog",          // (f) 2xx: dialog made or session refreshed
	"calllog",         // (f) the first 2xx answers the call
	"topo-restore",    // (f) from a peer: Call-ID and Record-Route back; to a peer: inside Contact and Record-Route hidden
	"trunk-cseq",      // (f) the response to such a request: the caller's CSeq back
}

// failureOrder is the order of the hooks run when a forwarded request
// ends without a 2xx (its best final response is about to go upstream).
var failureOrder = []string{
	"media",   // (f) a failed INVITE frees the ports it took
	"calllog", // (f) the call ends unanswered
	"trunk",   // (f) a failed INVITE authenticated to a trunk made no dialog
}

// Stage is one step of the request walk. Run returns true when it has
// dealt with the request (answered, forwarded or absorbed it).
type Stage struct {
	Name string
	Run  func(r *Request) bool
}

// BranchHook edits one forwarded copy of a request. An error drops that
// branch (it counts as a transport error: 503 inside the context).
type BranchHook struct {
	Name string
	Run  func(b *Branch) error
}

// ReplyHook sees each response of a branch (not 100 Trying) before it is
// relayed. An error (an edit that could not be made) is counted and
// logged; the response is relayed with the other hooks' edits.
type ReplyHook struct {
	Name string
	Run  func(rp *Reply) error
}

// FailureHook runs when a forwarded request ends without a 2xx.
type FailureHook struct {
	Name string
	Run  func(f *Failure)
}

// URIResolver claims Request-URIs that name a target only a feature knows
// (the passive registrar's contacts): claimed, with ok false when the
// target is gone. It runs on every request routed by its Request-URI, so
// it must answer "not mine" cheaply.
type URIResolver func(u *sip.URI) (t Target, claimed, ok bool)

// Hooks is what a feature plugs in.
type Hooks struct {
	Stages   []Stage
	Branch   []BranchHook
	Reply    []ReplyHook
	Failure  []FailureHook
	Resolver []URIResolver
	// DialogEnded is told when a dialog sipedge tracked is over (BYE,
	// session timer, dead media), with the caller's From tag.
	DialogEnded []func(callID, fromTag string)
	// EndDialog ends a call as sipedge (BYE to each side); it reports
	// whether it knew the dialog.
	EndDialog func(callID, fromTag string, cause int, text string) bool
}

// Feature is a package that adds hooks to the core: built from the
// configuration, it keeps its own state and config.
type Feature interface {
	Hooks() Hooks
}

// Starter is a Feature with work of its own (timers, senders), started
// once the transport is attached.
type Starter interface{ Start() }

// Closer is a Feature that stops its work on Close, before the core's.
type Closer interface{ Close() }

// pipeline is the compiled lists.
type pipeline struct {
	stages      []Stage
	branch      []BranchHook
	reply       []ReplyHook
	failure     []FailureHook
	resolvers   []URIResolver
	dialogEnded []func(callID, fromTag string)
	endDialog   func(callID, fromTag string, cause int, text string) bool
	locateIdx   int // index of "locate": a decision made earlier jumps past it
	authStage   bool
	// Counters per entry, in list order: requests a stage dealt with,
	// messages a hook saw.
	handled, branchRuns, replyRuns []atomic.Uint64
}

// compile orders the entries by the lists above. A name that is not in
// its list is a programming error in a feature package.
func compile(core Hooks, features []Feature) (*pipeline, error) {
	all := []Hooks{core}
	for _, f := range features {
		all = append(all, f.Hooks())
	}
	p := &pipeline{}
	var err error
	if p.stages, err = order("stage", stageOrder, all, func(h Hooks) []Stage { return h.Stages }, func(s Stage) string { return s.Name }); err != nil {
		return nil, err
	}
	if p.branch, err = order("branch hook", branchOrder, all, func(h Hooks) []BranchHook { return h.Branch }, func(s BranchHook) string { return s.Name }); err != nil {
		return nil, err
	}
	if p.reply, err = order("reply hook", replyOrder, all, func(h Hooks) []ReplyHook { return h.Reply }, func(s ReplyHook) string { return s.Name }); err != nil {
		return nil, err
	}
	if p.failure, err = order("failure hook", failureOrder, all, func(h Hooks) []FailureHook { return h.Failure }, func(s FailureHook) string { return s.Name }); err != nil {
		return nil, err
	}
	for _, h := range all {
		p.resolvers = append(p.resolvers, h.Resolver...)
		p.dialogEnded = append(p.dialogEnded, h.DialogEnded...)
		if h.EndDialog != nil {
			if p.endDialog != nil {
				return nil, fmt.Errorf("proxy: two features end dialogs")
			}
			p.endDialog = h.EndDialog
		}
	}
	p.handled = make([]atomic.Uint64, len(p.stages))
	p.branchRuns = make([]atomic.Uint64, len(p.branch))
	p.replyRuns = make([]atomic.Uint64, len(p.reply))
	p.locateIdx = len(p.stages)
	for i, s := range p.stages {
		switch s.Name {
		case "locate":
			p.locateIdx = i
		case "auth":
			p.authStage = true
		}
	}
	return p, nil
}

func order[T any](kind string, names []string, all []Hooks, get func(Hooks) []T, name func(T) string) ([]T, error) {
	byName := map[string]T{}
	for _, h := range all {
		for _, e := range get(h) {
			n := name(e)
			if _, dup := byName[n]; dup {
				return nil, fmt.Errorf("proxy: %s %q given twice", kind, n)
			}
			byName[n] = e
		}
	}
	var out []T
	for _, n := range names {
		if e, ok := byName[n]; ok {
			out = append(out, e)
			delete(byName, n)
		}
	}
	for n := range byName {
		return nil, fmt.Errorf("proxy: %s %q is not in its order list (proxy/pipeline.go)", kind, n)
	}
	return out, nil
}

// Names returns the entries of each list in order (for logs and the
// operations API).
func (c *Core) Names() (stages, branch, reply, failure []string) {
	p := c.pipe
	for _, s := range p.stages {
		stages = append(stages, s.Name)
	}
	for _, s := range p.branch {
		branch = append(branch, s.Name)
	}
	for _, s := range p.reply {
		reply = append(reply, s.Name)
	}
	for _, s := range p.failure {
		failure = append(failure, s.Name)
	}
	return
}

// Note is a slot of per-request state a feature keeps from a stage to its
// branch, reply and failure hooks (the media call of a request, say). It
// is carried by the request and its response context; storing a pointer
// costs no allocation.
type Note int

const maxNotes = 4

// NewNote reserves a slot; features call it when they are built, before
// the core serves.
func (c *Core) NewNote() Note {
	if c.notes >= maxNotes {
		panic("proxy: too many notes; raise maxNotes")
	}
	c.notes++
	return Note(c.notes - 1)
}

type notes [maxNotes]any

func (ns *notes) get(n Note) any {
	if ns == nil {
		return nil
	}
	return ns[n]
}

// Branch is one forwarded copy of a request as a branch hook sees it.
type Branch struct {
	Msg         *sip.Message    // the request: schedule edits on it
	Via         *sip.Via        // its top Via as received
	Src         netip.AddrPort  // where the request came from
	InProto     transport.Proto // over what
	Target      *Target
	Local       netip.AddrPort // sipedge's address towards the target (Via, Record-Route)
	RecordRoute bool           // dialog-creating outside a dialog: Record-Route added
	notes       *notes
}

// Note returns the value a stage stored for this request.
func (b *Branch) Note(n Note) any { return b.notes.get(n) }

// Reply is one response of a branch as a reply hook sees it.
type Reply struct {
	Req     *sip.Message // the request as forwarded (before branch edits)
	ReqVia  *sip.Via
	Src     netip.AddrPort // where the request came from
	InProto transport.Proto
	Resp    *sip.Message // the response: schedule edits on it
	Code    int
	Target  *Target // the branch's target
	// Initial: the request creates a dialog and was outside one
	// (record-routed); First2xx: this is the context's first 2xx.
	Initial, First2xx bool
	// WantDialog: a stage asked for the dialog to be followed
	// (Request.WantDialog).
	WantDialog bool
	notes      *notes
}

// Note returns the value a stage stored for the request.
func (rp *Reply) Note(n Note) any { return rp.notes.get(n) }

// Failure is a forwarded request that ends without a 2xx.
type Failure struct {
	Req   *sip.Message
	Code  int
	notes *notes
}

// Note returns the value a stage stored for the request.
func (f *Failure) Note(n Note) any { return f.notes.get(n) }
