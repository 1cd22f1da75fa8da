package transport

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netnsChildEnv marks the copy of the test binary run inside the namespace.
const netnsChildEnv = "SIPEDGE_TRANSPORT_NETNS_CHILD"

// On a host with two addresses in two subnets, one listener on each (a
// gateway's inside and outside), a datagram for a destination in one
// subnet leaves from the listener of that subnet's address, Send and
// SendBatch alike; and LocalFor names that listener. It runs in a network
// namespace of its own with two veth interfaces, so nothing leaves the
// host: the test binary re-runs itself inside it (the route lookups of
// the layer must happen in the namespace too, from any thread), and a
// packet socket on each interface sees the datagrams leave.
func TestUDPSourcePerDestinationNetns(t *testing.T) {
	if os.Getenv(netnsChildEnv) != "" {
		netnsChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs the ip command")
	}
	ns := fmt.Sprintf("sipedge-transport-test-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	run("-n", ns, "link", "set", "lo", "up")
	for i, a := range []string{"10.99.1.1/24", "10.99.2.1/24"} {
		// A veth pair whose other end has no address: what is routed out
		// of dev goes nowhere but past the capture socket. The static
		// neighbour entries spare the datagrams an ARP no one answers.
		dev := fmt.Sprintf("sipd%d", i+1)
		if out, err := exec.Command(ip, "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", dev+"p").CombinedOutput(); err != nil {
			t.Skipf("cannot create a veth pair: %v %s", err, out)
		}
		run("-n", ns, "addr", "add", a, "dev", dev)
		run("-n", ns, "link", "set", dev, "up")
		run("-n", ns, "link", "set", dev+"p", "up")
	}
	for i, dst := range []string{"10.99.1.2", "10.99.2.2", "10.99.2.77"} {
		dev := "sipd" + dst[6:7]
		run("-n", ns, "neigh", "replace", dst, "lladdr", fmt.Sprintf("02:00:00:00:00:%02x", i+1), "dev", dev, "nud", "permanent")
	}
	cmd := exec.Command(ip, "netns", "exec", ns, os.Args[0],
		"-test.run=^TestUDPSourcePerDestinationNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUDPSourcePerDestinationNetns") {
		t.Fatalf("in the namespace: %v\n%s", err, out)
	}
}

func netnsChild(t *testing.T) {
	inside := netip.MustParseAddrPort("10.99.1.1:5060")
	outside := netip.MustParseAddrPort("10.99.2.1:5060")
	// The inside listener first: the order in which the layer used to pick.
	l := startLayer(t, Config{Listen: []ListenSpec{
		{UDP, inside.String()}, {UDP, outside.String()}, {TCP, "0.0.0.0:5060"},
	}}, newRecorder(nil))

	caps := map[netip.Addr]*packetCapture{
		inside.Addr():  newPacketCapture(t, "sipd1"),
		outside.Addr(): newPacketCapture(t, "sipd2"),
	}
	tests := []struct {
		dst  netip.AddrPort
		from netip.AddrPort
	}{
		{netip.MustParseAddrPort("10.99.2.2:5099"), outside},
		{netip.MustParseAddrPort("10.99.1.2:5099"), inside},
		{netip.MustParseAddrPort("10.99.2.77:5098"), outside},
	}
	for _, tt := range tests {
		if got, ok := l.LocalFor(UDP, tt.dst.Addr()); !ok || got != tt.from {
			t.Errorf("LocalFor(UDP, %v) = %v %v, want %v", tt.dst.Addr(), got, ok, tt.from)
		}
		if got := l.RouteSource(tt.dst.Addr()); got != tt.from.Addr() {
			t.Errorf("RouteSource(%v) = %v, want %v", tt.dst.Addr(), got, tt.from.Addr())
		}
		// The TCP wildcard listener is advertised with the route's source.
		if got, ok := l.LocalFor(TCP, tt.dst.Addr()); !ok || got != netip.AddrPortFrom(tt.from.Addr(), 5060) {
			t.Errorf("LocalFor(TCP, %v) = %v %v", tt.dst.Addr(), got, ok)
		}
		for _, batch := range []bool{false, true} {
			msg := fmt.Sprintf("OPTIONS sip:%v SIP/2.0\r\nCall-ID: %v-%v\r\n\r\n", tt.dst, tt.dst, batch)
			if batch {
				if failed := l.SendBatch([]Outgoing{{UDP, tt.dst, []byte(msg)}}); failed != 0 {
					t.Fatalf("SendBatch to %v failed", tt.dst)
				}
			} else if err := l.Send(UDP, tt.dst, []byte(msg)); err != nil {
				t.Fatalf("Send to %v: %v", tt.dst, err)
			}
			src, payload := caps[tt.from.Addr()].next(t, tt.dst)
			if src != tt.from || payload != msg {
				t.Errorf("batch %v: datagram to %v left from %v (%q), want from %v", batch, tt.dst, src, payload, tt.from)
			}
		}
	}
}

// packetCapture reads the IPv4 packets leaving one interface with an
// AF_PACKET socket: the destinations are not local addresses, so no UDP
// socket in the namespace could receive them.
type packetCapture struct {
	fd int
}

func newPacketCapture(t *testing.T, dev string) *packetCapture {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	// ETH_P_ALL: only sockets of every protocol see outgoing packets.
	proto := htons(syscall.ETH_P_ALL)
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(proto))
	if err != nil {
		t.Skipf("packet socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return &packetCapture{fd: fd}
}

// next returns the source and payload of the next UDP datagram to dst,
// skipping anything else (ARP, IPv6 router solicitations).
func (c *packetCapture) next(t *testing.T, dst netip.AddrPort) (netip.AddrPort, string) {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := syscall.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // timeout: try again until the deadline
		}
		p := buf[:n]
		if n < 28 || p[0]>>4 != 4 || p[9] != syscall.IPPROTO_UDP {
			continue
		}
		ihl := int(p[0]&0xf) * 4
		if n < ihl+8 {
			continue
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), binary.BigEndian.Uint16(p[ihl:]))
		to := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[16:20])), binary.BigEndian.Uint16(p[ihl+2:]))
		if to == dst {
			return src, string(p[ihl+8:])
		}
	}
	t.Fatalf("no datagram to %v seen", dst)
	return netip.AddrPort{}, ""
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
