package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTrunkKamailio: sipedge registers itself as trunk user "acme" to a
// Kamailio that wants digest credentials (qop=auth) and refreshes the
// registration before it expires (4 s asked); a call from the provider to
// the trunk reaches the local phone the inbound rule names (sipp
// registered to sipedge); a call sent out by a route to trunk:provider is
// challenged by Kamailio with 407, answered by sipedge with the trunk's
// credentials, and completes. Then Kamailio answers every REGISTER 503:
// the trunk fails, keeps retrying, and registers again once Kamailio
// accepts again. The API, metrics and log show each step.
func TestTrunkKamailio(t *testing.T) {
	sipp := needSipp(t)
	kam := needTool(t, "kamailio", "kamailio", "/usr/sbin/kamailio")
	kamcmd := needTool(t, "kamcmd", "kamailio", "/usr/sbin/kamcmd")
	td := mustAbs(t, "testdata")
	dir := t.TempDir()

	kamPort := freePort(t)
	ctl := "unix:" + filepath.Join(dir, "kam.ctl")
	daemon(t, kam, "-DD", "-E", "-f", filepath.Join(td, "kamailio-trunk.cfg"), "-A", "KAM_PORT="+strconv.Itoa(kamPort),
		"-A", `CTL_SOCK="`+ctl+`"`, "-m", "64", "-M", "8", "-Y", dir)
	waitTCP(t, "127.0.0.1:"+strconv.Itoa(kamPort))
	kamSet := func(v int) {
		t.Helper()
		if out, err := exec.Command(kamcmd, "-s", ctl, "pv.shvSet", "down", "int", strconv.Itoa(v)).CombinedOutput(); err != nil {
			t.Fatalf("kamcmd: %v\n%s", err, out)
		}
	}

	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := filepath.Join(dir, "sipedge.yaml")
	os.WriteFile(filepath.Join(dir, "trunk.pass"), []byte("trunkpass\n"), 0o600)
	os.WriteFile(cfg, []byte(fmt.Sprintf(`domains: [local.test]
dns:
  servers: ["127.0.0.1:9"]
media:
  relay: never
trunks:
  - name: provider
    registrar: sip:127.0.0.1:%d
    username: acme
    password_file: %s
    expires: 4s
    retry_min: 500ms
    retry_max: 1s
    inbound: sip:alice@local.test
routes:
  - name: out
    prefix: callee
    to: trunk:provider
`, kamPort, filepath.Join(dir, "trunk.pass"))), 0o644)
	s := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--admin-listen", adminAddr)

	type trunkState struct {
		Name, State, Contact string
		Registered           bool
		Since                time.Time
		LastError            string `json:"last_error"`
		Failures             int
	}
	trunkNow := func() trunkState {
		t.Helper()
		var v struct{ Trunks []trunkState }
		if err := json.Unmarshal([]byte(httpGet(t, "http://"+adminAddr+"/api/v1/trunks")), &v); err != nil || len(v.Trunks) != 1 {
			t.Fatalf("trunks: %v %+v", err, v)
		}
		return v.Trunks[0]
	}
	metric := func(name string) float64 { return metricValue(t, adminAddr, name) }
	waitUntil := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("%s: not within %v; trunk %+v", what, d, trunkNow())
	}

	// Registered with digest; refreshed before the 4 s run out.
	waitUntil("registered", 5*time.Second, func() bool { return trunkNow().State == "registered" })
	first := trunkNow()
	if !first.Registered || !strings.HasPrefix(first.Contact, "sip:acme@127.0.0.1:") {
		t.Fatalf("trunk %+v", first)
	}
	regs := `sipedge_trunk_registrations_total{trunk="provider"}`
	waitUntil("refreshed", 5*time.Second, func() bool { return metric(regs) >= 2 })
	if st := trunkNow(); st.State != "registered" || !st.Since.Equal(first.Since) {
		t.Fatalf("a refresh changed the state: %+v, first %+v", st, first)
	}

	// Local phones: alice registered to sipedge (the inbound rule's
	// user); at Kamailio, callee (for calls out) and a caller for calls in.
	os.WriteFile(filepath.Join(dir, "alice.csv"), []byte("SEQUENTIAL\nalice;x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "callee.csv"), []byte("SEQUENTIAL\ncallee;x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
	uas := func(port string) {
		c := exec.Command(sipp, "-sf", filepath.Join(td, "call-uas.xml"), "-t", "u1", "-i", "127.0.0.1",
			"-p", port, "-m", "1", "-nostdin", "-timeout", "30s")
		c.Dir = dir
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	register := func(user, domain, port, registrar string) {
		t.Helper()
		reg := strings.ReplaceAll(readText(t, filepath.Join(td, "register.xml")), "@[remote_ip]>", "@"+domain+">")
		f := filepath.Join(dir, "register-"+user+".xml")
		os.WriteFile(f, []byte(reg), 0o644)
		c := exec.Command(sipp, "-sf", f, "-t", "u1", "-i", "127.0.0.1", "-inf", filepath.Join(dir, user+".csv"),
			"-key", "cport", port, "-m", "1", "-nostdin", "-timeout", "10s", registrar)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("register %s: %v\n%s", user, err, tail(out))
		}
	}
	call := func(name, service, to, proxy string) {
		t.Helper()
		uac := strings.ReplaceAll(readText(t, filepath.Join(td, "call-uac.xml")), "sip:[service]@[remote_ip]:[remote_port]", to)
		f := filepath.Join(dir, name+".xml")
		os.WriteFile(f, []byte(uac), 0o644)
		c := exec.Command(sipp, "-sf", f, "-t", "u1", "-i", "127.0.0.1", "-inf", filepath.Join(dir, "caller.csv"),
			"-s", service, "-m", "1", "-d", "100", "-nostdin", "-timeout", "15s", "-trace_stat", "-stf", filepath.Join(dir, name+".csv"), proxy)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, tail(out))
		}
		expectCalls(t, name, filepath.Join(dir, name+".csv"), 1)
	}
	kamAddr := "127.0.0.1:" + strconv.Itoa(kamPort)
	alicePort, calleePort := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	uas(alicePort)
	uas(calleePort)
	time.Sleep(300 * time.Millisecond)
	register("alice", "local.test", alicePort, s.addr())
	register("callee", "127.0.0.1", calleePort, kamAddr)

	// In: the provider sends the call for acme to sipedge's contact; the
	// inbound rule hands it to alice.
	call("inbound", "acme", "sip:acme@"+kamAddr, kamAddr)
	if metric(`sipedge_trunk_inbound_total{trunk="provider"}`) < 1 {
		t.Fatal("the inbound call was not routed by the trunk")
	}
	// Out: the route sends callee… to the trunk; Kamailio's 407 is
	// answered by sipedge.
	call("outbound", "callee", "sip:callee@local.test", s.addr())
	if metric("sipedge_proxy_auth_retries_total") < 1 || metric(`sipedge_trunk_challenges_total{trunk="provider"}`) < 3 {
		t.Fatalf("the outbound call was not authenticated by sipedge: retries %v, challenges %v",
			metric("sipedge_proxy_auth_retries_total"), metric(`sipedge_trunk_challenges_total{trunk="provider"}`))
	}

	// The provider answers 503 for a while: the trunk fails (its binding
	// runs out), keeps retrying, and registers again afterwards.
	kamSet(1)
	waitUntil("503 seen", 6*time.Second, func() bool { return strings.Contains(trunkNow().LastError, "503") })
	waitUntil("failed", 6*time.Second, func() bool { return trunkNow().State == "failed" })
	failed := trunkNow()
	fails := metric(`sipedge_trunk_failures_total{trunk="provider"}`)
	waitUntil("retrying", 4*time.Second, func() bool { return metric(`sipedge_trunk_failures_total{trunk="provider"}`) > fails })
	kamSet(0)
	waitUntil("registered again", 4*time.Second, func() bool { return trunkNow().State == "registered" })
	if st := trunkNow(); !st.Since.After(failed.Since) || st.Failures != 0 {
		t.Fatalf("after the 503s: %+v (failed at %v)", st, failed.Since)
	}
	if os.Getenv("TRUNK_LOG") != "" {
		t.Log(s.logs())
	}
	// State changes are logged once each, not per retry.
	if n := strings.Count(s.logs(), `msg="trunk registration failed"`); n < 1 || n > 2 {
		t.Fatalf("%d failure lines for one outage:\n%s", n, s.logs())
	}
	if n := strings.Count(s.logs(), `msg="trunk registered"`); n != 2 {
		t.Fatalf("%d registered lines, want 2 (start, after the outage):\n%s", n, s.logs())
	}
}

// metricValue reads one sample (name with its labels, as /metrics
// writes it) from the operations server at adminAddr; 0 when absent.
func metricValue(t *testing.T, adminAddr, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(httpGet(t, "http://"+adminAddr+"/metrics"))
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return f
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}
