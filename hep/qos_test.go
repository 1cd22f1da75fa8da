package hep

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	qosStart = time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	qosEnd   = time.Date(2026, 12, 6, 5, 1, 30, 250_000_000, time.UTC)
)

func testLeg() QoSLeg {
	return QoSLeg{
		Src: netip.MustParseAddrPort("203.0.113.7:40000"), Dst: netip.MustParseAddrPort("198.51.100.1:10002"),
		Party: 1, Packets: 4500, Bytes: 720000, Lost: 12, Jitter: 2345 * time.Microsecond, MaxJitter: 9 * time.Millisecond,
		MOS: 4.314, PayloadType: 0, ClockRate: 8000, Codec: "PCMU", Start: qosStart, End: qosEnd,
	}
}

// stored checks what heplify-server needs to store a packet as a report
// of the call (database/postgres.go: a payload type of 2 or more, a
// payload and a correlation id) and that homer-ui can read its JSON, and
// returns the chunks and the JSON.
func stored(t *testing.T, b []byte) (map[uint16][]byte, map[string]any) {
	t.Helper()
	c := decode(t, b)
	if len(c[chunkProtoType]) != 1 || c[chunkProtoType][0] != ProtoQoS || len(c[chunkPayload]) == 0 || len(c[chunkCorrelation]) == 0 {
		t.Fatalf("not stored by heplify-server: type %v, payload %d bytes, correlation id %q", c[chunkProtoType], len(c[chunkPayload]), c[chunkCorrelation])
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(c[chunkPayload]))
	d.UseNumber()
	if err := d.Decode(&m); err != nil || d.More() {
		t.Fatalf("payload is not one JSON object (%v): %s", err, c[chunkPayload])
	}
	return c, m
}

// The exact report of one leg: chunks as heplify-server checks them and
// the JSON byte for byte.
func TestAppendQoS(t *testing.T) {
	l := testLeg()
	b, ok := AppendQoS([]byte("prefix"), &Agent{ID: 2001, Password: "pw", Node: "edge1"}, "abc@192.0.2.1", &l)
	if !ok || string(b[:6]) != "prefix" {
		t.Fatal("AppendQoS failed")
	}
	c, _ := stored(t, b[6:])
	want := map[uint16][]byte{
		chunkFamily: {2}, chunkProto: {UDP}, chunkSrcIP4: {203, 0, 113, 7}, chunkDstIP4: {198, 51, 100, 1},
		chunkSrcPort: {0x9c, 0x40}, chunkDstPort: {0x27, 0x12},
		chunkTimeSec: binary.BigEndian.AppendUint32(nil, uint32(qosEnd.Unix())), chunkTimeUsec: binary.BigEndian.AppendUint32(nil, 250000),
		chunkProtoType: {ProtoQoS}, chunkCaptureID: {0, 0, 0x07, 0xd1}, chunkAuthKey: []byte("pw"), chunkNodeName: []byte("edge1"),
		chunkCorrelation: []byte("abc@192.0.2.1"),
		chunkPayload: []byte(`{"CORRELATION_ID":"abc@192.0.2.1","RTP_SIP_CALL_ID":"abc@192.0.2.1","REPORT_TS":1796533290.250,` +
			`"REPORT_START":1796533200,"REPORT_END":1796533290,"TOTAL_PK":4500,"EXPECTED_PK":4512,"PACKET_LOSS":12,"TL_BYTE":720000,` +
			`"JITTER":2.345,"MAX_JITTER":9.000,"MOS":4.31,"MEAN_MOS":4.31,"SRC_IP":"203.0.113.7","SRC_PORT":40000,` +
			`"DST_IP":"198.51.100.1","DST_PORT":10002,"CODEC_PT":0,"CLOCK":8000,"CODEC_NAME":"PCMU","PARTY":1,` +
			`"REPORT_NAME":"203.0.113.7:40000","TYPE":"FINAL"}`),
	}
	if len(c) != len(want) {
		t.Errorf("%d chunks, want %d", len(c), len(want))
	}
	for typ, w := range want {
		if !bytes.Equal(c[typ], w) {
			t.Errorf("chunk %#x:\n got %s\nwant %s", typ, c[typ], w)
		}
	}
}

