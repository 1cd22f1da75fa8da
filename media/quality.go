package media

import (
	"strings"
	"time"
)

// Quality is a listening-quality estimate of one direction of a call
// from what the relay measured on arrival: the ITU-T G.107 E-model in the
// simplified form VoIP monitors use (as in Cole and Rosenbluth, "Voice
// over IP performance monitoring", 2001), not the full model: echo,
// noise and loudness keep their G.107 defaults, which together give the
// R of 93.2 of a perfect narrowband call.
type Quality struct {
	R   float64 // transmission rating, 0-100
	MOS float64 // estimated mean opinion score, 1-4.5
}

// Codec impairments of ITU-T G.113 Appendix I: Ie is the equipment
// impairment of the codec itself, Bpl its robustness to random packet
// loss.
type codecImpairment struct{ ie, bpl float64 }

var (
	// G.711 is taken with packet loss concealment (G.711 Appendix I),
	// Bpl 25.1, not 4.3: every phone and gateway in use conceals lost
	// frames, and 4.3 would make 1 % loss look like a bad call.
	g711 = codecImpairment{ie: 0, bpl: 25.1}
	// G.729A with VAD (G.113 Table I.3).
	g729 = codecImpairment{ie: 11, bpl: 19}
)

// impairment returns the G.113 values of a codec by its rtpmap encoding
// name; codecs G.113 does not list (G.722, Opus, ...) get G.711's, which
// rates them as a good narrowband codec: optimistic for none of them.
func impairment(codec string) codecImpairment {
	switch {
	case strings.EqualFold(codec, "G729"), strings.EqualFold(codec, "G729A"), strings.EqualFold(codec, "G729AB"):
		return g729
	}
	return g711
}

// Packetization is the frame time assumed for the delay estimate: the
// 20 ms of RFC 3551's default ptime for G.711 and G.729.
const Packetization = 20 * time.Millisecond

// Estimate returns the quality of a direction that lost lossPct percent
// of its packets (0-100) with interarrival jitter (RFC 3550 A.8), for the
// codec named (rtpmap encoding name; "" for unknown). relay is the delay
// the relay adds (its poll tick).
//
// The one-way delay is what a receiver must at least add: a jitter
// buffer of twice the jitter, one packet's frame time, and the relay;
// the network's propagation delay is not known to the relay and not
// counted (on a continent it is under 177 ms, where it would barely move
// Id).
//
//	R       = 93.2 - Id - Ie,eff                       (G.107 §7.1, Is and A at default)
//	Id      = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)  (d in ms; Cole & Rosenbluth)
//	Ie,eff  = Ie + (95 - Ie) Ppl / (Ppl + Bpl)         (G.107 §7.2, random loss, BurstR 1)
func Estimate(codec string, lossPct float64, jitter, relay time.Duration) Quality {
	lossPct = min(max(lossPct, 0), 100)
	ci := impairment(codec)
	d := float64(2*max(jitter, 0)+Packetization+max(relay, 0)) / float64(time.Millisecond)
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	ieEff := ci.ie + (95-ci.ie)*lossPct/(lossPct+ci.bpl)
	r := min(max(93.2-id-ieEff, 0), 100)
	return Quality{R: r, MOS: MOSFromR(r)}
}

// MOSFromR is G.107 Annex B's conversion of R to a MOS (B-4):
// MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R), 1 below R 0 and 4.5
// above R 100.
func MOSFromR(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	mos := 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
	return min(max(mos, 1), 4.5)
}
