package transport

import "testing"

func TestProto(t *testing.T) {
	tests := []struct {
		in       string
		want     Proto
		wantErr  bool
		str      string
		reliable bool
	}{
		{"UDP", UDP, false, "UDP", false},
		{"udp", UDP, false, "UDP", false},
		{"Tcp", TCP, false, "TCP", true},
		{"tls", TLS, false, "TLS", true},
		{"SCTP", 0, true, "Proto(0)", false},
		{"", 0, true, "Proto(0)", false},
	}
	for _, tt := range tests {
		p, err := ParseProto(tt.in)
		if (err != nil) != tt.wantErr || p != tt.want {
			t.Errorf("ParseProto(%q) = %v, %v; want %v, err %v", tt.in, p, err, tt.want, tt.wantErr)
		}
		if p.String() != tt.str {
			t.Errorf("%q: String() = %q, want %q", tt.in, p.String(), tt.str)
		}
		if p.Reliable() != tt.reliable {
			t.Errorf("%q: Reliable() = %v", tt.in, p.Reliable())
		}
	}
}

func TestTransportForRequest(t *testing.T) {
	tests := []struct {
		name  string
		proto Proto
		size  int
		mtu   int
		want  Proto
	}{
		{"small UDP", UDP, 500, 0, UDP},
		{"1300 bytes stays UDP", UDP, 1300, 0, UDP},
		{"1301 bytes switches", UDP, 1301, 0, TCP},
		{"explicit 1500 MTU", UDP, 1301, 1500, TCP},
		{"jumbo MTU", UDP, 5000, 9000, UDP},
		{"within 200 of jumbo", UDP, 8801, 9000, TCP},
		{"small MTU", UDP, 400, 576, TCP},
		{"TCP stays TCP", TCP, 100000, 0, TCP},
		{"TLS stays TLS", TLS, 100000, 0, TLS},
		{"TLS small", TLS, 10, 0, TLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TransportForRequest(tt.proto, tt.size, tt.mtu); got != tt.want {
				t.Errorf("TransportForRequest(%v, %d, %d) = %v, want %v", tt.proto, tt.size, tt.mtu, got, tt.want)
			}
		})
	}
}
