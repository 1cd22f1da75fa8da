package sip

import (
	"net/netip"
	"testing"
)

func TestParseIP(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for not an IP
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"[::ffff:192.0.2.1]", "192.0.2.1"}, // unmapped
		{"fe80::1%eth0", "fe80::1%eth0"},
		{"010.0.0.1", ""}, // leading zero: not accepted (octal elsewhere)
		{"example.com", ""},
		{"[]", ""},
		{"", ""},
		{"1.2.3.4.5", ""},
	}
	for _, tc := range tests {
		a, ok := ParseIP([]byte(tc.in))
		if tc.want == "" {
			if ok {
				t.Errorf("%q: got %v, want not an IP", tc.in, a)
			}
			continue
		}
		if !ok || a != netip.MustParseAddr(tc.want) {
			t.Errorf("%q: got %v %v, want %s", tc.in, a, ok, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ParseIP([]byte("[2001:db8::1]")) }); n != 0 {
		t.Errorf("ParseIP allocates %v", n)
	}
	if DefaultPort(false) != 5060 || DefaultPort(true) != 5061 {
		t.Error("DefaultPort")
	}
}
