// Package capture keeps the SIP messages of calls for the operations
// page: every message of an INVITE dialog that sipedge received or sent,
// for the calls in progress and the last ones that ended, with the time,
// direction, transport, addresses and full text of each. It exports a
// call as a text ladder (WriteLadder) and as a libpcap file (WritePcap)
// that Wireshark and sngrep read.
//
// It is a transport tap subscriber, so it runs on the reader and sender
// goroutines of every SIP message and follows the HEP sender's discipline:
// it copies what it keeps, starts no goroutine, and keeps its memory
// bounded (the limits are in Config; what does not fit is counted).
//
// Staging: a tapped message is not filed under its call where it is
// tapped. The tapping thread scans its headers for the Call-ID and the
// CSeq method (the message is in its cache), then appends the message,
// those keys and a fixed header to one staging buffer under a mutex held
// for that copy alone. Whoever finds the buffer past stageBytes files the
// whole batch in order (the map look-up, the call, its chunks, its
// state), as does every reader before it reads (Messages, Version,
// Stats). Filed per message on the tapping threads, a call's structures
// moved between the two CPUs of a call's two legs at nearly every
// message (the caller's leg is read on one, the callee's on the other):
// a batch files a call's burst (INVITE, 100, 180, 200, ACK within
// milliseconds) on one thread, its lines in that CPU's cache.
//
// Which messages are kept: a Call-ID is followed from an INVITE (sent or
// received); any other message is kept only when its Call-ID is already
// followed. So REGISTER and OPTIONS floods, which never start a call,
// evict nothing: a REGISTER costs a look at its start line (its response
// a header scan), an OPTIONS a header scan, a staged copy and one map
// look-up when it is filed. A call moves
// through three states:
//
//   - unconfirmed: an INVITE came in and sipedge has sent nothing for it
//     yet. A banned flooder's INVITEs, which the guard drops silently, stay
//     here; this set is small (256) and evicts only its own oldest, so an
//     INVITE flood cannot push out calls in progress.
//   - active: sipedge sent something for the call (a 100 Trying, the
//     forwarded INVITE, a 407).
//   - ended: sipedge sent a final response of 300 or more to the INVITE
//     before any 2xx (for a forked call, the one it chose to send upstream,
//     RFC 3261 §16.7), or a BYE got its final response (other than a 401
//     or 407 challenge). A new INVITE with the same Call-ID (the request
//     repeated with credentials after a 407, RFC 3261 §22.2) makes it
//     active again. Calls that sipedge never forwarded (answered by
//     sipedge itself: 403, 404, 407) are the first ended calls to go.
//
// Storage: a call's messages are one byte stream (a fixed header per
// message, then the message) in fixed-size chunks taken from a free list,
// so keeping a message is one copy and, once the chunks exist, no
// allocation; the chunks hold no pointers for the garbage collector to
// scan. Reads (the API) copy a call's stream under the lock and decode it
// outside.
package capture

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// Config bounds what is kept. Zero fields take the defaults.
type Config struct {
	// MaxCalls is how many ended calls are kept (default 1 000): the
	// oldest ended call goes first.
	MaxCalls int
	// MaxActive is how many calls in progress are kept (default
	// 10 000). Beyond it, the call in progress that has been silent
	// longest is forgotten (counted in EvictedActive).
	MaxActive int
	// MaxMessages is how many messages of one call are kept (default
	// 200); later ones are counted (DroppedCallFull), not kept. A call
	// with session refreshes every few minutes reaches it after hours.
	MaxMessages int
	// MaxBytes bounds the memory of the kept messages, their headers
	// included (default 64 MiB). When it is reached, ended calls are
	// forgotten first, oldest first, then the calls in progress silent
	// longest.
	MaxBytes int
}

// Defaults.
const (
	DefaultMaxCalls    = 1000
	DefaultMaxActive   = 10000
	DefaultMaxMessages = 200
	DefaultMaxBytes    = 64 << 20
)

// MaxMessageBytes is the most of one message that is kept: the largest
// UDP payload an IPv4 datagram can carry, so that every kept message fits
// one frame of WritePcap. Longer messages (over TCP or TLS) are kept cut
// (Truncated) with their real size.
const MaxMessageBytes = 65507

