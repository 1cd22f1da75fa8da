package media

import "encoding/binary"

// pktKind is what readHeader found in a datagram.
type pktKind uint8

const (
	// kindOther is anything that is not RTP or RTCP: STUN, DTLS, ZRTP,
	// keep-alive runts. It is forwarded like media but not counted as such.
	kindOther pktKind = iota
	kindRTP
	kindRTCP
)

// header is the part of an RTP or RTCP header the relay reads. Nothing
// beyond it is ever looked at: payloads (SRTP included) pass untouched.
type header struct {
	kind pktKind
	pt   uint8  // RTP payload type (marker bit removed); RTCP packet type
	seq  uint16 // RTP only
	ts   uint32 // RTP only
	ssrc uint32 // RTP SSRC, or the RTCP sender's SSRC
}

// readHeader classifies b and reads its header fields.
//
// The first byte separates RTP/RTCP (128-191, version 2) from STUN (0-3),
// ZRTP (16-19) and DTLS (20-63), as RFC 7983 §7 demultiplexes them on one
// port. The second byte separates RTCP from RTP when both share a port
// (rtcp-mux): RFC 5761 §4 reserves 192-223 for RTCP, which covers SR/RR/
// SDES/BYE/APP (200-204) and the RFC 4585 feedback types (205, 206), so a
// PLI or NACK is never taken for an RTP packet of payload type 77 or 78.
//
// An RTP header must hold its CSRC list (RFC 3550 §5.1); an RTCP header
// must hold the sender SSRC (RFC 3550 §6.4). Shorter datagrams are kindOther.
func readHeader(b []byte) header {
	if len(b) < 8 || b[0]>>6 != 2 {
		return header{}
	}
	if pt := b[1]; pt >= 192 && pt <= 223 {
		return header{kind: kindRTCP, pt: pt, ssrc: binary.BigEndian.Uint32(b[4:8])}
	}
	if len(b) < 12+4*int(b[0]&0x0f) {
		return header{}
	}
	return header{
		kind: kindRTP,
		pt:   b[1] & 0x7f,
		seq:  binary.BigEndian.Uint16(b[2:4]),
		ts:   binary.BigEndian.Uint32(b[4:8]),
		ssrc: binary.BigEndian.Uint32(b[8:12]),
	}
}

// staticClock is the RTP clock rate of the static payload types of
// RFC 3551 §6 (Tables 4 and 5); 0 where the type is unassigned or dynamic.
// G.722 (9) runs an 8000 Hz RTP clock although it samples at 16 kHz
// (RFC 3551 §4.5.2). Dynamic types (96-127) get their rate from the SDP
// rtpmap through Stream.SetClockRate.
var staticClock = [128]uint32{
	0: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000,
	10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000,
	16: 11025, 17: 22050, 18: 8000,
	25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000, 33: 90000, 34: 90000,
}

// rtpRecv is the receiver state of RFC 3550 Appendix A.1 (sequence
// validation, cycle counting, loss) and A.8 (interarrival jitter) for the
// RTP flow arriving from one side of a stream.
type rtpRecv struct {
	ssrc    uint32
	started bool // a packet of this SSRC was seen

	// A.1 source state.
	maxSeq    uint16
	cycles    uint32 // count of sequence number wraps, shifted left 16
	baseSeq   uint32
	badSeq    uint32
	probation int
	valid     bool   // probation passed: base and counts are meaningful
	received  uint64 // packets counted since the source became valid
	lostPrior int64  // loss accumulated under earlier SSRCs

	// A.8 jitter, in timestamp units scaled by 16.
	jitter      uint32
	transit     uint32
	haveTransit bool
	rate        uint32 // clock rate the transit was measured in
}

// RFC 3550 A.1 constants.
const (
	maxDropout    = 3000
	maxMisorder   = 100
	minSequential = 2
	seqMod        = 1 << 16
)

// update accounts one RTP packet with sequence number seq and timestamp
// ts, arrived at arrival (nanoseconds on any monotonic clock) with clock
// rate hz (0: unknown, no jitter).
func (s *rtpRecv) update(ssrc uint32, seq uint16, ts uint32, arrival int64, hz uint32) {
	if !s.started || ssrc != s.ssrc {
		// A new source (RFC 3550 §8.2: a changed SSRC is a new source):
		// keep what was lost so far and start over.
		s.lostPrior += s.ownLost()
		*s = rtpRecv{ssrc: ssrc, started: true, lostPrior: s.lostPrior}
		s.maxSeq = seq - 1
		s.probation = minSequential
	}
	s.updateSeq(seq)
	s.updateJitter(ts, arrival, hz)
}

