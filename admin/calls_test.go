package admin

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sipedge/capture"
	"sipedge/transport"
)

// fakeCalls is a call log: records by Call-ID, a list, a count of list
// reads.
type fakeCalls struct {
	mu      sync.Mutex
	recs    map[string]map[string]any
	changed map[string]uint64 // seq of each call's last change
	seq     uint64
	reads   atomic.Int32
}

func (f *fakeCalls) CallsSince(limit int, mark, since uint64) (active, ended [][]byte, next, seq uint64, full bool, err error) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	// As the call log: of the newest limit calls, the changed ones,
	// newest first.
	ids := make([]string, 0, len(f.recs))
	for id := range f.recs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return f.changed[ids[i]] > f.changed[ids[j]] })
	for _, id := range ids[:min(limit, len(ids))] {
		r := f.recs[id]
		if f.changed[id] <= since {
			continue
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, nil, 0, 0, false, err
		}
		active = append(active, b)
	}
	return active, nil, 1, f.seq, mark == 0, nil
}

func (f *fakeCalls) Call(id string) (any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[id]
	return r, ok
}

func (f *fakeCalls) add(id string) {
	f.mu.Lock()
	f.recs[id] = map[string]any{"call_id": id, "status": 200, "media": map[string]any{"audio": "ok"}}
	if f.changed == nil {
		f.changed = map[string]uint64{}
	}
	f.seq++
	f.changed[id] = f.seq
	f.mu.Unlock()
}

var (
	caller = netip.MustParseAddrPort("192.0.2.10:5070")
	edge   = netip.MustParseAddrPort("127.0.0.1:5060")
)

// tapped feeds a real capture one INVITE and its 100 for call id.
func tapped(c *capture.Capture, id string) {
	for _, m := range []struct {
		dir  transport.TapDir
		text string
	}{
		{transport.TapIn, "INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: " + id + "\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"},
		{transport.TapOut, "SIP/2.0 100 Trying\r\nCall-ID: " + id + "\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"},
	} {
		c.Tap(&transport.TapEvent{Dir: m.dir, Proto: transport.UDP, Local: edge, Remote: caller, Time: time.Now(), Data: []byte(m.text)})
	}
}

func serveCalls(t *testing.T, token string, calls Calls, msgs Messages) (*Server, string) {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0", Token: token, Messages: msgs}, nil, draining(false), nil, calls, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(s.Close)
	return s, "http://" + s.Addr().String()
}

