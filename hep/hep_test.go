package hep

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"sipedge/transport"
)

// decode checks a datagram as strictly as heplify-server does (header
// length equal to the datagram's, chunks of at least 6 bytes, fixed-size
// chunks of exactly their size) and returns its chunks by type.
func decode(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	if len(b) < 6 || string(b[:4]) != "HEP3" {
		t.Fatalf("not HEP3: % x", b[:min(len(b), 8)])
	}
	if n := int(binary.BigEndian.Uint16(b[4:6])); n != len(b) {
		t.Fatalf("header length %d, datagram %d", n, len(b))
	}
	fixed := map[uint16]int{chunkFamily: 1, chunkProto: 1, chunkSrcIP4: 4, chunkDstIP4: 4, chunkSrcIP6: 16, chunkDstIP6: 16,
		chunkSrcPort: 2, chunkDstPort: 2, chunkTimeSec: 4, chunkTimeUsec: 4, chunkProtoType: 1, chunkCaptureID: 4, 0x0012: 2}
	out := map[uint16][]byte{}
	for i := 6; i < len(b); {
		if len(b)-i < 6 {
			t.Fatalf("truncated chunk at %d", i)
		}
		vendor, typ, n := binary.BigEndian.Uint16(b[i:]), binary.BigEndian.Uint16(b[i+2:]), int(binary.BigEndian.Uint16(b[i+4:]))
		if vendor != 0 || n < 6 || i+n > len(b) {
			t.Fatalf("chunk %#x at %d: vendor %d length %d", typ, i, vendor, n)
		}
		v := b[i+6 : i+n]
		if want, ok := fixed[typ]; ok && len(v) != want {
			t.Fatalf("chunk %#x: %d bytes, want %d", typ, len(v), want)
		}
		if _, dup := out[typ]; dup {
			t.Fatalf("chunk %#x twice", typ)
		}
		out[typ] = v
		i += n
	}
	return out
}

