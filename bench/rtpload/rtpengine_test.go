//go:build linux

package main

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestBencode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want string
	}{
		{"string", "spam", "4:spam"},
		{"empty string", "", "0:"},
		{"bytes", []byte("a:b"), "3:a:b"},
		{"int", 42, "i42e"},
		{"negative", int64(-7), "i-7e"},
		{"zero", 0, "i0e"},
		{"list", []any{"a", 1, []any{}}, "l1:ai1elee"},
		{"strings", []string{"origin", "session-connection"}, "l6:origin18:session-connectione"},
		{"dict sorted", map[string]any{"sdp": "v=0", "command": "offer", "call-id": "x"},
			"d7:call-id1:x7:command5:offer3:sdp3:v=0e"},
		{"nested", map[string]any{"a": map[string]any{"b": []any{int64(1)}}}, "d1:ad1:bli1eeee"},
		{"utf-8", "µ", "2:µ"},
	} {
		if got := string(bencode(tc.in)); got != tc.want {
			t.Errorf("%s: bencode = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestBdecode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any // nil: an error is expected
	}{
		{"4:spam", "spam"},
		{"0:", ""},
		{"i42e", int64(42)},
		{"i-42e", int64(-42)},
		{"i0e", int64(0)},
		{"i9223372036854775807e", int64(9223372036854775807)},
		{"le", []any{}},
		{"de", map[string]any{}},
		{"l1:ai1ee", []any{"a", int64(1)}},
		{"d6:result4:ponge", map[string]any{"result": "pong"}},
		{"d1:bi2e1:ai1ee", map[string]any{"a": int64(1), "b": int64(2)}}, // keys out of order are read
		{"d6:totalsd3:RTPd7:packetsi600eeee", map[string]any{"totals": map[string]any{"RTP": map[string]any{"packets": int64(600)}}}},
		{"", nil},
		{"i", nil},
		{"ie", nil},
		{"i-e", nil},
		{"i-0e", nil},
		{"i03e", nil},
		{"i+3e", nil},
		{"i1.5e", nil},
		{"i9223372036854775808e", nil},
		{"4:spa", nil},
		{"04:spam", nil},
		{"-1:a", nil},
		{"99999999999999999999:a", nil},
		{"l", nil},
		{"l1:a", nil},
		{"d1:ae", nil},
		{"di1ei2ee", nil},
		{"d1:ai1e1:ai2ee", nil},
		{"4:spamx", nil},
		{"x", nil},
		{strings.Repeat("l", maxBencodeDepth+1) + strings.Repeat("e", maxBencodeDepth+1), nil},
	} {
		got, err := bdecode([]byte(tc.in))
		if tc.want == nil {
			if err == nil {
				t.Errorf("bdecode(%q) = %#v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("bdecode(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	deep := strings.Repeat("l", maxBencodeDepth) + strings.Repeat("e", maxBencodeDepth)
	if _, err := bdecode([]byte(deep)); err != nil {
		t.Errorf("%d nested lists: %v", maxBencodeDepth, err)
	}
}

func TestSDPAudio(t *testing.T) {
	for _, tc := range []struct {
		name, sdp, want string
	}{
		{"session c=", rtpSDP(netip.MustParseAddrPort("127.0.0.1:40000")), "127.0.0.1:40000"},
		{"media c= wins", "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 127.0.0.2\r\n", "127.0.0.2:4000"},
		{"audio after video", "v=0\nc=IN IP4 127.0.0.1\nm=video 5000 RTP/AVP 96\nc=IN IP4 127.0.0.9\nm=audio 6000 RTP/AVP 0\n", "127.0.0.1:6000"},
		{"later section ignored", "c=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\nm=video 7000 RTP/AVP 96\r\nc=IN IP4 127.0.0.9\r\n", "127.0.0.1:6000"},
		{"ipv6", "c=IN IP6 ::1\r\nm=audio 6000 RTP/AVP 0\r\n", "[::1]:6000"},
		{"no audio", "c=IN IP4 127.0.0.1\r\nm=video 7000 RTP/AVP 96\r\n", ""},
		{"no address", "m=audio 6000 RTP/AVP 0\r\n", ""},
		{"bad port", "c=IN IP4 127.0.0.1\r\nm=audio 70000 RTP/AVP 0\r\n", ""},
	} {
		got, err := sdpAudio(tc.sdp)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: got %v, want an error", tc.name, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%s: got %v, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}

// FuzzBencode checks that the decoder never panics and that what it
// accepts survives encoding and decoding again unchanged.
func FuzzBencode(f *testing.F) {
	for _, s := range []string{
		"d6:result4:ponge",
		"d3:sdp9:v=0\r\ns=-\r\n6:result2:oke",
		"d7:command5:offer7:replacel6:origin18:session-connectionee",
		"li1ei-2e0:le",
		"d6:totalsd3:RTPd7:packetsi600e5:bytesi103200eeee",
		"i-0e",
		"d1:ai1e1:ai2ee",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := bdecode(b)
		if err != nil {
			return
		}
		enc := bencode(v)
		w, err := bdecode(enc)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", enc, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip of %q: %#v became %#v", b, v, w)
		}
	})
}
