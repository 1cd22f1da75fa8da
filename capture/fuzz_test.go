package capture

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/transport"
)

// checkInvariants: every followed call is on the list of its state and
// nowhere else, the lists' counts are right, the bounds hold, and the
// chunks in calls add up.
func checkInvariants(t *testing.T, c *Capture) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen, chunks := 0, 0
	for st := range c.lists {
		l := &c.lists[st]
		n := 0
		var prev *call
		for cl := l.head; cl != nil; cl = cl.next {
			if cl.prev != prev || int(cl.state) != st || c.calls[cl.id] != cl {
				t.Fatalf("list %d: call %q out of place (state %d)", st, cl.id, cl.state)
			}
			if cl.n > c.cfg.MaxMessages || cl.used > len(cl.chunks)*chunkSize {
				t.Fatalf("call %q: %d messages, %d bytes in %d chunks", cl.id, cl.n, cl.used, len(cl.chunks))
			}
			chunks += len(cl.chunks)
			prev = cl
			n++
		}
		if n != l.n || l.tail != prev {
			t.Fatalf("list %d: %d calls, counted %d", st, n, l.n)
		}
		seen += n
	}
	if seen != len(c.calls) || chunks != c.chunks || c.allocated > c.maxChunks || c.chunks+len(c.freeChunks) != c.allocated {
		t.Fatalf("%d calls on lists of %d; %d chunks in calls, %d counted, %d free, %d allocated", seen, len(c.calls), chunks, c.chunks, len(c.freeChunks), c.allocated)
	}
	if c.lists[stActive].n > c.cfg.MaxActive || c.lists[stEnded].n+c.lists[stEndedLocal].n > c.cfg.MaxCalls || c.lists[stUnconfirmed].n > maxUnconfirmed {
		t.Fatalf("over the bounds: %d active, %d ended", c.lists[stActive].n, c.lists[stEnded].n+c.lists[stEndedLocal].n)
	}
}

// FuzzTap feeds messages (separated by "|||", each preceded by a byte
// choosing direction and transport) to a small capture, checks its
// invariants after each, then reads every call back and exports it.
func FuzzTap(f *testing.F) {
	call := func(id string) string {
		var b strings.Builder
		for i, m := range []string{"INVITE", "100 INVITE", "INVITE", "180 INVITE", "200 INVITE", "ACK", "BYE", "200 BYE"} {
			b.WriteByte(byte(i))
			b.Write(sipMsg(id, m))
			b.WriteString("|||")
		}
		return b.String()
	}
	f.Add([]byte(call("a") + call("b") + call("a")))
	f.Add([]byte("\x01INVITE sip:x SIP/2.0\r\ni: x\r\n\r\n|||\x03SIP/2.0 407 x\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n|||\x01INVITE x\r\ni:x\r\n\r\n"))
	f.Add([]byte("\x03SIP/2.0 100 a\r\nCall-ID: x\r\nContent-Length: 2\r\n\r\nabSIP/2.0 180 b\r\nCall-ID: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := New(Config{MaxCalls: 3, MaxActive: 3, MaxMessages: 6, MaxBytes: 4 * chunkSize})
		ids := map[string]bool{}
		for i, part := range bytes.Split(data, []byte("|||")) {
			if len(part) == 0 {
				continue
			}
			ctl, msg := part[0], part[1:]
			ev := transport.TapEvent{Dir: transport.TapIn, Proto: transport.Proto(ctl>>1%3 + 1), Local: anyAddr, Remote: alice,
				Time: t0.Add(time.Duration(i) * time.Hour), Data: msg}
			if ctl&1 == 1 {
				ev.Dir, ev.Local = transport.TapOut, edge
			}
			c.Tap(&ev)
			checkInvariants(t, c)
			if id, _ := transport.MessageKeys(msg); len(id) > 0 {
				ids[string(id)] = true
			}
		}
		st := c.Stats()
		if st.Bytes > 4*chunkSize {
			t.Fatalf("%+v", st)
		}
		for id := range ids {
			msgs, _, ok := c.Messages(id)
			if !ok {
				continue
			}
			if len(msgs) > 6 {
				t.Fatalf("%d messages", len(msgs))
			}
			var buf bytes.Buffer
			if err := WriteLadder(&buf, msgs); err != nil {
				t.Fatal(err)
			}
			buf.Reset()
			if err := WritePcap(&buf, msgs); err != nil {
				t.Fatal(err)
			}
			if got := readPcap(t, buf.Bytes()); len(got) != len(msgs) {
				t.Fatalf("%d frames for %d messages", len(got), len(msgs))
			}
		}
	})
}

// FuzzScan: the scanners read any bytes without failing, and what they
// return for display is printable.
func FuzzScan(f *testing.F) {
	f.Add(withSDP(sipMsg("x", "200 INVITE"), sdpBody))
	f.Add([]byte("INVITE sip:b SIP/2.0\nc:application/sdp\n\nm=audio 1 RTP/AVP\nc=IN IP4\na=rtpmap:"))
	f.Add([]byte("SIP/2.0 99999 \r\nCSeq:\t7\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		startLine(b)
		header(b, "call-id", "i")
		for _, s := range []string{Label(b), SDPSummary(b)} {
			for i := 0; i < len(s); i++ {
				if s[i] < 0x20 || s[i] > 0x7e {
					t.Fatalf("%q", s)
				}
			}
		}
		if len(SDPSummary(b)) > 160 {
			t.Fatal("summary too long")
		}
		if l := startLine(b); l.response && (l.code < 0 || l.code > 999) {
			t.Fatal(l.code)
		}
	})
}

// FuzzLadder: any messages make a ladder whose text holds no terminal
// control characters.
func FuzzLadder(f *testing.F) {
	f.Add("INVITE sip:x SIP/2.0\r\n\x1b[2J", "SIP/2.0 200 \xc2\x9b", uint16(5060), true)
	f.Fuzz(func(t *testing.T, a, b string, port uint16, self bool) {
		remote := alice
		if self {
			remote = edge
		}
		msgs := []Message{
			{Dir: "in", Local: edge, Remote: remote, Time: t0, Text: a, Label: Label([]byte(a)), SDP: SDPSummary([]byte(a)), Size: len(a)},
			{Dir: "out", Local: edge, Remote: netip.AddrPortFrom(bob.Addr(), port), Time: t0.Add(-time.Second), Text: b,
				Label: Label([]byte(b)), SDP: SDPSummary([]byte(b)), Size: len(b)},
		}
		var buf bytes.Buffer
		if err := WriteLadder(&buf, msgs); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, r := range out {
			if r < 0x20 && r != '\t' && r != '\r' && r != '\n' || r >= 0x7f && r <= 0x9f {
				t.Fatalf("control character %U in %q", r, out)
			}
		}
	})
}
