package hep

import (
	"encoding/binary"
	"math"
	"net/netip"
	"strconv"
	"time"

	"sipedge/internal/jsonenc"
)

// Media quality reports, as Homer 7 stores and shows them.
//
// heplify-server (decoder/hep.go, database/postgres.go) stores a HEP
// packet whose payload type is neither SIP (1) nor one it knows by name
// (5 RTCP, 53 DNS, 54 ISUP, 100 log) in hep_proto_35_default, keyed by its
// correlation id (chunk 0x0011), provided both the payload and the
// correlation id are present. homer-app's /call/report/qos answers a call
// with those rows whose sid is the Call-ID ("rtp"), and homer-ui's QoS tab
// and call flow read the payload as the JSON of captagent's RTP agent:
// payload type 34, "rtpagent" in heplify-server, which also exports its
// MOS, JITTER and PACKET_LOSS to Prometheus. So a report here is one HEP
// packet per stream direction: payload type 34, the Call-ID as
// correlation id, the stream's addresses in the IP chunks, and that JSON,
// with TYPE "FINAL" (a report at the end of the call). Figures sipedge
// does not know (DELTA, SKEW, MAC addresses, ...) are left out rather
// than sent as zeros.

// ProtoQoS is the payload type of a media quality report: captagent's
// RTP agent JSON ("rtpagent" in heplify-server).
const ProtoQoS = 34

const chunkCorrelation = 0x0011 // string: the Call-ID for Homer

// QoSLeg is what was measured on one direction of one stream: the RTP
// that Src sent and sipedge received at Dst (the relay's port), so loss
// and jitter are those of the path between the two (RFC 3550 §6.4.1).
type QoSLeg struct {
	Src, Dst netip.AddrPort
	// Party is 0 for the caller's side of the call, 1 for the callee's
	// (rtpagent's PARTY).
	Party uint8
	// Packets are the RTP packets received (RTCP and other packets on
	// the port not included); Bytes their UDP payload bytes (0: unknown).
	Packets, Bytes uint64
	// Lost is RFC 3550 A.3's cumulative number of packets lost: expected
	// (from the sequence numbers) minus received, negative with
	// duplicates.
	Lost int64
	// Jitter is RFC 3550 A.8's interarrival jitter at the end of the
	// call; MaxJitter the largest seen (0: unknown).
	Jitter, MaxJitter time.Duration
	// MOS is the listening quality estimate, 1 to 5; 0 (or anything out
	// of range) when it is not known, and then it is left out.
	MOS float64
	// PayloadType, ClockRate and Codec describe the stream when known
	// (ClockRate 0 and Codec "" leave them out).
	PayloadType uint8
	ClockRate   uint32
	Codec       string
	// Start and End bound the measurement (the call's media); End is
	// also the report's time.
	Start, End time.Time
}

// QoSReport is one call's media quality: a leg per stream direction.
type QoSReport struct {
	Legs []QoSLeg
}

// QoS sends r to every collector, one packet per leg, correlated by
// callID. It is safe on a nil Sender (no capture configured: nothing is
// sent), so a call-end hook can call it unconditionally. It runs once per
// call, off the packet path. A report without a Call-ID is not sent.
func (s *Sender) QoS(callID string, r QoSReport) {
	if s == nil || callID == "" {
		return
	}
	for i := range r.Legs {
		b := s.begin()
		if b == nil {
			return
		}
		buf, ok := AppendQoS(b.buf, &s.agent, callID, &r.Legs[i])
		if ok {
			s.reports.Add(1)
		}
		s.end(b, buf, ok)
	}
}

// AppendQoS encodes the report of one leg as HEP v3 after dst (see
// ProtoQoS). Like Append, it returns dst unchanged and false when the
// packet would exceed MaxDatagram (a Call-ID of many kilobytes), and
// allocates nothing. An empty Call-ID is refused too: heplify-server
// drops a report without a correlation id.
func AppendQoS(dst []byte, a *Agent, callID string, l *QoSLeg) ([]byte, bool) {
	// The Call-ID is written three times (correlation id, two JSON
	// fields): refuse a hopeless one before writing anything.
	if callID == "" || 3*len(callID)+len(l.Codec) > MaxDatagram {
		return dst, false
	}
	start := len(dst)
	src, dstA := endpoints(l.Src.Addr().Unmap(), l.Dst.Addr().Unmap())
	at := l.End
	if at.IsZero() {
		at = time.Now()
	}
	dst = appendHead(dst, a, src, dstA, l.Src.Port(), l.Dst.Port(), UDP, ProtoQoS, at)
	dst = append(header(dst, chunkCorrelation, len(callID)), callID...)
	// The payload chunk: its header first, its length once the JSON is
	// written.
	ph := len(dst)
	dst = header(dst, chunkPayload, 0)
	dst = appendQoSJSON(dst, callID, l, src, dstA, at)
	n := len(dst) - start
	if n > MaxDatagram {
		return dst[:start], false
	}
	binary.BigEndian.PutUint16(dst[ph+4:], uint16(len(dst)-ph))
	binary.BigEndian.PutUint16(dst[start+4:], uint16(n))
	return dst, true
}