// Legs as the relay may report them: each is a packet heplify-server
// stores, with the addresses in one family and the JSON fields right.
func TestAppendQoSLegs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		callID string
		edit   func(*QoSLeg)
		family byte
		check  map[string]string // JSON field: value as written; "" must be absent
	}{
		{"ipv6", "c1", func(l *QoSLeg) {
			l.Src, l.Dst = netip.MustParseAddrPort("[2001:db8::7]:4000"), netip.MustParseAddrPort("[2001:db8::1]:10000")
		}, 10, map[string]string{"SRC_IP": "2001:db8::7", "DST_IP": "2001:db8::1", "REPORT_NAME": "[2001:db8::7]:4000"}},
		{"mixed families", "c2", func(l *QoSLeg) {
			l.Dst = netip.MustParseAddrPort("[2001:db8::1]:10000")
		}, 10, map[string]string{"SRC_IP": "203.0.113.7", "DST_IP": "2001:db8::1"}},
		{"mapped source", "c3", func(l *QoSLeg) {
			l.Src = netip.MustParseAddrPort("[::ffff:203.0.113.7]:40000")
		}, 2, map[string]string{"SRC_IP": "203.0.113.7"}},
		{"no packet ever came", "c4", func(l *QoSLeg) {
			*l = QoSLeg{Dst: l.Dst, End: l.End}
		}, 2, map[string]string{"SRC_IP": "0.0.0.0", "SRC_PORT": "0", "TOTAL_PK": "0", "EXPECTED_PK": "0", "PACKET_LOSS": "0",
			"JITTER": "0.000", "MOS": "", "MEAN_MOS": "", "MAX_JITTER": "", "TL_BYTE": "", "CODEC_NAME": "", "REPORT_START": ""}},
		{"duplicates", "c5", func(l *QoSLeg) { l.Packets, l.Lost = 100, -3 }, 2,
			map[string]string{"TOTAL_PK": "100", "EXPECTED_PK": "97", "PACKET_LOSS": "-3"}},
		{"more duplicates than packets", "c6", func(l *QoSLeg) { l.Packets, l.Lost = 1, -5 }, 2,
			map[string]string{"EXPECTED_PK": "0"}},
		{"huge figures", "c7", func(l *QoSLeg) { l.Packets, l.Lost = math.MaxUint64, math.MaxInt64 }, 2,
			map[string]string{"TOTAL_PK": "18446744073709551615", "EXPECTED_PK": "9223372036854775807"}},
		{"MOS out of range", "c8", func(l *QoSLeg) { l.MOS = 7 }, 2, map[string]string{"MOS": ""}},
		{"MOS not a number", "c9", func(l *QoSLeg) { l.MOS = math.NaN() }, 2, map[string]string{"MOS": "", "MEAN_MOS": ""}},
		{"negative jitter", "c10", func(l *QoSLeg) { l.Jitter = -time.Second }, 2, map[string]string{"JITTER": "0.000"}},
		{"dynamic codec", "c11", func(l *QoSLeg) { l.PayloadType, l.ClockRate, l.Codec = 111, 48000, "opus" }, 2,
			map[string]string{"CODEC_PT": "111", "CLOCK": "48000", "CODEC_NAME": "opus"}},
		{"Call-ID with quotes and a backslash", `a"b\c@[::1]`, nil, 2,
			map[string]string{"CORRELATION_ID": `a"b\c@[::1]`, "RTP_SIP_CALL_ID": `a"b\c@[::1]`}},
		{"Call-ID not UTF-8", "a\xffb\x01", nil, 2, map[string]string{"CORRELATION_ID": "a\ufffdb\x01"}},
	} {
		l := testLeg()
		if tc.edit != nil {
			tc.edit(&l)
		}
		b, ok := AppendQoS(nil, &Agent{ID: 1}, tc.callID, &l)
		if !ok {
			t.Errorf("%s: refused", tc.name)
			continue
		}
		c, m := stored(t, b)
		if c[chunkFamily][0] != tc.family {
			t.Errorf("%s: family %d, want %d", tc.name, c[chunkFamily][0], tc.family)
		}
		if string(c[chunkCorrelation]) != tc.callID {
			t.Errorf("%s: correlation id %q", tc.name, c[chunkCorrelation])
		}
		if m["TYPE"] != "FINAL" {
			t.Errorf("%s: TYPE %v (homer-ui needs it)", tc.name, m["TYPE"])
		}
		for k, want := range tc.check {
			v, present := m[k]
			switch {
			case want == "" && present:
				t.Errorf("%s: %s = %v, want it left out", tc.name, k, v)
			case want != "" && (!present || jsonText(v) != want):
				t.Errorf("%s: %s = %v, want %s", tc.name, k, v, want)
			}
		}
	}
}

func jsonText(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// A Call-ID too long for one datagram, or none, is refused whole; dst is
// unchanged.
func TestAppendQoSTooLarge(t *testing.T) {
	l := testLeg()
	for _, n := range []int{MaxDatagram / 3, MaxDatagram / 4, MaxDatagram + 1} {
		b, ok := AppendQoS([]byte("x"), &Agent{}, strings.Repeat("a", n), &l)
		if ok {
			if len(b)-1 > MaxDatagram {
				t.Errorf("Call-ID of %d: %d bytes", n, len(b)-1)
			}
			stored(t, b[1:])
			continue
		}
		if string(b) != "x" {
			t.Errorf("Call-ID of %d: refused but dst changed", n)
		}
	}
	if b, ok := AppendQoS([]byte("x"), &Agent{}, "", &l); ok || string(b) != "x" {
		t.Errorf("empty Call-ID: ok %v, %d bytes", ok, len(b))
	}
	// Escapes grow the JSON past the limit after the quick check.
	if b, ok := AppendQoS([]byte("x"), &Agent{}, strings.Repeat("\x01", MaxDatagram/4), &l); ok || string(b) != "x" {
		t.Errorf("escaped Call-ID: ok %v, %d bytes", ok, len(b))
	}
}

func TestAppendQoSAllocs(t *testing.T) {
	l := testLeg()
	a := &Agent{ID: 1, Node: "n"}
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendQoS(buf[:0], a, "abc@192.0.2.1", &l) }); n != 0 {
		t.Errorf("%v allocations per report", n)
	}
}

