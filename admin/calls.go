package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"net/http"
	"strings"
	"time"

	"sipedge/capture"
)

// lookup finds a call: its call log record (nil when the call log does
// not know it, e.g. an INVITE sipedge answered itself) and its messages;
// false after answering 404 when neither knows it.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (id string, rec any, msgs []capture.Message, dropped int, ok bool) {
	id = r.PathValue("id")
	var found bool
	if s.calls != nil {
		rec, found = s.calls.Call(id)
		if !found {
			rec = nil
		}
	}
	var captured bool
	if s.msgs != nil {
		msgs, dropped, captured = s.msgs.Messages(id)
	}
	if !found && !captured {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no call with Call-ID " + id})
		return id, nil, nil, 0, false
	}
	return id, rec, msgs, dropped, true
}

// callDetail: GET /api/v1/calls/{id}, the call log's record of the call
// with "messages" (and "messages_dropped": those the capture did not
// keep) added to it.
func (s *Server) callDetail(w http.ResponseWriter, r *http.Request) {
	id, rec, msgs, dropped, ok := s.lookup(w, r)
	if !ok {
		return
	}
	obj := []byte(`{}`)
	if rec != nil {
		b, err := json.Marshal(rec)
		if err != nil || len(b) < 2 || b[0] != '{' {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": fmt.Sprintf("call record: %v", err)})
			return
		}
		obj = b
	} else {
		obj, _ = json.Marshal(map[string]string{"call_id": id})
	}
	if msgs == nil {
		msgs = []capture.Message{}
	}
	mb, err := json.Marshal(msgs)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	// The record's fields as they are (whatever the call log puts in
	// them), then the messages.
	out := append([]byte(nil), obj[:len(obj)-1]...)
	if len(bytes.TrimSpace(out)) > 1 {
		out = append(out, ',')
	}
	out = append(out, `"messages":`...)
	out = append(out, mb...)
	out = append(out, fmt.Sprintf(`,"messages_dropped":%d}`, dropped)...)
	writeIndented(w, out)
}

// fileName makes a Call-ID safe for a Content-Disposition file name.
func fileName(id, ext string) string {
	b := []byte(id)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return "sipedge-call-" + string(b) + ext
}

// callLadder: GET /api/v1/calls/{id}/ladder.txt.
func (s *Server) callLadder(w http.ResponseWriter, r *http.Request) {
	id, _, msgs, _, ok := s.lookup(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `inline; filename="`+fileName(id, ".txt")+`"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	fmt.Fprintf(w, "Call-ID: %s\n", strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, id))
	capture.WriteLadder(w, msgs)
}

// callPcap: GET /api/v1/calls/{id}/pcap, a download.
func (s *Server) callPcap(w http.ResponseWriter, r *http.Request) {
	id, _, msgs, _, ok := s.lookup(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="`+fileName(id, ".pcap")+`"`)
	capture.WritePcap(w, msgs)
}

// The events stream's pace: the capture's version is read every
// eventPoll (so a new call is on the page well within a second); the list
// is sent again when it changed, looked at every eventFull even without a
// new message (a call's media counters move without SIP); a comment every
// eventPing keeps proxies and the client's reader from timing out.
var (
	eventPoll = 800 * time.Millisecond
	eventFull = 5 * time.Second
	eventPing = 15 * time.Second
)

// maxStreams bounds the event streams open at once.
const maxStreams = 32

var eventSeed = maphash.MakeSeed()

// hashList hashes a list of JSON objects (what changed since the last
// event is seen by comparing hashes, not by keeping the bytes).
func hashList(list [][]byte) uint64 {
	var h maphash.Hash
	h.SetSeed(eventSeed)
	for _, b := range list {
		h.Write(b)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// events: GET /api/v1/events, server-sent events (HTML Living Standard
// §9.2). The first event, "calls", has the /api/v1/calls object (?limit=N
// of each list, default 1 000); after it, whenever something changed, an
// event "update" has the calls in progress that started or were
// answered since the last event and the calls that ended since
// ({"changed":[...],"ended":[...]}, newest first: the client puts the
// changed calls in place of its copies, drops the ended ones from its
// calls in progress and puts them before its list of ended calls); every
// eventFull, if anything changed, the whole list of calls in progress
// instead of the changed ones ({"active":[...],"ended":[...]}: their media
// counters move without a SIP message); a "calls" event again when more
// ended than the client keeps. Neither the thousand ended calls nor the
// calls in progress that did not change are sent again every time one
// call changes. Nothing runs for a stream while no client is connected:
// each is one goroutine (the request's) with a ticker.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r, 1000)
	if !ok {
		return
	}
	if n := s.streams.Add(1); n > maxStreams {
		s.streams.Add(-1)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": fmt.Sprintf("%d event streams are open already", maxStreams)})
		return
	}
	defer s.streams.Add(-1)
	// The server's write timeout is a deadline from the start of the
	// request, which a stream outlives: each write gets its own.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a reverse proxy must not hold events back
	w.WriteHeader(http.StatusOK)

	write := func(b []byte) bool {
		if rc.SetWriteDeadline(time.Now().Add(10*time.Second)) != nil {
			return false
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	var (
		version  uint64
		mark     uint64 // the call log's mark: ended calls the client has
		seq      uint64 // the call log's seq: changes to calls in progress the client has
		active   uint64 // hash of the whole list of calls in progress last sent
		first    = true
		lastFull time.Time
		lastSend = time.Now()
		ev       []byte // the event, its buffer kept for the next
	)
	tick := time.NewTicker(eventPoll)
	defer tick.Stop()
	for {
		now := time.Now()
		var v uint64
		if s.msgs != nil {
			v = s.msgs.Version()
		}
		whole := first || now.Sub(lastFull) >= eventFull
		if whole || v != version || s.msgs == nil {
			first, version = false, v
			var list, ended [][]byte
			next, nseq, full := uint64(1), seq, mark == 0 // no call log: one empty list
			if s.calls != nil {
				read := func(since uint64) bool {
					var err error
					list, ended, next, nseq, full, err = s.calls.CallsSince(limit, mark, since)
					return err == nil
				}
				since := seq
				if whole {
					since = 0
				}
				if !read(since) {
					return
				}
				// The whole list also when the ended calls are sent whole,
				// or when more changed than a list holds. A list of the
				// changed calls as long as the limit is the whole list
				// already (CallsSince looks only at the newest limit
				// calls), so it is not made twice.
				switch {
				case whole:
				case len(list) >= limit:
					whole = true
				case full:
					if whole = true; !read(0) {
						return
					}
				}
			}
			send := full || len(ended) > 0 || !whole && len(list) > 0
			if whole {
				lastFull = now
				h := hashList(list)
				send = send || h != active
				active = h
			}
			if send {
				name, key1, key := "update", "changed", "ended"
				if whole {
					key1 = "active"
				}
				if full {
					name, key = "calls", "recent"
				}
				// The lines are json.Marshal's or the same bytes, with
				// line ends escaped: one data line.
				ev = append(ev[:0], "event: "...)
				ev = append(ev, name...)
				ev = append(ev, "\ndata: "...)
				ev = appendLists(ev, key1, list, key, ended)
				ev = append(ev, "\n\n"...)
				if !write(ev) {
					return
				}
				lastSend = now
			}
			mark, seq = next, nseq
		}
		if now.Sub(lastSend) >= eventPing {
			if !write([]byte(": ping\n\n")) {
				return
			}
			lastSend = now
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		case <-tick.C:
		}
	}
}
