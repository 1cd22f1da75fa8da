package e2e

import (
	"bufio"
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

// Tests of a cluster: three sipedge instances on 127.0.0.2–4 sharing a
// real Redis server (Debian's redis-server, started by the test).

func needRedis(t *testing.T) string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not installed (apt-get install redis-server)")
		}
		t.Skip("redis-server not installed (apt-get install redis-server)")
	}
	return p
}

// redisServer is a redis-server process with persistence on (every write
// fsynced before its reply: what a cluster that promises "no acknowledged
// binding lost" needs).
type redisServer struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	args []string // beyond the defaults (a replica's replicaof)
	conf string   // a Sentinel's configuration file (then bin is redis-sentinel)
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(t *testing.T, args ...string) *redisServer {
	r := &redisServer{t: t, bin: needRedis(t), dir: t.TempDir(), port: freePort(t), args: args}
	r.start()
	t.Cleanup(func() { r.kill() })
	return r
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) start() {
	r.t.Helper()
	if r.conf != "" {
		r.cmd = exec.Command(r.bin, r.conf)
	} else {
		r.cmd = exec.Command(r.bin, append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no", "--logfile", ""}, r.args...)...)
	}
	out, _ := r.cmd.StdoutPipe()
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	ready := make(chan struct{})
	r.done = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if l := sc.Text(); strings.Contains(l, "Ready to accept connections") || strings.Contains(l, "Sentinel ID is") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() { r.cmd.Wait(); close(r.done) }()
	select {
	case <-ready:
	case <-r.done:
		r.t.Fatal("redis-server exited at start")
	case <-time.After(10 * time.Second):
		r.t.Fatal("redis-server did not start")
	}
}

// kill stops Redis at once (SIGKILL: no shutdown save).
func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
		r.cmd = nil
	}
}

// redisAt is the store.redis block of a cluster on one Redis server.
func redisAt(addr string) string { return "    addrs: [" + addr + "]\n" }

// startNode starts one instance of the cluster on ip:port; redis is the
// store.redis block's contents (redisAt), extra more configuration (media
// is not relayed unless extra has a media block).
func startNode(t *testing.T, ip string, port int, redis, extra string) *server {
	t.Helper()
	listen := ip + ":" + strconv.Itoa(port)
	cfg := filepath.Join(t.TempDir(), "sipedge.yaml")
	if !strings.Contains(extra, "media:") {
		extra += "media:\n  relay: never\n"
	}
	os.WriteFile(cfg, []byte(`dns:
  servers: ["127.0.0.1:9"]
domains: [example.com]
trusted_networks: [127.0.0.5/32, 127.0.0.6/32, 127.0.0.7/32]
`+extra+`store:
  redis:
    prefix: "e2e:"
`+redis), 0o644)
	s := start(t, "--listen", listen, "--data-dir", t.TempDir(), "--config", cfg)
	s.port = port
	return s
}

// ua is a bare SIP endpoint on a UDP socket.
type ua struct {
	t    *testing.T
	c    *net.UDPConn
	addr string
}

func newUA(t *testing.T, ip string) *ua {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &ua{t: t, c: c, addr: c.LocalAddr().String()}
}

func (u *ua) send(to, msg string) {
	u.t.Helper()
	dst, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		u.t.Fatal(err)
	}
	if _, err := u.c.WriteToUDP([]byte(msg), dst); err != nil {
		u.t.Fatal(err)
	}
}

// recv returns the next message that is not a keep-alive or a 100, and
// where it came from; "" after d.
func (u *ua) recv(d time.Duration) (string, string) {
	buf := make([]byte, 65536)
	end := time.Now().Add(d)
	for {
		u.c.SetReadDeadline(end)
		n, src, err := u.c.ReadFromUDP(buf)
		if err != nil {
			return "", ""
		}
		m := string(buf[:n])
		if strings.TrimSpace(m) == "" || strings.HasPrefix(m, "SIP/2.0 100 ") {
			continue
		}
		return m, src.String()
	}
}

// expect waits for a message starting with first (a request line or
// "SIP/2.0 200").
func (u *ua) expect(first string, d time.Duration) (string, string) {
	u.t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		m, src := u.recv(time.Until(end))
		if m == "" {
			break
		}
		if strings.HasPrefix(m, first) {
			return m, src
		}
	}
	u.t.Fatalf("%s: no %q within %v", u.addr, first, d)
	return "", ""
}

