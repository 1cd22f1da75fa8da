package nat

import (
	"net/netip"
	"testing"

	"sipedge/transport"
)

func TestBehind(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name         string
		contact, src string
		want         bool
	}{
		{"same address and port", "192.0.2.10:5060", "192.0.2.10:5060", false},
		{"default port written as 0", "192.0.2.10:0", "192.0.2.10:5060", false},
		{"cone NAT: private contact, public source", "10.77.0.10:5060", "203.0.113.1:5060", true},
		{"port remapped by the NAT", "203.0.113.1:5060", "203.0.113.1:40123", true},
		{"IPv4-mapped source is the same address", "192.0.2.10:5060", "[::ffff:192.0.2.10]:5060", false},
		{"IPv6 same", "[2001:db8::1]:5060", "[2001:db8::1]:5060", false},
		{"IPv6 different", "[fd00::1]:5060", "[2001:db8::1]:5060", true},
	} {
		if got := Behind(ap(tc.contact), ap(tc.src)); got != tc.want {
			t.Errorf("%s: Behind(%s, %s) = %v, want %v", tc.name, tc.contact, tc.src, got, tc.want)
		}
	}
	if Behind(netip.AddrPort{}, ap("192.0.2.1:5060")) {
		t.Error("a host-name contact (no address) must not count as NAT")
	}
}

func TestPrivate(t *testing.T) {
	for a, want := range map[string]bool{
		"10.1.2.3": true, "172.16.0.1": true, "172.32.0.1": false, "192.168.1.1": true,
		"100.64.0.1": true, "100.127.255.255": true, "100.128.0.1": false, // RFC 6598
		"127.0.0.1": true, "169.254.1.1": true, "203.0.113.1": false, "8.8.8.8": false,
		"fd00::1": true, "fe80::1": true, "2001:db8::1": false, "::ffff:10.0.0.1": true,
	} {
		if got := Private(netip.MustParseAddr(a)); got != want {
			t.Errorf("Private(%s) = %v, want %v", a, got, want)
		}
	}
}

func TestAlias(t *testing.T) {
	for _, tc := range []struct {
		src   string
		proto transport.Proto
		text  string
	}{
		{"203.0.113.1:40123", transport.UDP, ";alias=203.0.113.1~40123~1"},
		{"203.0.113.2:5060", transport.TCP, ";alias=203.0.113.2~5060~2"},
		{"[2001:db8::7]:5061", transport.TLS, ";alias=2001:db8::7~5061~3"},
		{"203.0.113.3:8080", transport.WS, ";alias=203.0.113.3~8080~5"},
		{"203.0.113.4:443", transport.WSS, ";alias=203.0.113.4~443~6"},
	} {
		src := netip.MustParseAddrPort(tc.src)
		got := string(AppendAlias(nil, src, tc.proto))
		if got != tc.text {
			t.Errorf("AppendAlias(%s) = %q, want %q", tc.src, got, tc.text)
			continue
		}
		a, p, ok := ParseAlias([]byte(got[len(";alias="):]))
		if !ok || a != src || p != tc.proto {
			t.Errorf("ParseAlias(%q) = %v %v %v", got, a, p, ok)
		}
	}
	for _, bad := range []string{"", "1.2.3.4", "1.2.3.4~5060", "1.2.3.4~5060~9", "1.2.3.4~0~1",
		"1.2.3.4~70000~1", "host~5060~1", "1.2.3.4~5060~1~1", "fe80::1%eth0~5060~1"} {
		if _, _, ok := ParseAlias([]byte(bad)); ok {
			t.Errorf("ParseAlias(%q) accepted", bad)
		}
	}
}

func FuzzParseAlias(f *testing.F) {
	for _, s := range []string{"203.0.113.1~40123~1", "2001:db8::7~5061~3", "~~", "1~1~1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, p, ok := ParseAlias(b)
		if !ok {
			return
		}
		// What parses must write back to something that parses the same.
		out := AppendAlias(nil, a, p)
		a2, p2, ok2 := ParseAlias(out[len(";alias="):])
		if !ok2 || a2 != a || p2 != p {
			t.Fatalf("%q → %v %v → %q → %v %v %v", b, a, p, out, a2, p2, ok2)
		}
	})
}

func TestDetect(t *testing.T) {
	ap := func(s string) netip.AddrPort {
		if s == "" {
			return netip.AddrPort{}
		}
		return netip.MustParseAddrPort(s)
	}
	for _, tc := range []struct {
		name              string
		via, contact, src string
		want              bool
	}{
		{"phone on the LAN, talking to the gateway directly", "10.77.0.10:5060", "10.77.0.10:5060", "10.77.0.10:5060", false},
		{"cone NAT keeps the port: Via says private, source is the NAT", "10.77.0.10:5060", "10.77.0.10:5060", "203.0.113.1:5060", true},
		{"symmetric NAT: new port", "10.77.0.10:5060", "10.77.0.10:5060", "203.0.113.1:61234", true},
		{"UA that learned its public address (STUN) but the NAT moves ports", "203.0.113.1:5060", "203.0.113.1:5060", "203.0.113.1:40000", true},
		{"host-name Via, private contact, public source", "", "192.168.1.20:5060", "198.51.100.9:5060", true},
		{"third-party contact on another local port", "127.0.0.1:25999", "127.0.0.1:25500", "127.0.0.1:25999", false},
		{"public UA, public contact", "198.51.100.9:5060", "198.51.100.9:5060", "198.51.100.9:5060", false},
		{"host names everywhere", "", "", "198.51.100.9:5060", false},
	} {
		if got := Detect(ap(tc.via), ap(tc.contact), ap(tc.src)); got != tc.want {
			t.Errorf("%s: Detect(via %s, contact %s, src %s) = %v, want %v", tc.name, tc.via, tc.contact, tc.src, got, tc.want)
		}
	}
}

// PrivatePrefixes and Private agree: every prefix's first and last
// address is private, the addresses just outside are not, and callers
// cannot change the list.
func TestPrivatePrefixes(t *testing.T) {
	ps := PrivatePrefixes()
	want := []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"}
	if len(ps) != len(want) {
		t.Fatalf("PrivatePrefixes() = %v, want %v", ps, want)
	}
	for i, p := range ps {
		if p.String() != want[i] {
			t.Errorf("PrivatePrefixes()[%d] = %s, want %s", i, p, want[i])
		}
		first := p.Addr()
		last := lastAddr(p)
		if !Private(first) || !Private(last) {
			t.Errorf("%s: Private(%s) = %v, Private(%s) = %v, want both true", p, first, Private(first), last, Private(last))
		}
		if before := first.Prev(); before.IsValid() && !before.IsLoopback() && !inAny(ps, before) && Private(before) {
			t.Errorf("%s: Private(%s) = true just below the prefix", p, before)
		}
		if after := last.Next(); after.IsValid() && !inAny(ps, after) && Private(after) {
			t.Errorf("%s: Private(%s) = true just above the prefix", p, after)
		}
	}
	ps[0] = netip.MustParsePrefix("8.8.8.0/24")
	if Private(netip.MustParseAddr("8.8.8.8")) || PrivatePrefixes()[0].String() != "10.0.0.0/8" {
		t.Error("changing the returned slice changed the private networks")
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
