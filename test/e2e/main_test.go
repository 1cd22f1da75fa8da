// Package e2e runs the sipedge binary as a black box against real peers
// (raw sockets speaking SIP, sipp) on loopback.
package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sipedge-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sipedge")
	out, err := exec.Command("go", "build", "-o", binary, "sipedge/cmd/sipedge").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running sipedge process.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	port   int
	mu     sync.Mutex
	log    bytes.Buffer
	exited chan error
}

// freePort finds a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// start runs sipedge with args plus --listen on a free loopback port (unless
// args has --listen) and waits until it logs that it started.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	return startTry(t, 0, args...)
}

// startTry is start's attempt number try: the port freePort picked is free
// when picked, but a test running beside this one may bind it before
// sipedge does; sipedge then refuses to start (address already in use) and
// is started again on another port, up to three times.
func startTry(t *testing.T, try int, args ...string) *server {
	t.Helper()
	orig := append([]string(nil), args...)
	s := &server{t: t, exited: make(chan error, 1)}
	hasListen := false
	for _, a := range args {
		if a == "--listen" {
			hasListen = true
		}
	}
	if !hasListen {
		s.port = freePort(t)
		args = append(args, "--listen", "127.0.0.1:"+strconv.Itoa(s.port))
	}
	hasData := false
	for _, a := range args {
		hasData = hasData || a == "--data-dir" || a == "--config"
	}
	if !hasData {
		// DNS goes to a closed loopback port: test messages name
		// example.com hosts, which must never be looked up outside.
		cfg := filepath.Join(t.TempDir(), "sipedge.yaml")
		os.WriteFile(cfg, []byte("dns:\n  servers: [\"127.0.0.1:9\"]\n"), 0o644)
		args = append(args, "--data-dir", t.TempDir(), "--config", cfg)
	}
	hasAdmin := false
	for _, a := range args {
		hasAdmin = hasAdmin || a == "--admin-listen"
	}
	if !hasAdmin {
		// Tests run many servers; the operations server's default port
		// is shared, so it is off unless a test asks for it.
		args = append(args, "--admin-listen", "off")
	}
	s.cmd = exec.Command(binary, args...)
	pr, pw := io.Pipe()
	s.cmd.Stderr = pw
	s.cmd.Stdout = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	read := make(chan struct{}) // closed when the output is all read
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if strings.Contains(line, "sipedge started") {
				once.Do(func() { close(started) })
			}
		}
	}()
	go func() { err := s.cmd.Wait(); pw.Close(); s.exited <- err }()
	select {
	case <-started:
	case err := <-s.exited:
		select { // its last lines, the reason among them
		case <-read:
		case <-time.After(time.Second):
		}
		if !hasListen && try < 3 && strings.Contains(s.logs(), "address already in use") {
			return startTry(t, try+1, orig...)
		}
		t.Fatalf("sipedge exited at start: %v\n%s", err, s.logs())
	case <-time.After(10 * time.Second):
		t.Fatalf("sipedge did not start:\n%s", s.logs())
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.stop(syscall.SIGTERM)
		}
		if t.Failed() {
			t.Logf("sipedge log:\n%s", s.logs())
		}
	})
	return s
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop signals the process and checks it exits cleanly within 5 s. The
// first signal starts a graceful drain, which waits for calls still being
// set up (a test may leave an INVITE unanswered); when the process is
// still there after 2 s, a second signal stops it at once.
func (s *server) stop(sig syscall.Signal) {
	s.t.Helper()
	_ = s.cmd.Process.Signal(sig)
	select {
	case err := <-s.exited:
		if err != nil {
			s.t.Errorf("sipedge exited with %v after %v", err, sig)
		}
		return
	case <-time.After(2 * time.Second):
		_ = s.cmd.Process.Signal(sig)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			s.t.Errorf("sipedge exited with %v after a second %v", err, sig)
		}
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		s.t.Errorf("sipedge did not stop within 5 s of %v", sig)
	}
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// options is a valid OPTIONS for sipedge itself.
func options(s *server, via string, branch string) []byte {
	return []byte(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/%s;branch=z9hG4bK%s;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:%s>\r\n"+
		"Call-ID: %s@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", s.addr(), via, branch, s.addr(), branch))
}

// response is a parsed response: status code and headers by lower-case name.
type response struct {
	code    int
	raw     string
	headers map[string][]string
}

func parseResponse(b []byte) (*response, error) {
	s := string(b)
	if !strings.HasPrefix(s, "SIP/2.0 ") || len(s) < 12 {
		return nil, fmt.Errorf("not a response: %q", s)
	}
	code, err := strconv.Atoi(s[8:11])
	if err != nil {
		return nil, err
	}
	r := &response{code: code, raw: s, headers: map[string][]string{}}
	head := s
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		head = s[:i]
	}
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if i := strings.Index(line, ":"); i > 0 {
			name := strings.ToLower(strings.TrimSpace(line[:i]))
			r.headers[name] = append(r.headers[name], strings.TrimSpace(line[i+1:]))
		}
	}
	return r, nil
}

func (r *response) get(name string) string {
	if v := r.headers[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// hasLog waits up to 5 s for substr in the server's log: lines reach the
// test through a pipe, after whatever the server sent on the network.
func (s *server) hasLog(substr string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(s.logs(), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
