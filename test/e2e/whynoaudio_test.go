package e2e

import (
	"bytes"
	"context"
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
)

// A callee that answers with SDP and plays PCMU silence (sipp's
// rtp_stream) until the BYE.
const whyCallee = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callee that sends RTP">
  <recv request="INVITE" crlf="true"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]e[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:callee@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
]]></send>
  <recv request="ACK" crlf="true"/>
  <nop><action><exec rtp_stream="silence.ulaw,-1,0"/></action></nop>
  <recv request="BYE" timeout="60000"/>
  <nop><action><exec rtp_stream="pause"/></action></nop>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <timewait milliseconds="500"/>
</scenario>
`

// A caller whose SDP names 127.0.0.5:4000, an address it does not signal
// from (as a phone behind NAT names its private one), and that sends no
// RTP at all; it hangs up after -d.
const whyCaller = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="caller that sends no RTP">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:caller@example.com>;tag=[pid]c[call_number]
To: <sip:[service]@example.com>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 127.0.0.5
s=-
c=IN IP4 127.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:caller@example.com>;tag=[pid]c[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:caller@example.com>;tag=[pid]c[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
`

// whyMedia is the media object of a call, as the API and the call log
// show it.
type whyMedia struct {
	Audio     string   `json:"audio"`
	Diagnosis []string `json:"diagnosis"`
	Streams   []struct {
		Type string `json:"type"`
		Legs []struct {
			Side, Signalling, SDP, Relay, Source, Codec string
			SDPPrivate                                  bool `json:"sdp_private"`
			Latched                                     bool
			Packets, Forwarded                          uint64
			MOS                                         *float64
			First                                       *time.Time
		} `json:"legs"`
	} `json:"streams"`
}