// maxUnconfirmed bounds the calls that only have a received INVITE.
const maxUnconfirmed = 256

// maxIdle: a call in progress with no message for this long is taken as
// ended (a phone that died without a BYE, no session timer). It is the
// call log's MaxDuration.
const maxIdle = 12 * time.Hour

// relist is how stale a call's place in the active list may get: the
// list is kept by last activity to within it (the oldest go first when
// memory runs out), without a move per message.
const relist = time.Second

// chunkSize is the unit of memory: a typical call through sipedge (14
// messages of about 700 bytes) holds three chunks.
const chunkSize = 4096

// maxFreeChunks and maxFreeCalls bound what is kept for reuse after a
// burst (1 MiB of chunks).
const (
	maxFreeChunks = 256
	maxFreeCalls  = 1024
)

// A call's states, which are also the lists it is on.
const (
	stUnconfirmed = iota // an INVITE came in, sipedge sent nothing yet
	stActive             // in progress, by last activity
	stEndedLocal         // ended, never forwarded: goes first
	stEnded              // ended after sipedge forwarded its INVITE
	nStates
)

// call is one followed Call-ID: its messages are a byte stream over
// chunks, each message a hdrSize header and its bytes.
type call struct {
	id        string
	chunks    [][]byte
	used      int   // bytes of the stream
	n         int   // messages kept
	dropped   int   // messages not kept (MaxMessages, memory)
	last      int64 // time of the last message, Unix ns
	listed    int64 // when it was last put at the head of the active list
	state     uint8
	forwarded bool // sipedge sent an INVITE for it
	answered  bool // a 2xx to an INVITE was seen
	prev      *call
	next      *call
}

// list is a doubly linked list of calls, the newest (or most recently
// active) at head.
type list struct {
	head, tail *call
	n          int
}

func (l *list) pushFront(c *call) {
	c.prev, c.next = nil, l.head
	if l.head != nil {
		l.head.prev = c
	} else {
		l.tail = c
	}
	l.head = c
	l.n++
}

func (l *list) remove(c *call) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next = nil, nil
	l.n--
}

// Capture is the store of calls' messages; its Tap is a transport.Tap.
type Capture struct {
	cfg       Config
	maxChunks int

	// Lock order: mu before smu. smu is held for one append (Tap) or one
	// swap of the buffers (filing), nothing else.
	smu sync.Mutex
	// stage holds the messages tapped and not filed yet, each a staged
	// record (stageHdr, then its keys and bytes), in tap order.
	stage []byte

	mu sync.Mutex
	// spare is the staging buffer that is not in use: it becomes the
	// stage when the stage is taken for filing.
	spare []byte
	// version (every message of a followed call), messages and truncated
	// change per message filed: plain fields under mu, which filing holds.
	version, messages, truncated uint64
	calls                        map[string]*call
	last                         *call // the call of the last message kept; nil once evicted
	lists                        [nStates]list
	freeChunks                   [][]byte
	freeCalls                    []*call
	chunks                       int // chunks held by calls
	allocated                    int // chunks in calls and on the free list

	droppedCallFull, droppedNoMemory, evictedActive, evictedUnconfirmed atomic.Uint64
}

// New makes an empty capture.
func New(cfg Config) *Capture {
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = DefaultMaxCalls
	}
	if cfg.MaxActive <= 0 {
		cfg.MaxActive = DefaultMaxActive
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = DefaultMaxMessages
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	return &Capture{cfg: cfg, maxChunks: max(cfg.MaxBytes/chunkSize, 1), calls: map[string]*call{}}
}

// Stats are the capture's counters and levels (the metrics convention).
type Stats struct {
	Messages           uint64 // messages kept
	DroppedCallFull    uint64 // messages not kept: their call had the most kept per call (200)
	DroppedNoMemory    uint64 // messages not kept: their own call held the whole byte budget
	Truncated          uint64 // messages over 65 507 bytes, kept cut
	EvictedActive      uint64 // calls in progress forgotten to make room (too many, or the byte budget)
	EvictedUnconfirmed uint64 // received INVITEs forgotten before sipedge sent anything for them (a flood the guard drops)
	Calls              int    // calls kept
	Active             int    // calls in progress kept
	Bytes              int64  // bytes of memory holding messages
}

