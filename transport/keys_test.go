package transport

import (
	"bytes"
	"testing"

	"sipedge/sip"
)

func TestMessageKeys(t *testing.T) {
	tests := []struct {
		name, msg, id, method string
	}{
		{"request", "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: abc@h\r\nCSeq: 1 INVITE\r\n\r\n", "abc@h", "INVITE"},
		{"response, CSeq first", "SIP/2.0 200 OK\r\ncseq: 7\t BYE \r\ni: xyz\r\n\r\n", "xyz", "BYE"},
		{"folded Call-ID", "SIP/2.0 180 Ringing\r\nCall-ID:\r\n  fold@h\r\nCSeq : 2 INVITE\r\n\r\n", "fold@h", "INVITE"},
		{"no method", "SIP/2.0 200 OK\r\nCall-ID: q\r\nCSeq: 7\r\nCSeq: 8 BYE\r\n\r\n", "q", ""},
		{"no CSeq", "BYE sip:a SIP/2.0\r\nCall-ID: q\r\n\r\n", "q", ""},
		{"longer names", "SIP/2.0 200 OK\r\nCSeqX: 1 BYE\r\nCall-IDx: no\r\nin: no\r\nCSeq: 1 INFO\r\n\r\n", "", "INFO"},
		{"in the body", "SIP/2.0 200 OK\r\nContent-Length: 23\r\n\r\nCall-ID: b\r\nCSeq: 1 BYE", "", ""},
		{"continuation looks like a header", "BYE sip:a SIP/2.0\r\nSubject: a\r\n CSeq: 1 BYE\r\n\ti: no\r\n\r\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, m := MessageKeys([]byte(tt.msg))
			if string(id) != tt.id || string(m) != tt.method {
				t.Fatalf("MessageKeys = %q, %q; want %q, %q", id, m, tt.id, tt.method)
			}
			if c := (&TapEvent{Data: []byte(tt.msg)}).CallID(); string(c) != tt.id {
				t.Fatalf("CallID = %q, want %q", c, tt.id)
			}
		})
	}
	msg := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a>\r\nTo: <sip:b>\r\ni: abc@h\r\nCSeq: 1 INVITE\r\n\r\n")
	if a := testing.AllocsPerRun(100, func() { MessageKeys(msg) }); a != 0 {
		t.Errorf("MessageKeys: %.1f allocations", a)
	}
}

// FuzzMessageKeys checks the one-pass scanner against two plain ones, a
// pass per header: the same Call-ID and CSeq method for any bytes.
func FuzzMessageKeys(f *testing.F) {
	f.Add([]byte("SIP/2.0 200 OK\r\nCall-ID:\r\n  fold@h\r\nCSeq : 2 INVITE\r\n\r\n"))
	f.Add([]byte("BYE sip:a SIP/2.0\ni:x\nCSeq:\t7\v BYE\f\n\n"))
	f.Add([]byte("BYE sip:a SIP/2.0\r\nSubject: a\r\n CSeq: 1 BYE\r\n\ti: no\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, m := MessageKeys(b)
		if wid := plainCallID(b); !bytes.Equal(id, wid) || (id == nil) != (wid == nil) {
			t.Fatalf("Call-ID %q, one header at a time %q", id, wid)
		}
		if wm := plainCSeqMethod(b); !bytes.Equal(m, wm) || (m == nil) != (wm == nil) {
			t.Fatalf("CSeq method %q, one header at a time %q", m, wm)
		}
	})
}

// headerLines calls f with each header line of msg (its start offset,
// its end, the line without CR) until f returns true.
func headerLines(msg []byte, f func(start, end int, line []byte) bool) {
	i := bytes.IndexByte(msg, '\n')
	if i < 0 {
		return
	}
	for i++; i < len(msg); {
		end := lineEnd(msg, i)
		line := bytes.TrimSuffix(msg[i:end], []byte("\r"))
		if len(line) == 0 || f(i, end, line) {
			return
		}
		i = min(end+1, len(msg))
	}
}

func plainCallID(msg []byte) (id []byte) {
	headerLines(msg, func(i, end int, line []byte) bool {
		c := bytes.IndexByte(line, ':')
		if c <= 0 || line[0] == ' ' || line[0] == '\t' {
			return false
		}
		if name := trimSPHT(line[:c]); !sip.EqualFold(name, "call-id") && !sip.EqualFold(name, "i") {
			return false
		}
		for end+1 < len(msg) && (msg[end+1] == ' ' || msg[end+1] == '\t') {
			end = lineEnd(msg, end+1)
		}
		id = trimLWS(msg[i+c+1 : end])
		return true
	})
	return id
}

func plainCSeqMethod(msg []byte) (m []byte) {
	headerLines(msg, func(_, _ int, line []byte) bool {
		c := bytes.IndexByte(line, ':')
		if c <= 0 || line[0] == ' ' || line[0] == '\t' || !sip.EqualFold(trimSPHT(line[:c]), "cseq") {
			return false
		}
		v := bytes.TrimSpace(line[c+1:])
		if k := bytes.IndexAny(v, " \t"); k >= 0 {
			m = bytes.TrimSpace(v[k:])
		}
		return true
	})
	return m
}
