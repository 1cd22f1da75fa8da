package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// needChromium returns the browser; without it the test is skipped on a
// developer machine and fails in CI (test.sh installs Debian's chromium).
func needChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed (test.sh installs it)")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// artifactDir is where a test leaves files for people to look at:
// $TEST_ARTIFACTS when set, else the test's temporary directory.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestWebPage drives the operations page in Chromium against the real
// binary with the media relay on: two sipp phones register and call with
// RTP through the relay. The page (opened with ?token= before the call)
// lists both registrations, shows the call while it is in progress
// without a reload (server-sent events), then ended; its ladder has an
// arrow for every message the API holds, labelled as the API says, and a
// click on an arrow shows that message's text. When the API's record has
// the media field, the media panel must show packets on every leg. The
// pcap of the call holds every message (tcpdump reads it back). Opened
// without the token, the page asks for it.
func TestWebPage(t *testing.T) {
	sipp := needSipp(t)
	chrome := needChromium(t)
	td := mustAbs(t, "testdata")
	dir := t.TempDir()
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	const token = "page-t0ken"
	// Relay ports below the kernel's ephemeral range, away from the
	// default pool other tests use.
	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(cfg, []byte("dns:\n  servers: [\"127.0.0.1:9\"]\nadmin:\n  token: "+token+"\n"+
		"media:\n  relay: always\n  ports: 30000-30999\n"+
		// An upstream that never answers: the page shows survival mode.
		"survival:\n  enabled: true\n  upstream: sip:127.0.0.1:9\n  upstream_domains: [upstream.invalid]\n  probe: {interval: 200ms, timeout: 100ms}\n"), 0o644)
	s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--admin-listen", adminAddr)
	api := func(path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+adminAddr+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	// sipp's rtp_stream plays this file (PCMU silence) from its directory.
	os.WriteFile(filepath.Join(dir, "silence.ulaw"), bytes.Repeat([]byte{0xff}, 16000), 0o644)
	os.WriteFile(filepath.Join(dir, "callee.csv"), []byte("SEQUENTIAL\ncallee;x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
	uasPort, uacPort := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	uas := exec.Command(sipp, "-sf", filepath.Join(td, "rtp-uas.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", uasPort,
		"-mp", strconv.Itoa(freePort(t)), "-m", "1", "-nostdin", "-timeout", "90s")
	uas.Dir = dir
	uasLog, _ := os.Create(filepath.Join(dir, "uas.log"))
	uas.Stdout, uas.Stderr = uasLog, uasLog
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uas.Process.Kill(); uas.Wait() })
	for _, p := range []struct{ user, port string }{{"callee", uasPort}, {"caller", uacPort}} {
		reg := exec.Command(sipp, "-sf", filepath.Join(td, "register.xml"), "-t", "u1", "-i", "127.0.0.1",
			"-inf", filepath.Join(dir, p.user+".csv"), "-key", "cport", p.port, "-m", "1", "-nostdin", "-timeout", "10s", s.addr())
		reg.Dir = dir
		if out, err := reg.CombinedOutput(); err != nil {
			t.Fatalf("register %s: %v\n%s", p.user, err, tail(out))
		}
	}

	// The browser.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.WindowSize(1440, 1000), chromedp.Flag("user-data-dir", filepath.Join(dir, "chromium")))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	defer cancelCtx()
	// The browser starts with a blank page (the context of this first
	// run is the browser's lifetime); then the page's console is read:
	// an exception in the page's script fails the test.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	consoleCtx, stopConsole := context.WithCancel(ctx)
	var consoleMu sync.Mutex
	var exceptions []string
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range chromedp.Console(consoleCtx) {
			if err != nil {
				return
			}
			// A 401 is what the page gets, and shows, without the token.
			if m.IsException() || m.Type == chromedp.ConsoleError && !strings.Contains(m.Text, "status of 401") {
				consoleMu.Lock()
				exceptions = append(exceptions, m.String())
				consoleMu.Unlock()
			}
		}
	}()
	defer func() {
		stopConsole()
		<-consoleDone
		consoleMu.Lock()
		defer consoleMu.Unlock()
		for _, e := range exceptions {
			t.Errorf("the page's console: %s", e)
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+adminAddr+"/?token="+token+"#calls")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	// step runs one action with a deadline; the first Run above started
	// the browser without one (a deadline there would end the browser).
	step := func(what string, timeout time.Duration, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := chromedp.Do(c, a); err != nil {
			shot(t, ctx, "failed")
			t.Fatalf("%s: %v", what, err)
		}
	}
	// evaluate runs expr in the page. Right after a navigation the
	// browser may still name the old document's execution context
	// ("Cannot find context with specified id"): that is retried.
	evaluate := func(expr string) (json.RawMessage, error) {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			b, err := chromedp.Run(c, chromedp.Evaluate[json.RawMessage](expr))
			cancel()
			if err == nil || !strings.Contains(err.Error(), "context") || time.Now().After(deadline) {
				return b, err
			}
		}
	}
	eval := func(expr string, v any) {
		t.Helper()
		b, err := evaluate(expr)
		if err == nil {
			err = json.Unmarshal(b, v)
		}
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
	}
	// poll waits until expr is true in the page.
	poll := func(what, expr string, timeout time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
			b, err := evaluate(expr)
			if err == nil && string(b) == "true" {
				return
			}
			if time.Now().After(deadline) {
				shot(t, ctx, "failed")
				t.Fatalf("%s: not within %v (%s %v)", what, timeout, b, err)
			}
		}
	}

	// The token came once in the address; the page took it out of it.
	poll("the live event stream", `document.querySelector('#live.on') !== null`, 15*time.Second)
	var href string
	eval(`location.href`, &href)
	if strings.Contains(href, "token") {
		t.Errorf("the token stayed in the address: %s", href)
	}

	// The status line: survival mode (the upstream answers nothing).
	poll("survival mode on the status line", `document.querySelector('#survival:not([hidden])')?.textContent.startsWith('survival mode since') === true`, 15*time.Second)

	// Registrations: both phones, their source and transport.
	step("registrations tab", 10*time.Second, chromedp.Click(chromedp.CSS(`#tabs a[data-tab="registrations"]`)))
	poll("both registrations listed", `document.querySelectorAll('#reg-table tbody tr').length === 2`, 10*time.Second)
	var regs []string
	eval(`[...document.querySelectorAll('#reg-table tbody tr')].map(r => r.innerText.replace(/\s+/g, ' '))`, &regs)
	for _, p := range []struct{ user, port string }{{"callee", uasPort}, {"caller", uacPort}} {
		found := false
		for _, r := range regs {
			found = found || strings.Contains(r, "sip:"+p.user+"@127.0.0.1") && strings.Contains(r, "@127.0.0.1:"+p.port) && strings.Contains(r, "UDP")
		}
		if !found {
			t.Errorf("registration of %s (port %s) not shown: %q", p.user, p.port, regs)
		}
	}

	// The call, placed while the page is open on the call list.
	step("calls tab", 10*time.Second, chromedp.Click(chromedp.CSS(`#tabs a[data-tab="calls"]`)))
	placed := time.Now()
	uac := exec.Command(sipp, "-sf", filepath.Join(td, "rtp-uac.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", uacPort,
		"-mp", strconv.Itoa(freePort(t)), "-inf", filepath.Join(dir, "caller.csv"), "-s", "callee", "-m", "1", "-d", "6000",
		"-nostdin", "-timeout", "60s", "-trace_stat", "-stf", filepath.Join(dir, "uac.csv"), s.addr())
	uac.Dir = dir
	var uacOut bytes.Buffer
	uac.Stdout, uac.Stderr = &uacOut, &uacOut
	if err := uac.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uac.Process.Kill() })
	poll("the call in progress on the page", `document.querySelector('#active-table tbody tr[data-call-id]') !== null`, 5*time.Second)
	appeared := time.Since(placed)
	t.Logf("the call appeared on the page %v after sipp started", appeared.Round(time.Millisecond))
	var callID string
	eval(`document.querySelector('#active-table tbody tr[data-call-id]').dataset.callId`, &callID)
	if !strings.HasPrefix(callID, "1-") {
		t.Fatalf("Call-ID on the page: %q", callID)
	}
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp caller: %v\n%s", err, tail(uacOut.Bytes()))
	}
	expectCalls(t, "caller", filepath.Join(dir, "uac.csv"), 1)
	poll("the call ended on the page", fmt.Sprintf(`document.querySelector('#recent-table tbody tr[data-call-id=%q]') !== null && !document.querySelector('#active-table tbody tr')`, callID), 10*time.Second)

	// The API's view of the call: the record and every message.
	code, body := api("/api/v1/calls/" + url.PathEscape(callID))
	var rec struct {
		Status   int
		EndedBy  string `json:"ended_by"`
		Media    json.RawMessage
		Messages []struct{ Label, SDP, Text, Dir string }
	}
	if code != 200 || json.Unmarshal(body, &rec) != nil || rec.Status != 200 || rec.EndedBy != "caller" {
		t.Fatalf("GET the call: %d %s", code, body)
	}
	// INVITE, 100, INVITE, 180 ×2, 200 ×2, ACK ×2, BYE ×2, 200 ×2 at least
	// (a retransmission adds to it, and the page must show it too).
	if len(rec.Messages) < 13 {
		t.Fatalf("%d messages in the API", len(rec.Messages))
	}
	var labels []string
	for _, m := range rec.Messages {
		l := m.Label
		if m.SDP != "" {
			l += " (SDP)"
		}
		labels = append(labels, l)
	}

	// The call view: a click on the row opens it.
	step("open the call", 10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#recent-table tbody tr[data-call-id=%q] td`, callID))))
	poll("the ladder", fmt.Sprintf(`document.querySelectorAll('#ladder g.msg').length === %d`, len(rec.Messages)), 10*time.Second)
	var shown []string
	eval(`[...document.querySelectorAll('#ladder g.msg text.label')].map(e => e.textContent)`, &shown)
	if strings.Join(shown, "|") != strings.Join(labels, "|") {
		t.Fatalf("ladder arrows %q, want %q", shown, labels)
	}
	var cols []string
	eval(`[...document.querySelectorAll('#ladder .col-addr')].map(e => e.textContent)`, &cols)
	want := []string{"127.0.0.1:" + uacPort, s.addr(), "127.0.0.1:" + uasPort}
	if strings.Join(cols, " ") != strings.Join(want, " ") {
		t.Errorf("ladder columns %q, want %q", cols, want)
	}
	// A click on an arrow shows its message: the first INVITE, then the
	// BYE sipedge forwarded.
	bye := -1
	for i, m := range rec.Messages {
		if m.Label == "BYE" && m.Dir == "out" {
			bye = i
		}
	}
	for _, i := range []int{0, bye} {
		step("click an arrow", 10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#ladder g.msg[data-index="%d"] text.label`, i))))
		first, _, _ := strings.Cut(rec.Messages[i].Text, "\r\n")
		poll("the message text", fmt.Sprintf(`document.querySelector('#msg-text').textContent.startsWith(%q)`, first), 5*time.Second)
		var text string
		eval(`document.querySelector('#msg-text').textContent`, &text)
		if text != strings.ReplaceAll(rec.Messages[i].Text, "\r\n", "\n") && text != rec.Messages[i].Text {
			t.Errorf("message %d shown as %q, want %q", i, text, rec.Messages[i].Text)
		}
	}
	step("select the INVITE again", 10*time.Second, chromedp.Click(chromedp.CSS(`#ladder g.msg[data-index="0"] text.label`)))

	// RTP went through the relay; when the record carries the media
	// statistics, every leg on the page has packets.
	_, metrics := api("/metrics")
	if m := regexp.MustCompile(`(?m)^sipedge_media_relayed_total (\d+)`).FindSubmatch(metrics); m == nil || string(m[1]) == "0" {
		t.Errorf("no RTP relayed: %s", m)
	}
	if len(rec.Media) == 0 || string(rec.Media) == "null" {
		t.Errorf("the call's record has no media: %s", rec.Media)
	}
	{
		poll("the media panel", `document.querySelectorAll('#media tr.media-leg').length >= 2`, 5*time.Second)
		var packets []int
		eval(`[...document.querySelectorAll('#media tr.media-leg')].map(r => +r.dataset.packets)`, &packets)
		for i, n := range packets {
			if n <= 0 {
				t.Errorf("media leg %d: %d packets on the page (%v)", i, n, packets)
			}
		}
	}

	png := shot(t, ctx, "webpage")
	if len(png) < 1000 {
		t.Errorf("screenshot of %d bytes", len(png))
	}

	// A thousand ended calls: the list renders them and the filter
	// narrows them, in well under a second each on a slow machine.
	eval(`location.hash = '#calls'; true`, new(bool))
	poll("the call list", `!document.querySelector('#tab-calls').hidden`, 5*time.Second)
	var perf struct {
		Rows, Filtered int
		Ms             float64
	}
	eval(`(() => {
		const saved = calls, fake = [];
		for (let i = 0; i < 1000; i++) fake.push({...saved.recent[0], call_id: 'perf-' + i});
		const t0 = performance.now();
		calls = {active: [], recent: fake};
		renderCalls();
		const rows = document.querySelectorAll('#recent-table tbody tr').length;
		callsFilter = 'perf-99';
		renderCalls();
		const filtered = document.querySelectorAll('#recent-table tbody tr').length;
		const ms = performance.now() - t0;
		callsFilter = '';
		calls = saved;
		renderCalls();
		return {rows, filtered, ms};
	})()`, &perf)
	t.Logf("1 000 calls rendered and filtered in %.0f ms", perf.Ms)
	if perf.Rows != 1000 || perf.Filtered != 11 || perf.Ms > 2000 {
		t.Errorf("1 000 calls: %+v", perf)
	}

	// Without the token, the page asks for it, and then works.
	eval(`sessionStorage.clear(); true`, new(bool))
	step("leave the page", 15*time.Second, chromedp.Navigate("about:blank"))
	step("open it without the token", 15*time.Second, chromedp.Navigate("http://"+adminAddr+"/#registrations"))
	poll("the page asks for the token", `!document.querySelector('#login').hidden && document.querySelector('#tab-registrations').hidden`, 10*time.Second)
	step("type the token", 10*time.Second, chromedp.SendKeys(chromedp.CSS("#token"), token))
	step("send it", 10*time.Second, chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	poll("the registrations after the token", `document.querySelector('#login').hidden && document.querySelectorAll('#reg-table tbody tr').length === 2 && document.querySelector('#live.on') !== null`, 10*time.Second)

	// The downloads: the pcap holds every message (tcpdump reads it), the
	// ladder names every arrow; both need the token.
	code, pcap := api("/api/v1/calls/" + url.PathEscape(callID) + "/pcap")
	if code != 200 {
		t.Fatalf("pcap: %d", code)
	}
	file := filepath.Join(dir, "call.pcap")
	os.WriteFile(file, pcap, 0o644)
	out, err := exec.Command("tcpdump", "-r", file, "-n", "-vv").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "[udp sum ok]"); n != len(rec.Messages) {
		t.Errorf("tcpdump read %d frames with good checksums, want %d:\n%s", n, len(rec.Messages), out)
	}
	code, ladder := api("/api/v1/calls/" + url.PathEscape(callID) + "/ladder.txt")
	if code != 200 || !bytes.Contains(ladder, []byte(fmt.Sprintf("%d messages", len(rec.Messages)))) || !bytes.Contains(ladder, []byte("BYE")) {
		t.Errorf("ladder.txt: %d\n%s", code, ladder)
	}
	for _, path := range []string{"/api/v1/calls/" + url.PathEscape(callID), "/api/v1/events", "/api/v1/calls/x/pcap"} {
		resp, err := http.Get("http://" + adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s without the token: %d", path, resp.StatusCode)
		}
	}
}

// shot saves a screenshot of the page as name.png in the artifacts
// directory and returns it.
func shot(t *testing.T, ctx context.Context, name string) []byte {
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot: %v", err)
		return nil
	}
	path := filepath.Join(artifactDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return png
}