// Stats returns the counters.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	c.fileLocked()
	calls, active, bytes := len(c.calls), c.lists[stActive].n, int64(c.allocated)*chunkSize
	messages, truncated := c.messages, c.truncated
	c.mu.Unlock()
	return Stats{Messages: messages, DroppedCallFull: c.droppedCallFull.Load(),
		DroppedNoMemory: c.droppedNoMemory.Load(), Truncated: truncated,
		EvictedActive: c.evictedActive.Load(), EvictedUnconfirmed: c.evictedUnconfirmed.Load(),
		Calls: calls, Active: active, Bytes: bytes}
}

// Version changes whenever a message is kept: a reader that saw the same
// version twice knows no call had a message in between.
// It takes the lock and files what is staged: the operations page's
// stream reads it a few times a second, every message changes it.
func (c *Capture) Version() uint64 {
	c.mu.Lock()
	c.fileLocked()
	v := c.version
	c.mu.Unlock()
	return v
}

// Tap is a transport.Tap: it keeps the message if it belongs to a call.
// It copies the bytes it keeps (ev.Data is valid only during the call).
func (c *Capture) Tap(ev *transport.TapEvent) {
	data := ev.Data
	// A stream send may carry several messages (transport.TapEvent.Data);
	// each is framed by its Content-Length, as the receiver will.
	// A WebSocket message is always one SIP message.
	if ev.Dir == transport.TapOut && ev.Proto != transport.UDP && !ev.Proto.WebSocket() {
		for len(data) > 0 {
			n, kind, err := sip.Frame(data, nil)
			if err != nil || kind != sip.FrameMessage || n <= 0 || n >= len(data) {
				break
			}
			c.add(ev, data[:n])
			data = data[n:]
		}
	}
	c.add(ev, data)
}

// hdrSize is the header stored before each message: time (8), size (4),
// stored length (4), direction, transport, address families (4), local
// address and port (18), remote address and port (18).
const hdrSize = 56

// A staged record is the stored header, the lengths of the Call-ID and
// of the CSeq method (2 bytes each), then the Call-ID, the method and the
// stored bytes of the message.
const stageHdr = hdrSize + 4

// stageBytes is when the tapping thread that finds the stage this long
// files it: about 150 messages of 800 bytes, 15 ms of the signalling of
// 800 calls a second; the batch stays in the cache of the thread that
// files it. maxStageBytes is when a tapping thread waits for a filing
// under way instead of staging more (a burst, or a long read of the
// API).
const (
	stageBytes    = 128 << 10
	maxStageBytes = 4 << 20
)

// stageCap is a new staging buffer's capacity: stageBytes and room for
// the message that reaches it. maxSpare: a staging buffer grown larger
// by a burst is not kept.
const (
	stageCap = stageBytes + 16<<10
	maxSpare = 2 * stageBytes
)

// add stages one message if it may belong to a call: not a REGISTER or
// its response, and with a Call-ID.
func (c *Capture) add(ev *transport.TapEvent, b []byte) {
	sl := startLine(b)
	if string(sl.method) == "REGISTER" {
		return // a REGISTER never belongs to a call: not even a look-up
	}
	// One pass over the headers for both: a response's method is its
	// CSeq's.
	id, cseq := transport.MessageKeys(b)
	if len(id) == 0 || string(cseq) == "REGISTER" && sl.response {
		return
	}
	// A Call-ID or a method of 64 KiB or more (a stream may carry a
	// message longer than one the capture keeps) is not staged: no
	// request sipedge forwards has one (the parser's header line limit
	// is 8 KiB).
	if len(id) > 0xffff || len(cseq) > 0xffff {
		return
	}
	stored := min(len(b), MaxMessageBytes)
	var h [stageHdr]byte
	binary.LittleEndian.PutUint64(h[0:], uint64(ev.Time.UnixNano()))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(b)))
	binary.LittleEndian.PutUint32(h[12:], uint32(stored))
	h[16], h[17] = byte(ev.Dir), byte(ev.Proto)
	putAddr(h[20:38], ev.Local)
	putAddr(h[38:56], ev.Remote)
	binary.LittleEndian.PutUint16(h[56:], uint16(len(id)))
	binary.LittleEndian.PutUint16(h[58:], uint16(len(cseq)))

	c.smu.Lock()
	if c.stage == nil {
		c.stage = make([]byte, 0, stageCap)
	}
	c.stage = append(c.stage, h[:]...)
	c.stage = append(c.stage, id...)
	c.stage = append(c.stage, cseq...)
	c.stage = append(c.stage, b[:stored]...)
	n := len(c.stage)
	c.smu.Unlock()
	switch {
	case n >= maxStageBytes:
		c.mu.Lock() // a filing is under way: wait for it, then file
	case n >= stageBytes:
		if !c.mu.TryLock() {
			return // another thread is filing; the next message tries again
		}
	default:
		return
	}
	c.fileLocked()
	c.mu.Unlock()
}

