package capture

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"sipedge/transport"
)

const sdpBody = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"

func withSDP(b []byte, body string) []byte {
	s := string(b)
	s = strings.Replace(s, "Content-Length: 0\r\n\r\n", "Content-Type: application/sdp\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body, 1)
	return []byte(s)
}

// ladderCall is a call through sipedge with an SDP offer and answer.
func ladderCall() []Message {
	c := New(Config{})
	steps := []step{{in, alice, "INVITE"}, {out, alice, "100 INVITE"}, {out, bob, "INVITE"}, {in, bob, "180 INVITE"},
		{out, alice, "180 INVITE"}, {in, bob, "200 INVITE"}, {out, alice, "200 INVITE"}, {in, alice, "ACK"}, {out, bob, "ACK"},
		{in, bob, "BYE"}, {out, alice, "BYE"}, {in, alice, "200 BYE"}, {out, bob, "200 BYE"}}
	for i, s := range steps {
		local := edge
		if s.dir == in {
			local = anyAddr
		}
		b := sipMsg("ladder", s.msg)
		if i == 0 || i == 2 || i == 5 || i == 6 {
			b = withSDP(b, sdpBody)
		}
		ev := transport.TapEvent{Dir: s.dir, Proto: transport.UDP, Local: local, Remote: s.peer, Time: t0.Add(time.Duration(i) * 1500 * time.Microsecond), Data: b}
		c.Tap(&ev)
	}
	msgs, _, _ := c.Messages("ladder")
	return msgs
}

// TestLadder: the diagram of a call through sipedge, column by column
// and arrow by arrow (the message texts follow it).
func TestLadder(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteLadder(&buf, ladderCall()); err != nil {
		t.Fatal(err)
	}
	want := `13 messages, 2025-03-01 10:00:00.000000 to 10:00:00.018000 UTC (18ms)

                                   192.0.2.10:5070        203.0.113.1:5060       198.51.100.20:5080
                                                               sipedge
   #  time             delta              |                       |                       |
   1  10:00:00.000000  +0.000000          |----- INVITE (SDP) --->|                       |
                                          | c=10.0.0.5 m=audio 4000 PCMU                  |
   2  10:00:00.001500  +0.001500          |<----- 100 Reason -----|                       |
   3  10:00:00.003000  +0.001500          |                       |----- INVITE (SDP) --->|
                                          |                       | c=10.0.0.5 m=audio 4000 PCMU
   4  10:00:00.004500  +0.001500          |                       |<----- 180 Reason -----|
   5  10:00:00.006000  +0.001500          |<----- 180 Reason -----|                       |
   6  10:00:00.007500  +0.001500          |                       |<-- 200 Reason (SDP) --|
                                          |                       | c=10.0.0.5 m=audio 4000 PCMU
   7  10:00:00.009000  +0.001500          |<-- 200 Reason (SDP) --|                       |
                                          | c=10.0.0.5 m=audio 4000 PCMU                  |
   8  10:00:00.010500  +0.001500          |--------- ACK -------->|                       |
   9  10:00:00.012000  +0.001500          |                       |--------- ACK -------->|
  10  10:00:00.013500  +0.001500          |                       |<-------- BYE ---------|
  11  10:00:00.015000  +0.001500          |<-------- BYE ---------|                       |
  12  10:00:00.016500  +0.001500          |------ 200 Reason ---->|                       |
  13  10:00:00.018000  +0.001500          |                       |------ 200 Reason ---->|

--- 1  2025-03-01 10:00:00.000000 UTC  UDP 192.0.2.10:5070 -> 203.0.113.1:5060  379 bytes
INVITE sip:bob@example.com SIP/2.0` + "\r\n"
	if got := buf.String(); !strings.HasPrefix(got, want) {
		t.Fatalf("got:\n%s\nwant (prefix):\n%s", got, want)
	}
	if n := strings.Count(buf.String(), "\n--- "); n != 13 {
		t.Errorf("%d message texts, want 13", n)
	}
}

// TestLadderHostileText: what a peer wrote cannot reach a terminal as a
// command: escape sequences in a reason phrase or a body become '.' or '?'.
func TestLadderHostileText(t *testing.T) {
	msgs := []Message{
		{Dir: "in", Local: edge, Remote: alice, Time: t0, Label: Label([]byte("SIP/2.0 200 \x1b[2J\x1b]0;pwned\x07\r\n")),
			Text: "SIP/2.0 200 \x1b[2J\r\nX: \xc2\x9b31m \xff\r\n\r\n"},
		{Dir: "out", Local: edge, Remote: edge, Time: t0, Label: "OPTIONS", Text: "OPTIONS sip:x SIP/2.0\r\n\r\n"},
	}
	var buf bytes.Buffer
	if err := WriteLadder(&buf, msgs); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\x07\u009b\ufffd") || strings.Contains(out, "\xff") {
		t.Fatalf("control characters written:\n%q", out)
	}
	if !strings.Contains(out, "200 ?[2J?]0;pwned?") || !strings.Contains(out, "SIP/2.0 200 .[2J") || !strings.Contains(out, "(to itself)") {
		t.Fatalf("%s", out)
	}
	buf.Reset()
	if WriteLadder(&buf, nil); buf.String() != "no messages\n" {
		t.Fatalf("%q", buf.String())
	}
}

