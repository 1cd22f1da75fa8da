package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The operations API on the running binary: a flooder banned by the guard
// is listed by GET /api/v1/bans and served again after DELETE; the token
// is required.
func TestAdminBans(t *testing.T) {
	dir := t.TempDir()
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := filepath.Join(dir, "sipedge.yaml")
	yaml := "dns:\n  servers: [\"127.0.0.1:9\"]\ntrusted_networks: [127.0.0.1/32]\n" +
		"security:\n  rate: {requests: 20, window: 2s, ban: 5m}\nadmin:\n  token: s3cret\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--admin-listen", adminAddr)
	api := func(method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := api("GET", "/healthz", ""); code != 401 {
		t.Fatalf("healthz without the token: %d, want 401", code)
	}
	if code, body := api("GET", "/healthz", "s3cret"); code != 200 || !strings.Contains(body, `"status": "ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}

	// A phone on the trusted network registers; the API lists it.
	phone := newSIPPeer(t)
	phone.send(s.addr(), fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKapireg;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:apiuser@example.com>;tag=r\r\nTo: <sip:apiuser@example.com>\r\nCall-ID: api-reg\r\nCSeq: 1 REGISTER\r\n"+
		"Contact: <sip:apiuser@%s>\r\nExpires: 600\r\nUser-Agent: e2e phone\r\nContent-Length: 0\r\n\r\n", s.addr(), phone.addr(), phone.addr()))
	phone.expect("SIP/2.0 200", "api-reg")
	var regs struct {
		Registrations []struct {
			AOR, Contact, Source, Transport, UserAgent string `json:",omitempty"`
			ExpiresIn                                  int64  `json:"expires_in"`
		}
		Total     int
		Truncated bool
	}
	code, body := api("GET", "/api/v1/registrations?aor=apiuser", "s3cret")
	if code != 200 || json.Unmarshal([]byte(body), &regs) != nil || regs.Total != 1 || len(regs.Registrations) != 1 {
		t.Fatalf("registrations: %d %s", code, body)
	}
	if r := regs.Registrations[0]; r.Contact != "sip:apiuser@"+phone.addr() || r.Source != phone.addr() || r.Transport != "UDP" ||
		r.ExpiresIn < 590 || r.ExpiresIn > 600 {
		t.Fatalf("registration %+v (%s)", r, body)
	}
	if code, _ := api("GET", "/api/v1/registrations?limit=0", "s3cret"); code != 400 {
		t.Errorf("limit=0: %d, want 400", code)
	}

	// A TCP connection from the trusted network is listed.
	tc, err := net.Dial("tcp4", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	fmt.Fprintf(tc, "OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bKapitcp\r\nMax-Forwards: 70\r\n"+
		"From: <sip:x@example.com>;tag=t\r\nTo: <sip:%s>\r\nCall-ID: api-tcp\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		s.addr(), tc.LocalAddr(), s.addr())
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	code, body = api("GET", "/api/v1/connections", "s3cret")
	if code != 200 || !strings.Contains(body, `"remote": "`+tc.LocalAddr().String()+`"`) || !strings.Contains(body, `"inbound": true`) {
		t.Fatalf("connections: %d %s", code, body)
	}

	// 30 OPTIONS from 127.0.0.9: the 21st bans it.
	flooder := newPeerAt(t, "127.0.0.9")
	for i := range 30 {
		flooder.send(s.addr(), fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKadm%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:x@example.net>;tag=f\r\nTo: <sip:%s>\r\nCall-ID: adm-%d\r\nCSeq: 1 OPTIONS\r\n"+
			"User-Agent: padding for the amplification bound\r\nContent-Length: 0\r\n\r\n", s.addr(), flooder.addr(), i, s.addr(), i))
	}
	var list struct {
		Bans []struct {
			Source, Reason string
			Until          time.Time
			Dropped        uint64
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body := api("GET", "/api/v1/bans", "s3cret")
		if code != 200 || json.Unmarshal([]byte(body), &list) != nil {
			t.Fatalf("bans: %d %s", code, body)
		}
		if len(list.Bans) == 1 && list.Bans[0].Dropped > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flooder is not listed: %s", body)
		}
	}
	if b := list.Bans[0]; b.Source != "127.0.0.9" || b.Reason != "rate" || time.Until(b.Until) < 4*time.Minute {
		t.Fatalf("ban %+v", b)
	}
	// A banned source's TCP connections are closed at accept.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}, Timeout: 5 * time.Second}
	if c, err := d.Dial("tcp4", s.addr()); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a banned source's TCP connection stayed open")
		}
		c.Close()
	}
	// Lifted: the next request is answered again (403: it is a stranger).
	if code, body := api("DELETE", "/api/v1/bans/127.0.0.9", "s3cret"); code != 200 || !strings.Contains(body, `"lifted": 1`) {
		t.Fatalf("lift: %d %s", code, body)
	}
	flooder.send(s.addr(), fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKadmafter;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:x@example.net>;tag=f\r\nTo: <sip:%s>\r\nCall-ID: adm-after\r\nCSeq: 1 OPTIONS\r\n"+
		"User-Agent: padding for the amplification bound\r\nContent-Length: 0\r\n\r\n", s.addr(), flooder.addr(), s.addr()))
	if m, _ := flooder.next("SIP/2.0 403", "adm-after", 5*time.Second); m == "" {
		t.Fatal("no answer after the ban was lifted")
	}
	if !s.hasLog("bans lifted through the API") {
		t.Error("the lift is not in the log")
	}

	// Prometheus: every sipedge metric has HELP and TYPE; the guard's
	// ban and the requests are counted; the process is described.
	code, body = api("GET", "/metrics", "s3cret")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	typed := map[string]bool{}
	helped := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" {
			switch f[1] {
			case "HELP":
				helped[f[2]] = len(f) > 3
			case "TYPE":
				typed[f[2]] = true
			}
		}
	}
	n := 0
	for name := range typed {
		if strings.HasPrefix(name, "sipedge_") {
			n++
			if !helped[name] {
				t.Errorf("%s has no HELP", name)
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d sipedge metrics", n)
	}
	for _, want := range []string{`sipedge_guard_bans_total{reason="rate"} 1`, "sipedge_proxy_requests_total ", "sipedge_guard_active_bans 0",
		"# TYPE sipedge_proxy_requests_total counter", "process_cpu_seconds_total", "go_goroutines",
		"# TYPE sipedge_proxy_registration_delay_seconds histogram", "sipedge_proxy_registration_delay_seconds_count 1",
		`sipedge_proxy_registration_delay_seconds_bucket{le="+Inf"} 1`, "# TYPE sipedge_calllog_session_delay_seconds histogram"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code, _ := api("GET", "/metrics", ""); code != 401 {
		t.Errorf("metrics without the token: %d", code)
	}
}