// fileLocked files every staged message, in the order they were tapped.
func (c *Capture) fileLocked() {
	c.smu.Lock()
	staged := c.stage
	c.stage, c.spare = c.spare[:0], nil
	c.smu.Unlock()
	batch := staged
	for len(batch) >= stageHdr {
		h := batch[:stageHdr]
		stored := int(binary.LittleEndian.Uint32(h[12:]))
		idLen := int(binary.LittleEndian.Uint16(h[56:]))
		mLen := int(binary.LittleEndian.Uint16(h[58:]))
		rest := batch[stageHdr:]
		id, method, msg := rest[:idLen], rest[idLen:idLen+mLen], rest[idLen+mLen:idLen+mLen+stored]
		c.fileMessageLocked(h[:hdrSize], id, method, msg)
		batch = rest[idLen+mLen+stored:]
	}
	if cap(staged) <= maxSpare {
		c.spare = staged[:0]
	}
}

// fileMessageLocked keeps one staged message if its Call-ID is followed
// or it starts a call; h is its stored header, cseq its CSeq method.
func (c *Capture) fileMessageLocked(h, id, cseq, b []byte) {
	sl := startLine(b)
	dir := transport.TapDir(h[16])
	at := int64(binary.LittleEndian.Uint64(h[0:]))
	// A message and its forwarded copy, a request and its provisional
	// response, come one after the other: the call of the last message
	// spares most messages the map's hash and probe.
	cl := c.last
	if cl == nil || cl.id != string(id) {
		cl = c.calls[string(id)] // no allocation for the look-up
	}
	if cl == nil {
		if sl.response || string(sl.method) != "INVITE" {
			return
		}
		cl = c.newCallLocked(string(id), dir, at)
	}
	cl.last = at
	c.last = cl
	if c.storeLocked(cl, h, b) {
		c.messages++
		if len(b) < int(binary.LittleEndian.Uint32(h[8:])) {
			c.truncated++
		}
	}
	c.trackLocked(cl, dir, &sl, cseq)
	c.version++
}

// putAddr writes an address as 16 bytes (IPv4 as ::ffff:a.b.c.d) and the
// port. A zone is not kept.
func putAddr(b []byte, ap netip.AddrPort) {
	a16 := ap.Addr().As16()
	copy(b, a16[:])
	binary.LittleEndian.PutUint16(b[16:], ap.Port())
}

// Every call in c.calls is on exactly the list of its state.

// newCallLocked starts following id: unconfirmed when the INVITE came in,
// active when sipedge sent it.
func (c *Capture) newCallLocked(id string, dir transport.TapDir, at int64) *call {
	var cl *call
	if n := len(c.freeCalls); n > 0 {
		cl = c.freeCalls[n-1]
		c.freeCalls = c.freeCalls[:n-1]
	} else {
		cl = &call{}
	}
	cl.id = id
	c.calls[id] = cl
	if dir == transport.TapIn {
		c.unconfirmLocked(cl)
		return cl
	}
	c.activateLocked(cl, at)
	return cl
}

// unconfirmLocked puts cl (on no list) at the head of the unconfirmed
// list, forgetting the oldest beyond maxUnconfirmed.
func (c *Capture) unconfirmLocked(cl *call) {
	cl.state = stUnconfirmed
	l := &c.lists[stUnconfirmed]
	l.pushFront(cl)
	if l.n > maxUnconfirmed {
		c.evictLocked(l.tail)
		c.evictedUnconfirmed.Add(1)
	}
}

