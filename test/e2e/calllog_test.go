package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The call log of the running binary: an answered call hung up by the
// caller and a refused one, one JSON line each; after the file is moved
// away and SIGHUP, the next call goes to a new file (logrotate).
func TestCallLog(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "calls.jsonl")
	cfgFile := filepath.Join(dir, "sipedge.yaml")
	caller, callee := newSIPPeer(t), newSIPPeer(t)
	cfg := fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\ncall_log:\n  file: %s\nroutes:\n  - name: pbx\n    prefix: \"1\"\n    to: sip:%s\n",
		logFile, callee.addr())
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	s := start(t, "--config", cfgFile, "--data-dir", filepath.Join(dir, "data"), "--admin-listen", adminAddr)

	c := invite(t, s, caller, callee, "sip:100@example.com", "log-1")
	time.Sleep(100 * time.Millisecond)
	c.hangUp(t, s, caller, callee)

	// A busy callee.
	caller.send(s.addr(), fmt.Sprintf("INVITE sip:101@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKlog2;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:caller@example.com>;tag=caller\r\nTo: <sip:101@example.com>\r\nCall-ID: log-2\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:caller@%s>\r\nContent-Length: 0\r\n\r\n", caller.addr(), caller.addr()))
	req, from := callee.expect("INVITE ", "log-2")
	callee.send(from, reply(req, 486, callee.addr()))
	caller.expect("SIP/2.0 486", "log-2")

	recs := readCallLog(t, logFile, 2)
	byID := map[string]map[string]any{}
	for _, r := range recs {
		byID[r["call_id"].(string)] = r
	}
	if r := byID["log-1"]; r == nil || r["status"] != 200.0 || r["ended_by"] != "caller" || r["answer"] == nil || r["duration_seconds"].(float64) < 0.05 {
		t.Fatalf("answered call: %v", r)
	}
	if r := byID["log-2"]; r == nil || r["status"] != 486.0 || r["ended_by"] != "callee" || r["answer"] != nil {
		t.Fatalf("busy call: %v", r)
	}

	// The operations API lists them, the latest first.
	resp, err := http.Get("http://" + adminAddr + "/api/v1/calls")
	if err != nil {
		t.Fatal(err)
	}
	var calls struct{ Active, Recent []map[string]any }
	err = json.NewDecoder(resp.Body).Decode(&calls)
	resp.Body.Close()
	if err != nil || len(calls.Active) != 0 || len(calls.Recent) != 2 || calls.Recent[0]["call_id"] != "log-2" || calls.Recent[1]["call_id"] != "log-1" {
		t.Fatalf("/api/v1/calls: %v %+v", err, calls)
	}

	// logrotate: move, SIGHUP, the next call lands in a new file.
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	s.reload(t, cfgFile, cfg, "configuration reloaded")
	c = invite(t, s, caller, callee, "sip:102@example.com", "log-3")
	c.hangUp(t, s, caller, callee)
	recs = readCallLog(t, logFile, 1)
	if recs[0]["call_id"] != "log-3" {
		t.Fatalf("after the reopen: %v", recs)
	}
}

// readCallLog waits for n lines in file and parses them.
func readCallLog(t *testing.T, file string, n int) []map[string]any {
	t.Helper()
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(file)
		lines = nil
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines) >= n {
			break
		}
	}
	if len(lines) != n {
		t.Fatalf("%s: %d lines, want %d:\n%s", file, len(lines), n, strings.Join(lines, "\n"))
	}
	var out []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}
