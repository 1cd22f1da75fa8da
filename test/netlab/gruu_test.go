package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGRUUContactGetsACK: a phone behind sipedge (gateway mode) registers
// with the provider asking for a GRUU (RFC 5627: Supported: gruu and a
// +sip.instance), reads the pub-gruu of the provider's 200 and, called from
// the WAN, answers with that GRUU as its Contact. The caller's ACK and BYE
// are then sent to the GRUU: the provider resolves it to the contact it
// holds for the phone — sipedge's passive-registrar URI
// sip:alice@203.0.113.1:5060;sipedge=<token> — and sends them to sipedge,
// which must take them to the phone.
//
// Why it exists: sipedge used to discard any ACK whose Request-URI named
// itself (an ACK for a 2xx it had answered), and the passive-registrar URI
// names sipedge. The phone never got its ACK, retransmitted its 200 (Timer
// G) and ended the call after 32 s (Timer H/L). So the test wants the ACK
// at the phone, the phone's 200 sent no more than twice, and the call alive
// beyond 32 s, until the caller's BYE reaches the phone and is answered.
// With a cone and with a symmetric NAT on the gateway.
func TestGRUUContactGetsACK(t *testing.T) {
	for _, natType := range []string{"cone", "symmetric"} {
		t.Run(natType, func(t *testing.T) {
			t.Parallel()
			testGRUUContactGetsACK(t, natType)
		})
	}
}

// gruuCallHold is how long the caller keeps the call before its BYE: more
// than 64*T1 = 32 s, when a phone without its ACK gives up.
const gruuCallHold = 35 * time.Second

