// Package calllog writes one JSON line per call sipedge forwarded, when
// it is over: who called whom, when it started, was answered and ended,
// its final status and who hung up. The file is reopened on SIGHUP
// (Reopen), so logrotate can move it away.
//
// Hooks: stages "calllog-start" (an INVITE outside a dialog, about to be
// forwarded, starts a call) and "calllog-end" (a BYE ends one: the side
// whose tag is in its From hung up), reply hook
// "calllog" (the first 2xx answers it), failure hook "calllog" (a final
// status other than 2xx ends it unanswered), and the DialogEnded event
// (sipedge itself ended it: session timer, dead media). Calls that sipedge
// answered itself (403, 407, 404 before forwarding) are not calls here:
// the metrics count them. A call neither side ended within MaxDuration
// (a phone that died, without a session timer) is written with ended_by
// "unknown".
//
// With SetMedia, a line also carries what the media relay saw of the
// call ("media": per leg counters, quality, why audio did not flow). The
// call log does not import the media feature: the application hands it a
// MediaFunc.
package calllog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"sipedge/internal/jsonenc"
	"sipedge/internal/rawio"
	"sipedge/metrics"
	"sipedge/proxy"
	"sipedge/sip"
)

// Record is one line of the call log.
type Record struct {
	CallID     string     `json:"call_id"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	RequestURI string     `json:"request_uri"`
	Source     string     `json:"source"` // where the INVITE came from
	Start      time.Time  `json:"start"`
	Answer     *time.Time `json:"answer"` // null: never answered
	End        time.Time  `json:"end"`
	// Duration is the talk time in seconds (answer to end), 0 when not
	// answered; SetupMS the time from INVITE to the final answer.
	Duration float64 `json:"duration_seconds"`
	SetupMS  int64   `json:"setup_ms"`
	Status   int     `json:"status"`   // final response to the INVITE
	EndedBy  string  `json:"ended_by"` // caller, callee, sipedge, unknown
	// Media is what the media relay saw of the call (per leg counters,
	// quality, a diagnosis), from the function given to SetMedia: as it
	// was at the end in the line of an ended call, as it is now for a
	// call in progress. Absent without one.
	Media any `json:"media,omitempty"`

	// line is the record's JSON, made once (an ended record never
	// changes): when the call ended if there is a file to write it to,
	// else when the API's lists first ask for it; both reuse it instead
	// of encoding it each time.
	line []byte
}

// MarshalJSON returns the JSON made when the call ended, or encodes the
// record of a call in progress.
func (r Record) MarshalJSON() ([]byte, error) {
	if r.line != nil {
		return r.line, nil
	}
	return r.appendJSON(nil)
}

// jsonAppender is a media value that writes its own JSON
// (callmedia.Media does).
type jsonAppender interface{ AppendJSON([]byte) []byte }

// appendJSON appends the record's JSON, byte for byte what encoding/json
// writes for its fields (TestRecordJSON), without reflection: it is made
// for every call.
func (r *Record) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"call_id":`...)
	b = jsonenc.String(b, r.CallID)
	b = append(b, `,"from":`...)
	b = jsonenc.String(b, r.From)
	b = append(b, `,"to":`...)
	b = jsonenc.String(b, r.To)
	b = append(b, `,"request_uri":`...)
	b = jsonenc.String(b, r.RequestURI)
	b = append(b, `,"source":`...)
	b = jsonenc.String(b, r.Source)
	b = append(b, `,"start":`...)
	b = jsonenc.Time(b, r.Start)
	b = append(b, `,"answer":`...)
	if r.Answer == nil {
		b = append(b, "null"...)
	} else {
		b = jsonenc.Time(b, *r.Answer)
	}
	b = append(b, `,"end":`...)
	b = jsonenc.Time(b, r.End)
	b = append(b, `,"duration_seconds":`...)
	b = jsonenc.Float(b, r.Duration)
	b = append(b, `,"setup_ms":`...)
	b = jsonenc.Int(b, r.SetupMS)
	b = append(b, `,"status":`...)
	b = jsonenc.Int(b, int64(r.Status))
	b = append(b, `,"ended_by":`...)
	b = jsonenc.String(b, r.EndedBy)
	switch m := r.Media.(type) {
	case nil:
	case jsonAppender:
		b = append(b, `,"media":`...)
		b = m.AppendJSON(b)
	default:
		mb, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"media":`...)
		b = append(b, mb...)
	}
	return append(b, '}'), nil
}

// appendLine encodes r at the end of buf; it returns buf and r's line, a
// piece of buf whose capacity ends with it. The API's lists put lines side
// by side themselves: encoding/json would scan again, byte by byte, what a
// MarshalJSON returns.
func appendLine(buf []byte, r *Record) ([]byte, []byte, error) {
	at := len(buf)
	buf, err := r.appendJSON(buf)
	if err != nil {
		return nil, nil, fmt.Errorf("call %s: %v", r.CallID, err)
	}
	return buf, buf[at:len(buf):len(buf)], nil
}

// lineSize is room for a typical line (a call's record with its media,
// 700–1 500 bytes): where lines are made together, one buffer of
// lineSize per line is allocated at once.
const lineSize = 1024

// lineBufs are buffers to encode a line in before it is copied to memory
// of its own.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*lineSize); return &b }}

// MaxDuration bounds how long a call is followed without a BYE.
const MaxDuration = 12 * time.Hour

// recentCalls is how many finished calls the API can show.
const recentCalls = 1000

// maxCalls bounds the table: beyond it, new calls are not logged
// (counted).
const maxCalls = 200000

type call struct {
	rec Record
	// key is the call's key in Feature.calls (Call-ID, NUL, the caller's
	// tag); rec's strings are pieces of one string with it (invite).
	key      string
	answered time.Time // rec.Answer points here
	rang     bool      // the session request delay was observed
	changed  uint64    // Feature.seq when rec last changed (started, answered)
	// newer and older link the calls in progress in order of start
	// (Feature.newest): the lists show the newest, not any limit of them.
	newer, older *call
}

// Feature is the call log.
type Feature struct {
	core *proxy.Core
	log  *slog.Logger
	path string // "stdout" or a file

	// Lock order: mu before wmu. wmu is held while lines are written to
	// out, which happens outside mu: the SIP hooks take mu, and a disk
	// that stalls a write must not stall them.
	mu    sync.Mutex
	wmu   sync.Mutex
	calls map[string]*call // Call-ID "\x00" caller tag
	// newest is the last call to start, the head of the calls in
	// progress linked by start (call.older).
	newest *call
	out    io.Writer
	file   *os.File
	// pending is lines not written yet, lines how many: a line waits at
	// most flushWait for others to share its write(2) (SetFlush).
	pending   []byte
	lines     int
	spare     []byte // a pending buffer written out, for the next lines
	flushWait time.Duration
	flusher   *time.Timer
	now       func() time.Time
	stop      chan struct{}
	done      chan struct{}

	// seq counts the changes to the records of calls in progress: a
	// reader that saw seq n needs only those changed after it.
	seq uint64
	// recent keeps the last calls that ended, for the operations API.
	recent  [recentCalls]Record
	recentN int // calls ever put in recent
	// srd is the session request delay: INVITE to its first 180/183 or
	// 2xx.
	srd                         metrics.Histogram
	written, untracked, errors  atomic.Uint64
	answered, failed, cancelled atomic.Uint64
	started                     atomic.Bool
	media                       atomic.Pointer[MediaFunc]
	mediaWait                   atomic.Pointer[WaitFunc]
}

// MediaFunc returns the media of a call by its Call-ID, and whether there
// is any to show. It is called without the call log's lock held, and
// must stay answerable for a call whose media ended just before its
// signalling did.
type MediaFunc func(callID string) (any, bool)

// WaitFunc runs then once the media of a call is final (the relay may
// still be reading exact counters just after the call ended), possibly
// later and on another goroutine.
type WaitFunc func(callID string, then func())

// SetMediaWait sets how the call log waits for a call's media to be final
// before it writes the call's line; nil: it does not wait.
func (f *Feature) SetMediaWait(fn WaitFunc) {
	if fn == nil {
		f.mediaWait.Store(nil)
		return
	}
	f.mediaWait.Store(&fn)
}

// SetMedia sets where the media of a call comes from (the media relay
// feature, which the call log does not import); nil: no media.
func (f *Feature) SetMedia(fn MediaFunc) {
	if fn == nil {
		f.media.Store(nil)
		return
	}
	f.media.Store(&fn)
}

// mediaOf asks the MediaFunc, if any, for a call's media.
func (f *Feature) mediaOf(callID string) any {
	if fn := f.media.Load(); fn != nil {
		if m, ok := (*fn)(callID); ok {
			return m
		}
	}
	return nil
}

// Stats are the feature's counters.
type Stats struct {
	Written   uint64 // lines written
	Untracked uint64 // calls not logged: the table was full
	Errors    uint64 // lines that could not be written
	Active    int    // calls followed now
	Early     int    // of Active: not answered yet (early dialogs)
	Answered  uint64 // calls that ended after a 2xx
	Failed    uint64 // calls that ended without an answer, not cancelled
	Cancelled uint64 // calls that ended with 487 (CANCEL)
	// SessionDelay is the session request delay: an INVITE forwarded to
	// its first ringing (180, 183) or answer (2xx), as Homer's SRD.
	SessionDelay metrics.HistogramSnapshot
}

// New opens path ("stdout", or a file appended to, made 0640; empty: no
// file, the calls are only kept for the API).
func New(core *proxy.Core, path string, log *slog.Logger) (*Feature, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &Feature{core: core, log: log, path: path, calls: map[string]*call{}, now: time.Now,
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := f.Reopen(); err != nil {
		return nil, err
	}
	f.flusher = time.AfterFunc(time.Hour, f.Flush)
	f.flusher.Stop()
	return f, nil
}

// SetFlush sets how long a finished call's line may wait to be written
// with the next ones (call_log.flush): at hundreds of calls a second one
// write(2) per line costs more than the line (docs/PERFORMANCE.md). Zero,
// the default: each line is written when its call ends. What waits is
// written by Flush, Reopen and Close; a crash (kill -9) loses at most d of
// lines, as it loses the calls in progress.
func (f *Feature) SetFlush(d time.Duration) {
	f.mu.Lock()
	f.flushWait = max(d, 0)
	f.mu.Unlock()
	if d <= 0 {
		f.Flush()
	}
}

// maxPending is the most bytes of lines that wait: a burst is written
// at once.
const maxPending = 64 << 10

// Flush writes the lines that wait.
func (f *Feature) Flush() {
	f.mu.Lock()
	f.flushLocked()
	f.mu.Unlock()
}

// flushLocked writes the pending lines in one write(2); when it fails
// they are counted as errors, not kept (the next lines may succeed). It
// is called with mu held and returns with it held, but releases it while
// it writes: wmu, taken before mu is released, keeps the lines in order.
func (f *Feature) flushLocked() {
	if f.lines == 0 {
		return
	}
	n := uint64(f.lines)
	buf, out := f.pending, f.out
	f.pending, f.lines, f.spare = f.spare[:0], 0, nil
	f.wmu.Lock()
	f.mu.Unlock()
	var err error
	if out == nil {
		err = errors.New("no call log file")
	} else {
		_, err = out.Write(buf)
	}
	if err != nil {
		f.errors.Add(n)
	} else {
		f.written.Add(n)
	}
	f.wmu.Unlock()
	f.mu.Lock()
	if cap(buf) <= 4*maxPending {
		f.spare = buf[:0]
	}
}

// Reopen opens the file again (after logrotate moved it).
func (f *Feature) Reopen() error {
	var out io.Writer = io.Discard
	var file *os.File
	switch f.path {
	case "":
	case "stdout":
		out = os.Stdout
	default:
		var err error
		file, err = os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("call_log.file: %v", err)
		}
		out = rawFile{file}
	}
	f.mu.Lock()
	f.flushLocked() // to the file the lines were meant for
	old := f.file
	f.out, f.file = out, file
	f.mu.Unlock()
	if old != nil {
		// After a write to it under way (one that took out before the
		// swap holds wmu until it is done).
		f.wmu.Lock()
		old.Close()
		f.wmu.Unlock()
	}
	return nil
}

// Hooks implements proxy.Feature.
func (f *Feature) Hooks() proxy.Hooks {
	return proxy.Hooks{
		Stages:      []proxy.Stage{{Name: "calllog-end", Run: f.bye}, {Name: "calllog-start", Run: f.invite}},
		Reply:       []proxy.ReplyHook{{Name: "calllog", Run: f.reply}},
		Failure:     []proxy.FailureHook{{Name: "calllog", Run: f.failure}},
		DialogEnded: []func(callID, fromTag string){f.dialogEnded},
	}
}

// Start runs the sweep of calls nobody ended (proxy.Starter).
func (f *Feature) Start() {
	f.started.Store(true)
	go f.sweep()
}

// Close writes nothing more and closes the file (proxy.Closer).
func (f *Feature) Close() {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop)
	if f.started.Load() {
		<-f.done
	}
	f.mu.Lock()
	f.flusher.Stop()
	f.flushLocked()
	if f.file != nil {
		f.wmu.Lock()
		f.file.Close()
		f.wmu.Unlock()
		f.file = nil
	}
	f.out = nil
	f.mu.Unlock()
}

// Calls returns the calls in progress (End zero) and the last ones that
// ended, most recent first, at most limit of each; the calls in progress
// with their media as it is now.
func (f *Feature) Calls(limit int) (active, recent []Record) {
	active, recent = f.calls0(limit)
	for i := range active {
		active[i].Media = f.mediaOf(active[i].CallID)
	}
	return active, recent
}

// CallsSince serves a reader that already has the calls that ended
// before mark (the next of its previous read; 0 at first) and the calls
// in progress as they were at seq since (the seq of its previous read; 0
// at first): the calls in progress that started or were answered after
// since (all of them when since is 0), and the calls that ended since
// mark, most recent first. full is true, and ended is the whole list of
// the last limit that ended, when the reader cannot be brought up to
// date with what is new (its first read, or more calls ended since than
// it keeps). An event stream sends what changed instead of a thousand
// calls every time.
func (f *Feature) CallsSince(limit int, mark, since uint64) (active, ended [][]byte, next, seq uint64, full bool, err error) {
	f.mu.Lock()
	seq = f.seq
	recs := make([]Record, 0, min(len(f.calls), limit))
	// The newest limit calls, newest first; of those, the changed ones.
	n := 0
	for c := f.newest; c != nil && n < limit; c, n = c.older, n+1 {
		if c.changed > since {
			recs = append(recs, c.rec)
		}
	}
	// A mark is the count of calls that had ended, plus one: 0 is "none
	// read yet".
	next = uint64(f.recentN) + 1
	n = min(f.recentN, recentCalls, limit)
	if mark != 0 && mark <= next && next-mark <= uint64(n) {
		n = int(next - mark)
	} else {
		full = true
	}
	ended = make([][]byte, 0, n)
	// Lines not made yet (no call log file) are made outside the lock
	// and kept for the next reader.
	type missing struct {
		at, seq int // place in ended, the call's number in recent
		rec     Record
	}
	var todo []missing
	for i := range n {
		r := &f.recent[(f.recentN-1-i)%recentCalls]
		if r.line == nil {
			todo = append(todo, missing{i, f.recentN - 1 - i, *r})
		}
		ended = append(ended, r.line)
	}
	f.mu.Unlock()
	if len(todo) > 0 {
		// One buffer for all of them (each line a piece of it, whose
		// capacity ends with it), not one grown from nothing per line.
		buf := make([]byte, 0, len(todo)*lineSize)
		for k := range todo {
			m := &todo[k]
			var err error
			if buf, ended[m.at], err = appendLine(buf, &m.rec); err != nil {
				return nil, nil, 0, 0, false, err
			}
		}
		f.mu.Lock()
		for _, m := range todo {
			// Unless recent went round meanwhile and the place holds
			// another call now, or another reader was first.
			if r := &f.recent[m.seq%recentCalls]; f.recentN-m.seq <= recentCalls && r.line == nil {
				r.line = ended[m.at]
			}
		}
		f.mu.Unlock()
	}
	active = make([][]byte, 0, len(recs))
	buf := make([]byte, 0, len(recs)*lineSize)
	for i := range recs {
		recs[i].Media = f.mediaOf(recs[i].CallID)
		var line []byte
		var err error
		if buf, line, err = appendLine(buf, &recs[i]); err != nil {
			return nil, nil, 0, 0, false, err
		}
		active = append(active, line)
	}
	return active, ended, next, seq, full, nil
}

func (f *Feature) calls0(limit int) (active, recent []Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := f.newest; c != nil && len(active) < limit; c = c.older {
		active = append(active, c.rec)
	}
	for i := 0; i < min(f.recentN, recentCalls, limit); i++ {
		recent = append(recent, f.recent[(f.recentN-1-i)%recentCalls])
	}
	return active, recent
}

// Stats returns the counters.
func (f *Feature) Stats() Stats {
	f.mu.Lock()
	n, early := len(f.calls), 0
	for _, c := range f.calls {
		if c.rec.Answer == nil {
			early++
		}
	}
	f.mu.Unlock()
	return Stats{Written: f.written.Load(), Untracked: f.untracked.Load(), Errors: f.errors.Load(), Active: n,
		Early: early, Answered: f.answered.Load(), Failed: f.failed.Load(), Cancelled: f.cancelled.Load(),
		SessionDelay: f.srd.Snapshot()}
}

// appendKey appends the key of a call in Feature.calls: Call-ID, NUL,
// the caller's From tag. Lookups index the map with string(appendKey(...))
// over a buffer on the stack, which allocates nothing.
func appendKey(dst, callID, tag []byte) []byte {
	dst = append(dst, callID...)
	dst = append(dst, 0)
	return append(dst, tag...)
}

// keyBuf is the stack buffer of a lookup's key: most Call-IDs and tags
// fit (a longer key still works, from the heap).
type keyBuf [192]byte

// invite starts a call: an INVITE outside a dialog about to be forwarded.
func (f *Feature) invite(r *proxy.Request) bool {
	m := r.Msg()
	if m.MethodKind() != sip.INVITE {
		return false
	}
	callID, fromTag, toTag, ok := proxy.DialogIDs(m)
	if !ok || len(toTag) > 0 {
		return false // a re-INVITE
	}
	from, _ := m.From()
	to, _ := m.To()
	var kb keyBuf
	k := appendKey(kb[:0], callID, fromTag)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.calls[string(k)]; dup {
		return false
	}
	if len(f.calls) >= maxCalls {
		f.untracked.Add(1)
		return false
	}
	f.seq++
	// The key and the record's strings in one allocation: they live and
	// go together.
	nk := len(k)
	b := make([]byte, 0, nk+len(from.RawURI)+len(to.RawURI)+len(m.RequestURIBytes())+len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%zone]:65535"))
	b = append(b, k...)
	nf := len(b)
	b = append(b, from.RawURI...)
	nt := len(b)
	b = append(b, to.RawURI...)
	nu := len(b)
	b = append(b, m.RequestURIBytes()...)
	ns := len(b)
	b = r.Src().AppendTo(b)
	// b is never written again: the string shares its memory, as
	// strings.Builder's does, instead of a second allocation and copy.
	all := unsafe.String(unsafe.SliceData(b), len(b))
	c := &call{key: all[:nk], rec: Record{CallID: all[:len(callID)], From: all[nf:nt],
		To: all[nt:nu], RequestURI: all[nu:ns], Source: all[ns:], Start: f.now()},
		changed: f.seq, older: f.newest}
	if f.newest != nil {
		f.newest.newer = c
	}
	f.newest = c
	f.calls[c.key] = c
	return false
}

// bye ends an answered call: the side whose tag is the BYE's From tag
// hung up.
func (f *Feature) bye(r *proxy.Request) bool {
	m := r.Msg()
	if m.MethodKind() != sip.BYE {
		return false
	}
	callID, fromTag, toTag, ok := proxy.DialogIDs(m)
	if !ok {
		return false
	}
	var kb keyBuf
	f.mu.Lock()
	c, by := f.calls[string(appendKey(kb[:0], callID, fromTag))], "caller"
	if c == nil {
		c, by = f.calls[string(appendKey(kb[:0], callID, toTag))], "callee"
	}
	ended := c != nil && c.rec.Answer != nil
	if ended {
		f.endLocked(c, by)
	}
	f.mu.Unlock()
	if ended {
		f.write(c)
	}
	return false
}

// reply: the first 180/183 or 2xx gives the session request delay; the
// first 2xx to the INVITE answers the call.
func (f *Feature) reply(rp *proxy.Reply) error {
	if !rp.Initial || rp.Req.MethodKind() != sip.INVITE {
		return nil
	}
	ringing := rp.Code == 180 || rp.Code == 183
	if !rp.First2xx && !ringing {
		return nil
	}
	callID, fromTag, _, ok := proxy.DialogIDs(rp.Req)
	if !ok {
		return nil
	}
	var kb keyBuf
	f.mu.Lock()
	if c := f.calls[string(appendKey(kb[:0], callID, fromTag))]; c != nil && c.rec.Answer == nil {
		t := f.now()
		if !c.rang {
			c.rang = true
			f.srd.Observe(t.Sub(c.rec.Start))
		}
		if rp.First2xx {
			c.answered = t
			c.rec.Answer, c.rec.Status, c.rec.SetupMS = &c.answered, rp.Code, t.Sub(c.rec.Start).Milliseconds()
			f.seq++
			c.changed = f.seq
		}
	}
	f.mu.Unlock()
	return nil
}

// failure: the INVITE ended without a 2xx; a CANCEL shows as 487.
func (f *Feature) failure(fl *proxy.Failure) {
	if fl.Req.MethodKind() != sip.INVITE {
		return
	}
	callID, fromTag, toTag, ok := proxy.DialogIDs(fl.Req)
	if !ok || len(toTag) > 0 {
		return
	}
	var kb keyBuf
	f.mu.Lock()
	c := f.calls[string(appendKey(kb[:0], callID, fromTag))]
	ended := c != nil && c.rec.Answer == nil
	if ended {
		c.rec.Status, c.rec.SetupMS = fl.Code, f.now().Sub(c.rec.Start).Milliseconds()
		by := "callee"
		if fl.Code == 487 {
			by = "caller"
		}
		f.endLocked(c, by)
	}
	f.mu.Unlock()
	if ended {
		f.write(c)
	}
}

// dialogEnded: sipedge ended the call itself (session timer, dead media).
func (f *Feature) dialogEnded(callID, fromTag string) {
	f.mu.Lock()
	c := f.calls[callID+"\x00"+fromTag]
	if c != nil {
		f.endLocked(c, "sipedge")
	}
	f.mu.Unlock()
	if c != nil {
		f.write(c)
	}
}

// endLocked ends the call and forgets it (f.mu held); write then logs
// it. The call is then the caller's alone.
func (f *Feature) endLocked(c *call, by string) {
	delete(f.calls, c.key)
	if c.newer != nil {
		c.newer.older = c.older
	} else {
		f.newest = c.older
	}
	if c.older != nil {
		c.older.newer = c.newer
	}
	c.newer, c.older = nil, nil
	c.rec.End, c.rec.EndedBy = f.now(), by
	switch {
	case c.rec.Answer != nil:
		f.answered.Add(1)
	case c.rec.Status == 487:
		f.cancelled.Add(1)
	default:
		f.failed.Add(1)
	}
	if c.rec.Answer != nil {
		c.rec.Duration = c.rec.End.Sub(*c.rec.Answer).Round(time.Millisecond).Seconds()
	}
}

// write adds an ended call's media and writes its line (f.mu not held:
// the media comes from another feature, whose locks are not taken under
// this one's). Lines are written whole under f.mu.
func (f *Feature) write(c *call) {
	if w := f.mediaWait.Load(); w != nil {
		(*w)(c.rec.CallID, func() { f.writeNow(c) })
		return
	}
	f.writeNow(c)
}

func (f *Feature) writeNow(c *call) {
	c.rec.Media = f.mediaOf(c.rec.CallID)
	// The line is made now only for the file (path never changes after
	// New): without one, a reader of the API's lists makes it when it
	// first asks (CallsSince), and a server nobody looks at encodes
	// nothing.
	var line []byte
	var err error
	if f.path != "" {
		// Encoded in a buffer used again for the next call, then kept in
		// one allocation of its own: the file's line ends in '\n', the
		// record keeps the JSON alone.
		bp := lineBufs.Get().(*[]byte)
		var b []byte
		if b, err = c.rec.appendJSON((*bp)[:0]); err == nil {
			// A make followed by a copy of its source is compiled into
			// one allocation of the exact size that is not cleared
			// first (runtime.makeslicecopy); an append to a full
			// slice would also skip the clearing but grow the
			// capacity by half again (a 700-byte line took 1 152).
			line = make([]byte, len(b)+1)
			copy(line, b)
			line[len(b)] = '\n'
			c.rec.line = line[:len(b):len(b)]
			*bp = b[:0]
		}
		lineBufs.Put(bp)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recent[f.recentN%recentCalls] = c.rec
	f.recentN++
	if f.path == "" || f.out == nil {
		return
	}
	if err != nil {
		f.errors.Add(1)
		return
	}
	f.pending = append(f.pending, line...)
	f.lines++
	switch {
	case f.flushWait <= 0 || len(f.pending) >= maxPending:
		f.flushLocked()
	case f.lines == 1:
		f.flusher.Reset(f.flushWait)
	}
}

func (f *Feature) sweep() {
	defer close(f.done)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		limit := f.now().Add(-MaxDuration)
		var stale []*call
		f.mu.Lock()
		for _, c := range f.calls {
			if c.rec.Start.Before(limit) {
				f.endLocked(c, "unknown")
				stale = append(stale, c)
			}
		}
		f.mu.Unlock()
		for _, c := range stale {
			f.write(c)
		}
	}
}

// rawFile writes the call log with raw system calls (internal/rawio): one
// write(2) per line, without waking the runtime's monitor thread.
type rawFile struct{ f *os.File }

func (r rawFile) Write(b []byte) (int, error) {
	if err := rawio.WriteAll(r.f, b); err != nil {
		return 0, err
	}
	return len(b), nil
}
