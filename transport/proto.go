package transport

import (
	"fmt"
	"strings"
)

// Proto is a SIP transport protocol (RFC 3261 §18). The names match the
// transport token of a Via header ("SIP/2.0/UDP").
type Proto uint8

// The transports this layer speaks. The zero value is deliberately invalid so
// a forgotten field is caught instead of silently meaning UDP.
const (
	UDP Proto = iota + 1
	TCP
	TLS
	// WS and WSS are SIP over WebSocket (RFC 7118), WSS over TLS. Their
	// connections are opened by the client only (a browser cannot accept
	// one): sipedge never dials them, it sends on the connection the
	// client opened.
	WS
	WSS
)

// String returns the Via transport token: "UDP", "TCP", "TLS", "WS" or
// "WSS" (RFC 7118 §5.2).
func (p Proto) String() string {
	switch p {
	case UDP:
		return "UDP"
	case TCP:
		return "TCP"
	case TLS:
		return "TLS"
	case WS:
		return "WS"
	case WSS:
		return "WSS"
	}
	return fmt.Sprintf("Proto(%d)", uint8(p))
}

// ParseProto parses a transport token case-insensitively, as transport
// parameters and Via tokens are compared (RFC 3261 §7.3.1, §19.1.1).
func ParseProto(s string) (Proto, error) {
	switch {
	case strings.EqualFold(s, "UDP"):
		return UDP, nil
	case strings.EqualFold(s, "TCP"):
		return TCP, nil
	case strings.EqualFold(s, "TLS"):
		return TLS, nil
	case strings.EqualFold(s, "WS"):
		return WS, nil
	case strings.EqualFold(s, "WSS"):
		return WSS, nil
	}
	return 0, fmt.Errorf("transport: unknown protocol %q", s)
}

// Reliable reports whether p is a reliable, connection-oriented transport. It
// decides, among other things, whether transactions retransmit (Timer A and
// Timer E only run over unreliable transports, RFC 3261 §17.1.1.2) and
// whether responses go back on the connection the request came on
// (§18.2.2). WebSocket is reliable too (RFC 7118: no retransmissions),
// but each WebSocket message holds one SIP message, so nothing there is
// framed by Content-Length.
func (p Proto) Reliable() bool { return p == TCP || p == TLS || p == WS || p == WSS }

// WebSocket reports whether p is WS or WSS.
func (p Proto) WebSocket() bool { return p == WS || p == WSS }

// Secure reports whether p runs over TLS (TLS, WSS): what a SIPS URI asks
// of each hop (RFC 3261 §26.2.2; RFC 7118 for WSS).
func (p Proto) Secure() bool { return p == TLS || p == WSS }

// Param is p's value of a SIP URI's transport parameter (RFC 3261
// §19.1.1; RFC 7118 for ws and wss), "" for UDP: the default a URI
// without the parameter means.
func (p Proto) Param() string {
	switch p {
	case TCP:
		return "tcp"
	case TLS:
		return "tls"
	case WS:
		return "ws"
	case WSS:
		return "wss"
	}
	return ""
}

// valid reports whether p is one of the defined transports.
func (p Proto) valid() bool { return p >= UDP && p <= WSS }

// Valid reports whether p is one of the transports (UDP, TCP, TLS, WS,
// WSS).
func (p Proto) Valid() bool { return p.valid() }

// DefaultMTU is the path MTU assumed when it is unknown (RFC 3261 §18.1.1
// uses Ethernet's 1500 bytes).
const DefaultMTU = 1500

// TransportForRequest returns the transport a request of size bytes should
// really be sent over when proto was chosen for it. RFC 3261 §18.1.1: a
// request within 200 bytes of the path MTU (or over 1300 bytes when the MTU
// is unknown) MUST go over a congestion-controlled transport such as TCP,
// because IP fragmentation of UDP loses whole messages. mtu <= 0 means
// unknown and uses DefaultMTU. Responses are not subject to this rule (they
// go back the way the request came, §18.2.2), and reliable transports are
// returned unchanged.
//
// The caller must decide before serializing the request, since the Via's
// transport token has to name the transport actually used.
func TransportForRequest(proto Proto, size int, mtu int) Proto {
	if mtu <= 0 {
		mtu = DefaultMTU
	}
	if proto == UDP && size > mtu-200 {
		return TCP
	}
	return proto
}
