package sip

import (
	"strconv"
)

// ParseError describes why a message was refused. Code is the SIP status a
// server answers a request with (400, 413, 416, 505, 513...); a response that
// fails to parse is dropped whatever the code. Offset and Snippet point at
// the offending bytes so a log line shows the defect, not just its name.
type ParseError struct {
	Code    int    // status to answer with
	Reason  string // human-readable cause, also used as the reason phrase
	Offset  int    // byte offset of the defect in the message
	Snippet string // up to 32 bytes around Offset, quoted
}

func (e *ParseError) Error() string {
	return "sip: " + strconv.Itoa(e.Code) + " " + e.Reason + " at offset " +
		strconv.Itoa(e.Offset) + " near " + e.Snippet
}

// errAt builds a ParseError for the defect at off in b. It is on the error
// path only, so it may allocate.
func errAt(code int, reason string, b []byte, off int) *ParseError {
	if off < 0 {
		off = 0
	}
	if off > len(b) {
		off = len(b)
	}
	end := off + 32
	if end > len(b) {
		end = len(b)
	}
	return &ParseError{Code: code, Reason: reason, Offset: off, Snippet: strconv.Quote(string(b[off:end]))}
}
