package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

// wsEdge is a sipedge with UDP, WS and WSS listeners and its operations
// server, relaying the media of every call it may (media.relay: always),
// which a call with a WebSocket client must still not be.
type wsEdge struct {
	s                *server
	udp, ws, wss     string // host:port of each listener
	admin            string
	certFile, keyFil string
}

func startWSEdge(t *testing.T) *wsEdge {
	t.Helper()
	dir := t.TempDir()
	e := &wsEdge{certFile: filepath.Join(dir, "cert.pem"), keyFil: filepath.Join(dir, "key.pem")}
	writeCert(t, e.certFile, e.keyFil, "127.0.0.1")
	udp := freePort(t)
	e.udp = "127.0.0.1:" + strconv.Itoa(udp)
	e.ws = "127.0.0.1:" + strconv.Itoa(freePort(t))
	e.wss = "127.0.0.1:" + strconv.Itoa(freePort(t))
	e.admin = "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(cfg, []byte("dns:\n  servers: [\"127.0.0.1:9\"]\nmedia:\n  relay: always\n"), 0o644)
	e.s = start(t, "--listen", "udp:"+e.udp, "--listen", "ws:"+e.ws, "--listen", "wss:"+e.wss,
		"--tls-cert", e.certFile, "--tls-key", e.keyFil, "--data-dir", t.TempDir(), "--config", cfg,
		"--admin-listen", e.admin)
	e.s.port = udp
	return e
}

// get fetches a path of the operations server.
func (e *wsEdge) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + e.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// wsPhone is a minimal SIP user agent over a WebSocket, as a browser's
// would be: its Contact and Via name a host under .invalid.
type wsPhone struct {
	t     *testing.T
	c     *websocket.Conn
	proto string // WS or WSS
}

func dialPhone(t *testing.T, proto, addr string) *wsPhone {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	scheme := strings.ToLower(proto)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	c, _, err := websocket.Dial(ctx, scheme+"://"+addr+"/", &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"sip"}})
	if err != nil {
		t.Fatalf("dial %s %s: %v", proto, addr, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if c.Subprotocol() != "sip" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	return &wsPhone{t: t, c: c, proto: proto}
}

func (p *wsPhone) send(msg string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.c.Write(ctx, websocket.MessageText, []byte(strings.ReplaceAll(msg, "\n", "\r\n"))); err != nil {
		p.t.Fatal(err)
	}
}

// recv reads messages until one whose start line begins with prefix.
func (p *wsPhone) recv(prefix string) *sipMsg {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := p.c.Read(ctx)
		if err != nil {
			p.t.Fatalf("waiting for %q: %v", prefix, err)
		}
		m := parseSIP(string(b))
		if strings.HasPrefix(m.start, prefix) {
			return m
		}
	}
}

// sipMsg is a received message: start line, header lines in order, body.
type sipMsg struct {
	start string
	hdrs  [][2]string
	body  string
}