// initSeq is init_seq of RFC 3550 A.1.
func (s *rtpRecv) initSeq(seq uint16) {
	s.baseSeq = uint32(seq)
	s.maxSeq = seq
	s.badSeq = seqMod + 1 // so seq == badSeq is false
	s.cycles = 0
	s.received = 0
	s.valid = true
}

// updateSeq is update_seq of RFC 3550 A.1.
func (s *rtpRecv) updateSeq(seq uint16) {
	udelta := seq - s.maxSeq
	if s.probation > 0 {
		// The source is not valid until minSequential packets in a row.
		if seq == s.maxSeq+1 {
			s.probation--
			s.maxSeq = seq
			if s.probation == 0 {
				s.initSeq(seq)
				s.received++
			}
		} else {
			s.probation = minSequential - 1
			s.maxSeq = seq
		}
		return
	}
	switch {
	case udelta < maxDropout:
		// In order, with a permissible gap.
		if seq < s.maxSeq {
			s.cycles += seqMod // wrapped
		}
		s.maxSeq = seq
	case uint32(udelta) <= seqMod-maxMisorder:
		// A very large jump: resynchronise only if the next packet
		// continues from here (the sender restarted), else ignore it.
		if uint32(seq) == s.badSeq {
			s.initSeq(seq)
		} else {
			s.badSeq = (uint32(seq) + 1) & (seqMod - 1)
			return
		}
	default:
		// Duplicate or reordered packet: counted, maxSeq unchanged.
	}
	s.received++
}

// ownLost is cumulative loss for the current SSRC (RFC 3550 A.3):
// expected minus received. Duplicates can make it negative, as the RFC
// allows.
func (s *rtpRecv) ownLost() int64 {
	if !s.valid {
		return 0
	}
	extMax := uint64(s.cycles) + uint64(s.maxSeq)
	expected := int64(extMax) - int64(s.baseSeq) + 1
	return expected - int64(s.received)
}

// extSeq is the highest extended sequence number seen.
func (s *rtpRecv) extSeq() uint64 { return uint64(s.cycles) + uint64(s.maxSeq) }

// advanceTo moves the highest sequence number seen up to ext, if it is
// below: packets that were forwarded without being looked at (the
// in-kernel path) and came after the last one seen.
func (s *rtpRecv) advanceTo(ext uint64) {
	if ext > s.extSeq() {
		s.cycles = uint32(ext &^ (seqMod - 1))
		s.maxSeq = uint16(ext)
	}
}

// lost is the loss over every SSRC seen.
func (s *rtpRecv) lost() int64 { return s.lostPrior + s.ownLost() }

// updateJitter is RFC 3550 A.8 in its integer form: J += |D| - J/16, J
// kept scaled by 16. Arrival is converted to timestamp units of the
// payload's clock; a change of clock (payload type switch) restarts the
// estimate, as transit times in different units cannot be compared.
func (s *rtpRecv) updateJitter(ts uint32, arrival int64, hz uint32) {
	if hz == 0 {
		s.haveTransit = false
		return
	}
	if hz != s.rate {
		s.rate, s.jitter, s.haveTransit = hz, 0, false
	}
	// Timestamps wrap modulo 2^32, so transit does too; the difference
	// of two transits is still right as a signed 32-bit value.
	transit := toUnits(arrival, hz) - ts
	if s.haveTransit {
		d := int32(transit - s.transit)
		if d < 0 {
			d = -d
		}
		s.jitter += uint32(d) - ((s.jitter + 8) >> 4)
	}
	s.transit, s.haveTransit = transit, true
}

// jitterUnits is the jitter estimate in timestamp units, as RTCP reports
// it (RFC 3550 §6.4.1).
func (s *rtpRecv) jitterUnits() uint32 { return s.jitter >> 4 }

// toUnits converts ns nanoseconds to a clock of hz ticks per second,
// modulo 2^32, without overflowing for any realistic uptime.
func toUnits(ns int64, hz uint32) uint32 {
	sec, rem := ns/1e9, ns%1e9
	return uint32(sec*int64(hz) + rem*int64(hz)/1e9)
}
