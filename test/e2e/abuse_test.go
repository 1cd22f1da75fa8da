package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startConfig runs sipedge with cfg (YAML; DNS goes to a closed port, as
// in start) and a data directory of its own.
func startConfig(t *testing.T, cfg string) *server {
	t.Helper()
	file := filepath.Join(t.TempDir(), "sipedge.yaml")
	if err := os.WriteFile(file, []byte("dns:\n  servers: [\"127.0.0.1:9\"]\n"+cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return start(t, "--data-dir", t.TempDir(), "--config", file)
}

// procStatus returns the Threads and VmRSS (KiB) of the sipedge process.
func procStatus(t *testing.T, s *server) (threads, rssKiB int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		case "VmRSS:":
			rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	return threads, rssKiB
}

// dialTCPFrom connects to sipedge over TCP from the loopback address from.
func dialTCPFrom(t *testing.T, from string, s *server) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp4", s.addr())
	if err != nil {
		t.Fatalf("connect from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// tcpRequest sends msg (with %s for the connection's local address in the
// Via) on c and returns the response, or the error that ended the wait.
func tcpRequest(c net.Conn, msg string) (*response, error) {
	if strings.Contains(msg, "%s") {
		msg = fmt.Sprintf(msg, c.LocalAddr().String())
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return nil, err
	}
	return readStream(bufio.NewReader(c))
}

// tcpRegister is a REGISTER over TCP for the local domain 127.0.0.1.
func tcpRegister(user string) string {
	return "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bKreg" + user + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + user + "@127.0.0.1>;tag=r\r\nTo: <sip:" + user + "@127.0.0.1>\r\n" +
		"Call-ID: reg-" + user + "\r\nCSeq: 1 REGISTER\r\nContact: <sip:" + user + "@192.0.2.1;transport=tcp>\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// waitClosed reads c until the peer closes it (EOF or reset) and returns
// when that happened; it fails the test if c is still open at deadline.
func waitClosed(c net.Conn, deadline time.Time) (time.Time, error) {
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return time.Time{}, fmt.Errorf("still open at the deadline")
			}
			return time.Now(), nil
		}
	}
}

// TestSlowloris: a thousand TCP connections from one address trickling a
// REGISTER that never completes neither keep a legitimate client from
// being served nor stay open past transport.message_timeout.
func TestSlowloris(t *testing.T) {
	const (
		conns = 1000
		mt    = 3 * time.Second
	)
	s := startConfig(t, "transport:\n  message_timeout: 3s\n  max_connections_per_source: 2000\n")
	threads0, rss0 := procStatus(t, s)

	type trickler struct {
		c      *net.TCPConn
		dialed time.Time
	}
	ts := make([]trickler, 0, conns)
	for range conns {
		c := dialTCPFrom(t, "127.0.0.1", s)
		ts = append(ts, trickler{c, time.Now()})
	}
	// One byte of the REGISTER per connection about every 500 ms: traffic
	// never stops, the message never completes.
	msg := tcpRegister("slow")
	stop := make(chan struct{})
	var trickle sync.WaitGroup
	trickle.Go(func() {
		for i := 0; ; i++ {
			for _, tr := range ts {
				_ = tr.c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = tr.c.Write([]byte{msg[i%(len(msg)-4)]}) // fails once closed: ignored
			}
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	defer func() { close(stop); trickle.Wait() }()

	// A legitimate client from another address is served at once.
	start := time.Now()
	r, err := tcpRequest(dialTCPFrom(t, "127.0.0.3", s), tcpRegister("alice"))
	if err != nil || r.code != 200 {
		t.Fatalf("REGISTER while %d connections trickle: %v %v", conns, r, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("REGISTER answered after %v", d)
	}
	threads1, rss1 := procStatus(t, s)

	// Every trickling connection is closed after message_timeout, not
	// before and not much after.
	var wg sync.WaitGroup
	errs := make(chan string, conns)
	for i, tr := range ts {
		wg.Go(func() {
			at, err := waitClosed(tr.c, tr.dialed.Add(mt+10*time.Second))
			switch {
			case err != nil:
				errs <- fmt.Sprintf("connection %d: %v", i, err)
			case at.Sub(tr.dialed) < mt-200*time.Millisecond:
				errs <- fmt.Sprintf("connection %d closed after %v, before message_timeout %v", i, at.Sub(tr.dialed), mt)
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for e := range errs {
		if n++; n <= 5 {
			t.Error(e)
		}
	}
	if n > 5 {
		t.Errorf("... %d connections in all", n)
	}
	// The process did not grow a thread per connection and is still
	// serving.
	if code := optionsRoundTrip(t, "tcp4", s.addr(), s); code != 200 {
		t.Errorf("OPTIONS after the attack: %d", code)
	}
	threads2, rss2 := procStatus(t, s)
	t.Logf("threads %d → %d (attack) → %d; RSS %d → %d → %d KiB", threads0, threads1, threads2, rss0, rss1, rss2)
	if threads1 > threads0+20 {
		t.Errorf("threads grew from %d to %d under %d connections", threads0, threads1, conns)
	}
	if rss1 > rss0+100<<10 {
		t.Errorf("RSS grew from %d to %d KiB under %d connections", rss0, rss1, conns)
	}
}

// TestConnectionsPerSource: past transport.max_connections_per_source the
// connections from one address are closed at once; another address still
// connects; a closed connection frees its place.
func TestConnectionsPerSource(t *testing.T) {
	const limit = 5
	s := startConfig(t, fmt.Sprintf("transport:\n  max_connections_per_source: %d\n", limit))
	var open []net.Conn
	for i := range limit {
		c := dialTCPFrom(t, "127.0.0.1", s)
		if r, err := tcpRequest(c, tcpRegister(fmt.Sprintf("u%d", i))); err != nil || r.code != 200 {
			t.Fatalf("connection %d: %v %v", i, r, err)
		}
		open = append(open, c)
	}
	for i := range 3 {
		c := dialTCPFrom(t, "127.0.0.1", s)
		if _, err := waitClosed(c, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("connection %d over the limit: %v", limit+i, err)
		}
	}
	if r, err := tcpRequest(dialTCPFrom(t, "127.0.0.4", s), tcpRegister("other")); err != nil || r.code != 200 {
		t.Fatalf("another address: %v %v", r, err)
	}
	// The connections within the limit still work.
	for i, c := range open {
		if r, err := tcpRequest(c, strings.Replace(tcpRegister(fmt.Sprintf("u%d", i)), "CSeq: 1", "CSeq: 2", 1)); err != nil || r.code != 200 {
			t.Fatalf("connection %d after the refusals: %v %v", i, r, err)
		}
	}
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dialTCPFrom(t, "127.0.0.1", s)
		r, err := tcpRequest(c, tcpRegister("again"))
		if err == nil && r.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place freed by a closed connection: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHeaderBombs: oversized and hostile messages get an error response
// or a closed connection, never a large allocation or a crash; sipedge
// answers the next OPTIONS.
func TestHeaderBombs(t *testing.T) {
	// A UDP datagram holds at most 65 507 bytes, under the default
	// max_message_size (65 535): with half of it, an oversized datagram
	// can be sent.
	s := startConfig(t, "limits:\n  max_message_size: 32768\n")
	_, rss0 := procStatus(t, s)
	vias := func(n int, proto string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "Via: SIP/2.0/%s 192.0.2.%d:5060;branch=z9hG4bKbomb%d\r\n", proto, i%250+1, i)
		}
		return b.String()
	}
	request := func(proto, extra, body string, cl string) string {
		if cl == "" {
			cl = strconv.Itoa(len(body))
		}
		// The bomb comes after the headers a response copies (RFC 3261
		// §8.2.6.2), so the error response can be matched to the request.
		return "OPTIONS sip:" + s.addr() + " SIP/2.0\r\nVia: SIP/2.0/" + proto + " %s;branch=z9hG4bKtop;rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:bomb@example.com>;tag=b\r\nTo: <sip:" + s.addr() + ">\r\n" +
			"Call-ID: bomb\r\nCSeq: 1 OPTIONS\r\n" + extra + "Content-Length: " + cl + "\r\n\r\n" + body
	}

	t.Run("UDP", func(t *testing.T) {
		u := newUDPClient(t, s)
		for _, tc := range []struct {
			name string
			msg  string
			// want: the status codes accepted; 0 means no answer.
			want []int
		}{
			// Larger than limits.max_message_size: read up to one byte
			// over the limit and answered 513 from the top Via (RFC 3261
			// §18.1.1, §21.5.14).
			{"65000-byte datagram", request("UDP", "X-Pad: "+strings.Repeat("a", 64900)+"\r\n", "", ""), []int{513}},
			// 500 Vias fit in the limit but are over limits.max_vias
			// (64): 513.
			{"500 Vias", request("UDP", vias(500, "UDP"), "", ""), []int{513}},
			// 5 000 Vias cannot be sent in one datagram: the largest one
			// (65 507 bytes, the header section cut short) is over the
			// size limit: 513.
			{"5000 Vias", request("UDP", vias(5000, "UDP"), "", ""), []int{513}},
			// Content-Length beyond 32 bits: over the size limit, so
			// 413 from the header alone (RFC 3261 §21.4.11); a body
			// shorter than its Content-Length would be 400 (§18.3).
			{"Content-Length 4294967296", request("UDP", "", "", "4294967296"), []int{413, 400}},
		} {
			msg := fmt.Sprintf(tc.msg, u.addr())
			if len(msg) > 65507 {
				msg = msg[:65507]
			}
			r := u.final([]byte(msg), 3*time.Second)
			got := 0
			if r != nil {
				got = r.code
			}
			if !containsInt(tc.want, got) {
				t.Errorf("%s: answered %d, want one of %v", tc.name, got, tc.want)
			}
			if code := optionsRoundTrip(t, "udp4", s.addr(), s); code != 200 {
				t.Fatalf("%s: OPTIONS after it: %d", tc.name, code)
			}
		}
	})

	t.Run("TCP", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			msg  string
			body int // bytes written after msg, as fast as sipedge reads
			want int
			// closed: the stream cannot be framed further, so sipedge
			// closes it after the answer (RFC 3261 §18.3); otherwise the
			// message was framed and the connection goes on.
			closed bool
		}{
			// The header section alone is over limits.max_message_size:
			// 513, and the connection is closed, since the start of the
			// next message cannot be found.
			{"5000 Vias", request("TCP", vias(5000, "TCP"), "", ""), 0, 513, true},
			// 500 Vias fit in the size limit but are over limits.max_vias:
			// 513; the message was framed, the connection stays.
			{"500 Vias", request("TCP", vias(500, "TCP"), "", ""), 0, 513, false},
			// A 10 MB body: refused from its Content-Length (413,
			// §21.4.11) before any of it is buffered; what follows is
			// discarded for a moment, then the connection is closed.
			{"10 MB body", request("TCP", "", "", "10485760"), 10 << 20, 413, true},
			// A Content-Length over 32 bits: the same, never an
			// allocation of that size.
			{"Content-Length 4294967296", request("TCP", "", "", "4294967296"), 0, 413, true},
		} {
			c := dialTCPFrom(t, "127.0.0.1", s)
			msg := fmt.Sprintf(tc.msg, c.LocalAddr().String())
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var w sync.WaitGroup
			w.Go(func() {
				if _, err := c.Write([]byte(msg)); err != nil {
					return
				}
				chunk := make([]byte, 64<<10)
				for sent := 0; sent < tc.body; sent += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return // closed by sipedge: expected
					}
				}
			})
			br := bufio.NewReader(c)
			r, err := readStream(br)
			got := 0
			if err == nil {
				got = r.code
			}
			if got != tc.want {
				t.Errorf("%s: answered %d (%v), want %d", tc.name, got, err, tc.want)
			}
			if tc.closed {
				if _, err := waitClosed(c, time.Now().Add(10*time.Second)); err != nil {
					t.Errorf("%s: connection %v", tc.name, err)
				}
			} else if r, err := tcpRequest(c, strings.Replace(request("TCP", "", "", ""), "CSeq: 1", "CSeq: 2", 1)); err != nil || r.code != 200 {
				t.Errorf("%s: OPTIONS on the same connection: %v %v", tc.name, r, err)
			}
			c.Close()
			w.Wait()
			if code := optionsRoundTrip(t, "tcp4", s.addr(), s); code != 200 {
				t.Fatalf("%s: OPTIONS after it: %d", tc.name, code)
			}
		}
	})
	if _, rss := procStatus(t, s); rss > rss0+64<<10 {
		t.Errorf("RSS grew from %d to %d KiB", rss0, rss)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestTransactionCap: past limits.max_transactions live server
// transactions, a new request is answered 503 with Retry-After and no
// transaction, while retransmissions, CANCEL and ACK of the transactions
// in progress are handled; once they end, requests are served again.
func TestTransactionCap(t *testing.T) {
	// The next hop never answers: the INVITEs stay pending.
	hole := newSIPPeer(t)
	s := startConfig(t, "limits:\n  max_transactions: 2\nroutes:\n  - name: hole\n    to: sip:"+hole.addr()+"\n")
	caller := newSIPPeer(t)
	inv := func(id string) string {
		return fmt.Sprintf("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=c\r\nTo: <sip:bob@example.com>\r\nCall-ID: %s\r\n"+
			"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", caller.addr(), id, id)
	}
	// The next hop answers 100 Trying and nothing more: the INVITEs stay
	// pending.
	forwarded := map[string]string{}
	for _, id := range []string{"cap1", "cap2"} {
		caller.send(s.addr(), inv(id))
		caller.expect("SIP/2.0 100", id)
		forwarded[id], _ = hole.expect("INVITE ", id)
		hole.send(s.addr(), reply(forwarded[id], 100, hole.addr()))
	}
	// Over the cap: 503, Retry-After, no 100 Trying, nothing forwarded.
	caller.send(s.addr(), inv("cap3"))
	m, _ := caller.expect("SIP/2.0 ", "cap3")
	r, err := parseResponse([]byte(m))
	if err != nil || r.code != 503 || r.get("retry-after") != "5" {
		t.Fatalf("third INVITE: %q", m)
	}
	if m, _ := hole.next("INVITE ", "cap3", 300*time.Millisecond); m != "" {
		t.Fatal("refused INVITE forwarded")
	}
	if code := optionsRoundTrip(t, "udp4", s.addr(), s); code != 503 {
		t.Errorf("OPTIONS over the cap: %d, want 503", code)
	}
	// A retransmission is absorbed by its transaction: 100 Trying again.
	caller.send(s.addr(), inv("cap1"))
	caller.expect("SIP/2.0 100", "cap1")
	// CANCEL still works: 200 to it, 487 to the INVITE, then the ACK.
	cancel := strings.Replace(strings.Replace(inv("cap1"), "INVITE sip:", "CANCEL sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1)
	caller.send(s.addr(), cancel)
	if m, _ := caller.expect("SIP/2.0 200", "cap1"); !strings.Contains(m, "CANCEL") {
		t.Fatalf("CANCEL answered %q", m)
	}
	m, _ = hole.expect("CANCEL ", "cap1")
	hole.send(s.addr(), reply(m, 200, hole.addr()))
	hole.send(s.addr(), reply(forwarded["cap1"], 487, hole.addr()))
	hole.expect("ACK ", "cap1") // sipedge acknowledges the 487 hop by hop
	final, _ := caller.expect("SIP/2.0 487", "cap1")
	ack := strings.Replace(strings.Replace(inv("cap1"), "INVITE sip:", "ACK sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 ACK", 1)
	ack = strings.Replace(ack, "To: <sip:bob@example.com>", "To: "+field([]byte(final), "to"), 1)
	caller.send(s.addr(), ack)
	// Once the cancelled INVITE's transaction is over (Timer I over UDP),
	// there is room again.
	deadline := time.Now().Add(15 * time.Second)
	for optionsRoundTrip(t, "udp4", s.addr(), s) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("still refused after a transaction ended")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