func get(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestCallDetail: the record as the call log gives it (whatever fields it
// has, media included) with the messages added; a call only the capture
// knows; 404; the ladder and pcap downloads.
func TestCallDetail(t *testing.T) {
	calls := &fakeCalls{recs: map[string]map[string]any{}}
	calls.add("a/b@host") // a slash: the Call-ID is one escaped path segment
	c := capture.New(capture.Config{})
	tapped(c, "a/b@host")
	tapped(c, "only-captured")
	_, url := serveCalls(t, "", calls, c)

	resp, body := get(t, url+"/api/v1/calls/a%2Fb@host", "")
	var got struct {
		CallID   string `json:"call_id"`
		Status   int
		Media    struct{ Audio string }
		Messages []capture.Message
		Dropped  *int `json:"messages_dropped"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got.CallID != "a/b@host" || got.Status != 200 || got.Media.Audio != "ok" || len(got.Messages) != 2 || got.Dropped == nil ||
		got.Messages[0].Label != "INVITE" || got.Messages[1].Dir != "out" || got.Messages[0].Remote != caller {
		t.Fatalf("%s", body)
	}

	resp, body = get(t, url+"/api/v1/calls/only-captured", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"call_id": "only-captured"`) || !strings.Contains(body, `"label": "100 Trying"`) {
		t.Fatalf("a call only the capture has: %d %s", resp.StatusCode, body)
	}
	for _, p := range []string{"/api/v1/calls/nobody", "/api/v1/calls/nobody/pcap", "/api/v1/calls/nobody/ladder.txt"} {
		if resp, _ := get(t, url+p, ""); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}

	resp, body = get(t, url+"/api/v1/calls/a%2Fb@host/ladder.txt", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		!strings.HasPrefix(body, "Call-ID: a/b@host\n2 messages") || !strings.Contains(body, "|<----- 100 Trying -----|") {
		t.Fatalf("ladder: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
	resp, body = get(t, url+"/api/v1/calls/a%2Fb@host/pcap", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.tcpdump.pcap" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="sipedge-call-a_b_host.pcap"` ||
		!strings.HasPrefix(body, "\xd4\xc3\xb2\xa1") || !strings.Contains(body, "SIP/2.0 100 Trying") {
		t.Fatalf("pcap: %d %v %q", resp.StatusCode, resp.Header, body)
	}

	// Without the capture, the record alone with no messages.
	_, url = serveCalls(t, "", calls, nil)
	if resp, body := get(t, url+"/api/v1/calls/a%2Fb@host", ""); resp.StatusCode != 200 || !strings.Contains(body, `"messages": []`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// TestPage: the page's files are served without the token, with a policy
// that lets them load nothing from elsewhere; the API keeps the token.
func TestPage(t *testing.T) {
	_, url := serveCalls(t, "s3cret", nil, nil)
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/style.css": "text/css"} {
		resp, body := get(t, url+path, "")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) < 500 ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'; script-src 'self'") {
			t.Errorf("%s: %d %v", path, resp.StatusCode, resp.Header)
		}
		// Nothing from another origin: no URL with a host in the files.
		if strings.Contains(body, "https://") || strings.Contains(body, "//cdn") {
			t.Errorf("%s refers to another site", path)
		}
	}
	for _, p := range []string{"/index.html", "/other.js", "/api/v1/calls/x", "/api/v1/events"} {
		resp, _ := get(t, url+p, "")
		if resp.StatusCode != 401 {
			t.Errorf("%s without the token: %d, want 401", p, resp.StatusCode)
		}
	}
	if resp, _ := get(t, url+"/other.js", "s3cret"); resp.StatusCode != 404 {
		t.Errorf("/other.js: %d", resp.StatusCode)
	}
}

// event reads one server-sent event (or comment) block.
func event(t *testing.T, r *bufio.Reader) (name, data string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			return name, data
		case strings.HasPrefix(line, ":"):
			name = "comment"
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data += line[6:]
		}
	}
}

// TestEvents: the stream sends the call list at once, again within a
// second of a new call, nothing while nothing changes (but a comment to
// keep it open), outlives the server's write timeout, and ends at Close.
func TestEvents(t *testing.T) {
	oldPing, oldFull := eventPing, eventFull
	eventPing, eventFull = 700*time.Millisecond, 2500*time.Millisecond
	t.Cleanup(func() { eventPing, eventFull = oldPing, oldFull })
	calls := &fakeCalls{recs: map[string]map[string]any{}}
	c := capture.New(capture.Config{})
	s, err := New(Config{Listen: "127.0.0.1:0", Token: "tok", Messages: c}, nil, draining(false), nil, calls, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.srv.WriteTimeout = 300 * time.Millisecond
	go s.Serve()
	url := "http://" + s.Addr().String()

	req, _ := http.NewRequest("GET", url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	r := bufio.NewReader(resp.Body)
	if name, data := event(t, r); name != "calls" || data != `{"active":[],"recent":[]}` {
		t.Fatalf("first event %q %q", name, data)
	}
	// Nothing changes: a comment after eventPing, past the write timeout,
	// and the list is not read at every poll (only every eventFull).
	reads := calls.reads.Load()
	if name, _ := event(t, r); name != "comment" {
		t.Fatalf("want a keep-alive comment, got %q", name)
	}
	if n := calls.reads.Load() - reads; n > 1 {
		t.Errorf("the call list was read %d times with no change", n)
	}
	update := func() string {
		t.Helper()
		for {
			name, data := event(t, r)
			if name == "update" {
				return data
			}
			if name != "comment" {
				t.Fatalf("event %q %s, want an update", name, data)
			}
		}
	}
	// A new call: on the stream within a second.
	start := time.Now()
	calls.add("new-call")
	tapped(c, "new-call")
	if data := update(); data != `{"changed":[{"call_id":"new-call","media":{"audio":"ok"},"status":200}],"ended":[]}` {
		t.Fatalf("%s", data)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the new call came after %v", d)
	}
	// Another: only it is sent, not the call that did not change.
	calls.add("second")
	tapped(c, "second")
	if data := update(); data != `{"changed":[{"call_id":"second","media":{"audio":"ok"},"status":200}],"ended":[]}` {
		t.Fatalf("%s", data)
	}
	// Media counters move without a change to the record: the whole list
	// of calls in progress comes every eventFull.
	calls.mu.Lock()
	calls.recs["new-call"]["media"] = map[string]any{"audio": "one-way"}
	calls.mu.Unlock()
	data := update()
	if !strings.HasPrefix(data, `{"active":[`) || !strings.Contains(data, `"one-way"`) || !strings.Contains(data, `"second"`) {
		t.Fatalf("whole list: %s", data)
	}
	s.Close()
	if _, err := io.ReadAll(r); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Logf("after Close: %v", err)
	}
	if n := s.streams.Load(); n != 0 {
		t.Errorf("%d streams still counted after Close", n)
	}
}

// TestEventsManyChanged: when as many calls changed as the stream's
// limit, the changed calls are the whole list: sent as such, read once.
func TestEventsManyChanged(t *testing.T) {
	calls := &fakeCalls{recs: map[string]map[string]any{}}
	c := capture.New(capture.Config{})
	s, err := New(Config{Listen: "127.0.0.1:0", Messages: c}, nil, draining(false), nil, calls, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	resp, err := http.Get("http://" + s.Addr().String() + "/api/v1/events?limit=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if name, data := event(t, r); name != "calls" || data != `{"active":[],"recent":[]}` {
		t.Fatalf("first event %q %q", name, data)
	}
	reads := calls.reads.Load()
	for _, id := range []string{"one", "two", "three"} {
		calls.add(id)
		tapped(c, id)
	}
	for {
		name, data := event(t, r)
		if name == "comment" {
			continue
		}
		want := `{"active":[{"call_id":"three","media":{"audio":"ok"},"status":200},{"call_id":"two","media":{"audio":"ok"},"status":200}],"ended":[]}`
		if name != "update" || data != want {
			t.Fatalf("event %q %s, want an update %s", name, data, want)
		}
		break
	}
	if n := calls.reads.Load() - reads; n != 1 {
		t.Errorf("the list was read %d times for one event", n)
	}
}

// TestEventsLimit: streams beyond maxStreams are refused, not queued.
func TestEventsLimit(t *testing.T) {
	_, url := serveCalls(t, "", &fakeCalls{recs: map[string]map[string]any{}}, nil)
	var bodies []io.Closer
	defer func() {
		for _, b := range bodies {
			b.Close()
		}
	}()
	for i := 0; i < maxStreams; i++ {
		resp, err := http.Get(url + "/api/v1/events")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, err, resp)
		}
		bodies = append(bodies, resp.Body)
	}
	resp, body := get(t, url+"/api/v1/events", "")
	if resp.StatusCode != 503 {
		t.Fatalf("one stream too many: %d %s", resp.StatusCode, body)
	}
}