// headers returns the values of a header, in order, one per line.
func headers(m, name string) []string {
	var out []string
	for _, line := range strings.Split(m, "\r\n")[1:] {
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func header(m, name string) string {
	if h := headers(m, name); len(h) > 0 {
		return h[0]
	}
	return ""
}

// sipReply answers a request with code, copying Via, From, To (with tag),
// Call-ID, CSeq and Record-Route.
func sipReply(req string, code int, reason, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range headers(req, "Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	for _, v := range headers(req, "Record-Route") {
		b.WriteString("Record-Route: " + v + "\r\n")
	}
	to := header(req, "To")
	if !strings.Contains(to, "tag=") && code > 100 {
		to += ";tag=callee1"
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n%sContent-Length: 0\r\n\r\n",
		header(req, "From"), to, header(req, "Call-ID"), header(req, "CSeq"), extra)
	return b.String()
}

// register registers user's contact (a private address that is not where
// the phone sends from: the phone is behind NAT) through node.
func (u *ua) register(node, user string, cseq int, expires int) string {
	u.t.Helper()
	u.send(node, fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.99.0.5:5060;branch=z9hG4bKr%s%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:%s@example.com>;tag=r1\r\nTo: <sip:%s@example.com>\r\nCall-ID: reg-%s\r\n"+
		"CSeq: %d REGISTER\r\nContact: <sip:%s@10.99.0.5:5060>\r\nExpires: %d\r\nContent-Length: 0\r\n\r\n",
		user, cseq, user, user, user, cseq, user, expires))
	m, _ := u.expect("SIP/2.0 ", 5*time.Second)
	return m
}

// invite sends an INVITE for user to node.
func (u *ua) invite(node, user, callID string) {
	u.send(node, fmt.Sprintf("INVITE sip:%s@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=c1\r\nTo: <sip:%s@example.com>\r\nCall-ID: %s\r\n"+
		"CSeq: 1 INVITE\r\nContact: <sip:caller@%s>\r\nContent-Length: 0\r\n\r\n", user, u.addr, callID, user, callID, u.addr))
}

// TestClusterThreeInstances: a phone behind NAT registers through A; a
// call sent to B reaches it through A's socket (the only one its NAT lets
// in); the BYE sent to C ends it; a flooder banned by A is dropped by B
// and C; exactly one instance (the owner) sends the phone keep-alives;
// after kill -9 of A the binding is still routable through B, and the
// phone's next REGISTER, through C, makes C its owner.
func TestClusterThreeInstances(t *testing.T) {
	rd := startRedis(t)
	port := freePort(t)
	extra := `nat:
  keepalive: crlf
  keepalive_interval: 1s
security:
  rate: {requests: 20, window: 2s, ban: 1m}
`
	a := startNode(t, "127.0.0.2", port, redisAt(rd.addr()), extra)
	b := startNode(t, "127.0.0.3", port, redisAt(rd.addr()), extra)
	c := startNode(t, "127.0.0.4", port, redisAt(rd.addr()), extra)
	// Each instance sees the other two within a heartbeat.
	time.Sleep(1500 * time.Millisecond)

	phone := newUA(t, "127.0.0.5")
	caller := newUA(t, "127.0.0.6")
	if m := phone.register(a.addr2(), "alice", 1, 600); !strings.HasPrefix(m, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER through A: %s", m)
	}
	// Routable on B within 50 ms of the 200.
	time.Sleep(50 * time.Millisecond)
	caller.invite(b.addr2(), "alice", "call-1")
	inv, src := phone.expect("INVITE ", 5*time.Second)
	if src != a.addr2() {
		t.Fatalf("the INVITE sent to B reached the phone from %s, want A's socket %s", src, a.addr2())
	}
	if rr := headers(inv, "Record-Route"); len(rr) != 2 {
		t.Fatalf("Record-Route at the phone: %q, want A's and B's", rr)
	}
	if r := header(inv, "Route"); r != "" {
		t.Fatalf("a Route reached the phone: %q", r)
	}
	ok := sipReply(inv, 200, "OK", "Contact: <sip:alice@10.99.0.5:5060>\r\n")
	phone.send(src, ok)
	resp, _ := caller.expect("SIP/2.0 200 ", 5*time.Second)
	// The caller's route set: the Record-Route in reverse (RFC 3261 §12.1.2).
	rr := headers(resp, "Record-Route")
	var route []string
	for _, h := range rr {
		for _, v := range strings.Split(h, ",") {
			route = append([]string{strings.TrimSpace(v)}, route...)
		}
	}
	if len(route) != 2 {
		t.Fatalf("route set %q", route)
	}
	target := strings.Trim(header(resp, "Contact"), "<>")
	to := header(resp, "To")
	routes := ""
	for _, r := range route {
		routes += "Route: " + r + "\r\n"
	}
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKack1;rport\r\nMax-Forwards: 70\r\n%s"+
		"From: <sip:caller@example.com>;tag=c1\r\nTo: %s\r\nCall-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", target, caller.addr, routes, to)
	caller.send(b.addr2(), ack)
	if m, _ := phone.expect("ACK ", 5*time.Second); m == "" {
		t.Fatal("no ACK")
	}
	// The BYE goes to the third instance, with the route set.
	bye := fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKbye1;rport\r\nMax-Forwards: 70\r\n%s"+
		"From: <sip:caller@example.com>;tag=c1\r\nTo: %s\r\nCall-ID: call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", target, caller.addr, routes, to)
	caller.send(c.addr2(), bye)
	m, src := phone.expect("BYE ", 5*time.Second)
	if src != a.addr2() {
		t.Fatalf("BYE reached the phone from %s, want A %s", src, a.addr2())
	}
	phone.send(src, sipReply(m, 200, "OK", ""))
	if m, _ := caller.expect("SIP/2.0 200 ", 5*time.Second); header(m, "CSeq") != "2 BYE" {
		t.Fatalf("200 to BYE: %s", m)
	}

	// Keep-alives: over 3 s, CRLFs come from A only.
	counts := map[string]int{}
	end := time.Now().Add(3 * time.Second)
	buf := make([]byte, 2048)
	for time.Now().Before(end) {
		phone.c.SetReadDeadline(end)
		n, from, err := phone.c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		if strings.TrimSpace(string(buf[:n])) == "" {
			counts[from.String()]++
		}
	}
	if len(counts) != 1 || counts[a.addr2()] < 2 {
		t.Fatalf("keep-alives by sender: %v, want only A (%s)", counts, a.addr2())
	}

	// A flooder is banned by A; B and C drop it within a second.
	flood := newUA(t, "127.0.0.9")
	optionsTo := func(node string, i int) string {
		return fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKf%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:scan@example.com>;tag=f\r\nTo: <sip:%s>\r\nCall-ID: flood-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			node, flood.addr, i, node, i)
	}
	flood.send(b.addr2(), optionsTo(b.addr2(), 0))
	if m, _ := flood.recv(2 * time.Second); m == "" {
		t.Fatal("B does not answer the future flooder before the ban")
	}
	for i := 1; i <= 40; i++ {
		flood.send(a.addr2(), optionsTo(a.addr2(), i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !a.hasLog("ban 127.0.0.9") {
		if time.Now().After(deadline) {
			t.Fatal("A did not ban the flooder")
		}
		time.Sleep(20 * time.Millisecond)
	}
	banned := time.Now()
	for _, n := range []*server{b, c} {
		for n.hasLog("ban 127.0.0.9 shared") == false {
			if time.Since(banned) > time.Second {
				t.Fatalf("%s did not take the ban within 1 s", n.addr2())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for drain := true; drain; {
		m, _ := flood.recv(300 * time.Millisecond)
		drain = m != ""
	}
	for i, n := range []*server{b, c} {
		flood.send(n.addr2(), optionsTo(n.addr2(), 100+i))
		if m, _ := flood.recv(time.Second); m != "" {
			t.Fatalf("%s answered the banned flooder: %s", n.addr2(), m)
		}
	}

	// kill -9 of A: once its heartbeat is gone, B reaches the phone
	// directly (here, where no NAT stands in between).
	a.cmd.Process.Kill()
	<-a.exited
	time.Sleep(3500 * time.Millisecond)
	caller.invite(b.addr2(), "alice", "call-2")
	inv, src = phone.expect("INVITE ", 5*time.Second)
	if src != b.addr2() {
		t.Fatalf("with A dead, the INVITE came from %s, want B %s", src, b.addr2())
	}
	phone.send(src, sipReply(inv, 486, "Busy Here", ""))
	caller.expect("SIP/2.0 486 ", 5*time.Second)
	// The phone registers again, through C: C owns the flow now.
	if m := phone.register(c.addr2(), "alice", 2, 600); !strings.HasPrefix(m, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER through C: %s", m)
	}
	time.Sleep(50 * time.Millisecond)
	caller.invite(b.addr2(), "alice", "call-3")
	inv, src = phone.expect("INVITE ", 5*time.Second)
	if src != c.addr2() {
		t.Fatalf("after the REGISTER through C, the INVITE came from %s, want C %s", src, c.addr2())
	}
	phone.send(src, sipReply(inv, 486, "Busy Here", ""))
	caller.expect("SIP/2.0 486 ", 5*time.Second)
}

// addr2 is the server's SIP address on its own IP.
func (s *server) addr2() string {
	for i, a := range s.cmd.Args {
		if a == "--listen" && i+1 < len(s.cmd.Args) {
			return s.cmd.Args[i+1]
		}
	}
	return s.addr()
}

// query asks node for user's bindings (a REGISTER without Contact).
func (u *ua) query(node, user string, n int) string {
	u.t.Helper()
	u.send(node, fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKq%s%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:%s@example.com>;tag=q\r\nTo: <sip:%s@example.com>\r\nCall-ID: q-%s-%d\r\n"+
		"CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n", u.addr, user, n, user, user, user, n))
	m, _ := u.expect("SIP/2.0 ", 3*time.Second)
	return m
}

// TestClusterRedisRestart: users register through A while Redis is killed
// (SIGKILL) and started again. While it is down, REGISTERs are answered
// 503 with Retry-After, never 200; a call set up before goes on to its
// BYE; afterwards every binding acknowledged with a 200 is known to B
// (which lost its subscription meanwhile) and to an instance started only
// now, which reads them from Redis.
func TestClusterRedisRestart(t *testing.T) {
	rd := startRedis(t)
	port := freePort(t)
	a := startNode(t, "127.0.0.2", port, redisAt(rd.addr()), "")
	b := startNode(t, "127.0.0.3", port, redisAt(rd.addr()), "")
	time.Sleep(1500 * time.Millisecond)

	// A call in progress across the restart.
	call := openCall(t, a, b, "call-r")

	reg := newUA(t, "127.0.0.7")
	const users = 300
	acked := map[int]bool{}
	got503, retryAfter := 0, ""
	for i := 0; i < users; i++ {
		if i == 100 {
			rd.kill()
		}
		if i == 150 {
			rd.start()
		}
		for attempt := 0; ; attempt++ {
			m := reg.registerUser(a.addr2(), i, attempt, 5*time.Second)
			if strings.HasPrefix(m, "SIP/2.0 200 ") {
				acked[i] = true
				break
			}
			if !strings.HasPrefix(m, "SIP/2.0 503 ") {
				t.Fatalf("u%d: %s", i, m)
			}
			got503++
			retryAfter = header(m, "Retry-After")
			if i < 150 {
				break // Redis is down: this one is not acknowledged
			}
			time.Sleep(200 * time.Millisecond) // Redis is back: the client retries
		}
	}
	if got503 == 0 || retryAfter == "" {
		t.Fatalf("no 503 with Retry-After while Redis was down (%d 503s)", got503)
	}
	t.Logf("%d of %d REGISTERs acknowledged, %d answered 503", len(acked), users, got503)

	// The call set up before the restart ends normally.
	call.bye(b)

	// Every acknowledged binding is on B, and in Redis (a new instance).
	time.Sleep(500 * time.Millisecond)
	c := startNode(t, "127.0.0.4", port, redisAt(rd.addr()), "")
	checkAcked(t, acked, "", b, c)
	if !b.hasLog("bindings reloaded from Redis") {
		t.Error("B did not reload the bindings after its subscription was lost")
	}
}

// startSentinel starts a Sentinel watching master (quorum 1, down after
// 1 s).
func startSentinel(t *testing.T, master *redisServer) *redisServer {
	p, err := exec.LookPath("redis-sentinel")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-sentinel not installed (apt-get install redis-sentinel)")
		}
		t.Skip("redis-sentinel not installed")
	}
	r := &redisServer{t: t, bin: p, dir: t.TempDir(), port: freePort(t)}
	r.conf = filepath.Join(r.dir, "sentinel.conf")
	os.WriteFile(r.conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile \"\"\n"+
		"sentinel monitor e2emaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds e2emaster 1000\n"+
		"sentinel failover-timeout e2emaster 10000\nsentinel parallel-syncs e2emaster 2\n", r.port, r.dir, master.port)), 0o644)
	r.start()
	t.Cleanup(func() { r.kill() })
	return r
}

