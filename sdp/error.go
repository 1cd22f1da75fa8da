package sdp

import (
	"bytes"
	"errors"
	"strconv"
)

// Error says why a session description was refused and which SIP status
// the proxy answers the offer with:
//
//   - 400 Bad Request: the body is not SDP, or a line is syntactically
//     broken (RFC 8866 §5, §9). Forwarding it, altered or not, would pass
//     an ambiguity on.
//   - 488 Not Acceptable Here: the description is well-formed but describes
//     something sipedge cannot relay (RFC 3261 §21.4.26), or exceeds a
//     Limits bound.
//
// Offset and Snippet point at the offending line so that a log line shows
// the defect, not just its name.
type Error struct {
	Offset  int    // byte offset of the defect in the body
	Snippet string // the offending line (up to 64 bytes), quoted
	Msg     string // human-readable cause
	status  int
}

// Status returns the SIP status to answer with: 400 or 488.
func (e *Error) Status() int { return e.status }

func (e *Error) Error() string {
	return "sdp: " + strconv.Itoa(e.status) + " " + e.Msg + " at offset " +
		strconv.Itoa(e.Offset) + " in " + e.Snippet
}

// errAt builds an Error for the defect at off in b. It is on the error path
// only, so it may allocate.
func errAt(status int, msg string, b []byte, off int) *Error {
	off = max(0, min(off, len(b)))
	start := bytes.LastIndexByte(b[:off], '\n') + 1
	end := len(b)
	if i := bytes.IndexByte(b[off:], '\n'); i >= 0 {
		end = off + i
	}
	if end > start && b[end-1] == '\r' {
		end--
	}
	if end-start > 64 {
		end = start + 64
	}
	return &Error{Offset: off, Snippet: strconv.Quote(string(b[start:end])), Msg: msg, status: status}
}

// ErrNotParsed is returned by AppendRewrite on a Session whose last Parse
// failed or never ran.
var ErrNotParsed = errors.New("sdp: session not parsed")

// ErrPlan is matched (errors.Is) by every error AppendRewrite returns for a
// Plan that does not fit the session. Such an error is a bug in the caller,
// not in the peer's SDP.
var ErrPlan = errors.New("sdp: invalid plan")

type planError string

func (e planError) Error() string        { return "sdp: invalid plan: " + string(e) }
func (e planError) Is(target error) bool { return target == ErrPlan }
