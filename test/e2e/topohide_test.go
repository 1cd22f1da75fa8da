package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTopologyHidingSipp: a sipp caller inside (127.0.0.1) calls through
// sipedge a sipp callee at a peer (127.0.0.2, in topology_hiding.peers
// by its route's name). Every call completes (INVITE/180/200/ACK, then a
// BYE from the caller in one run and from the peer in the other, each
// routed back through the hidden Contact and Call-ID), and no message the
// peer receives names the caller: one Via (sipedge's), no caller address
// in Contact or Record-Route, no Call-ID with the caller's host.
func TestTopologyHidingSipp(t *testing.T) {
	sipp := needSipp(t)
	td := mustAbs(t, "testdata")
	for _, tc := range []struct{ name, uac, uas string }{
		{"caller-bye", "call-uac.xml", "call-uas.xml"},
		{"peer-bye", "topo-uac.xml", "topo-uas.xml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			peerPort := strconv.Itoa(freePort(t))
			callerPort := strconv.Itoa(freePort(t))
			cfg := filepath.Join(dir, "sipedge.yaml")
			os.WriteFile(cfg, []byte("dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: "+filepath.Join(dir, "data")+
				"\nmedia:\n  relay: never\nroutes:\n  - name: carrier\n    prefix: \"9\"\n    to: sip:127.0.0.2:"+peerPort+
				"\ntopology_hiding:\n  peers: [carrier]\n"), 0o644)
			s := start(t, "--config", cfg)
			if _, err := os.Stat(filepath.Join(dir, "data", "topohide.key")); err != nil {
				t.Fatalf("key not made at start: %v", err)
			}
			os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
			const calls = "3"

			uas := exec.Command(sipp, "-sf", filepath.Join(td, tc.uas), "-t", "u1", "-i", "127.0.0.2",
				"-p", peerPort, "-m", calls, "-nostdin", "-timeout", "40s", "-trace_msg",
				"-trace_stat", "-stf", filepath.Join(dir, "uas.csv"))
			uas.Dir = dir
			uasOut, _ := os.Create(filepath.Join(dir, "uas.log"))
			uas.Stdout, uas.Stderr = uasOut, uasOut
			if err := uas.Start(); err != nil {
				t.Fatal(err)
			}
			defer uas.Process.Kill()
			time.Sleep(300 * time.Millisecond) // let the UAS bind its port

			uac := exec.Command(sipp, "-sf", filepath.Join(td, tc.uac), "-t", "u1", "-i", "127.0.0.1", "-p", callerPort,
				"-inf", filepath.Join(dir, "caller.csv"), "-s", "9000", "-m", calls, "-r", "5", "-d", "100",
				"-nostdin", "-timeout", "30s", "-trace_stat", "-stf", filepath.Join(dir, "uac.csv"), s.addr())
			uac.Dir = dir
			if out, err := uac.CombinedOutput(); err != nil {
				log, _ := os.ReadFile(filepath.Join(dir, "uas.log"))
				t.Fatalf("calls: %v\n%s\nUAS:\n%s", err, tail(out), tail(log))
			}
			expectCalls(t, "UAC", filepath.Join(dir, "uac.csv"), 3)
			done := make(chan error, 1)
			go func() { done <- uas.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					log, _ := os.ReadFile(filepath.Join(dir, "uas.log"))
					t.Fatalf("UAS: %v\n%s", err, tail(log))
				}
			case <-time.After(30 * time.Second):
				t.Fatal("UAS did not finish its calls")
			}
			expectCalls(t, "UAS", filepath.Join(dir, "uas.csv"), 3)

			traces, _ := filepath.Glob(filepath.Join(dir, "*_messages.log"))
			if len(traces) != 1 {
				t.Fatalf("sipp message traces: %v", traces)
			}
			b, err := os.ReadFile(traces[0])
			if err != nil {
				t.Fatal(err)
			}
			msgs := received(string(b))
			if len(msgs) < 9 { // per call: INVITE, ACK, BYE or its 200
				t.Fatalf("peer received %d messages:\n%s", len(msgs), b)
			}
			caller := "127.0.0.1:" + callerPort
			for _, m := range msgs {
				// A response the peer receives answers its own request:
				// its Vias are the peer's.
				resp := strings.HasPrefix(m, "SIP/2.0 ")
				vias := 0
				for _, line := range headerLines(m) {
					name, value, _ := strings.Cut(line, ":")
					name = strings.ToLower(strings.TrimSpace(name))
					switch name {
					case "via", "v":
						vias += 1 + strings.Count(value, ",")
						if !resp && !strings.Contains(value, s.addr()) {
							t.Errorf("peer got a Via that is not sipedge's: %q", line)
						}
					case "call-id", "i":
						if strings.Contains(value, "@") {
							t.Errorf("peer got the caller's Call-ID: %q", line)
						}
					}
					if strings.Contains(line, caller) {
						t.Errorf("peer got the caller's address in %q", line)
					}
				}
				if !resp && vias != 1 {
					t.Errorf("peer got a request with %d Vias:\n%s", vias, m)
				}
			}
		})
	}
}

// received returns the messages of a sipp -trace_msg log that sipp
// received.
func received(log string) []string {
	var out []string
	for _, blk := range strings.Split(log, "\n----------------------------------------------- ") {
		_, rest, ok := strings.Cut(blk, "message received")
		if !ok {
			continue
		}
		if i := strings.Index(rest, "\n\n"); i >= 0 {
			rest = rest[i+2:]
		}
		out = append(out, strings.TrimSpace(rest))
	}
	return out
}

// headerLines are the header lines of a message (start line and body
// left out).
func headerLines(m string) []string {
	m = strings.ReplaceAll(m, "\r\n", "\n")
	head, _, _ := strings.Cut(m, "\n\n")
	lines := strings.Split(head, "\n")
	return lines[1:]
}