// TestClusterSentinelFailover: two instances on a Redis master with two
// replicas and a Sentinel, wait_replicas: 1. Users register through A
// while the master is killed (SIGKILL) and the Sentinel promotes a
// replica. No REGISTER is answered 200 that the new master does not have:
// B and an instance started afterwards (which loads from the new master)
// know every acknowledged binding; a call set up before the failover ends
// with its BYE after it.
func TestClusterSentinelFailover(t *testing.T) {
	master := startRedis(t)
	rep1 := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	rep2 := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	_ = rep1
	_ = rep2
	sent := startSentinel(t, master)
	time.Sleep(2 * time.Second) // the Sentinel discovers the replicas
	rc := redisAt(sent.addr()) + "    sentinel: {master: e2emaster}\n    wait_replicas: 1\n"
	port := freePort(t)
	a := startNode(t, "127.0.0.2", port, rc, "")
	b := startNode(t, "127.0.0.3", port, rc, "")
	time.Sleep(1500 * time.Millisecond)

	call := openCall(t, a, b, "call-f")

	reg := newUA(t, "127.0.0.7")
	const users = 200
	acked := map[int]bool{}
	got503 := 0
	began := time.Now()
	for i := 0; i < users; i++ {
		if i == 50 {
			master.kill()
		}
		for attempt := 0; ; attempt++ {
			m := reg.registerUser(a.addr2(), i, attempt, 10*time.Second)
			if strings.HasPrefix(m, "SIP/2.0 200 ") {
				acked[i] = true
				break
			}
			if !strings.HasPrefix(m, "SIP/2.0 503 ") || header(m, "Retry-After") == "" {
				t.Fatalf("u%d: %s", i, m)
			}
			got503++
			if time.Since(began) > 60*time.Second {
				t.Fatalf("REGISTERs still refused 60 s after the master died (%d 503s)", got503)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Whether some REGISTERs get 503 depends on when they meet the
	// failover (a write may also wait for the new master and get its
	// 200 late); what matters is that none acknowledged is lost, below.
	t.Logf("%d REGISTERs acknowledged, %d answered 503 during the failover (%v)", len(acked), got503, time.Since(began).Round(time.Millisecond))
	if now := sentinelMaster(t, sent); now == master.addr() {
		t.Fatalf("the Sentinel still names the dead master %s", now)
	}

	call.bye(b)

	time.Sleep(500 * time.Millisecond)
	c := startNode(t, "127.0.0.4", port, rc, "")
	checkAcked(t, acked, " after the failover", b, c)
}

// sentinelMaster asks a Sentinel where its master is now.
func sentinelMaster(t *testing.T, s *redisServer) string {
	c, err := net.DialTimeout("tcp", s.addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "SENTINEL get-master-addr-by-name e2emaster\r\n")
	r := bufio.NewReader(c)
	var parts []string
	for len(parts) < 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line = strings.TrimSpace(line); line != "" && line[0] != '*' && line[0] != '$' {
			parts = append(parts, line)
		}
	}
	return parts[0] + ":" + parts[1]
}

// tcpPhone is a phone registered over TCP: its connection, which ends at
// the instance it registered through, is the only way to it.
type tcpPhone struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialTCPPhone(t *testing.T, ip, node string) *tcpPhone {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tcpPhone{t: t, c: c, r: bufio.NewReader(c)}
}

func (p *tcpPhone) send(msg string) {
	p.t.Helper()
	if _, err := p.c.Write([]byte(msg)); err != nil {
		p.t.Fatal(err)
	}
}

// next reads the next message that is not a 100 or a keep-alive.
func (p *tcpPhone) next(d time.Duration) string {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(d))
	for {
		var head strings.Builder
		for {
			line, err := p.r.ReadString('\n')
			if err != nil {
				p.t.Fatalf("phone over TCP: %v (read %q)", err, head.String())
			}
			if line == "\r\n" {
				if head.Len() == 0 {
					continue // a keep-alive CRLF
				}
				break
			}
			head.WriteString(line)
		}
		m := head.String() + "\r\n"
		if n, _ := strconv.Atoi(header(m, "Content-Length")); n > 0 {
			body := make([]byte, n)
			if _, err := io.ReadFull(p.r, body); err != nil {
				p.t.Fatal(err)
			}
			m += string(body)
		}
		if !strings.HasPrefix(m, "SIP/2.0 100 ") {
			return m
		}
	}
}

// TestClusterTCPFlow: a phone registered over TCP through A is reached,
// for a call sent to B, over its own connection: B hands the INVITE to A,
// which sends it on the connection the phone keeps open; the phone's 200
// goes back the same way.
func TestClusterTCPFlow(t *testing.T) {
	rd := startRedis(t)
	port := freePort(t)
	a := startNode(t, "127.0.0.2", port, redisAt(rd.addr()), "")
	b := startNode(t, "127.0.0.3", port, redisAt(rd.addr()), "")
	time.Sleep(1500 * time.Millisecond)

	phone := dialTCPPhone(t, "127.0.0.5", a.addr2())
	me := phone.c.LocalAddr().String()
	phone.send(fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bKtr1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:tcpuser@example.com>;tag=t1\r\nTo: <sip:tcpuser@example.com>\r\nCall-ID: tcp-reg\r\n"+
		"CSeq: 1 REGISTER\r\nContact: <sip:tcpuser@%s;transport=tcp>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", me, me))
	if m := phone.next(5 * time.Second); !strings.HasPrefix(m, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER over TCP through A: %s", m)
	}
	time.Sleep(50 * time.Millisecond)
	caller := newUA(t, "127.0.0.6")
	caller.invite(b.addr2(), "tcpuser", "call-tcp")
	inv := phone.next(5 * time.Second)
	if !strings.HasPrefix(inv, "INVITE ") {
		t.Fatalf("at the phone: %s", inv)
	}
	if v := headers(inv, "Via"); len(v) != 3 || !strings.Contains(v[0], "SIP/2.0/TCP") {
		t.Fatalf("Vias at the phone: %q (want A's over TCP, B's, the caller's)", v)
	}
	phone.send(sipReply(inv, 200, "OK", "Contact: <sip:tcpuser@"+me+";transport=tcp>\r\n"))
	if m, _ := caller.expect("SIP/2.0 200 ", 5*time.Second); header(m, "CSeq") != "1 INVITE" {
		t.Fatalf("200: %s", m)
	}
}

