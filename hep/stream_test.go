package hep

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"sipedge/transport"
)

// readFrame reads one HEP packet off a TCP stream, framed by its header's
// length.
func readFrame(t *testing.T, r *bufio.Reader) ([]byte, error) {
	t.Helper()
	head := make([]byte, 6)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(head[4:]))
	if string(head[:4]) != "HEP3" || n < 6 {
		t.Fatalf("bad frame header % x", head)
	}
	b := make([]byte, n)
	copy(b, head)
	if _, err := io.ReadFull(r, b[6:]); err != nil {
		return nil, err
	}
	return b, nil
}

// tcpCollector listens on loopback and dials a sender (capture id 5) to
// it; both close when the test ends. name is the collector's label.
func tcpCollector(t *testing.T) (ln net.Listener, s *Sender, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	name = "tcp:" + ln.Addr().String()
	if s, err = Dial([]string{name}, Agent{ID: 5}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return ln, s, name
}

// A TCP collector gets the packets back to back, each whole and in order;
// when the collector drops the connection, packets fail (counted) until
// the writer connects again after its backoff, and then flow again.
func TestSenderTCP(t *testing.T) {
	ln, s, name := tcpCollector(t)
	local, remote := netip.MustParseAddrPort("127.0.0.1:5060"), netip.MustParseAddrPort("192.0.2.7:5062")
	tapped := 0
	tap := func(i int) {
		tapped++
		s.Tap(&transport.TapEvent{Dir: transport.TapIn, Proto: transport.TCP, Local: local, Remote: remote,
			Time: time.Now(), Data: []byte(fmt.Sprintf("MSG %d", i))})
	}
	for i := range 300 {
		tap(i)
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range 300 {
		b, err := readFrame(t, r)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		c := decode(t, b)
		if got := string(c[chunkPayload]); got != fmt.Sprintf("MSG %d", i) || c[chunkProto][0] != TCP {
			t.Fatalf("packet %d: payload %q proto %v", i, got, c[chunkProto])
		}
	}
	// The counter moves once the write returned: the reader may be
	// faster.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st := s.Stats()
		if st.Sent[name] == 300 && st.Errors[name] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
	}

	// The collector goes away: the next writes fail, and the writer
	// waits at least its backoff before it connects again.
	conn.Close()
	lost := time.Now()
	next := 300
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Errors[name] == 0; next++ {
		if time.Now().After(deadline) {
			t.Fatalf("writes to a closed connection never failed: %+v", s.Stats())
		}
		tap(next)
		time.Sleep(20 * time.Millisecond)
	}
	// Keep tapping until a new connection is accepted.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	var conn2 net.Conn
	for deadline := time.Now().Add(10 * time.Second); conn2 == nil; next++ {
		select {
		case conn2 = <-accepted:
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the writer did not connect again")
			}
			tap(next)
		}
	}
	defer conn2.Close()
	if d := time.Since(lost); d < time.Second {
		t.Errorf("connected again %v after the loss, before the backoff", d)
	}
	tap(next)
	r = bufio.NewReader(conn2)
	conn2.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := readFrame(t, r)
	if err != nil {
		t.Fatal(err)
	}
	first := string(decode(t, b)[chunkPayload])
	var n int
	if _, err := fmt.Sscanf(first, "MSG %d", &n); err != nil || n <= 300 || n > next {
		t.Fatalf("first packet on the new connection %q (tapped up to %d)", first, next)
	}
	// Every packet is either sent or counted as an error; none dropped.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := s.Stats()
		if st.Sent[name]+st.Errors[name] == uint64(tapped) && st.Dropped[name] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, tapped %d", st, tapped)
		}
	}
}

// A TCP collector that is down at start-up does not stop Dial.
func TestDialTCPDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s, err := Dial([]string{"tcp:" + addr}, Agent{}, nil)
	if err != nil {
		t.Fatalf("Dial with the collector down: %v", err)
	}
	s.Tap(&transport.TapEvent{Dir: transport.TapIn, Proto: transport.UDP, Data: []byte("x"),
		Local: netip.MustParseAddrPort("127.0.0.1:5060"), Remote: netip.MustParseAddrPort("127.0.0.1:5062")})
	for deadline := time.Now().Add(5 * time.Second); s.Stats().Errors["tcp:"+addr] != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s.Stats())
		}
	}
	s.Close()
}

