package transport

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sipedge/sip"
)

// The RFC 4475 torture messages over UDP and TCP. The transport does not
// judge messages, but it must hand every datagram up unchanged, never
// invent or reorder stream bytes, and handle the two framing cases of
// §3.1.2.2 (clerr: Content-Length beyond the data — over TCP "wait, then
// close on timeout") and §3.1.2.3 (ncl: negative Content-Length — close).
func TestTortureMessages(t *testing.T) {
	files, _ := filepath.Glob("../sip/testdata/torture/rfc4475/*.dat")
	if len(files) == 0 {
		t.Skip("torture messages not found")
	}
	rec := newRecorder(nil)
	l := startLayer(t, Config{
		Listen:      []ListenSpec{{UDP, "127.0.0.1:0"}, {TCP, "127.0.0.1:0"}},
		IdleTimeout: 300 * time.Millisecond,
	}, rec)
	udpAddr, tcpAddr := addrOf(t, l, UDP), addrOf(t, l, TCP)

	type sent struct {
		name string
		data string
		conn net.Conn
	}
	var all []sent
	bySrc := map[netip.AddrPort]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := dialStream(t, TCP, tcpAddr, nil)
		bySrc[c.LocalAddr().(*net.TCPAddr).AddrPort()] = len(all)
		all = append(all, sent{filepath.Base(f), string(b), c})
		writeAll(t, c, string(b))
	}
	// Every connection ends: framing error, or a timeout after the last
	// complete message (all messages here either frame or stall).
	for _, s := range all {
		expectClosed(t, s.conn, 3*time.Second)
	}

	delivered := make([][]string, len(all))
	frameErr := make([]error, len(all))
	for len(rec.ch) > 0 {
		g := <-rec.ch
		i, ok := bySrc[g.src]
		if !ok {
			t.Fatalf("message from unknown source %v", g.src)
		}
		if g.frameErr != nil {
			frameErr[i] = g.frameErr
			continue
		}
		delivered[i] = append(delivered[i], g.data)
	}
	for i, s := range all {
		// Messages appear in stream order, separated only by the CRLFs
		// that framing skips (RFC 3261 §7.5).
		pos := 0
		for _, m := range delivered[i] {
			for pos < len(s.data) && (s.data[pos] == '\r' || s.data[pos] == '\n') {
				pos++
			}
			if !strings.HasPrefix(s.data[pos:], m) {
				t.Errorf("%s: delivered %q is not the stream's next message", s.name, trunc(m))
				break
			}
			pos += len(m)
		}
		var pe *sip.ParseError
		switch s.name {
		case "clerr.dat":
			if len(delivered[i]) != 0 || frameErr[i] != nil {
				t.Errorf("clerr over TCP: delivered %q, frameErr %v; want nothing until the timeout", delivered[i], frameErr[i])
			}
		case "dblreq.dat":
			// A CL=0 REGISTER, then the trailing octets: an INVITE whose
			// body is 5 bytes longer than its Content-Length of 150, and
			// those 5 bytes, "C\r\n\r\n", as a (garbage) third message
			// for the parser to reject.
			if len(delivered[i]) != 3 || delivered[i][2] != "C\r\n\r\n" {
				t.Errorf("dblreq over TCP: %q", delivered[i])
			}
		case "ncl.dat":
			if !errors.As(frameErr[i], &pe) || pe.Code != 400 {
				t.Errorf("ncl over TCP: frameErr %v, want 400", frameErr[i])
			}
		}
	}

	// UDP: each file is one datagram, handed up byte for byte.
	u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(udpAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, s := range all {
		if _, err := u.Write([]byte(s.data)); err != nil {
			t.Fatal(err)
		}
		if g := rec.next(t); g.data != s.data || g.proto != UDP {
			t.Errorf("%s over UDP: got %q", s.name, trunc(g.data))
		}
	}
}