func TestAppend(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 123456789, time.UTC)
	msg := []byte("OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n")
	for _, tc := range []struct {
		src, dst string
		tr       uint8
		family   byte
	}{
		{"203.0.113.7:5060", "198.51.100.1:5061", UDP, 2},
		{"[2001:db8::7]:5060", "[2001:db8::1]:5061", TCP, 10},
		{"[::ffff:203.0.113.7]:5060", "198.51.100.1:5061", UDP, 2},
	} {
		p := Packet{Src: netip.MustParseAddrPort(tc.src), Dst: netip.MustParseAddrPort(tc.dst), Transport: tc.tr, Time: at, Payload: msg}
		b, ok := Append([]byte("prefix"), &Agent{ID: 0x01020304, Password: "pw", Node: "edge1"}, &p)
		if !ok || string(b[:6]) != "prefix" {
			t.Fatalf("%s: Append failed", tc.src)
		}
		c := decode(t, b[6:])
		check := func(typ uint16, want []byte) {
			t.Helper()
			if string(c[typ]) != string(want) {
				t.Errorf("%s: chunk %#x = % x, want % x", tc.src, typ, c[typ], want)
			}
		}
		check(chunkFamily, []byte{tc.family})
		check(chunkProto, []byte{tc.tr})
		src, dst := p.Src.Addr().Unmap(), p.Dst.Addr().Unmap()
		if tc.family == 2 {
			s, d := src.As4(), dst.As4()
			check(chunkSrcIP4, s[:])
			check(chunkDstIP4, d[:])
		} else {
			s, d := src.As16(), dst.As16()
			check(chunkSrcIP6, s[:])
			check(chunkDstIP6, d[:])
		}
		check(chunkSrcPort, []byte{0x13, 0xc4})
		check(chunkDstPort, []byte{0x13, 0xc5})
		check(chunkTimeSec, binary.BigEndian.AppendUint32(nil, uint32(at.Unix())))
		check(chunkTimeUsec, binary.BigEndian.AppendUint32(nil, 123456))
		check(chunkProtoType, []byte{ProtoSIP})
		check(chunkCaptureID, []byte{1, 2, 3, 4})
		check(chunkAuthKey, []byte("pw"))
		check(chunkNodeName, []byte("edge1"))
		check(chunkPayload, msg)
	}
	// Without password and node, those chunks are left out.
	b, _ := Append(nil, &Agent{ID: 7}, &Packet{Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2"), Payload: msg})
	if c := decode(t, b); c[chunkAuthKey] != nil || c[chunkNodeName] != nil {
		t.Error("empty password or node sent")
	}
	// Too large: refused whole, dst unchanged.
	big := Packet{Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2"), Payload: make([]byte, MaxDatagram)}
	if b, ok := Append([]byte("x"), &Agent{}, &big); ok || string(b) != "x" {
		t.Errorf("an oversized packet: ok %v, %d bytes", ok, len(b))
	}
}

func TestAppendAllocs(t *testing.T) {
	p := Packet{Src: netip.MustParseAddrPort("203.0.113.7:5060"), Dst: netip.MustParseAddrPort("198.51.100.1:5060"),
		Transport: UDP, Time: time.Now(), Payload: make([]byte, 600)}
	a := &Agent{ID: 1}
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(100, func() { buf, _ = Append(buf[:0], a, &p) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

// The sender over a real UDP socket: a received and a sent message reach
// the collector with source and destination the right way round; a tap
// after Close is harmless.
func TestSender(t *testing.T) {
	coll, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	s, err := Dial([]string{"udp:" + coll.LocalAddr().String()}, Agent{ID: 9}, nil)
	if err != nil {
		t.Fatal(err)
	}
	local, remote := netip.MustParseAddrPort("127.0.0.1:5060"), netip.MustParseAddrPort("127.0.0.9:40000")
	// TLS in, WSS out: both are TCP to HEP.
	for i, dir := range []transport.TapDir{transport.TapIn, transport.TapOut} {
		s.Tap(&transport.TapEvent{Dir: dir, Proto: []transport.Proto{transport.TLS, transport.WSS}[i], Local: local, Remote: remote, Time: time.Now(),
			Data: []byte(fmt.Sprintf("MSG %d", i))})
	}
	buf := make([]byte, 65535)
	coll.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, want := range []struct{ src, dst []byte }{{[]byte{127, 0, 0, 9}, []byte{127, 0, 0, 1}}, {[]byte{127, 0, 0, 1}, []byte{127, 0, 0, 9}}} {
		n, err := coll.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		c := decode(t, buf[:n])
		if string(c[chunkSrcIP4]) != string(want.src) || string(c[chunkDstIP4]) != string(want.dst) ||
			string(c[chunkPayload]) != fmt.Sprintf("MSG %d", i) || c[chunkProto][0] != TCP {
			t.Fatalf("packet %d: %v", i, c)
		}
	}
	s.Close()
	s.Tap(&transport.TapEvent{Dir: transport.TapIn, Local: local, Remote: remote, Data: []byte("late")})
	if st := s.Stats(); st.Sent[coll.LocalAddr().String()] != 2 || st.Dropped[coll.LocalAddr().String()] != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Several collectors: each gets every message; one that never reads (its
// writes block) drops past its own queue without holding up the tap or
// the others, and one whose port is closed counts errors.
func TestSenderCollectors(t *testing.T) {
	live, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	deadL, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := deadL.LocalAddr().String()
	deadL.Close() // the port answers ICMP unreachable from now on
	liveC, err := dialCollector("udp:"+live.LocalAddr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	deadC, err := dialCollector(deadAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A collector whose socket blocks: a pipe nobody reads.
	stuckEnd, stuckPeer := net.Pipe()
	stuckC := &collector{name: "stuck", out: newBatchWriter(stuckEnd), queue: make(chan *batch, queueBatches)}
	s := start(Agent{ID: 1}, nil, []*collector{liveC, deadC, stuckC})

	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, err := live.Read(buf)
			if err != nil {
				close(got)
				return
			}
			select {
			case got <- string(buf[:n]):
			default:
			}
		}
	}()
	local, remote := netip.MustParseAddrPort("127.0.0.1:5060"), netip.MustParseAddrPort("127.0.0.9:40000")
	// Rounds of 100 messages, each a batch of its own (the rounds are
	// further apart than batchWait): the stuck writer holds one batch and
	// its queue queueBatches more, so most rounds are dropped for it.
	const rounds, per = 4 * queueBatches, 100
	const n = rounds * per
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if i > 0 && i%per == 0 {
				time.Sleep(2 * batchWait)
			}
			s.Tap(&transport.TapEvent{Dir: transport.TapIn, Proto: transport.UDP, Local: local, Remote: remote,
				Time: time.Now(), Data: []byte(fmt.Sprintf("MSG %d", i))})
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the tap was held up by a collector")
	}
	select {
	case p := <-got:
		if c := decode(t, []byte(p)); string(c[chunkPayload]) != "MSG 0" {
			t.Errorf("first packet at the live collector: %q", c[chunkPayload])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached the live collector")
	}
	name := live.LocalAddr().String()
	deadName := deadAddr
	var st Stats
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st = s.Stats()
		if st.Sent[name] == n && st.Sent[deadName]+st.Errors[deadName] == n {
			break
		}
	}
	if st.Sent[name] != n || st.Dropped[name] != 0 || st.Errors[name] != 0 {
		t.Errorf("live collector: sent %d dropped %d errors %d, want %d sent", st.Sent[name], st.Dropped[name], st.Errors[name], n)
	}
	if st.Sent[deadName]+st.Errors[deadName] != n || st.Errors[deadName] == 0 || st.Dropped[deadName] != 0 {
		t.Errorf("closed port: sent %d errors %d dropped %d", st.Sent[deadName], st.Errors[deadName], st.Dropped[deadName])
	}
	// The stuck writer holds one batch, its queue queueBatches more
	// (rounds may have shared a batch if the batcher ran late: more
	// dropped, never fewer; the first is always taken).
	if d := st.Dropped["stuck"]; d < n-(queueBatches+1)*per || d > n-per {
		t.Errorf("stuck collector dropped %d of %d", st.Dropped["stuck"], n)
	}
	stuckPeer.Close() // its writes fail now, so Close can drain it
	s.Close()
	if st := s.Stats(); st.Errors["stuck"]+st.Dropped["stuck"] != n {
		t.Errorf("stuck collector after close: %+v", st)
	}
}

// Dial refuses a bad collector among good ones and leaves no socket open.
func TestDialErrors(t *testing.T) {
	for _, c := range [][]string{nil, {"udp:127.0.0.1:9060", "tls:127.0.0.1:9061"}, {"127.0.0.1"}, {"udp:[::1]"}} {
		if s, err := Dial(c, Agent{}, nil); err == nil {
			s.Close()
			t.Errorf("Dial(%q) accepted", c)
		}
	}
}
