package media

import (
	"net/netip"
	"time"
)

// DirStats describes the packets that came from one side of a stream.
type DirStats struct {
	Packets      uint64 // accepted: from the latched (or any, LatchOff) source
	Bytes        uint64 // UDP payload bytes of those
	RTCPPackets  uint64 // of Packets: RTCP, on either port
	OtherPackets uint64 // of Packets: neither RTP nor RTCP (STUN, DTLS, ...)
	Forwarded    uint64 // sent on to the other side
	Dropped      uint64 // refused source, peer not known yet, send error

	// From the RTP port, RFC 3550 A.1/A.3: cumulative loss between that
	// side and the relay (negative with duplicates), over every SSRC
	// seen. Jitter per A.8, in the
	// payload type's clock (0 for unknown types); it includes the
	// relay's own poll granularity (Config.Tick).
	Lost        int64
	JitterUnits uint32
	Jitter      time.Duration
	SSRC        uint32

	Source     netip.AddrPort // latched RTP source (LatchOff: the last one)
	RTCPSource netip.AddrPort // latched RTCP source
	First      time.Time      // first accepted packet; zero if none
	Last       time.Time      // last accepted packet; zero if none

	// What the relay knows about this side beyond its counters, for
	// telling why media does not flow.
	SDP     netip.AddrPort // RTP address this side's SDP advertised (SetPeer); zero: none (hold, no SDP yet)
	Latched bool           // the RTP port latched to Source (never with LatchOff)
	// RTP counts the RTP packets of Packets that came to the RTP port:
	// the ones loss and jitter are measured over.
	RTP uint64
	// PayloadType is the payload type of the last of those; meaningful
	// only when RTP > 0.
	PayloadType uint8
	// Dropped by reason. Foreign: from a source other than the latched
	// one (LatchSSRC; with LatchFirst the kernel refuses them after the
	// latch, so only those queued before it show). ForeignSource is the
	// last such source. NoPeer: accepted, but the other side's address
	// was not known (neither SDP nor a latch). SendErrors: forwarding
	// failed.
	Foreign       uint64
	ForeignSource netip.AddrPort
	NoPeer        uint64
	SendErrors    uint64

	// Kernel counts the packets of Packets (and Forwarded) that the
	// in-kernel path forwarded (Config.Kernel); InKernel says it
	// forwards this direction now. Loss and jitter then come from the
	// one packet in 32 that still passes through the relay thread, and
	// Lost stays where it was when the hand-over began until it ends.
	Kernel   uint64
	InKernel bool
}

// StreamStats is per direction: AtoB counts what side A sent.
type StreamStats struct {
	AtoB, BtoA DirStats
}

// Drops counts packets the relay did not forward, by reason.
type Drops struct {
	NoPeer    uint64 `json:"no_peer"`    // the other side's address not known yet
	Foreign   uint64 `json:"foreign"`    // from a source the latch refused (LatchFirst: only those queued before the latch)
	SendError uint64 `json:"send_error"` // sendmmsg failed (unreachable, buffer full, ...)
	Truncated uint64 `json:"truncated"`  // larger than any UDP payload: never
	RecvError uint64 `json:"recv_error"` // ICMP errors and other receive failures (not packets)
}

// RelayStats is the relay as a whole.
type RelayStats struct {
	Calls      int          `json:"calls"`
	Streams    int          `json:"streams"`      // Stream objects: media sections, each relayed both ways
	PortsInUse int          `json:"ports_in_use"` // over every local address
	PortsFree  int          `json:"ports_free"`   // over every local address used so far
	Received   uint64       `json:"received"`     // packets read
	Relayed    uint64       `json:"relayed"`      // packets forwarded
	Relatched  uint64       `json:"relatched"`    // LatchSSRC moves to a new source
	Drops      Drops        `json:"drops"`
	Kernel     KernelCounts `json:"kernel"` // the in-kernel path (Config.Kernel)
}

// KernelCounts is the in-kernel path in numbers.
type KernelCounts struct {
	Active     int    `json:"active"`     // 1 when latched streams are handed to nftables, 0 when the relay is userspace only
	Directions int    `json:"directions"` // stream directions the kernel forwards now
	Handovers  uint64 `json:"handovers"`  // directions handed to the kernel
	Returns    uint64 `json:"returns"`    // directions taken back (new SSRC, re-latch, re-INVITE, end of call)
	Refused    uint64 `json:"refused"`    // directions the kernel refused: they stay in userspace
}

// KernelStatus says whether the in-kernel path is in use and, if not, why.
type KernelStatus struct {
	Active bool   `json:"active"`
	Reason string `json:"reason,omitempty"` // why not, for the one log line
	// Streams directions forwarded by the kernel now; Added and Removed
	// count hand-overs; Failed counts directions the kernel refused.
	Directions int    `json:"directions"`
	Added      uint64 `json:"added"`
	Removed    uint64 `json:"removed"`
	Failed     uint64 `json:"failed"`
	LastError  string `json:"last_error,omitempty"`
}