// TestClusterMediaSurvivesRestart: a call set up through B has its media
// relayed by B; kill -9 of A, and A's start again, change nothing for it:
// RTP keeps flowing both ways through B.
func TestClusterMediaSurvivesRestart(t *testing.T) {
	rd := startRedis(t)
	port := freePort(t)
	media := "media:\n  relay: always\n  ports: %s\n  kernel: off\n"
	startA := func() *server {
		return startNode(t, "127.0.0.2", port, redisAt(rd.addr()), fmt.Sprintf(media, "41000-41099"))
	}
	a := startA()
	b := startNode(t, "127.0.0.3", port, redisAt(rd.addr()), fmt.Sprintf(media, "41100-41199"))
	time.Sleep(1500 * time.Millisecond)

	phone := newUA(t, "127.0.0.5")
	caller := newUA(t, "127.0.0.6")
	rtpCallee := newUA(t, "127.0.0.5")
	rtpCaller := newUA(t, "127.0.0.6")
	// The callee registers through B, at its real address.
	phone.send(b.addr2(), fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKm1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:media@example.com>;tag=r\r\nTo: <sip:media@example.com>\r\nCall-ID: m-reg\r\n"+
		"CSeq: 1 REGISTER\r\nContact: <sip:media@%s>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", phone.addr, phone.addr))
	if m, _ := phone.expect("SIP/2.0 ", 5*time.Second); !strings.HasPrefix(m, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER: %s", m)
	}
	sdp := func(rtp *ua) string {
		_, p, _ := net.SplitHostPort(rtp.addr)
		return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 " + strings.Split(rtp.addr, ":")[0] + "\r\nt=0 0\r\nm=audio " + p + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	}
	offer := sdp(rtpCaller)
	caller.send(b.addr2(), fmt.Sprintf("INVITE sip:media@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKmi;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=c1\r\nTo: <sip:media@example.com>\r\nCall-ID: call-m\r\n"+
		"CSeq: 1 INVITE\r\nContact: <sip:caller@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		caller.addr, caller.addr, len(offer), offer))
	inv, src := phone.expect("INVITE ", 5*time.Second)
	toCallee := net.UDPAddrFromAddrPort(sdpAddr(t, inv)) // B's relay port for the callee's side
	answer := sdp(rtpCallee)
	phone.send(src, strings.Replace(sipReply(inv, 200, "OK", "Contact: <sip:media@"+phone.addr+">\r\nContent-Type: application/sdp\r\n"),
		"Content-Length: 0\r\n\r\n", fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(answer), answer), 1))
	ok, _ := caller.expect("SIP/2.0 200 ", 5*time.Second)
	toCaller := net.UDPAddrFromAddrPort(sdpAddr(t, ok))
	if toCallee.Port < 41100 || toCallee.Port > 41199 || toCaller.Port < 41100 || toCaller.Port > 41199 {
		t.Fatalf("media not relayed by B (ports 41100-41199): %v %v", toCallee, toCaller)
	}
	// flow sends RTP both ways and counts what arrives.
	flow := func(n int) (atCallee, atCaller int) {
		pkt := make([]byte, 172)
		pkt[0], pkt[1] = 0x80, 0
		for i := 0; i < n; i++ {
			pkt[3] = byte(i)
			rtpCaller.c.WriteToUDP(pkt, toCaller)
			rtpCallee.c.WriteToUDP(pkt, toCallee)
			time.Sleep(5 * time.Millisecond)
		}
		count := func(u *ua) (k int) {
			buf := make([]byte, 2048)
			for {
				u.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if _, _, err := u.c.ReadFromUDP(buf); err != nil {
					return k
				}
				k++
			}
		}
		return count(rtpCallee), count(rtpCaller)
	}
	if c1, c2 := flow(50); c1 < 40 || c2 < 40 {
		t.Fatalf("before: %d packets reached the callee, %d the caller", c1, c2)
	}
	a.cmd.Process.Kill()
	<-a.exited
	if c1, c2 := flow(50); c1 < 45 || c2 < 45 {
		t.Fatalf("with A killed: %d packets reached the callee, %d the caller", c1, c2)
	}
	startA()
	if c1, c2 := flow(50); c1 < 45 || c2 < 45 {
		t.Fatalf("with A started again: %d packets reached the callee, %d the caller", c1, c2)
	}
}

// cluCall is a call from a caller through b to a phone registered through
// a, answered and left open.
type cluCall struct {
	t             *testing.T
	phone, caller *ua
	callID, resp  string // resp: the caller's 200
}

func openCall(t *testing.T, a, b *server, callID string) *cluCall {
	t.Helper()
	c := &cluCall{t: t, phone: newUA(t, "127.0.0.5"), caller: newUA(t, "127.0.0.6"), callID: callID}
	if m := c.phone.register(a.addr2(), "callee", 1, 600); !strings.HasPrefix(m, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER: %s", m)
	}
	time.Sleep(50 * time.Millisecond)
	c.caller.invite(b.addr2(), "callee", callID)
	inv, src := c.phone.expect("INVITE ", 5*time.Second)
	c.phone.send(src, sipReply(inv, 200, "OK", "Contact: <sip:callee@10.99.0.5:5060>\r\n"))
	c.resp, _ = c.caller.expect("SIP/2.0 200 ", 5*time.Second)
	return c
}

// bye ends the call with a BYE sent to b along the route set, and waits
// for the phone's 200 at the caller.
func (c *cluCall) bye(b *server) {
	c.t.Helper()
	var route []string
	for _, h := range headers(c.resp, "Record-Route") {
		route = append([]string{h}, route...)
	}
	c.caller.send(b.addr2(), fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKbye-%s;rport\r\nMax-Forwards: 70\r\n"+
		"Route: %s\r\nFrom: <sip:caller@example.com>;tag=c1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		strings.Trim(header(c.resp, "Contact"), "<>"), c.caller.addr, c.callID, strings.Join(route, ", "), header(c.resp, "To"), c.callID))
	m, src := c.phone.expect("BYE ", 5*time.Second)
	c.phone.send(src, sipReply(m, 200, "OK", ""))
	c.caller.expect("SIP/2.0 200 ", 5*time.Second)
}

// registerUser registers user u<i> at this endpoint's own address through
// node (attempt numbers the retries: a new branch and CSeq each) and
// returns the answer.
func (u *ua) registerUser(node string, i, attempt int, wait time.Duration) string {
	u.t.Helper()
	u.send(node, fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKu%d-%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:u%d@example.com>;tag=u\r\nTo: <sip:u%d@example.com>\r\nCall-ID: u-%d\r\n"+
		"CSeq: %d REGISTER\r\nContact: <sip:u%d@%s>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
		u.addr, i, attempt, i, i, i, 1+attempt, i, u.addr))
	m, _ := u.expect("SIP/2.0 ", wait)
	return m
}

// checkAcked asserts that every user whose REGISTER was acknowledged has
// its binding on each of nodes.
func checkAcked(t *testing.T, acked map[int]bool, when string, nodes ...*server) {
	t.Helper()
	q := newUA(t, "127.0.0.7")
	for _, n := range nodes {
		for i := range acked {
			m := q.query(n.addr2(), "u"+strconv.Itoa(i), i)
			if !strings.HasPrefix(m, "SIP/2.0 200 ") || !strings.Contains(header(m, "Contact"), "sip:u"+strconv.Itoa(i)+"@") {
				t.Fatalf("acknowledged binding of u%d missing on %s%s: %s", i, n.addr2(), when, m)
			}
		}
	}
}

// TestClusterGatewayPassive: the gateway deployment with two instances. A
// phone registers with its provider through A (the passive registrar: the
// provider sees A's address and the phone's token in the Contact). A is
// killed with SIGKILL; the provider's call to that contact, sent to B
// (the address a floating IP or DNS would now lead to), reaches the phone
// with the Request-URI it registered, because B learnt the binding from
// Redis; the phone's refresh through B carries the same token.
func TestClusterGatewayPassive(t *testing.T) {
	rd := startRedis(t)
	port := freePort(t)
	a := startNode(t, "127.0.0.2", port, redisAt(rd.addr()), "")
	b := startNode(t, "127.0.0.3", port, redisAt(rd.addr()), "")
	phone := newUA(t, "127.0.0.5")
	provider := newUA(t, "127.0.0.7")

	register := func(node string, cseq int) (fwd, contact string) {
		t.Helper()
		phone.send(node, fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKgw%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@provider.example>;tag=g1\r\nTo: <sip:alice@provider.example>\r\n"+
			"Call-ID: gw-reg\r\nCSeq: %d REGISTER\r\nContact: <sip:alice@%s>;expires=600\r\nContent-Length: 0\r\n\r\n",
			provider.addr, phone.addr, cseq, cseq, phone.addr))
		fwd, src := provider.expect("REGISTER ", 5*time.Second)
		contact = header(fwd, "Contact")
		if !strings.Contains(contact, ";sipedge=") {
			t.Fatalf("the provider got Contact %q: no passive-registrar token", contact)
		}
		provider.send(src, sipReply(fwd, 200, "OK", "Contact: "+contact+"\r\n"))
		if m, _ := phone.expect("SIP/2.0 ", 5*time.Second); !strings.HasPrefix(m, "SIP/2.0 200 ") {
			t.Fatalf("the phone's REGISTER through %s: %s", node, m)
		}
		return fwd, contact
	}
	token := func(contact string) string {
		_, tok, _ := strings.Cut(contact, ";sipedge=")
		tok, _, _ = strings.Cut(tok, ">")
		tok, _, _ = strings.Cut(tok, ";")
		return tok
	}
	_, contact := register(a.addr2(), 1)
	if !strings.Contains(contact, "@"+a.addr2()) {
		t.Fatalf("the provider got Contact %q, want A's address %s", contact, a.addr2())
	}
	time.Sleep(100 * time.Millisecond) // B installs it from Redis

	a.cmd.Process.Kill()
	<-a.exited
	uri := strings.Replace(strings.Trim(contact, "<>"), a.addr2(), b.addr2(), 1)
	if i := strings.Index(uri, ">"); i >= 0 {
		uri = uri[:i]
	}
	provider.send(b.addr2(), fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKgwinv;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:bob@provider.example>;tag=p1\r\nTo: <sip:alice@provider.example>\r\nCall-ID: gw-call\r\n"+
		"CSeq: 1 INVITE\r\nContact: <sip:bob@%s>\r\nContent-Length: 0\r\n\r\n", uri, provider.addr, provider.addr))
	inv, src := phone.expect("INVITE ", 5*time.Second)
	if want := "INVITE sip:alice@" + phone.addr + " SIP/2.0"; !strings.HasPrefix(inv, want) {
		t.Fatalf("through B the phone got %q, want %q", strings.SplitN(inv, "\r\n", 2)[0], want)
	}
	if src != b.addr2() {
		t.Fatalf("the INVITE came from %s, want B %s", src, b.addr2())
	}
	phone.send(src, sipReply(inv, 486, "Busy Here", ""))
	if m, _ := provider.expect("SIP/2.0 486", 5*time.Second); m == "" {
		t.Fatal("the 486 did not reach the provider")
	}

	if _, c2 := register(b.addr2(), 2); token(c2) != token(contact) {
		t.Fatalf("token through B %q, through A %q: the provider would keep two contacts", token(c2), token(contact))
	}
}