// TestSDPSummary: what an arrow carrying SDP says.
func TestSDPSummary(t *testing.T) {
	msg := func(ct, body string) []byte {
		return []byte("INVITE sip:b SIP/2.0\r\nCall-ID: x\r\nContent-Type: " + ct + "\r\n\r\n" + body)
	}
	for _, tc := range []struct{ ct, body, want string }{
		{"application/sdp", sdpBody, "c=10.0.0.5 m=audio 4000 PCMU"},
		{"Application/SDP;charset=utf-8", "v=0\nc=IN IP6 2001:db8::5\nm=audio 5004 RTP/AVP 96\na=rtpmap:96 opus/48000/2\na=sendonly\n",
			"c=2001:db8::5 m=audio 5004 opus sendonly"},
		{"application/sdp", "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 8\r\na=inactive\r\nm=video 0 RTP/AVP 31\r\n",
			"c=0.0.0.0 m=audio 4000 PCMA inactive m=video 0 31"},
		{"application/sdp", "v=0\r\nm=audio 4000 RTP/AVP 18\r\nc=IN IP4 192.0.2.1\r\nm=image 4002 udptl t38\r\nc=IN IP4 192.0.2.2\r\n",
			"c=192.0.2.1 m=audio 4000 G729 c=192.0.2.2 m=image 4002 t38"},
		{"text/plain", sdpBody, ""},
		{"application/sdp", "", ""},
	} {
		if got := SDPSummary(msg(tc.ct, tc.body)); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.body, got, tc.want)
		}
	}
	if got := SDPSummary([]byte("SIP/2.0 200 OK\r\nc: application/sdp\r\n\r\nc=IN IP4 1.2.3.4\r\nm=audio 9 RTP/AVP 0\r\n")); got != "c=1.2.3.4 m=audio 9 PCMU" {
		t.Errorf("compact Content-Type: %q", got)
	}
}

// TestLabel: the arrow's text.
func TestLabel(t *testing.T) {
	for in, want := range map[string]string{
		"INVITE sip:b SIP/2.0\r\n":                               "INVITE",
		"SIP/2.0 180 Ringing\r\n":                                "180 Ringing",
		"SIP/2.0 500 A very long reason phrase indeed, cut here": "500 A very long reason phras",
		"SIP/2.0 200 OK":                                         "200 OK",
		"":                                                       "?",
		"garbage":                                                "?",
		"X\x00Y sip:b SIP/2.0":                                   "X?Y",
	} {
		if got := Label([]byte(in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// The header scanner: names in either case, white space before the
// colon (RFC 3261 §7.3.1), the compact form, and no match on a longer
// name, a continuation line or the body.
func TestHeader(t *testing.T) {
	for _, tc := range []struct {
		msg, long, short, want string
	}{
		{"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n", "cseq", "", "1 INVITE"},
		{"SIP/2.0 200 OK\r\ncseq :\t2 BYE \r\n\r\n", "cseq", "", "2 BYE"},
		{"SIP/2.0 200 OK\nCSEQ:3 ACK\n\n", "cseq", "", "3 ACK"},
		{"SIP/2.0 200 OK\r\nCSeq-X: 1 BYE\r\nCSeq: 2 INVITE\r\n\r\n", "cseq", "", "2 INVITE"},
		{"SIP/2.0 200 OK\r\nX: a\r\n CSeq: 1 BYE\r\n\r\nCSeq: 2 BYE", "cseq", "", ""},
		{"INVITE sip:b SIP/2.0\r\nContact: <sip:a>\r\nCall-ID: x\r\nc: application/sdp\r\n\r\n", "content-type", "c", "application/sdp"},
		{"INVITE sip:b SIP/2.0\r\nContent-Type: application/sdp\r\nc: text/plain\r\n\r\n", "content-type", "c", "application/sdp"},
		{"INVITE sip:b SIP/2.0\r\nContent\rType: application/sdp\r\n\r\n", "content-type", "c", ""},
		{"INVITE sip:b SIP/2.0\r\ni: abc@h\r\n\r\n", "call-id", "i", "abc@h"},
		{"INVITE sip:b SIP/2.0", "call-id", "i", ""},
	} {
		if got := string(header([]byte(tc.msg), tc.long, tc.short)); got != tc.want {
			t.Errorf("header(%q, %s): %q, want %q", tc.msg, tc.long, got, tc.want)
		}
	}
}