// The sender's QoS over a real socket: a packet per leg; nil Sender:
// nothing, no panic.
func TestSenderQoS(t *testing.T) {
	var none *Sender
	none.QoS("x", QoSReport{Legs: []QoSLeg{testLeg()}})

	coll, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	s, err := Dial([]string{coll.LocalAddr().String()}, Agent{ID: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := testLeg(), testLeg()
	a.Party, b.Party = 0, 1
	b.Src, b.Dst = netip.MustParseAddrPort("192.0.2.50:30000"), netip.MustParseAddrPort("198.51.100.1:10004")
	huge := testLeg()
	s.QoS("call-1@example.com", QoSReport{Legs: []QoSLeg{a, b}})
	s.QoS(strings.Repeat("x", MaxDatagram), QoSReport{Legs: []QoSLeg{huge}})
	s.QoS("", QoSReport{Legs: []QoSLeg{huge}})
	buf := make([]byte, 65535)
	coll.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, want := range []string{"203.0.113.7", "192.0.2.50"} {
		n, err := coll.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		c, m := stored(t, buf[:n])
		if string(c[chunkCorrelation]) != "call-1@example.com" || m["SRC_IP"] != want || jsonText(m["PARTY"]) != []string{"0", "1"}[i] {
			t.Errorf("report %d: %s", i, c[chunkPayload])
		}
	}
	if st := s.Stats(); st.MediaReports != 2 || st.TooLarge != 1 {
		t.Errorf("stats %+v", st)
	}
}

// FuzzAppendQoS: whatever the Call-ID, codec name and figures, a report
// is a HEP packet heplify-server accepts and stores, whose JSON is valid
// and carries the Call-ID as encoding/json would read it back; or it is
// refused with dst untouched.
func FuzzAppendQoS(f *testing.F) {
	f.Add("abc@192.0.2.1", "PCMU", uint64(4500), int64(12), int64(2345000), 4.3, []byte{203, 0, 113, 7}, uint16(40000))
	f.Add(`a"b\c`, "", uint64(0), int64(-3), int64(-1), math.NaN(), []byte{}, uint16(0))
	f.Add("\xff\x00\u2028", "op\"us", uint64(math.MaxUint64), int64(math.MinInt64), int64(math.MaxInt64), 5.0,
		[]byte(net.ParseIP("2001:db8::1").To16()), uint16(1))
	f.Fuzz(func(t *testing.T, callID, codec string, packets uint64, lost, jitter int64, mos float64, ip []byte, port uint16) {
		l := QoSLeg{Dst: netip.MustParseAddrPort("198.51.100.1:10002"), Packets: packets, Lost: lost,
			Jitter: time.Duration(jitter), MaxJitter: time.Duration(-jitter), MOS: mos, ClockRate: 8000, Codec: codec, End: qosEnd}
		if a, ok := netip.AddrFromSlice(ip); ok {
			l.Src = netip.AddrPortFrom(a, port)
		}
		b, ok := AppendQoS([]byte("p"), &Agent{ID: 3}, callID, &l)
		if !ok {
			if string(b) != "p" {
				t.Fatalf("refused, but dst changed")
			}
			return
		}
		if len(b)-1 > MaxDatagram {
			t.Fatalf("%d bytes", len(b)-1)
		}
		c, m := stored(t, b[1:])
		var want, wantCodec string
		j, _ := json.Marshal(callID)
		json.Unmarshal(j, &want)
		j, _ = json.Marshal(codec)
		json.Unmarshal(j, &wantCodec)
		if string(c[chunkCorrelation]) != callID || m["CORRELATION_ID"] != want || m["RTP_SIP_CALL_ID"] != want || m["CODEC_NAME"] != wantCodec {
			t.Fatalf("Call-ID %q, codec %q: correlation %q, JSON %s", callID, codec, c[chunkCorrelation], c[chunkPayload])
		}
		if jsonText(m["TOTAL_PK"]) != jsonText(json.Number(fmtUint(packets))) {
			t.Fatalf("TOTAL_PK %v, want %d", m["TOTAL_PK"], packets)
		}
	})
}

func fmtUint(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}