func parseSIP(s string) *sipMsg {
	head, body, _ := strings.Cut(s, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	m := &sipMsg{start: lines[0], body: body}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m.hdrs = append(m.hdrs, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return m
}

func (m *sipMsg) all(name string) []string {
	var out []string
	for _, h := range m.hdrs {
		if strings.EqualFold(h[0], name) {
			out = append(out, h[1])
		}
	}
	return out
}

func (m *sipMsg) get(name string) string {
	if v := m.all(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// answer builds a response to req (RFC 3261 §8.2.6: Via, From, To with a
// tag, Call-ID, CSeq copied; §12.1.1: Record-Route too).
func (m *sipMsg) answer(code string, extra, body string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + code + "\n")
	for _, h := range m.hdrs {
		switch strings.ToLower(h[0]) {
		case "via", "from", "call-id", "cseq", "record-route":
			b.WriteString(h[0] + ": " + h[1] + "\n")
		case "to":
			v := h[1]
			if !strings.Contains(v, ";tag=") {
				v += ";tag=ws1"
			}
			b.WriteString("To: " + v + "\n")
		}
	}
	b.WriteString(extra)
	fmt.Fprintf(&b, "Content-Length: %d\n\n%s", len(body), body)
	return b.String()
}

// TestWebSocketCall: a SIP client over WS and over WSS (a Go client, as a
// browser's would be) registers with sipedge and receives a call from a
// UDP phone (sipp): the INVITE comes over its WebSocket connection with
// sipedge's WS/WSS Via, a double Record-Route whose side facing the
// client says ;transport=ws|wss, and the caller's SDP untouched although
// media.relay is always (WebRTC media stays end to end); it answers, and
// the ACK and the caller's BYE, routed by the alias sipedge put on its
// Contact, come back on the same connection. The call's ladder in the
// operations API shows the WebSocket leg.
func TestWebSocketCall(t *testing.T) {
	sipp := needSipp(t)
	e := startWSEdge(t)
	td := mustAbs(t, "testdata")
	for i, proto := range []string{"WS", "WSS"} {
		t.Run(proto, func(t *testing.T) {
			addr := e.ws
			if proto == "WSS" {
				addr = e.wss
			}
			user := "webrtc" + strconv.Itoa(i)
			const host = "df7jal23ls0d.invalid"
			tp := strings.ToLower(proto)
			ph := dialPhone(t, proto, addr)
			ph.send("REGISTER sip:127.0.0.1 SIP/2.0\n" +
				"Via: SIP/2.0/" + proto + " " + host + ";branch=z9hG4bK-reg" + user + "\n" +
				"Max-Forwards: 70\nFrom: <sip:" + user + "@127.0.0.1>;tag=r1\nTo: <sip:" + user + "@127.0.0.1>\n" +
				"Call-ID: reg-" + user + "\nCSeq: 1 REGISTER\n" +
				"Contact: <sip:" + user + "@" + host + ";transport=" + tp + ">;expires=300\nContent-Length: 0\n\n")
			if r := ph.recv("SIP/2.0"); !strings.HasPrefix(r.start, "SIP/2.0 200") {
				t.Fatalf("REGISTER: %s", r.start)
			}

			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
			mediaPort := strconv.Itoa(freePort(t))
			uac := exec.Command(sipp, "-sf", filepath.Join(td, "call-uac.xml"), "-t", "u1", "-i", "127.0.0.1", "-mp", mediaPort,
				"-p", strconv.Itoa(freePort(t)), "-inf", filepath.Join(dir, "caller.csv"), "-s", user, "-m", "1", "-d", "200",
				"-nostdin", "-timeout", "20s", "-trace_stat", "-stf", filepath.Join(dir, "uac.csv"), e.udp)
			uac.Dir = dir
			out, _ := os.Create(filepath.Join(dir, "uac.log"))
			uac.Stdout, uac.Stderr = out, out
			if err := uac.Start(); err != nil {
				t.Fatal(err)
			}
			defer uac.Process.Kill()

			inv := ph.recv("INVITE ")
			if want := "INVITE sip:" + user + "@" + host + ";transport=" + tp + " SIP/2.0"; inv.start != want {
				t.Errorf("Request-URI: %s, want %s", inv.start, want)
			}
			if via := inv.get("Via"); !strings.HasPrefix(via, "SIP/2.0/"+proto+" "+addr+";") {
				t.Errorf("top Via %q, want sipedge's %s one", via, proto)
			}
			rr := strings.Join(inv.all("Record-Route"), ", ")
			if !strings.HasPrefix(rr, "<sip:"+addr+";transport="+tp+";") || !strings.Contains(rr, "<sip:"+e.udp+";") {
				t.Errorf("Record-Route %q: want the %s side (first) and the UDP side", rr, proto)
			}
			if !strings.Contains(inv.body, "o=user1 53655765 2353687637 IN IP4 127.0.0.1") || !strings.Contains(inv.body, "m=audio "+mediaPort+" ") {
				t.Errorf("the caller's SDP was changed:\n%s", inv.body)
			}
			callID := inv.get("Call-ID")
			sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\na=setup:actpass\r\na=ice-ufrag:abcd\r\n"
			ph.send(inv.answer("200 OK", "Contact: <sip:"+user+"@"+host+";transport="+tp+">\nContent-Type: application/sdp\n", sdp))

			// The ACK and the BYE reach the client by the alias on its
			// Contact, which sipedge removes before they leave.
			ack := ph.recv("ACK ")
			if want := "ACK sip:" + user + "@" + host + ";transport=" + tp + " SIP/2.0"; ack.start != want {
				t.Errorf("ACK: %s, want %s", ack.start, want)
			}
			bye := ph.recv("BYE ")
			ph.send(bye.answer("200 OK", "", ""))

			done := make(chan error, 1)
			go func() { done <- uac.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					log, _ := os.ReadFile(filepath.Join(dir, "uac.log"))
					t.Fatalf("sipp: %v\n%s", err, tail(log))
				}
			case <-time.After(15 * time.Second):
				t.Fatal("sipp did not finish")
			}
			expectCalls(t, "UAC", filepath.Join(dir, "uac.csv"), 1)

			// And it calls a UDP phone (sipp) registered with sipedge.
			wsCallsOut(t, sipp, e, ph, proto, i)

			if conns := e.get(t, "/api/v1/connections"); !strings.Contains(conns, `"transport": "`+proto+`"`) {
				t.Errorf("connections: %s", conns)
			}
			// The ladder holds the WebSocket leg.
			var ladder string
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if ladder = e.get(t, "/api/v1/calls/"+url.PathEscape(callID)+"/ladder.txt"); strings.Contains(ladder, "BYE") {
					break
				}
			}
			if !strings.Contains(ladder, proto+" ") || !strings.Contains(ladder, "UDP ") {
				t.Errorf("ladder lacks the %s or the UDP leg:\n%s", proto, ladder)
			}
		})
	}
	m := e.get(t, "/metrics")
	for _, want := range []string{"sipedge_callmedia_ws_calls_total 4", "sipedge_callmedia_calls_total 0"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// wsCallsOut: the WebSocket phone ph calls a UDP phone (sipp) registered
// with sipedge: sipedge adds received and rport to its Via (its sent-by
// is a .invalid name), the 200 comes back on its connection with the
// double Record-Route, and the ACK and BYE it sends along that route set
// reach the phone.
func wsCallsOut(t *testing.T, sipp string, e *wsEdge, ph *wsPhone, proto string, i int) {
	t.Helper()
	td := mustAbs(t, "testdata")
	dir := t.TempDir()
	desk := "desk" + strconv.Itoa(i)
	os.WriteFile(filepath.Join(dir, "callee.csv"), []byte("SEQUENTIAL\n"+desk+";x\n"), 0o644)
	uasPort := strconv.Itoa(freePort(t))
	uas := exec.Command(sipp, "-sf", filepath.Join(td, "call-uas.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", uasPort, "-m", "1", "-nostdin", "-timeout", "20s")
	uas.Dir = dir
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	defer uas.Process.Kill()
	reg := exec.Command(sipp, "-sf", filepath.Join(td, "register.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(freePort(t)), "-inf", filepath.Join(dir, "callee.csv"), "-key", "cport", uasPort, "-m", "1",
		"-nostdin", "-timeout", "10s", e.udp)
	reg.Dir = dir
	if out, err := reg.CombinedOutput(); err != nil {
		t.Fatalf("register: %v\n%s", err, tail(out))
	}

	const host = "k3j2h1g0.invalid"
	user := "webrtc" + strconv.Itoa(i)
	callID := "out-" + user
	from := "From: <sip:" + user + "@127.0.0.1>;tag=wsout\nTo: <sip:" + desk + "@127.0.0.1>"
	sdp := "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"
	ph.send("INVITE sip:" + desk + "@127.0.0.1 SIP/2.0\n" +
		"Via: SIP/2.0/" + proto + " " + host + ";branch=z9hG4bK-inv" + user + ";rport\n" +
		"Max-Forwards: 70\n" + from + "\nCall-ID: " + callID + "\nCSeq: 1 INVITE\n" +
		"Contact: <sip:" + user + "@" + host + ";transport=" + strings.ToLower(proto) + ";ob>\n" +
		"Content-Type: application/sdp\n" + fmt.Sprintf("Content-Length: %d\n\n", len(sdp)) + sdp)
	var ok *sipMsg
	for ok == nil {
		r := ph.recv("SIP/2.0 ")
		if via := r.get("Via"); !strings.Contains(via, ";received=127.0.0.1") || !strings.Contains(via, ";rport=") {
			t.Errorf("%s: Via %q lacks received and rport", r.start, via)
		}
		switch {
		case strings.HasPrefix(r.start, "SIP/2.0 200"):
			ok = r
		case !strings.HasPrefix(r.start, "SIP/2.0 1"):
			t.Fatalf("INVITE: %s", r.start)
		}
	}
	var rr []string
	for _, v := range ok.all("Record-Route") {
		for _, e := range strings.Split(v, ">,") {
			rr = append(rr, strings.TrimSpace(strings.TrimSuffix(e, ">"))+">")
		}
	}
	if len(rr) != 2 || !strings.Contains(rr[1], ";transport="+strings.ToLower(proto)+";") {
		t.Fatalf("Record-Route %q: want the UDP side, then the %s side", rr, proto)
	}
	contact := strings.Trim(ok.get("Contact"), "<>")
	// The route set is the Record-Route reversed (RFC 3261 §12.1.2).
	route := "Route: " + rr[1] + "\nRoute: " + rr[0] + "\n"
	ph.send("ACK " + contact + " SIP/2.0\nVia: SIP/2.0/" + proto + " " + host + ";branch=z9hG4bK-ack" + user + "\n" + route +
		"Max-Forwards: 70\n" + from + ";tag=" + strings.SplitN(ok.get("To"), ";tag=", 2)[1] + "\nCall-ID: " + callID + "\nCSeq: 1 ACK\nContent-Length: 0\n\n")
	time.Sleep(100 * time.Millisecond)
	ph.send("BYE " + contact + " SIP/2.0\nVia: SIP/2.0/" + proto + " " + host + ";branch=z9hG4bK-bye" + user + "\n" + route +
		"Max-Forwards: 70\n" + from + ";tag=" + strings.SplitN(ok.get("To"), ";tag=", 2)[1] + "\nCall-ID: " + callID + "\nCSeq: 2 BYE\nContent-Length: 0\n\n")
	if r := ph.recv("SIP/2.0 "); !strings.HasPrefix(r.start, "SIP/2.0 200") || !strings.Contains(r.get("CSeq"), "BYE") {
		t.Fatalf("BYE: %s %s", r.start, r.get("CSeq"))
	}
	done := make(chan error, 1)
	go func() { done <- uas.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sipp UAS: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sipp UAS did not finish its call")
	}
}

// jssipVersion is the JsSIP release the browser test runs.
const jssipVersion = "3.13.8"

// jssipBundle returns JsSIP (npm package jssip, MIT licence) bundled for a
// browser. The npm package ships CommonJS only, so npm fetches it with
// esbuild into a cache directory and esbuild makes one script of it
// (global JsSIP); later runs reuse the file.
func jssipBundle(t *testing.T) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("npm not installed (test.sh installs it)")
		}
		t.Skip("npm not installed (apt-get install npm)")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "sipedge-e2e", "jssip-"+jssipVersion)
	out := filepath.Join(dir, "jssip.js")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	install := exec.Command(npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", dir, "jssip@"+jssipVersion, "esbuild@0.25")
	if b, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm install jssip: %v\n%s", err, b)
	}
	tmp := out + ".tmp"
	bundle := exec.Command(filepath.Join(dir, "node_modules", ".bin", "esbuild"),
		filepath.Join(dir, "node_modules", "jssip", "lib", "JsSIP.js"),
		"--bundle", "--format=iife", "--global-name=JsSIP", "--minify", "--outfile="+tmp)
	if b, err := bundle.CombinedOutput(); err != nil {
		t.Fatalf("esbuild: %v\n%s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// jssipPage registers with JsSIP and records the INVITEs it receives,
// answering each 486 from the newRTCSession handler.
const jssipPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>JsSIP</title><script src="/jssip.js"></script></head>
<body><pre id="log"></pre><script>
window.state = {registered: false, failed: "", invites: []};
const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(WSS_URL)],
  uri: "sip:browser@127.0.0.1",
  register: true,
  register_expires: 300,
  session_timers: false,
});
ua.on("registered", () => { window.state.registered = true; });
ua.on("registrationFailed", (e) => { window.state.failed = String(e.cause); });
ua.on("newRTCSession", (e) => {
  if (e.originator !== "remote") return;
  window.state.invites.push({callId: e.request.call_id, from: e.request.from.uri.user});
  e.session.terminate({status_code: 486, reason_phrase: "Busy Here"});
});
ua.start();
</script></body></html>`

// TestJsSIPWebSocket: JsSIP, the WebRTC SIP library, in headless Chromium
// registers with sipedge over WSS (a test certificate) and is called by a
// UDP phone (sipp): the browser gets the INVITE (JsSIP's newRTCSession)
// and answers it busy, which sipp receives. Media is not set up.
func TestJsSIPWebSocket(t *testing.T) {
	sipp := needSipp(t)
	chrome := needChromium(t)
	js := jssipBundle(t)
	e := startWSEdge(t)

	mux := http.NewServeMux()
	mux.HandleFunc("/jssip.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, js)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, strings.Replace(jssipPage, "WSS_URL", strconv.Quote("wss://"+e.wss), 1))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go web.Serve(ln)
	defer web.Close()

	dir := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.Flag("user-data-dir", filepath.Join(dir, "chromium")),
		// The test certificate is self-signed.
		chromedp.Flag("ignore-certificate-errors", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 30*time.Second)
	defer cancelT()

	type state struct {
		Registered bool   `json:"registered"`
		Failed     string `json:"failed"`
		Invites    []struct {
			CallID string `json:"callid"`
			From   string `json:"from"`
		} `json:"invites"`
	}
	var st state
	poll := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			b, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](`window.state ? ({registered: window.state.registered,
				failed: window.state.failed, invites: window.state.invites.map(i => ({callid: i.callId, from: i.from}))}) : {}`))
			if err != nil && !strings.Contains(err.Error(), "context") {
				t.Fatalf("%s: %v", what, err)
			}
			if err == nil {
				if err := json.Unmarshal(b, &st); err != nil {
					t.Fatalf("%s: %v: %s", what, err, b)
				}
			}
			if ok() {
				return
			}
			if st.Failed != "" || time.Now().After(deadline) {
				t.Fatalf("%s: browser state %+v\n", what, st)
			}
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		t.Fatal(err)
	}
	poll("register", func() bool { return st.Registered })
	if regs := e.get(t, "/api/v1/registrations"); !strings.Contains(regs, `"transport": "WSS"`) || !strings.Contains(regs, "browser@127.0.0.1") {
		t.Fatalf("registrations: %s", regs)
	}

	sdir := t.TempDir()
	os.WriteFile(filepath.Join(sdir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
	uac := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), "uac-busy.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(freePort(t)), "-inf", filepath.Join(sdir, "caller.csv"), "-s", "browser", "-m", "1",
		"-nostdin", "-timeout", "20s", "-trace_stat", "-stf", filepath.Join(sdir, "uac.csv"), e.udp)
	uac.Dir = sdir
	if b, err := uac.CombinedOutput(); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(b))
	}
	expectCalls(t, "UAC", filepath.Join(sdir, "uac.csv"), 1)
	poll("INVITE", func() bool { return len(st.Invites) == 1 })
	if st.Invites[0].From != "caller" {
		t.Errorf("INVITE from %q, want caller", st.Invites[0].From)
	}
}
