package sip

import (
	"errors"
	"slices"
	"strconv"
)

// edit replaces buf[s:e] with scratch[ds:de]. An insertion has s == e, a
// deletion ds == de. This is the "lump" model of Kamailio's core: the
// received bytes stay where they are and only the changed ranges are
// spliced in when the message is written.
type edit struct {
	s, e   int32
	ds, de int32
}

// ErrEditOverlap is returned when an edit overlaps an earlier one.
var ErrEditOverlap = errors.New("sip: edit overlaps an earlier edit")

// Replace schedules the replacement of bytes [start, end) with data. data is
// copied, so the caller may reuse it. Insertions at the same offset are
// written in the order they were made.
func (m *Message) Replace(start, end int, data []byte) error {
	if start < 0 || end < start || end > len(m.buf) {
		return ErrEditOverlap
	}
	for i := range m.edits {
		e := &m.edits[i]
		// Overlap of two non-empty ranges, or an insertion strictly inside
		// a replaced range.
		if start < int(e.e) && int(e.s) < end ||
			(start == end && start > int(e.s) && start < int(e.e)) ||
			(e.s == e.e && int(e.s) > start && int(e.s) < end) {
			return ErrEditOverlap
		}
	}
	m.reserveEdits()
	ds := len(m.scratch)
	m.scratch = append(m.scratch, data...)
	m.edits = append(m.edits, edit{int32(start), int32(end), int32(ds), int32(len(m.scratch))})
	return nil
}

// A forwarded request gets about ten edits and a few hundred bytes of
// them (Request-URI, Max-Forwards, received/rport, Record-Route, Via).
// A Message that has never been edited reserves room for that much at
// its first edit, instead of growing both slices step by step; a reused
// Message keeps what it has.
const (
	editsReserve   = 16
	scratchReserve = 512
)

// reserveEdits makes room for a forwarded request's edits at the first
// edit of a Message.
func (m *Message) reserveEdits() {
	if cap(m.edits) == 0 {
		m.edits = make([]edit, 0, editsReserve)
	}
	if cap(m.scratch) == 0 {
		m.scratch = make([]byte, 0, scratchReserve)
	}
}

// Insert schedules data to be inserted at offset at.
func (m *Message) Insert(at int, data []byte) error { return m.Replace(at, at, data) }

// Delete schedules the removal of bytes [start, end).
func (m *Message) Delete(start, end int) error { return m.Replace(start, end, nil) }

// ResetEdits drops every scheduled edit (for example to send the same
// request to another branch with different edits).
func (m *Message) ResetEdits() {
	m.edits = m.edits[:0]
	m.scratch = m.scratch[:0]
}

// Edited reports whether any edit is scheduled.
func (m *Message) Edited() bool { return len(m.edits) > 0 }

// InsertHeader schedules a new header field "name: value" CRLF before header
// index i (i == NumHeaders() appends it after the last header).
func (m *Message) InsertHeader(i int, name string, value []byte) error {
	at := int(m.hdrEnd) - 2
	if i < len(m.hdrs) {
		at = int(m.hdrs[i].line.s)
	}
	m.reserveEdits()
	ds := len(m.scratch)
	m.scratch = append(m.scratch, name...)
	m.scratch = append(m.scratch, ':', ' ')
	m.scratch = append(m.scratch, value...)
	m.scratch = append(m.scratch, '\r', '\n')
	return m.addScratchEdit(at, at, ds)
}

// addScratchEdit registers data already appended to scratch from ds on.
func (m *Message) addScratchEdit(start, end, ds int) error {
	data := m.scratch[ds:]
	m.scratch = m.scratch[:ds]
	return m.Replace(start, end, data) // appends the same bytes in place
}

// DeleteHeader schedules the removal of header field i, CRLF included.
func (m *Message) DeleteHeader(i int) error {
	return m.Delete(int(m.hdrs[i].line.s), int(m.hdrs[i].line.e))
}

// SetHeaderValue schedules the replacement of header i's value.
func (m *Message) SetHeaderValue(i int, value []byte) error {
	return m.Replace(int(m.hdrs[i].value.s), int(m.hdrs[i].value.e), value)
}

// SetMaxForwards rewrites the Max-Forwards value, or adds the header before
// the first header when the request has none (RFC 3261 §16.6 step 3).
func (m *Message) SetMaxForwards(n int) error {
	m.reserveEdits()
	ds := len(m.scratch)
	if i := m.Find(KindMaxForwards); i >= 0 {
		m.scratch = strconv.AppendInt(m.scratch, int64(n), 10)
		return m.addScratchEdit(int(m.hdrs[i].value.s), int(m.hdrs[i].value.e), ds)
	}
	m.scratch = append(m.scratch, "Max-Forwards: "...)
	m.scratch = strconv.AppendInt(m.scratch, int64(n), 10)
	m.scratch = append(m.scratch, '\r', '\n')
	at := int(m.startEnd)
	return m.addScratchEdit(at, at, ds)
}

// Len returns the length of the message as it will be written.
func (m *Message) Len() int {
	n := len(m.buf)
	for _, e := range m.edits {
		n += int(e.de-e.ds) - int(e.e-e.s)
	}
	return n
}

// AppendTo appends the message with its edits applied to dst. Without edits
// it appends exactly the received bytes.
func (m *Message) AppendTo(dst []byte) []byte {
	if len(m.edits) == 0 {
		return append(dst, m.buf...)
	}
	// One allocation of the exact size when dst is short, rather than
	// append's growth steps over the pieces.
	dst = slices.Grow(dst, m.Len())
	m.sortEdits()
	pos := int32(0)
	for _, e := range m.edits {
		dst = append(dst, m.buf[pos:e.s]...)
		dst = append(dst, m.scratch[e.ds:e.de]...)
		pos = e.e
	}
	return append(dst, m.buf[pos:]...)
}

// sortEdits orders edits by start offset, keeping insertion order for equal
// starts (an insertion before a replacement at the same offset stays first
// only if it was made first; the overlap check forbids the ambiguous cases).
// Insertion sort: a message rarely has more than a handful of edits.
func (m *Message) sortEdits() {
	e := m.edits
	for i := 1; i < len(e); i++ {
		for j := i; j > 0 && (e[j].s < e[j-1].s || (e[j].s == e[j-1].s && e[j-1].s != e[j-1].e && e[j].s == e[j].e)); j-- {
			e[j], e[j-1] = e[j-1], e[j]
		}
	}
}
