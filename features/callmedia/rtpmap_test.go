package callmedia

import (
	"bytes"
	"strconv"
	"testing"
)

func TestParseRTPMap(t *testing.T) {
	for _, tc := range []struct {
		in  string
		ok  bool
		pt  uint8
		enc string
		hz  uint32
	}{
		{"rtpmap:0 PCMU/8000", true, 0, "PCMU", 8000},
		{"rtpmap:111 opus/48000/2", true, 111, "opus", 48000},
		{"rtpmap:101 telephone-event/8000", true, 101, "telephone-event", 8000},
		{"rtpmap:96  H264/90000", true, 96, "H264", 90000}, // extra space tolerated
		{"rtpmap:9 G722/8000 ", true, 9, "G722", 8000},     // trailing space
		{"rtpmap:128 X/8000", false, 0, "", 0},             // payload types are 7 bits
		{"rtpmap:-1 X/8000", false, 0, "", 0},
		{"rtpmap:0 PCMU", false, 0, "", 0}, // no clock rate
		{"rtpmap:0 /8000", false, 0, "", 0},
		{"rtpmap:0 PCMU/abc", false, 0, "", 0},
		{"rtpmap:0 PCMU/99999999999", false, 0, "", 0},
		{"rtpmap:0", false, 0, "", 0},
		{"fmtp:101 0-16", false, 0, "", 0},
		{"", false, 0, "", 0},
	} {
		pt, enc, hz, ok := parseRTPMap([]byte(tc.in))
		if ok != tc.ok || ok && (pt != tc.pt || string(enc) != tc.enc || hz != tc.hz) {
			t.Errorf("%q: %d %q %d %v, want %d %q %d %v", tc.in, pt, enc, hz, ok, tc.pt, tc.enc, tc.hz, tc.ok)
		}
	}
	for _, tc := range []struct {
		in string
		pt uint8
		ok bool
	}{{"0 8 101", 0, true}, {"111 0", 111, true}, {" 8", 8, true}, {"", 0, false}, {"webrtc-datachannel", 0, false}, {"200", 0, false}} {
		if pt, ok := firstFormat([]byte(tc.in)); ok != tc.ok || pt != tc.pt {
			t.Errorf("firstFormat(%q) = %d %v", tc.in, pt, ok)
		}
	}
}

// FuzzParseRTPMap: any attribute value is read without a panic, and what
// is accepted is a payload type that fits 7 bits, a non-empty name found
// in the input and a rate written in it.
func FuzzParseRTPMap(f *testing.F) {
	for _, s := range []string{"rtpmap:0 PCMU/8000", "rtpmap:111 opus/48000/2", "rtpmap:96 H264/90000", "rtpmap:1 /", "rtpmap: x/1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, enc, hz, ok := parseRTPMap(b)
		if !ok {
			return
		}
		if pt > 127 || len(enc) == 0 || !bytes.Contains(b, enc) || !bytes.Contains(b, []byte(strconv.FormatUint(uint64(hz), 10))) {
			t.Fatalf("%q: %d %q %d", b, pt, enc, hz)
		}
		firstFormat(b)
	})
}

// TestEndedCalls: the last endedKept calls stay readable, the oldest go
// first, and a Call-ID that ended twice keeps its latest media.
func TestEndedCalls(t *testing.T) {
	e := newEndedCalls()
	for i := 0; i < endedKept+10; i++ {
		e.put(strconv.Itoa(i), Media{Audio: "ok"})
	}
	if _, ok := e.get("9"); ok {
		t.Error("the 10th oldest is still there")
	}
	if m, ok := e.get("10"); !ok || m.Audio != "ok" {
		t.Error("the oldest kept is gone")
	}
	if len(e.byID) != endedKept {
		t.Errorf("%d kept", len(e.byID))
	}
	// "10" ends again: its newer media survives the eviction of its
	// older ring slot.
	e.put("10", Media{Audio: "none"})
	for i := 0; i < 20; i++ {
		e.put("x"+strconv.Itoa(i), Media{})
	}
	if m, ok := e.get("10"); !ok || m.Audio != "none" {
		t.Errorf("the latest media of a Call-ID that ended twice: %+v %v", m, ok)
	}
	if len(e.byID) > endedKept {
		t.Errorf("%d kept", len(e.byID))
	}
}