// A sustained 40 000 messages a second (a few thousand calls a second)
// all reach a TCP collector: nothing dropped, in order. (The sender once
// gathered at most 257 packets per 20 ms window, about 12 800 a second.)
func TestSenderRate(t *testing.T) {
	ln, s, name := tcpCollector(t)
	const n, per = 40000, 400 // 400 every 10 ms
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		r := bufio.NewReaderSize(c, 1<<20)
		i := 0
		for ; i < n; i++ {
			b, err := readFrame(t, r)
			if err != nil {
				break
			}
			if p := decode(t, b)[chunkPayload]; string(p) != fmt.Sprintf("MSG %d", i) {
				break
			}
		}
		got <- i
	}()
	local, remote := netip.MustParseAddrPort("127.0.0.1:5060"), netip.MustParseAddrPort("192.0.2.7:5062")
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < n; {
		for end := i + per; i < end; i++ {
			s.Tap(&transport.TapEvent{Dir: transport.TapIn, Proto: transport.UDP, Local: local, Remote: remote,
				Time: time.Now(), Data: []byte(fmt.Sprintf("MSG %d", i))})
		}
		<-tick.C
	}
	select {
	case i := <-got:
		if i != n {
			t.Fatalf("the collector read %d packets in order, want %d (stats %+v)", i, n, s.Stats())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the collector did not get every packet (stats %+v)", s.Stats())
	}
	// The writer counts a batch once its write returned, which may be
	// after the collector read it.
	st := s.Stats()
	for deadline := time.Now().Add(5 * time.Second); st.Sent[name] != n && time.Now().Before(deadline); st = s.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	if st.Sent[name] != n || st.Dropped[name] != 0 || st.Errors[name] != 0 {
		t.Errorf("stats %+v", st)
	}
}

// The batch window: 100 ms when every collector is TCP (fewer wake-ups
// and writes; flow control holds the burst), 20 ms as soon as one is UDP,
// whose burst of datagrams the collector's receive buffer must hold.
func TestBatchWindow(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, c := range []struct {
		cols []string
		want time.Duration
	}{
		{[]string{"tcp:127.0.0.1:9"}, streamBatchWait},
		{[]string{"tcp:127.0.0.1:9", "tcp:127.0.0.2:9"}, streamBatchWait},
		{[]string{"udp:" + udp.LocalAddr().String()}, batchWait},
		{[]string{"tcp:127.0.0.1:9", udp.LocalAddr().String()}, batchWait},
	} {
		s, err := Dial(c.cols, Agent{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.wait != c.want {
			t.Errorf("%v: window %v, want %v", c.cols, s.wait, c.want)
		}
		s.Close()
	}
	if streamBatchWait <= batchWait {
		t.Errorf("TCP window %v not above UDP's %v", streamBatchWait, batchWait)
	}
}

// Under a steady flow the batcher wakes once per window (its timer), not
// once for the batch's first packet and again for its window; when the
// flow stops it wakes at most twice more, then sleeps until a packet.
func TestBatcherWakeups(t *testing.T) {
	ln, s, _ := tcpCollector(t)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
	}()
	ev := &transport.TapEvent{Dir: transport.TapIn, Proto: transport.UDP, Data: []byte("MSG"),
		Local: netip.MustParseAddrPort("127.0.0.1:5060"), Remote: netip.MustParseAddrPort("127.0.0.1:5062")}
	const flow = 20 * streamBatchWait
	start := time.Now()
	for time.Since(start) < flow {
		s.Tap(ev)
		time.Sleep(2 * time.Millisecond)
	}
	windows := uint64(time.Since(start) / streamBatchWait)
	// One wake-up per window (plus the first kick and a window cut by a
	// late timer); the design it replaced woke twice per window.
	if w := s.wakes.Load(); w > windows+3 {
		t.Errorf("%d wake-ups over %d windows of a steady flow", w, windows)
	}
	time.Sleep(3 * streamBatchWait)
	idle := s.wakes.Load()
	time.Sleep(5 * streamBatchWait)
	if w := s.wakes.Load(); w != idle {
		t.Errorf("%d wake-ups with no packets", w-idle)
	}
	if st := s.Stats(); st.Sent[s.cols[0].name] == 0 {
		t.Errorf("nothing sent: %+v", st)
	}
}
