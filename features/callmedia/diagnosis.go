package callmedia

import (
	"fmt"
	"net/netip"
	"time"

	"sipedge/internal/jsonenc"
	"sipedge/nat"
)

// Media is what sipedge saw of a call's media, per stream and per leg,
// with a verdict in plain language: the "media" object of the call log
// and of GET /api/v1/calls.
type Media struct {
	// Audio sums up the audio streams: "ok" (both directions flowing),
	// "one-way", "none", or "not-relayed" (sipedge cannot see it).
	Audio string `json:"audio"`
	// Diagnosis says what is wrong, one sentence each; empty when all is
	// well.
	Diagnosis []string `json:"diagnosis"`
	Streams   []Stream `json:"streams"`
}

// AppendJSON appends m's JSON, byte for byte what encoding/json writes
// (the call log writes it once per call: TestMediaJSON).
func (m Media) AppendJSON(b []byte) []byte {
	b = append(b, `{"audio":`...)
	b = jsonenc.String(b, m.Audio)
	b = append(b, `,"diagnosis":`...)
	b = jsonenc.Strings(b, m.Diagnosis)
	b = append(b, `,"streams":`...)
	if m.Streams == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range m.Streams {
			if i > 0 {
				b = append(b, ',')
			}
			b = m.Streams[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (s *Stream) appendJSON(b []byte) []byte {
	b = append(b, `{"index":`...)
	b = jsonenc.Int(b, int64(s.Index))
	b = append(b, `,"type":`...)
	b = jsonenc.String(b, s.Type)
	b = append(b, `,"legs":`...)
	if s.Legs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range s.Legs {
			if i > 0 {
				b = append(b, ',')
			}
			b = s.Legs[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (l *Leg) appendJSON(b []byte) []byte {
	b = append(b, `{"side":`...)
	b = jsonenc.String(b, l.Side)
	b = append(b, `,"signalling":`...)
	b = jsonenc.AddrPort(b, l.Signalling)
	b = append(b, `,"sdp":`...)
	b = jsonenc.AddrPort(b, l.SDP)
	b = append(b, `,"sdp_private":`...)
	b = jsonenc.Bool(b, l.SDPPrivate)
	b = append(b, `,"relay":`...)
	b = jsonenc.AddrPort(b, l.Relay)
	b = append(b, `,"source":`...)
	b = jsonenc.AddrPort(b, l.Source)
	b = append(b, `,"latched":`...)
	b = jsonenc.Bool(b, l.Latched)
	b = append(b, `,"packets":`...)
	b = jsonenc.Uint(b, l.Packets)
	b = append(b, `,"bytes":`...)
	b = jsonenc.Uint(b, l.Bytes)
	b = append(b, `,"rtcp_packets":`...)
	b = jsonenc.Uint(b, l.RTCPPackets)
	b = append(b, `,"forwarded":`...)
	b = jsonenc.Uint(b, l.Forwarded)
	b = append(b, `,"kernel_packets":`...)
	b = jsonenc.Uint(b, l.Kernel)
	b = append(b, `,"in_kernel":`...)
	b = jsonenc.Bool(b, l.InKernel)
	b = append(b, `,"dropped":`...)
	b = jsonenc.Uint(b, l.Dropped)
	b = append(b, `,"foreign":`...)
	b = jsonenc.Uint(b, l.Foreign)
	b = append(b, `,"foreign_source":`...)
	b = jsonenc.AddrPort(b, l.ForeignSource)
	b = append(b, `,"lost":`...)
	b = jsonenc.Int(b, l.Lost)
	b = append(b, `,"loss_pct":`...)
	b = jsonenc.Float(b, l.LossPct)
	b = append(b, `,"jitter_ms":`...)
	b = jsonenc.Float(b, l.JitterMS)
	b = append(b, `,"mos":`...)
	if l.MOS == nil {
		b = append(b, "null"...)
	} else {
		b = jsonenc.Float(b, *l.MOS)
	}
	b = append(b, `,"codec":`...)
	b = jsonenc.String(b, l.Codec)
	b = append(b, `,"first":`...)
	if l.First == nil {
		b = append(b, "null"...)
	} else {
		b = jsonenc.Time(b, *l.First)
	}
	b = append(b, `,"last":`...)
	if l.Last == nil {
		b = append(b, "null"...)
	} else {
		b = jsonenc.Time(b, *l.Last)
	}
	return append(b, '}')
}

// Stream is one media section (m= line) of the call's SDP.
type Stream struct {
	Index int    `json:"index"`
	Type  string `json:"type"` // the SDP media type: audio, video...
	Legs  []Leg  `json:"legs"` // the caller's, then the callee's
}

// Leg is what one side of a stream sent to the relay. Loss and jitter are
// measured on arrival at the relay (RFC 3550 A.1, A.8), so they describe
// the path from that side to sipedge, without RTCP.
type Leg struct {
	Side string `json:"side"` // caller or callee
	// Signalling is where that side's SIP came from: the INVITE's source
	// for the caller, the address the answering branch was sent to for
	// the callee. Zero (shown "") when not known.
	Signalling netip.AddrPort `json:"signalling"`
	SDP        netip.AddrPort `json:"sdp"` // where its SDP said it receives RTP
	SDPPrivate bool           `json:"sdp_private"`
	Relay      netip.AddrPort `json:"relay"`  // sipedge's port it sends to
	Source     netip.AddrPort `json:"source"` // where its packets come from (the latched source)
	Latched    bool           `json:"latched"`

	Packets     uint64 `json:"packets"` // accepted (RTP, RTCP, others)
	Bytes       uint64 `json:"bytes"`
	RTCPPackets uint64 `json:"rtcp_packets"`
	Forwarded   uint64 `json:"forwarded"` // sent on to the other side
	// Kernel is how many of Packets the in-kernel path forwarded
	// (media.kernel); loss and jitter then come from the one packet in 32
	// the relay thread still sees.
	Kernel        uint64         `json:"kernel_packets"`
	InKernel      bool           `json:"in_kernel"`
	Dropped       uint64         `json:"dropped"` // every reason
	Foreign       uint64         `json:"foreign"` // refused: not from the latched source
	ForeignSource netip.AddrPort `json:"foreign_source"`
	Lost          int64          `json:"lost"`
	LossPct       float64        `json:"loss_pct"`
	JitterMS      float64        `json:"jitter_ms"`
	MOS           *float64       `json:"mos"` // null without RTP
	Codec         string         `json:"codec"`
	First         *time.Time     `json:"first"`
	Last          *time.Time     `json:"last"`

	// Facts the diagnosis reads that the JSON does not show.
	NoPeer     uint64 `json:"-"` // dropped: the other side's address was not known
	SendErrors uint64 `json:"-"`
}

// Facts is what the diagnosis knows of the call besides its legs.
type Facts struct {
	// Answered is when the call was answered; zero while it rings (or
	// never was): a side is not expected to send before.
	Answered time.Time
	// Now is when the media is judged: the current time for a call in
	// progress, its end for one that ended.
	Now time.Time
	// Grace replaces the package's Grace when not zero.
	Grace time.Duration
}

// Thresholds of the diagnosis.
const (
	// Grace is how long after the answer a side may stay silent before
	// it is reported: phones start RTP within a second or two.
	Grace = 5 * time.Second
	// StopAfter is the silence after which a side that sent packets
	// counts as stopped while the other side went on. Comfort noise
	// (RFC 3389) keeps a silent talker sending, and 5 s is above any
	// packet gap of a phone that still sends.
	StopAfter = 5 * time.Second
	// ForeignReport is how many refused packets are worth a sentence
	// even while the side's media flows: a second of 20 ms packets.
	// Fewer are strays queued before a latch.
	ForeignReport = 50
	// PoorMOS: a flowing direction below it gets a sentence ("many users
	// dissatisfied" starts at 3.6 in G.107 Annex B).
	PoorMOS = 3.6
)

// NotRelayed is the media of a call whose media sipedge does not relay,
// with why (media.relay, or the INVITE had no SDP).
func NotRelayed(why string) Media {
	return Media{Audio: "not-relayed", Streams: []Stream{},
		Diagnosis: []string{"sipedge did not relay this call's media (" + why + "), so it cannot see it: only the phones or a capture on their network can tell whether audio flowed."}}
}

// Diagnose sets m.Audio and m.Diagnosis from m.Streams and the facts:
// which directions flow, and in plain sentences for a VoIP admin what
// the relay saw that explains the ones that do not. It is a pure
// function of its inputs.
func Diagnose(m *Media, f Facts) {
	m.Diagnosis = []string{}
	audio, other := 0, 0
	best := "none"
	for _, s := range m.Streams {
		if s.Type == "audio" {
			audio++
		} else {
			other++
		}
	}
	for _, s := range m.Streams {
		if len(s.Legs) != 2 {
			continue
		}
		prefix := ""
		if len(m.Streams) > 1 {
			prefix = fmt.Sprintf("Stream %d (%s): ", s.Index, s.Type)
		}
		for i := range s.Legs {
			for _, d := range diagnoseLeg(&s.Legs[i], &s.Legs[1-i], f) {
				m.Diagnosis = append(m.Diagnosis, prefix+d)
			}
		}
		if last, ok := bothSilent(&s.Legs[0], &s.Legs[1], f); ok {
			m.Diagnosis = append(m.Diagnosis, prefix+fmt.Sprintf(
				"No packets from either side since %s: both phones stopped sending (on hold, or the network between them and sipedge failed).", clock(last)))
		}
		if s.Type != "audio" && audio > 0 {
			continue // the verdict is about audio when there is audio
		}
		switch a, b := flowing(&s.Legs[0], &s.Legs[1], f), flowing(&s.Legs[1], &s.Legs[0], f); {
		case a && b:
			best = "ok"
		case (a || b) && best != "ok":
			best = "one-way"
		}
	}
	if audio+other == 0 {
		m.Diagnosis = append(m.Diagnosis, "The call set up no media stream through sipedge.")
	}
	m.Audio = best
}

// flowing reports whether x's media reaches the other side now: it was
// forwarded, and x sent within StopAfter (of the end, for an ended call).
func flowing(x, y *Leg, f Facts) bool {
	return x.Forwarded > 0 && x.Last != nil && f.Now.Sub(*x.Last) < StopAfter
}

// bothSilent reports whether both sides sent packets and then both
// stopped for StopAfter, and when the later one did.
func bothSilent(x, y *Leg, f Facts) (time.Time, bool) {
	if x.Last == nil || y.Last == nil {
		return time.Time{}, false
	}
	last := *x.Last
	if y.Last.After(last) {
		last = *y.Last
	}
	return last, f.Now.Sub(last) >= StopAfter && !stopped(x, y, f) && !stopped(y, x, f)
}

// stopped reports whether x sent packets, then fell silent for StopAfter
// while y kept sending.
func stopped(x, y *Leg, f Facts) bool {
	if x.Packets == 0 || x.Last == nil {
		return false
	}
	if f.Now.Sub(*x.Last) < StopAfter {
		return false
	}
	return y.Last != nil && y.Last.Sub(*x.Last) >= StopAfter
}

// diagnoseLeg returns the sentences about what x sent.
func diagnoseLeg(x, y *Leg, f Facts) []string {
	var out []string
	switch {
	case x.Packets == 0:
		grace := f.Grace
		if grace == 0 {
			grace = Grace
		}
		if f.Answered.IsZero() || f.Now.Sub(f.Answered) < grace {
			break // not answered, or too early to tell
		}
		out = append(out, silent(x, f))
	case stopped(x, y, f):
		s := fmt.Sprintf("No packets from the %s since %s while the %s kept sending (%d packets before that, from %s).",
			x.Side, clock(*x.Last), y.Side, x.Packets, x.Source)
		if x.Foreign > 0 {
			s += fmt.Sprintf(" Packets for its side came from %s instead and were refused: the phone's address changed (NAT rebinding, a network switch) or another device sent them.", x.ForeignSource)
		}
		out = append(out, s)
	case x.Forwarded == 0 && x.NoPeer > 0:
		out = append(out, fmt.Sprintf("The %s received nothing: the %s's %d packets were dropped because the %s's media address was never known (its SDP gave none and it sent no packet to latch on to).",
			y.Side, x.Side, x.NoPeer, y.Side))
	case x.Forwarded == 0 && x.SendErrors > 0:
		out = append(out, fmt.Sprintf("The %s received nothing: sending the %s's packets on to %s failed %d times (unreachable address or port).",
			y.Side, x.Side, dest(y), x.SendErrors))
	}
	if x.Foreign > 0 && !stopped(x, y, f) && (x.Foreign >= ForeignReport || !flowing(x, y, f)) {
		out = append(out, fmt.Sprintf("%d packets for the %s's side came from %s, not from %s it is latched to, and were refused.",
			x.Foreign, x.Side, x.ForeignSource, x.Source))
	}
	if x.MOS != nil && *x.MOS < PoorMOS && flowing(x, y, f) {
		out = append(out, fmt.Sprintf("Poor audio from the %s: %.1f %% of its packets lost and %.0f ms of jitter on the way to sipedge (estimated MOS %.1f).",
			x.Side, x.LossPct, x.JitterMS, *x.MOS))
	}
	return out
}

// silent explains a side from which no packet arrived.
func silent(x *Leg, f Facts) string {
	s := fmt.Sprintf("No packets from the %s since the call was answered at %s", x.Side, clock(f.Answered))
	sig := x.Signalling.Addr()
	switch {
	case !x.SDP.IsValid():
		return s + "; its SDP gave no address to send media to (on hold, or no answer with SDP), and it sent nothing to " + x.Relay.String() + "."
	case x.SDPPrivate && sig.IsValid() && !nat.Private(sig):
		return s + fmt.Sprintf("; its SDP advertised %s, a private address, and nothing arrived from its signalling address %s: it is behind NAT and its RTP does not get out to sipedge at %s (a firewall or the NAT drops it, or the phone sends it elsewhere).",
			x.SDP, sig, x.Relay)
	case x.SDPPrivate && sig.IsValid() && sig != x.SDP.Addr().Unmap():
		return s + fmt.Sprintf("; its SDP advertised %s, a private address other than its signalling address %s, and nothing arrived at sipedge's %s: the phone is on another network than its SIP suggests, or its RTP is blocked.",
			x.SDP, sig, x.Relay)
	}
	return s + fmt.Sprintf("; its SDP advertised %s and sipedge waited for its RTP at %s: the phone sends none (muted, or a codec or SRTP mismatch) or something on the way drops it.",
		x.SDP, x.Relay)
}

// dest is where the relay sends a leg's media: the latched source, else
// the SDP address.
func dest(l *Leg) netip.AddrPort {
	if l.Latched {
		return l.Source
	}
	return l.SDP
}

// clock formats a time of day for a sentence.
func clock(t time.Time) string { return t.Format("15:04:05") }