// activateLocked puts cl (on no list) at the head of the active list,
// making room when it is full.
func (c *Capture) activateLocked(cl *call, at int64) {
	cl.state = stActive
	cl.listed = at
	l := &c.lists[stActive]
	l.pushFront(cl)
	// A call silent for maxIdle is over, whatever was lost of its end.
	if t := l.tail; t != cl && at-t.last > int64(maxIdle) {
		c.endLocked(t)
	}
	if l.n > c.cfg.MaxActive {
		c.evictLocked(l.tail)
		c.evictedActive.Add(1)
	}
}

// trackLocked moves cl between states for the message it just got;
// method is its CSeq's, read for a response only.
func (c *Capture) trackLocked(cl *call, dir transport.TapDir, sl *line, method []byte) {
	switch {
	case sl.response:
		invite := string(method) == "INVITE"
		switch {
		case invite && sl.code >= 200 && sl.code < 300:
			cl.answered = true
		case invite && sl.code >= 300 && dir == transport.TapOut && !cl.answered,
			string(method) == "BYE" && sl.code >= 200 && sl.code != 401 && sl.code != 407:
			// An INVITE's failure counts when sipedge sends it upstream:
			// one branch's failure received may be followed by another
			// branch's 2xx (RFC 3261 §16.7). A BYE's answer counts in
			// either direction: the BYEs sipedge sends itself (session
			// timer, dead media) get answers it never forwards.
			if cl.state <= stActive {
				c.endLocked(cl)
			}
			return
		}
	case string(sl.method) == "INVITE":
		if dir == transport.TapOut {
			cl.forwarded = true
		}
		if cl.state >= stEndedLocal {
			// The INVITE again (with credentials after a 407, RFC 3261
			// §22.2): the call goes on, as a new one would.
			c.lists[cl.state].remove(cl)
			cl.answered = false
			if dir == transport.TapIn {
				c.unconfirmLocked(cl)
			} else {
				c.activateLocked(cl, cl.last)
			}
			return
		}
	}
	switch {
	case cl.state == stUnconfirmed && dir == transport.TapOut:
		c.lists[stUnconfirmed].remove(cl)
		c.activateLocked(cl, cl.last)
	case cl.state == stActive && c.lists[stActive].head != cl && cl.last-cl.listed >= int64(relist):
		// Most recently active first, to within relist: a call's
		// messages come in bursts (INVITE, 100, 180, 200 and ACK within
		// milliseconds), and each move writes to three other calls,
		// whose lines are cold.
		c.lists[stActive].remove(cl)
		c.lists[stActive].pushFront(cl)
		cl.listed = cl.last
	}
}

// endLocked moves cl (unconfirmed or active) to its ended list
// and forgets the oldest ended calls beyond MaxCalls, the ones sipedge
// never forwarded first.
func (c *Capture) endLocked(cl *call) {
	c.lists[cl.state].remove(cl)
	cl.state = stEndedLocal
	if cl.forwarded {
		cl.state = stEnded
	}
	c.lists[cl.state].pushFront(cl)
	for c.lists[stEndedLocal].n+c.lists[stEnded].n > c.cfg.MaxCalls {
		victim := c.lists[stEndedLocal].tail
		if victim == nil {
			victim = c.lists[stEnded].tail
		}
		c.evictLocked(victim)
	}
}

// evictLocked forgets cl: its chunks and the call itself go back for
// reuse.
func (c *Capture) evictLocked(cl *call) {
	c.lists[cl.state].remove(cl)
	delete(c.calls, cl.id)
	if c.last == cl {
		c.last = nil
	}
	for i, ch := range cl.chunks {
		c.chunks--
		if len(c.freeChunks) < maxFreeChunks {
			c.freeChunks = append(c.freeChunks, ch)
		} else {
			c.allocated--
		}
		cl.chunks[i] = nil
	}
	chunks := cl.chunks[:0]
	*cl = call{chunks: chunks}
	if len(c.freeCalls) < maxFreeCalls {
		c.freeCalls = append(c.freeCalls, cl)
	}
}