func testGRUUContactGetsACK(t *testing.T, natType string) {
	l := startLab(t, "gateway", "NETLAB_NAT="+natType)
	l.kamailio()
	l.sipedge("gw", gatewayConfig)
	td, _ := filepath.Abs("testdata")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()

	capLAN := l.capture("lan", "udp port 5060")
	capWAN := l.captureOn("wan", "br0", "udp port 5060")
	defer capLAN.stop()
	defer capWAN.stop()

	// Register through sipedge, asking for a GRUU.
	var uuid [16]byte
	rand.Read(uuid[:])
	instance := fmt.Sprintf("%x-%x-%x-%x-%x", uuid[0:4], uuid[4:6], uuid[6:8], uuid[8:10], uuid[10:16])
	logs := filepath.Join(l.tmp, "reg-gruu-logs.log")
	l.sipp(ctx, "reg-gruu", "lan", "10.77.0.1:5060", "-sf", filepath.Join(td, "reg_gruu.xml"), "-s", "alice",
		"-key", "dom", "203.0.113.10", "-key", "instance", instance, "-i", "10.77.0.10", "-p", "5060", "-m", "1",
		"-trace_logs", "-log_file", logs, "-trace_msg", "-message_file", filepath.Join(l.tmp, "reg-gruu-msg.log"))
	b, _ := os.ReadFile(logs)
	m := regexp.MustCompile(`pub-gruu (\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no pub-gruu logged by the registration:\n%s", b)
	}
	gruu := string(m[1])
	if !strings.Contains(gruu, ";gr=") || !strings.Contains(gruu, "@203.0.113.10") {
		t.Fatalf("pub-gruu %q is not a GRUU of the provider's domain", gruu)
	}
	t.Logf("alice's GRUU: %s; %s", gruu, l.kamailioRegister("alice"))

	// alice answers with the GRUU as her Contact; carol (wan, .11) calls
	// her AoR through the provider and hangs up after gruuCallHold.
	uas := make(chan error, 1)
	go func() {
		uas <- runIn(ctx, l, "lan", "sipp", "-sf", filepath.Join(td, "uas_gruu.xml"), "-i", "10.77.0.10", "-p", "5060",
			"-key", "me", "alice", "-key", "gruu", gruu, "-mi", "10.77.0.10", "-mp", "20000", "-m", "1",
			"-nostdin", "-timeout", "80s", "-trace_err", "-error_file", filepath.Join(l.tmp, "uas-gruu-errors.log"),
			"-trace_msg", "-message_file", filepath.Join(l.tmp, "uas-gruu-msg.log"))
	}()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	uacErr := runIn(ctx, l, "wan", "sipp", "203.0.113.10:5060", "-sf", uacRTP, "-s", "alice",
		"-key", "dom", "203.0.113.10", "-key", "me", "carol", "-i", "203.0.113.11", "-p", "5060",
		"-mi", "203.0.113.11", "-mp", "30000", "-m", "1", "-d", strconv.Itoa(int(gruuCallHold/time.Millisecond)),
		"-nostdin", "-timeout", "80s", "-trace_err", "-error_file", filepath.Join(l.tmp, "uac-gruu-errors.log"),
		"-trace_msg", "-message_file", filepath.Join(l.tmp, "uac-gruu-msg.log"))
	uasErr := <-uas
	t.Logf("call ended after %v", time.Since(start).Round(100*time.Millisecond))
	capLAN.stop()
	capWAN.stop()

	// What alice saw and sent on her wire.
	pkts := sipPackets(t, capLAN.file)
	var ok200, acks, byes, byeOK int
	var t200, tBye time.Time
	for _, p := range pkts {
		switch {
		case p.src == "10.77.0.10:5060" && p.isResponse(200, "INVITE"):
			ok200++
			if t200.IsZero() {
				t200 = p.at
			}
		case p.dst == "10.77.0.10:5060" && p.method() == "ACK":
			acks++
			t.Logf("ACK at alice: %s", p.firstLine())
		case p.dst == "10.77.0.10:5060" && p.method() == "BYE":
			byes++
			if tBye.IsZero() {
				tBye = p.at
			}
		case p.src == "10.77.0.10:5060" && p.isResponse(200, "BYE"):
			byeOK++
		}
	}
	// What went to sipedge from the provider: the ACK's Request-URI.
	for _, p := range sipPackets(t, capWAN.file) {
		if p.method() == "ACK" || p.method() == "BYE" {
			t.Logf("%s %s>%s: %s", p.method(), p.src, p.dst, p.firstLine())
		}
	}
	t.Logf("at alice: 200 (INVITE) sent %d times, ACKs received %d, BYEs received %d, 200 (BYE) sent %d", ok200, acks, byes, byeOK)
	if ok200 == 0 {
		t.Errorf("alice never answered the INVITE")
	}
	if acks == 0 {
		t.Errorf("the ACK of alice's 200 never reached her (Contact = GRUU %s)", gruu)
	}
	if ok200 > 2 {
		t.Errorf("alice sent her 200 %d times: it was not ACKed in time", ok200)
	}
	if byes == 0 || byeOK == 0 {
		t.Errorf("the caller's BYE reached alice %d times, answered %d times; want both", byes, byeOK)
	} else if d := tBye.Sub(t200); d < 32*time.Second {
		t.Errorf("the call lasted %v from alice's 200 to the BYE, want over 32 s", d)
	} else {
		t.Logf("call up %v from alice's 200 to the BYE", d.Round(100*time.Millisecond))
	}
	if uacErr != nil {
		t.Errorf("carol (sipp UAC): %v\n%s", uacErr, tail([]byte(l.logFile("uac-gruu-errors")), 3000))
	}
	if uasErr != nil {
		t.Errorf("alice (sipp UAS): %v\n%s", uasErr, tail([]byte(l.logFile("uas-gruu-errors")), 3000))
	}
}

// TestNoInsideSourceOnOutside: sipedge on the gateway sends nothing out of
// the outside interface with an inside source address. A counter of the
// test's own on the gateway's postrouting hook, at priority 50 — before the
// masquerade (srcnat, 100) rewrites the source — counts SIP packets (UDP
// from port 5060, or TCP) leaving "outside" with a source in 10.77.0.0/24,
// while a phone registers with the provider through sipedge, calls out and
// is called. It must stay at 0.
//
// Why it exists: sipedge wrote 203.0.113.1 into its Via but sent from its
// inside socket 10.77.0.1:5060, so the gateway's masquerade rewrote the
// source — behind a symmetric NAT to a random port. The provider's NAT
// detection then stored that mapping (received/rport) for the registration,
// and it soon died. The NAT here is symmetric, the case where the damage
// shows; the counter itself does not depend on the NAT type.
func TestNoInsideSourceOnOutside(t *testing.T) {
	t.Parallel()
	l := startLab(t, "gateway", "NETLAB_NAT=symmetric")
	l.kamailio()
	l.sipedge("gw", gatewayConfig)
	l.nft(`table inet sipedgetest {
  counter leaked {}
  counter leaked_other {}
  counter outside_sip {}
  chain post {
    type filter hook postrouting priority 50; policy accept;
    oifname "outside" ip saddr 10.77.0.0/24 udp sport 5060 counter name "leaked"
    oifname "outside" ip saddr 10.77.0.0/24 meta l4proto tcp counter name "leaked"
    oifname "outside" ip saddr 10.77.0.0/24 udp sport != 5060 counter name "leaked_other"
    oifname "outside" ip saddr 203.0.113.1 udp sport 5060 counter name "outside_sip"
  }
}
`)
	t.Cleanup(func() {
		if out, err := l.cmd("gw", "nft", "delete", "table", "inet", "sipedgetest").CombinedOutput(); err != nil {
			t.Logf("nft delete table: %v\n%s", err, out)
		}
	})
	sip := filepath.Join(l.dir, "sip")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	capOut := l.captureOn("gw", "outside", "udp port 5060 or tcp port 5060")
	defer capOut.stop()

	l.sipp(ctx, "reg-alice", "lan", "10.77.0.1:5060", "-sf", filepath.Join(sip, "reg.xml"), "-s", "alice",
		"-key", "dom", "203.0.113.10", "-i", "10.77.0.10", "-p", "5060", "-m", "1")
	t.Logf("after REGISTER: leaked %d; %s", l.testCounter("leaked"), l.kamailioRegister("alice"))

	// Outgoing: alice calls 2000, a remote party at 203.0.113.11.
	uas := make(chan error, 1)
	go func() {
		uas <- runIn(ctx, l, "wan", "sipp", "-sf", filepath.Join(sip, "uas_rtp.xml"), "-i", "203.0.113.11", "-p", "5060",
			"-key", "me", "u2000", "-mi", "203.0.113.11", "-mp", "20000", "-m", "1", "-nostdin", "-timeout", "30s")
	}()
	time.Sleep(500 * time.Millisecond)
	l.sipp(ctx, "uac-out", "lan", "10.77.0.1:5060", "-sf", uacRTP, "-s", "2000",
		"-key", "dom", "203.0.113.10", "-key", "me", "alice", "-i", "10.77.0.10", "-p", "5060",
		"-mi", "10.77.0.10", "-mp", "30000", "-m", "1", "-d", "2000")
	if err := <-uas; err != nil {
		t.Fatalf("sipp UAS 2000: %v", err)
	}
	t.Logf("after the outgoing call: leaked %d", l.testCounter("leaked"))

	// Incoming: carol (203.0.113.12) calls alice's AoR at the provider.
	uas = make(chan error, 1)
	go func() {
		uas <- runIn(ctx, l, "lan", "sipp", "-sf", filepath.Join(sip, "uas_rtp.xml"), "-i", "10.77.0.10", "-p", "5060",
			"-key", "me", "alice", "-mi", "10.77.0.10", "-mp", "20000", "-m", "1", "-nostdin", "-timeout", "30s")
	}()
	time.Sleep(500 * time.Millisecond)
	l.sipp(ctx, "uac-in", "wan", "203.0.113.10:5060", "-sf", uacRTP, "-s", "alice",
		"-key", "dom", "203.0.113.10", "-key", "me", "carol", "-i", "203.0.113.12", "-p", "5060",
		"-mi", "203.0.113.12", "-mp", "30000", "-m", "1", "-d", "2000")
	if err := <-uas; err != nil {
		t.Fatalf("sipp UAS alice: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	capOut.stop()

	leaked, other, good := l.testCounter("leaked"), l.testCounter("leaked_other"), l.testCounter("outside_sip")
	t.Logf("left outside: %d SIP packets from 203.0.113.1:5060, %d SIP packets with an inside source, %d other UDP with an inside source",
		good, leaked, other)
	if good <= 0 && leaked == 0 {
		t.Errorf("no SIP left outside at all (counter %d): the test proves nothing", good)
	}
	// The symptom at the provider: the REGISTER's source is what it
	// stores as alice's NAT mapping.
	if reg := l.kamailioRegister("alice"); !strings.HasSuffix(reg, " from 203.0.113.1:5060") {
		t.Errorf("the REGISTER did not reach the provider from sipedge's outside socket 203.0.113.1:5060: %s", reg)
	}
	if leaked != 0 {
		// After the masquerade they show on the wire as 203.0.113.1 from
		// a port other than 5060.
		var seen []string
		for _, p := range sipPackets(t, capOut.file) {
			if strings.HasPrefix(p.src, "203.0.113.1:") && p.src != "203.0.113.1:5060" {
				seen = append(seen, fmt.Sprintf("%s>%s %s", p.src, p.dst, p.firstLine()))
			}
		}
		t.Errorf("%d SIP packets left the outside interface with an inside source (10.77.0.0/24) before NAT; on the wire after masquerade:\n%s",
			leaked, strings.Join(seen, "\n"))
	}
	if other != 0 {
		t.Logf("note: %d non-SIP UDP packets (media?) left outside with an inside source", other)
	}
}

// nft loads a ruleset into the gateway's nftables.
func (l *lab) nft(ruleset string) {
	l.t.Helper()
	c := l.cmd("gw", "nft", "-f", "-")
	c.Stdin = strings.NewReader(ruleset)
	if out, err := c.CombinedOutput(); err != nil {
		l.t.Fatalf("nft: %v\n%s", err, out)
	}
}

// testCounter reads a named counter of the table sipedgetest on the
// gateway.
func (l *lab) testCounter(name string) int {
	out, _ := l.cmd("gw", "nft", "list", "counter", "inet", "sipedgetest", name).CombinedOutput()
	if m := counterRE.FindStringSubmatch(string(out)); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return -1
}

// kamailioRegister returns the provider's log line of user's last
// REGISTER: the contact it stored and the source it came from.
func (l *lab) kamailioRegister(user string) string {
	lines := regexp.MustCompile(`REGISTER sip:`+user+`@\S+ contact=.*`).FindAllString(l.logFile("kamailio"), -1)
	if len(lines) == 0 {
		return "provider: no REGISTER of " + user + " logged"
	}
	return "provider: " + lines[len(lines)-1]
}

// sipPacket is one UDP datagram of a capture.
type sipPacket struct {
	at       time.Time
	src, dst string // ip:port
	payload  []byte
}

func (p sipPacket) firstLine() string {
	line, _, _ := bytes.Cut(p.payload, []byte("\r\n"))
	return string(line)
}

// method is the request's method, "" for a response.
func (p sipPacket) method() string {
	m, _, _ := strings.Cut(p.firstLine(), " ")
	if strings.HasPrefix(m, "SIP/") {
		return ""
	}
	return m
}

// isResponse tells whether p is a response with code to method.
func (p sipPacket) isResponse(code int, method string) bool {
	if !strings.HasPrefix(p.firstLine(), fmt.Sprintf("SIP/2.0 %d ", code)) {
		return false
	}
	cseq := regexp.MustCompile(`(?im)^CSeq:\s*\d+\s+(\w+)`).FindSubmatch(p.payload)
	return cseq != nil && string(cseq[1]) == method
}

// sipPackets reads the UDP datagrams of a pcap (Ethernet, IPv4).
func sipPackets(t *testing.T, file string) []sipPacket {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian pcap file", file)
	}
	var out []sipPacket
	for p := 24; p+16 <= len(b); {
		sec, usec := binary.LittleEndian.Uint32(b[p:]), binary.LittleEndian.Uint32(b[p+4:])
		incl := int(binary.LittleEndian.Uint32(b[p+8:]))
		pkt := b[p+16 : min(len(b), p+16+incl)]
		p += 16 + incl
		if len(pkt) < 14+20+8 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		out = append(out, sipPacket{
			at:      time.Unix(int64(sec), int64(usec)*1000),
			src:     fmt.Sprintf("%d.%d.%d.%d:%d", ip[12], ip[13], ip[14], ip[15], binary.BigEndian.Uint16(udp)),
			dst:     fmt.Sprintf("%d.%d.%d.%d:%d", ip[16], ip[17], ip[18], ip[19], binary.BigEndian.Uint16(udp[2:])),
			payload: udp[8:],
		})
	}
	return out
}
