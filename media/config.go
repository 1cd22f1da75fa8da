package media

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

// Errors returned by the relay. The proxy answers ErrNoPorts and
// ErrTooManyCalls with 503 (RFC 3261 §21.5.4: a temporary overload).
var (
	ErrNoPorts        = errors.New("media: no free port pair")
	ErrTooManyCalls   = errors.New("media: too many calls")
	ErrTooManyStreams = errors.New("media: too many streams in call")
	ErrClosed         = errors.New("media: closed")
	ErrFamily         = errors.New("media: peer address family differs from the local socket's")
)

// LatchMode says where the relay sends a leg's packets: to the address the
// SDP gave, or to where that leg's packets really come from (symmetric
// RTP, RFC 4961), which is what makes endpoints behind NAT work.
type LatchMode uint8

const (
	// LatchFirst locks each socket to the source of the first packet it
	// receives, until SetPeer gives that side a new SDP address. The
	// socket is then connect()ed to that source, so the kernel drops
	// packets from anywhere else (they show in the kernel's UDP NoPorts
	// counter, not in Drops.Foreign) and an endpoint whose NAT mapping
	// changes loses its media until it re-INVITEs. The default.
	LatchFirst LatchMode = iota
	// LatchSSRC latches like LatchFirst but moves the latch to a new
	// source when that source's packet carries the SSRC already seen on
	// the socket: an endpoint whose NAT binding changed keeps its media,
	// a third party that does not know the SSRC cannot take the stream
	// over.
	LatchSSRC
	// LatchOff never latches: packets go to the SDP address only, and
	// are accepted from any source.
	LatchOff
)

func (m LatchMode) String() string {
	switch m {
	case LatchFirst:
		return "first"
	case LatchSSRC:
		return "ssrc"
	case LatchOff:
		return "off"
	}
	return fmt.Sprintf("LatchMode(%d)", uint8(m))
}

// ParseLatchMode parses "first", "ssrc" or "off".
func ParseLatchMode(s string) (LatchMode, error) {
	for m := LatchFirst; m <= LatchOff; m++ {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("media: unknown latch mode %q", s)
}

// Side is one leg of a stream: A is the caller's side, B the callee's.
type Side uint8

const (
	SideA Side = iota
	SideB
)

func (s Side) String() string {
	switch s {
	case SideA:
		return "A"
	case SideB:
		return "B"
	}
	return fmt.Sprintf("Side(%d)", uint8(s))
}

func (s Side) other() Side { return 1 - s }

// Config configures a Relay. The zero value of every field but the port
// range means its default.
type Config struct {
	// PortMin and PortMax bound the ports the relay binds, inclusive.
	// PortMin must be even: RTP takes the even port of a pair and RTCP
	// the odd one above it (RFC 3550 §11, RFC 4566 §5.14). Each local
	// address has the whole range to itself.
	PortMin, PortMax int

	// Workers is the number of relay threads. Default: GOMAXPROCS.
	Workers int

	// Latch says where packets go; see LatchMode. Default LatchFirst.
	Latch LatchMode

	// Inactivity is how long a call's streams must all have carried no
	// packet, in either direction, before OnInactive is called. Default
	// 60s; negative disables the check.
	Inactivity time.Duration

	// OnInactive is called with the call ID when a call has been silent
	// for Inactivity: the proxy then ends the call (BYE on both sides).
	// It is called once per silence, on the relay's own goroutine, and
	// may call Call.Close; it must not block for long. Nil disables the
	// check.
	OnInactive func(callID string)

	// MaxCalls limits concurrent calls; 0 means only ports limit them.
	MaxCalls int
	// MaxStreamsPerCall limits the media sections of one call. Default 8.
	MaxStreamsPerCall int

	// Firewall, when set, opens each stream's ports while the stream
	// exists (pinholes; NFTables). Nil: the firewall is the admin's
	// business.
	Firewall Firewall

	// Kernel hands each direction of a stream to nftables once it has
	// latched and its SSRC has held still (kernel_linux.go): Linux, root
	// or CAP_NET_ADMIN, and IPv4 forwarding on. When any of it is
	// missing the relay stays in userspace and Relay.Kernel says why.
	Kernel bool
	// KernelForward, "FAMILY TABLE CHAIN" like the pinhole chain, names
	// the firewall table whose forward chains get a rule accepting the
	// packets the kernel path rewrote (they are untracked, so a forward
	// policy that accepts established flows only would drop them).
	KernelForward string
	// KernelForce uses the in-kernel path even where a forward chain of
	// another table drops by default (the admin has made it accept the
	// rewritten packets). Without it the relay then stays in userspace.
	KernelForce bool

	// Tick is how long a relay thread sleeps when a poll found nothing
	// more to do. Default 1ms. It bounds the latency the relay adds and
	// trades it for wake-ups, which cost about 60 µs of CPU each on a
	// virtualized host (docs/relay-limits.md §3).
	Tick time.Duration
}

// Firewall opens and closes pinholes for a stream's local ports (RTP and
// RTCP of both sides). Open failing fails the stream.
type Firewall interface {
	Open(ports []netip.AddrPort) error
	Close(ports []netip.AddrPort)
}

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	if c.PortMin < 1024 || c.PortMax > 65535 || c.PortMin%2 != 0 || c.PortMax < c.PortMin+1 {
		return c, fmt.Errorf("media: port range %d-%d: need an even PortMin >= 1024 and room for a pair below 65536", c.PortMin, c.PortMax)
	}
	if c.Latch > LatchOff {
		return c, fmt.Errorf("media: invalid latch mode %d", c.Latch)
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Inactivity == 0 {
		c.Inactivity = 60 * time.Second
	}
	if c.MaxStreamsPerCall <= 0 {
		c.MaxStreamsPerCall = 8
	}
	if c.Tick <= 0 {
		c.Tick = time.Millisecond
	}
	return c, nil
}

// pairs is the number of RTP/RTCP port pairs in the range.
func (c Config) pairs() int { return (c.PortMax - c.PortMin + 1) / 2 }
