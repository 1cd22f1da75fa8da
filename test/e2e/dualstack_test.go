package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestIPv4ToIPv6Media: sipedge listens on 127.0.0.1 and ::1; a caller on
// IPv4 (sipp with RTP) calls a callee on IPv6 (sipp with RTP, reached by a
// route to [::1]). The relay bridges the two families: each side's SDP
// names sipedge's address in that side's family, and RTP flows both ways
// through the relay (the call log's legs count it).
func TestIPv4ToIPv6Media(t *testing.T) {
	t.Parallel()
	if l, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback:", err)
	} else {
		l.Close()
	}
	sipp := needSipp(t)
	dir := t.TempDir()
	td, _ := filepath.Abs("testdata")
	if err := os.WriteFile(filepath.Join(dir, "silence.ulaw"), bytes.Repeat([]byte{0xff}, 16000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port, calleePort := freePort(t), freePort(t)
	logFile := filepath.Join(dir, "calls.jsonl")
	cfg := fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\ncall_log:\n  file: %s\nmedia:\n  ports: 47000-47999\n"+
		"routes:\n  - name: v6\n    prefix: \"1\"\n    to: \"sip:[::1]:%d\"\n", logFile, calleePort)
	cfgFile := filepath.Join(dir, "sipedge.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--listen", "udp:127.0.0.1:"+strconv.Itoa(port), "--listen", "udp:[::1]:"+strconv.Itoa(port),
		"--config", cfgFile, "--data-dir", filepath.Join(dir, "data"))
	s.port = port

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args ...string) (*exec.Cmd, *bytes.Buffer) {
		var out bytes.Buffer
		c := exec.CommandContext(ctx, sipp, args...)
		c.Dir, c.Stdout, c.Stderr = dir, &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); c.Wait() })
		return c, &out
	}
	callee, calleeOut := run("-sf", filepath.Join(td, "rtp-uas.xml"), "-t", "u1", "-i", "::1", "-p", strconv.Itoa(calleePort),
		"-mi", "::1", "-mp", strconv.Itoa(freePort(t)), "-m", "1", "-nostdin", "-timeout", "50s")
	time.Sleep(300 * time.Millisecond)
	caller, callerOut := run("-sf", filepath.Join(td, "rtp-uac.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t)),
		"-mp", strconv.Itoa(freePort(t)), "-inf", filepath.Join(dir, "caller.csv"), "-s", "100", "-m", "1", "-d", "4000",
		"-nostdin", "-timeout", "50s", "127.0.0.1:"+strconv.Itoa(port))
	if err := caller.Wait(); err != nil {
		t.Fatalf("caller (IPv4): %v\n%s", err, callerOut)
	}
	if err := callee.Wait(); err != nil {
		t.Fatalf("callee (IPv6): %v\n%s", err, calleeOut)
	}

	type leg struct {
		Side    string `json:"side"`
		SDP     string `json:"sdp"`
		Relay   string `json:"relay"`
		Source  string `json:"source"`
		Packets uint64 `json:"packets"`
		Fwd     uint64 `json:"forwarded"`
	}
	var rec struct {
		Media struct {
			Audio   string `json:"audio"`
			Streams []struct {
				Legs []leg `json:"legs"`
			} `json:"streams"`
		} `json:"media"`
	}
	var line []byte
	for deadline := time.Now().Add(10 * time.Second); len(line) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if f, err := os.Open(logFile); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line = append(line[:0], sc.Bytes()...)
			}
			f.Close()
		}
	}
	if err := json.Unmarshal(line, &rec); err != nil || len(rec.Media.Streams) != 1 || len(rec.Media.Streams[0].Legs) != 2 {
		t.Fatalf("call log %q: %v", line, err)
	}
	family := func(ap string) string {
		a, err := netip.ParseAddrPort(ap)
		if err != nil {
			return "invalid " + ap
		}
		if a.Addr().Is4() {
			return "4"
		}
		return "6"
	}
	caller4, callee6 := rec.Media.Streams[0].Legs[0], rec.Media.Streams[0].Legs[1]
	if rec.Media.Audio != "ok" {
		t.Errorf("audio %q, want ok", rec.Media.Audio)
	}
	for _, c := range []struct {
		l    leg
		side string
		fam  string
	}{{caller4, "caller", "4"}, {callee6, "callee", "6"}} {
		if c.l.Side != c.side || family(c.l.SDP) != c.fam || family(c.l.Relay) != c.fam || family(c.l.Source) != c.fam ||
			c.l.Packets < 100 || c.l.Fwd != c.l.Packets {
			t.Errorf("%s leg %+v: want SDP, relay and source in IPv%s and >= 100 packets all forwarded", c.side, c.l, c.fam)
		}
	}
	t.Logf("caller (IPv4) %+v\ncallee (IPv6) %+v", caller4, callee6)
}