// TestWhyNoAudio: a sipp caller whose SDP names an address it does not
// signal from sends no RTP; the sipp callee plays PCMU through the relay.
// While the call runs, GET /api/v1/calls shows it one-way and says the
// caller sent nothing, naming its SDP address, its signalling address and
// the relay port it should have sent to; after the BYE the call log's
// line carries the same verdict with per-leg counters and quality, and
// the metrics count a one-way stream.
func TestWhyNoAudio(t *testing.T) {
	sipp := needSipp(t)
	dir := t.TempDir()
	for name, body := range map[string]string{"callee.xml": whyCallee, "caller.xml": whyCaller} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// rtp_stream plays this file (PCMU silence) from sipp's directory.
	if err := os.WriteFile(filepath.Join(dir, "silence.ulaw"), bytes.Repeat([]byte{0xff}, 16000), 0o644); err != nil {
		t.Fatal(err)
	}
	calleePort, callerPort := freePort(t), freePort(t)
	// A HEP collector: the call's quality report must reach it at the end.
	hepConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hepConn.Close()
	logFile := filepath.Join(dir, "calls.jsonl")
	cfgFile := filepath.Join(dir, "sipedge.yaml")
	cfg := fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\nhep:\n  collectors: [udp:%s]\ncall_log:\n  file: %s\nmedia:\n  relay: always\n  ports: 46000-46999\n"+
		"routes:\n  - name: callee\n    prefix: \"1\"\n    to: sip:127.0.0.1:%d\n", hepConn.LocalAddr(), logFile, calleePort)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	s := start(t, "--config", cfgFile, "--data-dir", filepath.Join(dir, "data"), "--admin-listen", adminAddr)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := func(name string, args ...string) (*exec.Cmd, *bytes.Buffer) {
		var out bytes.Buffer
		c := exec.CommandContext(ctx, sipp, args...)
		c.Dir, c.Stdout, c.Stderr = dir, &out, &out
		if err := c.Start(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { cancel(); c.Wait() })
		return c, &out
	}
	callee, calleeOut := run("callee", "-sf", filepath.Join(dir, "callee.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(calleePort),
		"-mi", "127.0.0.1", "-m", "1", "-nostdin", "-timeout", "60s")
	time.Sleep(300 * time.Millisecond) // the callee's socket is bound
	// The caller holds the call for 12 s: the diagnosis gives a silent side
	// 5 s after the answer.
	caller, callerOut := run("caller", "-sf", filepath.Join(dir, "caller.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(callerPort),
		"-s", "100", "-m", "1", "-d", "12000", "-nostdin", "-timeout", "60s", s.addr())

	callerSig := "127.0.0.1:" + strconv.Itoa(callerPort)
	calleeSig := "127.0.0.1:" + strconv.Itoa(calleePort)
	check := func(where string, m whyMedia) {
		t.Helper()
		if m.Audio != "one-way" || len(m.Streams) != 1 || m.Streams[0].Type != "audio" || len(m.Streams[0].Legs) != 2 {
			t.Fatalf("%s: media %+v", where, m)
		}
		a, b := m.Streams[0].Legs[0], m.Streams[0].Legs[1]
		if a.Side != "caller" || a.Packets != 0 || a.SDP != "127.0.0.5:4000" || !a.SDPPrivate || a.Signalling != callerSig ||
			a.Latched || a.MOS != nil || a.First != nil {
			t.Errorf("%s: caller leg %+v", where, a)
		}
		if b.Side != "callee" || b.Packets < 50 || b.Forwarded != b.Packets || !b.Latched || b.Signalling != calleeSig ||
			b.Source != b.SDP || b.Codec != "PCMU" || b.MOS == nil || *b.MOS < 4 || b.First == nil {
			t.Errorf("%s: callee leg %+v", where, b)
		}
		want := "; its SDP advertised 127.0.0.5:4000, a private address other than its signalling address 127.0.0.1, and nothing arrived at sipedge's " + a.Relay
		if len(m.Diagnosis) != 1 || !strings.HasPrefix(m.Diagnosis[0], "No packets from the caller since the call was answered at ") ||
			!strings.Contains(m.Diagnosis[0], want) {
			t.Errorf("%s: diagnosis %q, want one sentence with %q", where, m.Diagnosis, want)
		}
	}

	// While the call runs.
	var active whyMedia
	var callID string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var calls struct {
			Active []struct {
				CallID string   `json:"call_id"`
				Media  whyMedia `json:"media"`
			}
		}
		resp, err := http.Get("http://" + adminAddr + "/api/v1/calls")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(body, &calls); err != nil {
			t.Fatalf("/api/v1/calls: %v\n%s", err, body)
		}
		if len(calls.Active) == 1 && len(calls.Active[0].Media.Diagnosis) > 0 {
			active, callID = calls.Active[0].Media, calls.Active[0].CallID
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no diagnosis for the call in progress:\n%s\ncaller:\n%s\ncallee:\n%s", body, tail(callerOut.Bytes()), tail(calleeOut.Bytes()))
		}
	}
	check("in progress", active)
	t.Logf("in progress: %s: %q", active.Audio, active.Diagnosis)
	// The same verdict on the operations page, in Chromium.
	pageShowsDiagnosis(t, "http://"+adminAddr+"/#call/"+url.PathEscape(callID), "No packets from the caller since the call was answered")

	// After the BYE: the call log's line.
	if err := caller.Wait(); err != nil {
		t.Fatalf("caller: %v\n%s", err, tail(callerOut.Bytes()))
	}
	if err := callee.Wait(); err != nil {
		t.Fatalf("callee: %v\n%s", err, tail(calleeOut.Bytes()))
	}
	recs := readCallLog(t, logFile, 1)
	raw, _ := json.Marshal(recs[0]["media"])
	var ended whyMedia
	if err := json.Unmarshal(raw, &ended); err != nil || recs[0]["ended_by"] != "caller" {
		t.Fatalf("call log line: %v %v", err, recs[0])
	}
	check("call log", ended)
	t.Logf("call log: %s", raw)

	// The HEP quality report (rtpagent JSON, proto type 34, correlated by
	// Call-ID): one per direction; the callee's carries its MOS.
	reports := map[string]string{}
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(5 * time.Second); len(reports) < 2 && time.Now().Before(deadline); {
		hepConn.SetReadDeadline(deadline)
		n, _, err := hepConn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		chunks := hepChunks(buf[:n])
		if chunks[0x0b] == nil || chunks[0x0b][0] != 34 || string(chunks[0x11]) != callID {
			continue // a SIP message
		}
		var rep struct {
			Party int     `json:"PARTY"`
			MOS   float64 `json:"MOS"`
			Type  string  `json:"TYPE"`
		}
		if err := json.Unmarshal(chunks[0x0f], &rep); err != nil || rep.Type != "FINAL" {
			t.Fatalf("HEP quality report: %v %s", err, chunks[0x0f])
		}
		reports[strconv.Itoa(rep.Party)] = string(chunks[0x0f])
		if rep.Party == 1 && rep.MOS < 4 {
			t.Errorf("callee's report without its MOS: %s", chunks[0x0f])
		}
	}
	if len(reports) != 2 {
		t.Errorf("HEP quality reports for %s: %v, want the caller's and the callee's", callID, reports)
	}

	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{"sipedge_callmedia_streams_ended_total 1", "sipedge_callmedia_one_way_streams_total 1",
		"sipedge_callmedia_zero_packet_streams_total 0",
		// Per route, per method and per class.
		`sipedge_routing_routed_total{route="callee"} 1`, `sipedge_proxy_requests_by_method_total{method="INVITE"} 1`,
		`sipedge_proxy_requests_by_method_total{method="BYE"} 1`, `sipedge_proxy_responses_by_class_total{class="2xx"} 2`,
		`sipedge_proxy_requests_by_method_total{method="ACK"} 1`, "sipedge_callmedia_stream_mos_count 1", "sipedge_callmedia_stream_loss_percent_count 1"} {
		if !bytes.Contains(metrics, []byte("\n"+line+"\n")) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// hepChunks splits a HEP v3 packet into its generic chunks (vendor 0) by
// type; nil when it is not HEP v3.
func hepChunks(b []byte) map[uint16][]byte {
	if len(b) < 6 || string(b[:4]) != "HEP3" {
		return nil
	}
	out := map[uint16][]byte{}
	for i := 6; i+6 <= len(b); {
		vendor, typ := be16(b[i:]), be16(b[i+2:])
		n := int(be16(b[i+4:]))
		if n < 6 || i+n > len(b) {
			return out
		}
		if vendor == 0 {
			out[typ] = b[i+6 : i+n]
		}
		i += n
	}
	return out
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// pageShowsDiagnosis opens the operations page of one call in headless
// Chromium and waits until its "Why no audio" list holds want; a
// screenshot is kept as a test artifact.
func pageShowsDiagnosis(t *testing.T, page, want string) {
	t.Helper()
	chrome := needChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.WindowSize(1440, 1000), chromedp.Flag("user-data-dir", filepath.Join(t.TempDir(), "chromium")))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	defer cancelCtx()
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	expr := `(() => { const d = document.querySelector('#diagnosis'); return d && !d.hidden ? d.innerText : ''; })()`
	var text string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := chromedp.Run(c, chromedp.Evaluate[string](expr))
		cancel()
		if err == nil {
			text = v
		}
		if strings.Contains(text, want) {
			break
		}
		if time.Now().After(deadline) {
			shot(t, ctx, "whynoaudio-failed")
			t.Fatalf("the page of %s shows no diagnosis with %q (shows %q)", page, want, text)
		}
	}
	if !strings.Contains(text, "Why no audio") {
		t.Errorf("diagnosis panel without its heading: %q", text)
	}
	shot(t, ctx, "whynoaudio")
}