// storeLocked appends the header and the message to cl's stream; false
// when the call is full or no memory can be freed for it.
func (c *Capture) storeLocked(cl *call, h, b []byte) bool {
	if cl.n >= c.cfg.MaxMessages {
		cl.dropped++
		c.droppedCallFull.Add(1)
		return false
	}
	need := (cl.used + len(h) + len(b) + chunkSize - 1) / chunkSize
	for len(cl.chunks) < need {
		ch := c.chunkLocked(cl)
		if ch == nil {
			cl.dropped++
			c.droppedNoMemory.Add(1)
			return false
		}
		cl.chunks = append(cl.chunks, ch)
		c.chunks++
	}
	c.writeLocked(cl, h)
	c.writeLocked(cl, b)
	cl.n++
	return true
}

// chunkLocked returns a free chunk: from the free list, newly made while
// under MaxBytes, or freed by forgetting other calls (never cl).
func (c *Capture) chunkLocked(cl *call) []byte {
	for {
		if n := len(c.freeChunks); n > 0 {
			ch := c.freeChunks[n-1]
			c.freeChunks = c.freeChunks[:n-1]
			return ch
		}
		if c.allocated < c.maxChunks {
			c.allocated++
			return make([]byte, chunkSize)
		}
		victim := c.victimLocked(cl)
		if victim == nil {
			return nil
		}
		if victim.state == stActive {
			c.evictedActive.Add(1)
		} else if victim.state == stUnconfirmed {
			c.evictedUnconfirmed.Add(1)
		}
		c.evictLocked(victim)
	}
}

// victimLocked picks the call to forget for memory: unconfirmed, ended
// without forwarding, ended, then in progress, the oldest of each first;
// never cl, never a call that holds no chunk.
func (c *Capture) victimLocked(cl *call) *call {
	for _, st := range [...]int{stUnconfirmed, stEndedLocal, stEnded, stActive} {
		for v := c.lists[st].tail; v != nil; v = v.prev {
			if v != cl && len(v.chunks) > 0 {
				return v
			}
		}
	}
	return nil
}

// writeLocked copies b to the end of cl's stream (its chunks are there).
func (c *Capture) writeLocked(cl *call, b []byte) {
	for len(b) > 0 {
		ch := cl.chunks[cl.used/chunkSize]
		n := copy(ch[cl.used%chunkSize:], b)
		cl.used += n
		b = b[n:]
	}
}

// Messages returns the kept messages of the call with this Call-ID, in
// the order they were kept, and how many were not kept; ok is false when
// the call is not (or no longer) followed.
func (c *Capture) Messages(callID string) (msgs []Message, dropped int, ok bool) {
	c.mu.Lock()
	c.fileLocked()
	cl := c.calls[callID]
	if cl == nil {
		c.mu.Unlock()
		return nil, 0, false
	}
	stream := make([]byte, cl.used)
	off := 0
	for _, ch := range cl.chunks {
		if off >= len(stream) {
			break
		}
		off += copy(stream[off:], ch)
	}
	n, dropped := cl.n, cl.dropped
	c.mu.Unlock()
	msgs = decode(stream, n)
	resolveLocal(msgs)
	return msgs, dropped, true
}

// decode reads the messages of a stream (at most n).
func decode(stream []byte, n int) []Message {
	msgs := make([]Message, 0, n)
	for len(stream) >= hdrSize && len(msgs) < n {
		h := stream[:hdrSize]
		size := int(binary.LittleEndian.Uint32(h[8:]))
		stored := int(binary.LittleEndian.Uint32(h[12:]))
		if stored > len(stream)-hdrSize {
			break // cannot happen: the stream is written whole
		}
		b := stream[hdrSize : hdrSize+stored]
		m := Message{Time: time.Unix(0, int64(binary.LittleEndian.Uint64(h[0:]))), Size: size,
			Transport: transport.Proto(h[17]).String(), Local: getAddr(h[20:38]), Remote: getAddr(h[38:56]),
			Text: string(b)}
		m.Dir = transport.TapDir(h[16]).String()
		m.Label, m.SDP = Label(b), SDPSummary(b)
		msgs = append(msgs, m)
		stream = stream[hdrSize+stored:]
	}
	return msgs
}

func getAddr(b []byte) netip.AddrPort {
	a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	return netip.AddrPortFrom(a, binary.LittleEndian.Uint16(b[16:]))
}
