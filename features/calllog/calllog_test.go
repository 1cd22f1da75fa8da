package calllog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/proxy/proxytest"
	"sipedge/sip"
	"sipedge/transport"
)

var (
	caller = netip.MustParseAddrPort("10.0.0.5:5060")
	callee = proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("10.0.0.9:5060")}
)

func msg(method, toTag, fromTag string, cseq int) string {
	to := "<sip:bob@example.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK%s%d\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=%s\r\nTo: %s\r\nCall-ID: c1\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
		method, method, cseq, fromTag, to, cseq, method)
}

func response(t *testing.T, req string, code int) *sip.Message {
	t.Helper()
	var m sip.Message
	text := fmt.Sprintf("SIP/2.0 %d X\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx\r\nFrom: <sip:alice@example.com>;tag=a\r\n"+
		"To: <sip:bob@example.com>;tag=b\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", code)
	if err := m.Parse([]byte(text), nil); err != nil {
		t.Fatal(err)
	}
	return &m
}

type fixture struct {
	f    *Feature
	core *proxy.Core
	path string
	now  time.Time
}

func newFixture(t *testing.T) *fixture {
	return newFixtureAt(t, filepath.Join(t.TempDir(), "calls.jsonl"))
}

// newFixtureAt writes the call log to path ("": no file).
func newFixtureAt(t *testing.T, path string) *fixture {
	fx := &fixture{path: path, now: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	fx.core = proxytest.Harness(t, proxy.Config{}, func(c *proxy.Core) []proxy.Feature {
		f, err := New(c, fx.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.now = func() time.Time { return fx.now }
		fx.f = f
		return []proxy.Feature{f}
	})
	t.Cleanup(fx.f.Close)
	return fx
}

func (fx *fixture) request(t *testing.T, m string, src netip.AddrPort) *proxy.Request {
	r, _ := proxytest.Request(t, fx.core, m, src)
	fx.f.bye(r)
	fx.f.invite(r)
	return r
}

// busy is a call from the caller (From tag tag) that fails with 486.
func (fx *fixture) busy(t *testing.T, tag string) {
	inv := fx.request(t, msg("INVITE", "", tag, 1), caller)
	fx.f.failure(inv.TestFailure(486))
}

func (fx *fixture) records(t *testing.T) []Record {
	t.Helper()
	fh, err := os.Open(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []Record
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func TestAnsweredCall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		byeFrom string // which side's tags the BYE has
		want    string
	}{{"caller hangs up", "caller", "caller"}, {"callee hangs up", "callee", "callee"}} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			inv := fx.request(t, msg("INVITE", "", "a", 1), caller)
			fx.now = fx.now.Add(2 * time.Second)
			fx.f.reply(inv.TestReply(response(t, "", 200), &callee, true))
			// A re-INVITE is not a new call.
			fx.request(t, msg("INVITE", "b", "a", 2), caller)
			fx.now = fx.now.Add(60 * time.Second)
			if tc.byeFrom == "caller" {
				fx.request(t, msg("BYE", "b", "a", 3), caller)
			} else {
				bye := fmt.Sprintf("BYE sip:alice@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKbye\r\nMax-Forwards: 70\r\n" +
					"From: <sip:bob@example.com>;tag=b\r\nTo: <sip:alice@example.com>;tag=a\r\nCall-ID: c1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")
				fx.request(t, bye, callee.Addr)
			}
			recs := fx.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			r := recs[0]
			if r.Status != 200 || r.EndedBy != tc.want || r.Duration != 60 || r.SetupMS != 2000 || r.Answer == nil ||
				r.From != "sip:alice@example.com" || r.To != "sip:bob@example.com" || r.Source != caller.String() || r.CallID != "c1" {
				t.Fatalf("%+v", r)
			}
			if st := fx.f.Stats(); st.Active != 0 || st.Written != 1 || st.SessionDelay.Count() != 1 || st.SessionDelay.Sum != 2*time.Second ||
				st.Answered != 1 || st.Failed != 0 || st.Cancelled != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestUnansweredCalls(t *testing.T) {
	for _, tc := range []struct {
		code int
		by   string
	}{{486, "callee"}, {487, "caller"}, {408, "callee"}} {
		fx := newFixture(t)
		inv := fx.request(t, msg("INVITE", "", "a", 1), caller)
		if st := fx.f.Stats(); st.Active != 1 || st.Early != 1 {
			t.Fatalf("ringing: %+v", st)
		}
		fx.now = fx.now.Add(3 * time.Second)
		fx.f.failure(inv.TestFailure(tc.code))
		st := fx.f.Stats()
		if cancelled := tc.code == 487; st.Early != 0 || st.Answered != 0 || st.Cancelled != uint64(btoi(cancelled)) || st.Failed != uint64(btoi(!cancelled)) {
			t.Fatalf("%d: stats %+v", tc.code, st)
		}
		recs := fx.records(t)
		if len(recs) != 1 || recs[0].Status != tc.code || recs[0].EndedBy != tc.by || recs[0].Answer != nil || recs[0].Duration != 0 || recs[0].SetupMS != 3000 {
			t.Fatalf("%d: %+v", tc.code, recs)
		}
	}
}

// sipedge ends a call itself (session timer, dead media); a BYE after it
// finds nothing; a BYE for an unanswered call ends nothing.
func TestEndedBySipedge(t *testing.T) {
	fx := newFixture(t)
	inv := fx.request(t, msg("INVITE", "", "a", 1), caller)
	fx.request(t, msg("BYE", "b", "a", 2), caller) // not answered yet: ignored
	fx.f.reply(inv.TestReply(response(t, "", 200), &callee, true))
	fx.f.dialogEnded("c1", "a")
	fx.request(t, msg("BYE", "b", "a", 3), caller)
	recs := fx.records(t)
	if len(recs) != 1 || recs[0].EndedBy != "sipedge" {
		t.Fatalf("%+v", recs)
	}
}

// Reopen: after the file is moved away (logrotate), lines go to a new one.
func TestReopen(t *testing.T) {
	fx := newFixture(t)
	fx.busy(t, "a")
	if err := os.Rename(fx.path, fx.path+".1"); err != nil {
		t.Fatal(err)
	}
	fx.busy(t, "b") // still to the moved file
	if err := fx.f.Reopen(); err != nil {
		t.Fatal(err)
	}
	fx.busy(t, "c")
	old, _ := os.ReadFile(fx.path + ".1")
	if n := len(fx.records(t)); n != 1 || len(old) == 0 {
		t.Fatalf("new file %d lines, old %q", n, old)
	}
}

// The media of a call: in the API's list of calls in progress as it is
// now, and in the line of the ended call as it was at its end (asked for
// after the media feature may have ended its side of the call). The
// MediaFunc is called without the call log's lock held: it may itself
// read the call log.
func TestMedia(t *testing.T) {
	fx := newFixture(t)
	asked := map[string]int{}
	state := "ringing"
	fx.f.SetMedia(func(callID string) (any, bool) {
		fx.f.Stats() // would deadlock under the call log's lock
		asked[callID]++
		if callID != "c1" {
			return nil, false
		}
		return map[string]string{"audio": state}, true
	})
	inv := fx.request(t, msg("INVITE", "", "a", 1), caller)
	fx.f.reply(inv.TestReply(response(t, "", 200), &callee, true))
	state = "one-way"
	active, _ := fx.f.Calls(10)
	if len(active) != 1 || fmt.Sprint(active[0].Media) != "map[audio:one-way]" {
		t.Fatalf("active %+v", active)
	}
	state = "ok"
	fx.request(t, msg("BYE", "b", "a", 2), caller)
	recs := fx.records(t)
	if len(recs) != 1 || fmt.Sprint(recs[0].Media) != "map[audio:ok]" {
		t.Fatalf("line %+v", recs)
	}
	if _, recent := fx.f.Calls(10); len(recent) != 1 || fmt.Sprint(recent[0].Media) != "map[audio:ok]" {
		t.Fatalf("recent %+v", recent)
	}
	// A call with no media to show has no "media" in its line.
	other := fmt.Sprintf("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKo\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=o\r\nTo: <sip:bob@example.com>\r\nCall-ID: c2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	inv2 := fx.request(t, other, caller)
	fx.f.failure(inv2.TestFailure(486))
	b, _ := os.ReadFile(fx.path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || strings.Contains(lines[1], `"media"`) || !strings.Contains(lines[0], `"media":{"audio":"ok"}`) {
		t.Fatalf("lines:\n%s", b)
	}
	if asked["c1"] != 2 || asked["c2"] != 1 {
		t.Errorf("media asked %v", asked)
	}
	// Without a MediaFunc, no media.
	fx.f.SetMedia(nil)
	inv3 := fx.request(t, strings.ReplaceAll(other, "c2", "c3"), caller)
	if active, _ := fx.f.Calls(10); len(active) != 1 || active[0].Media != nil {
		t.Fatalf("no MediaFunc: %+v", active)
	}
	fx.f.failure(inv3.TestFailure(486))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// An ended call's JSON is made once: the file's line and the API's list
// carry the same bytes; a call in progress is encoded as it is now.
func TestRecordJSONMadeOnce(t *testing.T) {
	fx := newFixture(t)
	inv := fx.request(t, msg("INVITE", "", "a", 1), caller)
	active, _ := fx.f.Calls(10)
	b, err := json.Marshal(active)
	if err != nil || !strings.Contains(string(b), `"call_id":"c1"`) || !strings.Contains(string(b), `"answer":null`) {
		t.Fatalf("call in progress: %s %v", b, err)
	}
	fx.f.failure(inv.TestFailure(486))
	line, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	_, recent := fx.f.Calls(10)
	if len(recent) != 1 || recent[0].line == nil {
		t.Fatalf("recent %+v", recent)
	}
	b, err = json.Marshal(recent[0])
	if err != nil || string(b)+"\n" != string(line) {
		t.Fatalf("API %s (%v), file %s", b, err, line)
	}
}

// CallsSince from mark 0 joins what Calls lists: an ended call as its
// line, unchanged (not encoded again), a call in progress encoded now.
func TestCallsJSON(t *testing.T) {
	fx := newFixture(t)
	inv := fx.request(t, msg("INVITE", "", "a", 1), caller)
	fx.f.failure(inv.TestFailure(486))
	fx.request(t, msg("INVITE", "", "b", 1), caller)
	active, recent, _, _, _, err := fx.f.CallsSince(10, 0, 0)
	if err != nil || len(active) != 1 || len(recent) != 1 {
		t.Fatalf("active %q recent %q %v", active, recent, err)
	}
	_, rs := fx.f.Calls(10)
	if &recent[0][0] != &rs[0].line[0] {
		t.Fatal("an ended call's JSON was made again")
	}
	as, _ := fx.f.Calls(10)
	want, _ := json.Marshal(as[0])
	if string(active[0]) != string(want) || !strings.Contains(string(active[0]), `"answer":null`) {
		t.Fatalf("call in progress %s, want %s", active[0], want)
	}
	for _, b := range append(active, recent...) {
		if !json.Valid(b) {
			t.Fatalf("not JSON: %s", b)
		}
	}
}

// plainRecord is Record without its MarshalJSON: what encoding/json
// writes for its fields.
type plainRecord Record

// mediaValue writes its own JSON, as callmedia.Media does.
type mediaValue struct {
	Audio string `json:"audio"`
}

func (m mediaValue) AppendJSON(b []byte) []byte {
	b2, _ := json.Marshal(m)
	return append(b, b2...)
}

// Record's JSON is byte for byte encoding/json's, whatever its fields
// hold: media absent, a value writing its own JSON, or any other value.
func TestRecordJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 123456789, time.UTC)
	ans := at.Add(1500 * time.Millisecond)
	for i, r := range []Record{
		{},
		{CallID: "c1@h", From: "<sip:alice@example.com>;tag=a", To: `"Bob <&>" <sip:bob@example.com>`, RequestURI: "sip:bob@example.com",
			Source: "udp:10.0.0.5:5060", Start: at, Answer: &ans, End: ans.Add(time.Minute), Duration: 60, SetupMS: 1500, Status: 200,
			EndedBy: "caller", Media: mediaValue{Audio: "ok"}},
		{CallID: "bad \xff utf8 \u2028", Start: at, End: at, Duration: 1e-7, Status: 487, EndedBy: "unknown",
			Media: map[string]any{"audio": "not-relayed", "streams": []int{}}},
		{CallID: "x", Media: []string(nil)},
	} {
		want, err := json.Marshal(plainRecord(r))
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.appendJSON(nil)
		if err != nil || string(got) != string(want) {
			t.Errorf("record %d: %v\n got %s\nwant %s", i, err, got, want)
		}
		if got, err := json.Marshal(r); err != nil || string(got) != string(want) {
			t.Errorf("record %d through MarshalJSON: %v\n got %s\nwant %s", i, err, got, want)
		}
	}
}

func FuzzRecordJSON(f *testing.F) {
	f.Add("c1@h", "<sip:a@b>;tag=1", "sip:x@y", "caller", 12.5, int64(40))
	f.Add("\xff\"<", "\u2028", "", "", 1e-9, int64(-1))
	f.Fuzz(func(t *testing.T, callID, from, ruri, by string, dur float64, setup int64) {
		if math.IsNaN(dur) || math.IsInf(dur, 0) {
			return
		}
		r := Record{CallID: callID, From: from, To: from, RequestURI: ruri, Source: ruri, Start: time.Unix(0, setup).UTC(),
			Duration: dur, SetupMS: setup, Status: int(setup % 700), EndedBy: by, Media: mediaValue{Audio: by}}
		want, _ := json.Marshal(plainRecord(r))
		if got, err := r.appendJSON(nil); err != nil || string(got) != string(want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

// CallsSince: the whole list at first, then only the calls that ended
// since the reader's mark; the whole list again when more ended than the
// reader keeps, or for a mark it cannot have had.
func TestCallsSince(t *testing.T) {
	fx := newFixture(t)
	end := func(tag string) {
		inv := fx.request(t, msg("INVITE", "", tag, 1), caller)
		fx.f.failure(inv.TestFailure(486))
	}
	end("a")
	end("b")
	fx.request(t, msg("INVITE", "", "live", 1), caller)
	active, ended, mark, _, full, err := fx.f.CallsSince(10, 0, 0)
	if err != nil || !full || len(active) != 1 || len(ended) != 2 || mark != 3 {
		t.Fatalf("first read: active %d ended %d mark %d full %v %v", len(active), len(ended), mark, full, err)
	}
	if _, ended, next, _, full, _ := fx.f.CallsSince(10, mark, 0); full || len(ended) != 0 || next != mark {
		t.Fatalf("nothing new: ended %q next %d full %v", ended, next, full)
	}
	end("c")
	end("d")
	_, ended, next, _, full, _ := fx.f.CallsSince(10, mark, 0)
	if full || len(ended) != 2 || next != mark+2 || !strings.Contains(string(ended[0]), `"status":486`) {
		t.Fatalf("two new: ended %q next %d full %v", ended, next, full)
	}
	_, all, _, _, _, _ := fx.f.CallsSince(10, 0, 0)
	if string(ended[0]) != string(all[0]) || string(ended[1]) != string(all[1]) {
		t.Fatalf("the new calls are not the newest, newest first:\n%q\n%q", ended, all[:2])
	}
	// More ended since than the reader keeps (limit 1): the whole list.
	if _, ended, _, _, full, _ := fx.f.CallsSince(1, mark, 0); !full || len(ended) != 1 {
		t.Fatalf("limit 1, two new: ended %d full %v", len(ended), full)
	}
	// A mark from another run (ahead of this one): the whole list.
	if _, ended, _, _, full, _ := fx.f.CallsSince(10, next+5, 0); !full || len(ended) != 4 {
		t.Fatalf("foreign mark: ended %d full %v", len(ended), full)
	}
}

// CallsSince with a seq: only the calls in progress that started or were
// answered after it, so an event stream does not encode and send every
// call in progress again each time one changes.
func TestCallsSinceChanged(t *testing.T) {
	fx := newFixture(t)
	old := fx.request(t, msg("INVITE", "", "old", 1), caller)
	fx.request(t, msg("INVITE", "", "quiet", 1), caller)
	active, _, mark, seq, _, err := fx.f.CallsSince(10, 0, 0)
	if err != nil || len(active) != 2 || seq == 0 {
		t.Fatalf("first read: %d active, seq %d, %v", len(active), seq, err)
	}
	if active, _, _, s, _, _ := fx.f.CallsSince(10, mark, seq); len(active) != 0 || s != seq {
		t.Fatalf("nothing changed: %q, seq %d then %d", active, seq, s)
	}
	fx.request(t, msg("INVITE", "", "new", 1), caller)
	fx.f.reply(old.TestReply(response(t, "", 200), &callee, true))
	active, _, _, s, _, _ := fx.f.CallsSince(10, mark, seq)
	if len(active) != 2 || s != seq+2 {
		t.Fatalf("one new, one answered: %q, seq %d", active, s)
	}
	// The new call and the answered one (in either order: the test's
	// clock stands still); not the quiet one.
	if a, b := string(active[0]), string(active[1]); strings.Contains(a, `"status":200`) == strings.Contains(b, `"status":200`) ||
		strings.Contains(a, `"answer":null`) == strings.Contains(b, `"answer":null`) {
		t.Fatalf("changed calls:\n%s\n%s", active[0], active[1])
	}
	if all, _, _, _, _, _ := fx.f.CallsSince(10, mark, 0); len(all) != 3 {
		t.Fatalf("since 0: %d calls in progress, want all 3", len(all))
	}
}

// More calls in progress than a list holds: the lists have the newest,
// newest first, also after calls in the middle and at either end ended.
func TestNewestCalls(t *testing.T) {
	fx := newFixture(t)
	invs := map[string]*proxy.Request{}
	for _, tag := range []string{"t1", "t2", "t3", "t4", "t5"} {
		fx.now = fx.now.Add(time.Second)
		invs[tag] = fx.request(t, msg("INVITE", "", tag, 1), caller)
	}
	starts := func(limit int) (got []int) {
		t.Helper()
		active, _, _, _, _, err := fx.f.CallsSince(limit, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range active {
			var r Record
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			got = append(got, r.Start.Second())
		}
		as, _ := fx.f.Calls(limit)
		if len(as) != len(got) {
			t.Fatalf("Calls: %d, CallsSince: %d", len(as), len(got))
		}
		for i := range as {
			if as[i].Start.Second() != got[i] {
				t.Fatalf("Calls %v, CallsSince %v", as[i].Start, got)
			}
		}
		return got
	}
	if got := fmt.Sprint(starts(3)); got != "[5 4 3]" {
		t.Fatalf("newest 3 of 5: %s", got)
	}
	fx.f.failure(invs["t4"].TestFailure(486)) // the middle
	fx.f.failure(invs["t5"].TestFailure(486)) // the newest
	fx.f.failure(invs["t1"].TestFailure(486)) // the oldest
	if got := fmt.Sprint(starts(10)); got != "[3 2]" {
		t.Fatalf("after three ended: %s", got)
	}
	fx.now = fx.now.Add(time.Second)
	fx.request(t, msg("INVITE", "", "t6", 1), caller)
	if got := fmt.Sprint(starts(2)); got != "[6 3]" {
		t.Fatalf("a new call: %s", got)
	}
}

// Without a file, an ended call's line is made when a reader first asks
// for it, outside the lock, and kept: a server nobody looks at encodes
// no call.
func TestLinesOnDemand(t *testing.T) {
	fx := newFixtureAt(t, "")
	fx.busy(t, "a")
	fx.busy(t, "b")
	fx.f.mu.Lock()
	made := fx.f.recent[0].line != nil || fx.f.recent[1].line != nil
	fx.f.mu.Unlock()
	if made {
		t.Fatal("lines made with nobody to read them")
	}
	_, ended, _, _, _, err := fx.f.CallsSince(10, 0, 0)
	if err != nil || len(ended) != 2 || !strings.Contains(string(ended[0]), `"status":486`) {
		t.Fatalf("ended %q %v", ended, err)
	}
	_, again, _, _, _, _ := fx.f.CallsSince(10, 0, 0)
	if &again[0][0] != &ended[0][0] || &again[1][0] != &ended[1][0] {
		t.Fatal("the lines were made again")
	}
	want, _ := json.Marshal(fx.f.recent[1])
	if string(want) != string(ended[0]) {
		t.Fatalf("line %s, record %s", ended[0], want)
	}
}

// call_log.flush: lines wait up to the window and then share one write;
// Reopen writes what waits to the file it was meant for, Close writes
// the rest, and a burst past maxPending is written at once.
func TestFlush(t *testing.T) {
	fx := newFixture(t)
	fx.f.SetFlush(200 * time.Millisecond)
	lines := func(path string) int {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), "\n")
	}
	start := time.Now()
	fx.busy(t, "a")
	fx.busy(t, "b")
	if n := lines(fx.path); n != 0 && time.Since(start) < 200*time.Millisecond {
		t.Fatalf("%d lines written before the window ended", n)
	}
	// The lines are in the file a moment before they are counted (the
	// write is not under the lock Stats takes).
	for (lines(fx.path) < 2 || fx.f.Stats().Written < 2) && time.Since(start) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if n := lines(fx.path); n != 2 || fx.f.Stats().Written != 2 {
		t.Fatalf("after the window: %d lines, %d written", n, fx.f.Stats().Written)
	}
	// Moved away with a line waiting: Reopen writes it to the old file.
	fx.busy(t, "c")
	if err := os.Rename(fx.path, fx.path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := fx.f.Reopen(); err != nil {
		t.Fatal(err)
	}
	if n := lines(fx.path + ".1"); n != 3 {
		t.Fatalf("the rotated file has %d lines, want 3", n)
	}
	// A burst: written when it reaches maxPending, without waiting.
	i := 0
	for ; lines(fx.path) == 0 && i < 1000; i++ {
		fx.busy(t, fmt.Sprintf("burst-%d", i))
	}
	if n := lines(fx.path); n == 0 || n > i {
		t.Fatalf("burst of %d calls: %d lines", i, n)
	}
	fx.busy(t, "last")
	fx.f.Close()
	if n := lines(fx.path); n != i+1 {
		t.Fatalf("after Close: %d lines, want %d", n, i+1)
	}
	if st := fx.f.Stats(); st.Written != uint64(3+i+1) || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// stallWriter blocks every write until release is closed.
type stallWriter struct {
	entered chan struct{}
	release chan struct{}
	n       atomic.Int64
}

func (w *stallWriter) Write(b []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	w.n.Add(int64(bytes.Count(b, []byte("\n"))))
	return len(b), nil
}

// TestWriteOutsideLock: while a write of lines to the file stalls (a
// slow disk), calls still start and end: the hooks never wait for it.
// The lines of the calls that ended meanwhile are written after it, in
// order.
func TestWriteOutsideLock(t *testing.T) {
	fx := newFixture(t)
	w := &stallWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(w.release) }) }
	defer release() // on a failure too: Close waits for the write
	fx.f.mu.Lock()
	fx.f.out = w
	fx.f.mu.Unlock()
	fx.f.SetFlush(0) // each line written when its call ends
	go fx.busy(t, "first")
	select {
	case <-w.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first line was never written")
	}
	// The write is stalled; the hooks go on.
	done := make(chan struct{})
	go func() {
		defer close(done)
		fx.f.SetFlush(time.Hour)
		for i := range 10 {
			fx.busy(t, fmt.Sprintf("during-%d", i))
		}
		fx.f.Stats()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		release()
		<-done
		t.Fatal("the SIP hooks waited for a stalled write")
	}
	release()
	fx.f.Flush()
	if n := w.n.Load(); n != 11 {
		t.Errorf("%d lines written, want 11", n)
	}
}
