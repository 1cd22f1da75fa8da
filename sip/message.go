package sip

import (
	"bytes"
	"sync"
)

// span is a byte range [s, e) of Message.buf. Offsets instead of slices keep
// the header index small, free of pointers, and valid for edits.
type span struct{ s, e int32 }

func (sp span) len() int { return int(sp.e - sp.s) }

// header is one header field of the index.
type header struct {
	kind  HeaderKind
	name  span // field name as written
	value span // value with surrounding LWS trimmed; folding stays inside
	line  span // whole field, name to the CRLF that ends it
}

// Method identifies the request methods the core treats specially.
type Method uint8

const (
	MethodOther Method = iota
	INVITE
	ACK
	BYE
	CANCEL
	OPTIONS
	REGISTER
	PRACK
	SUBSCRIBE
	NOTIFY
	PUBLISH
	INFO
	REFER
	MESSAGE
	UPDATE
)

var methodNames = [...]string{"", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER",
	"PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}

func (m Method) String() string { return methodNames[m] }

// LookupMethod maps a method token to its Method. Methods are case-sensitive
// (RFC 3261 §7.1): "invite" is an unknown extension method.
func LookupMethod(b []byte) Method {
	for i := 1; i < len(methodNames); i++ {
		if string(b) == methodNames[i] {
			return Method(i)
		}
	}
	return MethodOther
}

// Message is a parsed SIP message: the bytes as received plus an index of
// spans over them. Nothing is copied or decoded during Parse; typed views
// (Via, URI, Address...) are computed on demand from the spans. Edits are
// recorded as byte-range replacements and applied when the message is
// written, so a message with no edits is written byte-identical.
//
// A Message is reusable: Parse resets it and keeps its allocated capacity,
// which is how the receive path parses without allocating.
type Message struct {
	buf     []byte // the message: start line, headers, body (trailing datagram bytes cut off)
	request bool
	method  Method

	// start line
	methodSp, ruri, version span // requests
	code                    int  // responses
	reason                  span // responses
	startEnd                int32

	hdrs   []header
	first  [kindCount]int16 // index+1 of the first header of each kind; 0 = absent
	count  [kindCount]uint8 // occurrences, saturating at 255
	hdrEnd int32            // offset of the first body byte
	body   span

	// values computed during validation
	cseq        uint32
	cseqMethod  span
	maxForwards int32 // -1 when absent
	contentLen  int32 // -1 when absent
	nvias       int32

	edits   []edit
	scratch []byte
	bufs    *msgBufs // where hdrs, edits and scratch came from (Recycle)
}

// msgBufs carries a Message's buffers (header index, edit buffers) from
// a Message its owner is done with (Recycle) to the next one parsed
// without buffers of its own: a proxied request's copy, kept for its
// transaction, otherwise allocates them anew each time.
type msgBufs struct {
	hdrs    []header
	edits   []edit
	scratch []byte
}

var bufPool sync.Pool // of *msgBufs

// maxPooledScratch bounds the edit bytes a pooled Message keeps (a large
// rewritten body is not kept for every later message).
const maxPooledScratch = 8 << 10

// Recycle ends the use of m: its header index and edit buffers go to the
// next Message parsed without buffers of its own, and m is left as the
// zero Message. Views of the parsed bytes (header values, a parsed Via)
// stay valid, since they point into those bytes; nothing else that m
// returned may be used after it.
func (m *Message) Recycle() {
	b := m.bufs
	if b == nil {
		b = new(msgBufs)
	}
	b.hdrs, b.edits, b.scratch = m.hdrs[:0], m.edits[:0], m.scratch[:0]
	if cap(b.scratch) > maxPooledScratch {
		b.scratch = nil
	}
	*m = Message{}
	bufPool.Put(b)
}

// b returns the bytes of a span.
func (m *Message) b(sp span) []byte { return m.buf[sp.s:sp.e] }

// Release drops the message's reference to the bytes it was parsed from
// (so a pooled Message does not pin a receive buffer) while keeping the
// index capacity that lets the next Parse run without allocating.
func (m *Message) Release() { m.reset() }

func (m *Message) reset() {
	hdrs, edits, scratch, bufs := m.hdrs[:0], m.edits[:0], m.scratch[:0], m.bufs
	if hdrs == nil && bufs == nil {
		if b, _ := bufPool.Get().(*msgBufs); b != nil {
			bufs, hdrs, edits, scratch = b, b.hdrs, b.edits, b.scratch
		}
	}
	if hdrs == nil {
		hdrs = make([]header, 0, 32)
	}
	*m = Message{hdrs: hdrs, edits: edits, scratch: scratch, bufs: bufs, maxForwards: -1, contentLen: -1}
}

// IsRequest reports whether the message is a request.
func (m *Message) IsRequest() bool { return m.request }

// Method returns the request method token as written.
func (m *Message) Method() []byte { return m.b(m.methodSp) }

// MethodKind returns the request's Method (MethodOther for extensions).
func (m *Message) MethodKind() Method { return m.method }

// RequestURIBytes returns the Request-URI as written.
func (m *Message) RequestURIBytes() []byte { return m.b(m.ruri) }

// RequestURI parses the Request-URI. It was validated by Parse.
func (m *Message) RequestURI() (URI, error) { return ParseURI(m.b(m.ruri)) }

// RequestURISpan returns the offsets of the Request-URI, for edits.
func (m *Message) RequestURISpan() (start, end int) { return int(m.ruri.s), int(m.ruri.e) }

// StatusCode returns a response's status code.
func (m *Message) StatusCode() int { return m.code }

// Reason returns a response's reason phrase as written (may be empty or UTF-8).
func (m *Message) Reason() []byte { return m.b(m.reason) }

// Bytes returns the message as received (without edits and without any
// trailing bytes that followed it in a datagram).
func (m *Message) Bytes() []byte { return m.buf }

// Body returns the message body (Content-Length bytes).
func (m *Message) Body() []byte { return m.b(m.body) }

// BodyOffset returns the offset of the first body byte.
func (m *Message) BodyOffset() int { return int(m.hdrEnd) }

// NumHeaders returns the number of header fields.
func (m *Message) NumHeaders() int { return len(m.hdrs) }

// HeaderKind returns the kind of header i.
func (m *Message) HeaderKind(i int) HeaderKind { return m.hdrs[i].kind }

// HeaderName returns the name of header i as written (maybe compact form).
func (m *Message) HeaderName(i int) []byte { return m.b(m.hdrs[i].name) }

// HeaderValue returns the value of header i, LWS-trimmed, folding kept.
func (m *Message) HeaderValue(i int) []byte { return m.b(m.hdrs[i].value) }

// HeaderLine returns the offsets of header field i including its CRLF.
func (m *Message) HeaderLine(i int) (start, end int) {
	return int(m.hdrs[i].line.s), int(m.hdrs[i].line.e)
}

// HeaderValueSpan returns the offsets of header i's value.
func (m *Message) HeaderValueSpan(i int) (start, end int) {
	return int(m.hdrs[i].value.s), int(m.hdrs[i].value.e)
}

// Find returns the index of the first header of kind k, or -1.
func (m *Message) Find(k HeaderKind) int { return int(m.first[k]) - 1 }

// FindNext returns the index of the next header of kind k after index i, or -1.
func (m *Message) FindNext(k HeaderKind, i int) int {
	for j := i + 1; j < len(m.hdrs); j++ {
		if m.hdrs[j].kind == k {
			return j
		}
	}
	return -1
}

// Count returns how many header fields of kind k the message has (max 255).
func (m *Message) Count(k HeaderKind) int { return int(m.count[k]) }

// Get returns the value of the first header of kind k, or nil.
func (m *Message) Get(k HeaderKind) []byte {
	if i := m.first[k]; i > 0 {
		return m.b(m.hdrs[i-1].value)
	}
	return nil
}

// GetByName returns the value of the first header with this name (any case;
// the compact form of a known header matches too), or nil.
func (m *Message) GetByName(name string) []byte {
	if k := LookupKind([]byte(name)); k != KindOther {
		return m.Get(k)
	}
	for i := range m.hdrs {
		if equalFold(m.b(m.hdrs[i].name), name) {
			return m.b(m.hdrs[i].value)
		}
	}
	return nil
}

// CallID returns the Call-ID value.
func (m *Message) CallID() []byte { return m.Get(KindCallID) }

// CSeq returns the CSeq number and method.
func (m *Message) CSeq() (uint32, []byte) { return m.cseq, m.b(m.cseqMethod) }

// MaxForwards returns the Max-Forwards value and whether the header exists.
// Values above 255 are reported as they are (RFC 3261 bounds it at 255 but
// tolerating more harms no one).
func (m *Message) MaxForwards() (int, bool) { return int(m.maxForwards), m.maxForwards >= 0 }

// ContentLength returns the Content-Length value, or -1 when absent.
func (m *Message) ContentLength() int { return int(m.contentLen) }

// NumVias returns the number of Via values (not header lines).
func (m *Message) NumVias() int { return int(m.nvias) }

// TopVia parses the first Via value.
func (m *Message) TopVia() (Via, error) {
	it := m.Values(KindVia)
	v, ok := it.Next()
	if !ok {
		return Via{}, errNoVia
	}
	return ParseVia(v)
}

// TopViaSpan returns the offsets of the first Via value (for edits such as
// adding received/rport).
func (m *Message) TopViaSpan() (start, end int, ok bool) {
	it := m.Values(KindVia)
	v, ok := it.Next()
	if !ok {
		return 0, 0, false
	}
	s := it.lastOff
	return s, s + len(v), true
}

// From parses the From header.
func (m *Message) From() (Address, error) { return ParseAddress(m.Get(KindFrom)) }

// To parses the To header.
func (m *Message) To() (Address, error) { return ParseAddress(m.Get(KindTo)) }

// Values iterates the comma-separated values of every header of kind k in
// order (RFC 3261 §7.3.1: "Via: a, b" is the same as two Via lines).
func (m *Message) Values(k HeaderKind) Values {
	return Values{m: m, kind: k, hi: int(m.first[k]) - 1}
}

// Values is an iterator over the values of one header kind.
type Values struct {
	m       *Message
	kind    HeaderKind
	hi      int   // current header index, -1 when done
	pos     int32 // offset of the next value in buf
	started bool
	lastOff int // offset of the value last returned
}

// Next returns the next value (LWS-trimmed) and true, or false when done.
// Empty values between commas are returned as empty slices so a validator
// can reject them.
func (it *Values) Next() ([]byte, bool) {
	for it.hi >= 0 && it.hi < len(it.m.hdrs) {
		h := &it.m.hdrs[it.hi]
		if !it.started {
			it.pos = h.value.s
			it.started = true
			if h.value.s == h.value.e {
				it.advance()
				it.lastOff = int(h.value.s)
				return it.m.buf[h.value.s:h.value.s], true
			}
		}
		if it.pos > h.value.e {
			it.advance()
			continue
		}
		v := it.m.buf[it.pos:h.value.e]
		n := splitComma(v)
		val := v[:n]
		start := int(it.pos)
		it.pos += int32(n) + 1 // past the comma (or past the end)
		lead := 0
		for lead < len(val) && isLWS(val[lead]) {
			lead++
		}
		t := val[lead:]
		for len(t) > 0 && isLWS(t[len(t)-1]) {
			t = t[:len(t)-1]
		}
		it.lastOff = start + lead
		return t, true
	}
	return nil, false
}

func (it *Values) advance() {
	it.hi = it.m.FindNext(it.kind, it.hi)
	it.started = false
}

// SplitComma is splitComma for other packages: the length of the first
// comma-separated element of a header value.
func SplitComma(v []byte) int { return splitComma(v) }

// splitComma returns the length of the first comma-separated element of v,
// ignoring commas inside quoted strings and <...>.
func splitComma(v []byte) int {
	if bytes.IndexByte(v, ',') < 0 {
		return len(v) // the common case: one value, found by a vectorised scan
	}
	inQuote, inAngle := false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case c == ',' && !inAngle:
			return i
		}
	}
	return len(v)
}

// Offset returns the offset in the message of sub, a slice obtained from one
// of the message's views (Via, Address, URI fields...), or -1 when sub does
// not point into the message. Views carry no offsets themselves; this
// recovers one without allocation, so an edit can target a parameter that a
// view found.
func (m *Message) Offset(sub []byte) int {
	if cap(sub) == 0 || cap(sub) > cap(m.buf) {
		return -1
	}
	off := cap(m.buf) - cap(sub)
	if off > len(m.buf) || len(sub) > len(m.buf)-off || (len(sub) > 0 && &m.buf[off] != &sub[0]) {
		return -1
	}
	return off
}
