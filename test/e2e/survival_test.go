package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestSurvivalReload: survival turned on by a reload probes an upstream
// that answers nothing (a closed loopback port) and switches to survival
// mode within its thresholds; turned off by the next reload, sipedge is in
// normal mode at once. The API says so each time.
func TestSurvivalReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sipedge.yaml")
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	base := "dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: " + filepath.Join(dir, "data") + "\n"
	if err := os.WriteFile(file, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file, "--admin-listen", adminAddr)
	state := func() (st struct {
		Enabled bool
		Mode    string
		Reason  string
	}) {
		t.Helper()
		resp, err := http.Get("http://" + adminAddr + "/api/v1/survival")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return st
	}
	if st := state(); st.Enabled || st.Mode != "normal" {
		t.Fatalf("survival not configured: %+v", st)
	}
	s.reload(t, file, base+"survival:\n  enabled: true\n  upstream: sip:127.0.0.1:9\n  upstream_domains: [upstream.invalid]\n"+
		"  probe: {interval: 200ms, timeout: 150ms, down_after: 3, up_after: 2}\n", "configuration reloaded")
	deadline := time.Now().Add(3 * time.Second)
	for st := state(); st.Mode != "survival"; st = state() {
		if time.Now().After(deadline) {
			t.Fatalf("silent upstream: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.reload(t, file, base, "configuration reloaded")
	if st := state(); st.Enabled || st.Mode != "normal" || st.Reason != "survival turned off" {
		t.Fatalf("survival turned off: %+v", st)
	}
}
