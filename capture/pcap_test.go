package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readPcap decodes what WritePcap writes: each record's time and the
// UDP datagram of its frame (addresses, ports, payload). It checks the
// lengths every reader relies on.
func readPcap(t testing.TB, b []byte) []Message {
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("not a little-endian Ethernet pcap")
	}
	b = b[24:]
	var out []Message
	for len(b) > 0 {
		if len(b) < 16 {
			t.Fatalf("cut record header")
		}
		sec, usec := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
		incl, orig := int(binary.LittleEndian.Uint32(b[8:])), int(binary.LittleEndian.Uint32(b[12:]))
		if incl != orig || incl > len(b)-16 {
			t.Fatalf("record lengths %d/%d of %d", incl, orig, len(b)-16)
		}
		f := b[16 : 16+incl]
		b = b[16+incl:]
		var src, dst netip.Addr
		var udp []byte
		switch binary.BigEndian.Uint16(f[12:]) {
		case 0x0800:
			ip := f[14:]
			if total := int(binary.BigEndian.Uint16(ip[2:])); total != len(ip) || fold(sum(0, ip[:20])) != 0xffff {
				t.Fatalf("IPv4 length %d of %d, or bad header checksum", total, len(ip))
			}
			src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
			udp = ip[20:]
		case 0x86dd:
			ip := f[14:]
			if pl := int(binary.BigEndian.Uint16(ip[4:])); pl != len(ip)-40 || ip[6] != 17 {
				t.Fatalf("IPv6 payload length %d of %d", pl, len(ip)-40)
			}
			src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
			udp = ip[40:]
		default:
			t.Fatalf("EtherType %x", f[12:14])
		}
		if int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
			t.Fatalf("UDP length")
		}
		out = append(out, Message{Dir: "out", Local: netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp)),
			Remote: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:])), Text: string(udp[8:]),
			Time: time.Unix(int64(sec), int64(usec)*1000)})
	}
	return out
}

func pcapMessages() []Message {
	msgs := ladderCall()
	v6a, v6b := netip.MustParseAddrPort("[2001:db8::1]:5060"), netip.MustParseAddrPort("[2001:db8::2]:5062")
	msgs = append(msgs,
		Message{Dir: "in", Transport: "TLS", Local: v6a, Remote: v6b, Time: t0.Add(time.Second), Text: "OPTIONS sip:tls-over-v6 SIP/2.0\r\n\r\n"},
		// A dual-stack socket: an IPv4 peer, an IPv6 local address.
		Message{Dir: "out", Transport: "TCP", Local: v6a, Remote: alice, Time: t0.Add(2 * time.Second), Text: "SIP/2.0 200 mixed families\r\n\r\n"},
		Message{Dir: "out", Transport: "UDP", Local: edge, Remote: bob, Time: t0.Add(3 * time.Second), Text: "odd"})
	return msgs
}

// TestPcap: every message is one frame from its source to its
// destination with its bytes; checked by decoding the file here and by
// tcpdump, which also verifies the IP and UDP checksums.
func TestPcap(t *testing.T) {
	msgs := pcapMessages()
	var buf bytes.Buffer
	if err := WritePcap(&buf, msgs); err != nil {
		t.Fatal(err)
	}
	got := readPcap(t, buf.Bytes())
	if len(got) != len(msgs) {
		t.Fatalf("%d frames, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		src, dst := msgs[i].Src(), msgs[i].Dst()
		if i == len(msgs)-2 { // the IPv4 peer of an IPv6 socket, written mapped
			dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
		}
		if got[i].Local != src || got[i].Remote != dst || got[i].Text != msgs[i].Text || !got[i].Time.Equal(msgs[i].Time.Truncate(time.Microsecond)) {
			t.Errorf("frame %d: %s > %s at %s, want %s > %s at %s", i, got[i].Local, got[i].Remote, got[i].Time, src, dst, msgs[i].Time)
		}
	}

	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tcpdump not installed (test.sh installs it)")
		}
		t.Skip("tcpdump not installed")
	}
	file := filepath.Join(t.TempDir(), "call.pcap")
	os.WriteFile(file, buf.Bytes(), 0o644)
	outb, err := exec.Command(tcpdump, "-r", file, "-n", "-vv", "-A").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, outb)
	}
	out := string(outb)
	if strings.Contains(out, "bad") || strings.Contains(out, "truncated") {
		t.Fatalf("tcpdump found a defect:\n%s", out)
	}
	// Each frame: "SRC.PORT > DST.PORT: [udp sum ok] SIP, length N" in
	// order, its text after it.
	pos := 0
	for i, m := range msgs {
		src, dst := m.Src(), m.Dst()
		if i == len(msgs)-2 {
			dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
		}
		head := fmt.Sprintf("%s.%d > %s.%d: [udp sum ok]", src.Addr(), src.Port(), dst.Addr(), dst.Port())
		k := strings.Index(out[pos:], head)
		if k < 0 {
			t.Fatalf("frame %d: no %q after offset %d in:\n%s", i, head, pos, out)
		}
		pos += k + len(head)
		first, _, _ := strings.Cut(m.Text, "\r\n")
		if !strings.Contains(out[pos:], first) {
			t.Fatalf("frame %d: its text %q is missing", i, first)
		}
	}
	if n := strings.Count(out, "[udp sum ok]"); n != len(msgs) {
		t.Fatalf("%d frames with a good checksum, want %d:\n%s", n, len(msgs), out)
	}
}
