package resolve

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Test helpers: a real DNS server (dnsmasq) on 127.0.0.1, a silent UDP
// socket that never answers, and a UDP relay that delays packets. All
// traffic stays on the loopback interface.

// dnsUnavailable skips the test when dnsmasq cannot be used, unless CI is
// set, where a missing server must fail the run instead of hiding tests.
func dnsUnavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this fails instead of skipping; install dnsmasq-base)", msg)
	}
	t.Skipf("%s; install it with: apt-get install -y dnsmasq-base", msg)
}

func dnsmasqPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("dnsmasq"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/dnsmasq", "/sbin/dnsmasq"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	dnsUnavailable(t, "dnsmasq not found")
	return ""
}

// lockedBuffer collects dnsmasq's log output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type dnsmasq struct {
	addr string // 127.0.0.1:port
	log  *lockedBuffer
}

// readyName is queried to wait for dnsmasq to start; it is left out of
// query counts.
const readyName = "ready-probe.test."

// startDNSMasq runs dnsmasq in the foreground on a free port of 127.0.0.1
// with only the records given (no upstream, no /etc/hosts), and stops it
// when the test ends. Names under .test that it does not know get NXDOMAIN
// (--local=/test/) rather than REFUSED.
func startDNSMasq(t *testing.T, records ...string) *dnsmasq {
	t.Helper()
	path := dnsmasqPath(t)
	var lastLog string
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		args := append([]string{
			"--no-daemon",
			"--port=" + strconv.Itoa(port),
			"--listen-address=127.0.0.1",
			"--bind-interfaces",
			"--no-resolv",
			"--no-hosts",
			"--conf-file=/dev/null",
			"--log-facility=-",
			"--log-queries",
			"--local=/test/",
		}, records...)
		cmd := exec.Command(path, args...)
		buf := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = buf, buf
		if err := cmd.Start(); err != nil {
			dnsUnavailable(t, "dnsmasq does not start: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(2 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		d := &dnsmasq{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), log: buf}
		if waitReady(d.addr, exited) {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("dnsmasq log:\n%s", buf.String())
				}
			})
			return d
		}
		stop()
		lastLog = buf.String()
	}
	dnsUnavailable(t, "dnsmasq did not come up; log:\n%s", lastLog)
	return nil
}

// waitReady polls the server until it answers or exits.
func waitReady(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(5 * time.Second)
	c := dns.Client{Timeout: 100 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(readyName, dns.TypeA)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if _, _, err := c.Exchange(m, addr); err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// queries counts the queries dnsmasq logged, readiness probes excluded.
func (d *dnsmasq) queries() int {
	n := 0
	for _, line := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(line, "query[") && !strings.Contains(line, strings.TrimSuffix(readyName, ".")) {
			n++
		}
	}
	return n
}

// waitQueries waits (briefly: dnsmasq logs asynchronously) until dnsmasq
// has logged want queries, and reports the count.
func (d *dnsmasq) waitQueries(want int) int {
	deadline := time.Now().Add(time.Second)
	for {
		n := d.queries()
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort finds a port free for both UDP and TCP on 127.0.0.1 (dnsmasq
// serves both; TCP is used after truncation).
func freePort() (int, error) {
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port")
}

// silentServer is a UDP socket that reads queries and never answers: a DNS
// server that is down without the port being closed.
func silentServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// delayRelay forwards UDP queries to upstream after a delay and relays the
// answers back, counting the queries it saw. It makes in-flight windows long
// enough to observe coalescing.
type delayRelay struct {
	addr    string
	packets atomic.Int64
}

func startDelayRelay(t *testing.T, upstream string, delay time.Duration) *delayRelay {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &delayRelay{addr: pc.LocalAddr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			r.packets.Add(1)
			q := append([]byte(nil), buf[:n]...)
			wg.Go(func() {
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return
				}
				up, err := net.Dial("udp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				up.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := up.Write(q); err != nil {
					return
				}
				ans := make([]byte, 4096)
				m, err := up.Read(ans)
				if err != nil {
					return
				}
				pc.WriteTo(ans[:m], from)
			})
		}
	})
	return r
}

// fakeClock is a settable Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