// endpoints gives both addresses one family (HEP has one family chunk):
// an address not known yet (no packet ever came) is the unspecified
// address of the other's family; an IPv4 one next to an IPv6 one is
// written IPv4-mapped.
func endpoints(src, dst netip.Addr) (netip.Addr, netip.Addr) {
	switch {
	case !src.IsValid() && !dst.IsValid():
		return netip.IPv4Unspecified(), netip.IPv4Unspecified()
	case !src.IsValid():
		src = unspecified(dst)
	case !dst.IsValid():
		dst = unspecified(src)
	}
	if src.Is4() != dst.Is4() {
		src, dst = netip.AddrFrom16(src.As16()), netip.AddrFrom16(dst.As16())
	}
	return src, dst
}

func unspecified(like netip.Addr) netip.Addr {
	if like.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// appendQoSJSON writes the rtpagent JSON object of l. The field names and
// units are those homer-ui and heplify-server read: counts as integers,
// JITTER in milliseconds, MOS from 1 to 5, times in Unix seconds.
func appendQoSJSON(b []byte, callID string, l *QoSLeg, src, dst netip.Addr, at time.Time) []byte {
	b = append(b, `{"CORRELATION_ID":`...)
	b = jsonenc.String(b, callID)
	b = append(b, `,"RTP_SIP_CALL_ID":`...)
	b = jsonenc.String(b, callID)
	b = append(b, `,"REPORT_TS":`...)
	b = strconv.AppendFloat(b, float64(at.UnixMicro())/1e6, 'f', 3, 64)
	if !l.Start.IsZero() {
		b = append(b, `,"REPORT_START":`...)
		b = strconv.AppendInt(b, l.Start.Unix(), 10)
	}
	b = append(b, `,"REPORT_END":`...)
	b = strconv.AppendInt(b, at.Unix(), 10)
	b = append(b, `,"TOTAL_PK":`...)
	b = strconv.AppendUint(b, l.Packets, 10)
	// RFC 3550 A.3: expected = received + lost; duplicates can make lost
	// negative, never expected.
	expected := int64(min(l.Packets, math.MaxInt64))
	if l.Lost > 0 && expected > math.MaxInt64-l.Lost {
		expected = math.MaxInt64
	} else {
		expected = max(expected+l.Lost, 0)
	}
	b = append(b, `,"EXPECTED_PK":`...)
	b = strconv.AppendInt(b, expected, 10)
	b = append(b, `,"PACKET_LOSS":`...)
	b = strconv.AppendInt(b, l.Lost, 10)
	if l.Bytes != 0 {
		b = append(b, `,"TL_BYTE":`...)
		b = strconv.AppendUint(b, l.Bytes, 10)
	}
	b = append(b, `,"JITTER":`...)
	b = appendMillis(b, l.Jitter)
	if l.MaxJitter > 0 {
		b = append(b, `,"MAX_JITTER":`...)
		b = appendMillis(b, l.MaxJitter)
	}
	if l.MOS >= 1 && l.MOS <= 5 { // NaN fails both
		// One figure for the whole call: it is the final and the mean
		// (homer-ui reads MOS, its tooltips MEAN_MOS).
		b = append(b, `,"MOS":`...)
		b = strconv.AppendFloat(b, l.MOS, 'f', 2, 64)
		b = append(b, `,"MEAN_MOS":`...)
		b = strconv.AppendFloat(b, l.MOS, 'f', 2, 64)
	}
	b = append(b, `,"SRC_IP":"`...)
	b = src.Unmap().AppendTo(b)
	b = append(b, `","SRC_PORT":`...)
	b = strconv.AppendUint(b, uint64(l.Src.Port()), 10)
	b = append(b, `,"DST_IP":"`...)
	b = dst.Unmap().AppendTo(b)
	b = append(b, `","DST_PORT":`...)
	b = strconv.AppendUint(b, uint64(l.Dst.Port()), 10)
	if l.ClockRate != 0 || l.Codec != "" {
		b = append(b, `,"CODEC_PT":`...)
		b = strconv.AppendUint(b, uint64(l.PayloadType), 10)
		b = append(b, `,"CLOCK":`...)
		b = strconv.AppendUint(b, uint64(l.ClockRate), 10)
		b = append(b, `,"CODEC_NAME":`...)
		b = jsonenc.String(b, l.Codec)
	}
	b = append(b, `,"PARTY":`...)
	b = strconv.AppendUint(b, uint64(l.Party), 10)
	b = append(b, `,"REPORT_NAME":"`...)
	b = netip.AddrPortFrom(src.Unmap(), l.Src.Port()).AppendTo(b)
	b = append(b, `","TYPE":"FINAL"}`...)
	return b
}

// appendMillis writes d in milliseconds with microsecond precision; a
// negative duration (none is meant) as 0.
func appendMillis(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(max(d, 0).Microseconds())/1000, 'f', 3, 64)
}
