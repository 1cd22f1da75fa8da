package callmedia

import (
	"bytes"
	"math"
	"net/netip"
	"strings"
	"time"

	"sipedge/media"
	"sipedge/nat"
	"sipedge/sdp"
)

// endedKept is how many ended calls keep their media readable: the call
// log's API shows as many ended calls.
const endedKept = 1000

// relayDelay is the delay the relay adds to a packet for the MOS
// estimate: its default poll tick (media.Config.Tick).
const relayDelay = time.Millisecond

// Bucket bounds of the ended-stream distributions. Loss: where G.711
// with concealment goes from inaudible to unusable; MOS: G.107 Annex B's
// satisfaction bands (4.34 very satisfied ... 2.58 nearly all
// dissatisfied) with finer steps at the top, where most calls are.
var (
	lossBuckets = [...]float64{0, 0.5, 1, 2, 3, 5, 10, 20, 50, 100}
	mosBuckets  = [...]float64{1, 2, 2.58, 3.1, 3.6, 4.03, 4.2, 4.34, 4.4, 4.5}
)

// streamInfo is what the SDP bodies of a call said about one stream.
type streamInfo struct {
	typ   string   // media type of the m= line
	names []ptName // encoding names by payload type, from either side's rtpmap
	first [2]int16 // the first payload type each side listed; -1: none yet
}

type ptName struct {
	pt   uint8
	name string
}

// callID is the Call-ID part of the call's key.
func (c *call) callID() string {
	id, _, _ := strings.Cut(c.key, "\x00")
	return id
}

// answering records where the callee's response came from (the branch's
// target) and, for the 2xx, when the call was answered. A provisional
// response (early media) names the callee only until a final one does.
func (c *call) answering(target netip.AddrPort, provisional bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if provisional {
		if !c.sig[media.SideB].IsValid() {
			c.sig[media.SideB] = target
		}
		return
	}
	c.sig[media.SideB] = target
	if c.answered.IsZero() {
		c.answered = time.Now()
	}
}

// describe records what an SDP body from side says about each relayed
// stream: its type, the first payload type listed (what that side
// prefers, and in an answer what it will send), and the encoding names
// of its rtpmap lines. A dynamic payload type's clock rate goes to the
// relay, so its jitter can be measured (RFC 3550 A.8 counts in the
// payload's clock).
func (c *call) describe(s *sdp.Session, side media.Side, streams []*media.Stream) {
	type rate struct {
		st *media.Stream
		pt uint8
		hz uint32
	}
	var rates [8]rate
	nr := 0
	c.mu.Lock()
	if c.streams == nil {
		c.streams = map[int]*streamInfo{}
	}
	for i, st := range streams {
		if st == nil {
			continue
		}
		info := c.streams[i]
		if info == nil {
			md := s.Media(i)
			info = &streamInfo{typ: string(md.Type), first: [2]int16{-1, -1}}
			c.streams[i] = info
		}
		if pt, ok := firstFormat(s.Media(i).Formats); ok {
			info.first[side] = int16(pt)
		}
	}
	idx := -1
	for l := 0; l < s.NumLines(); l++ {
		typ, v := s.Line(l)
		if typ == 'm' {
			idx++
			continue
		}
		if typ != 'a' || idx < 0 || idx >= len(streams) || streams[idx] == nil {
			continue
		}
		pt, enc, hz, ok := parseRTPMap(v)
		if !ok {
			continue
		}
		info := c.streams[idx]
		if info.name(pt) == "" && len(info.names) < 32 {
			info.names = append(info.names, ptName{pt: pt, name: string(enc)})
		}
		if pt >= 96 && hz > 0 && timedCodec(enc) && nr < len(rates) {
			rates[nr] = rate{streams[idx], pt, hz}
			nr++
		}
	}
	c.mu.Unlock()
	// The relay's lock is not taken under c.mu (feature locks are leaves).
	for _, r := range rates[:nr] {
		r.st.SetClockRate(r.pt, r.hz)
	}
}

// timedCodec reports whether an encoding carries media whose timestamps
// advance with its clock. Telephone events (RFC 4733) keep one timestamp
// for a whole event and redundancy and retransmission formats repeat
// other packets: measured as media they would show as jitter.
func timedCodec(enc []byte) bool {
	for _, n := range []string{"telephone-event", "CN", "red", "rtx", "ulpfec", "flexfec"} {
		if strings.EqualFold(string(enc), n) {
			return false
		}
	}
	return true
}

// name returns the encoding name of pt: from an rtpmap, else RFC 3551's
// static assignment; "" when unknown. c.mu is held.
func (info *streamInfo) name(pt uint8) string {
	for _, n := range info.names {
		if n.pt == pt {
			return n.name
		}
	}
	return ""
}

// codec names what a side sends: the payload type of its last RTP packet,
// unless that was a telephone event or comfort noise (which interleave
// with the voice codec), then the first format its SDP listed.
func (info *streamInfo) codec(side media.Side, ds *media.DirStats) string {
	if ds.RTP > 0 {
		if n := info.nameOrStatic(ds.PayloadType); n != "" && timedCodec([]byte(n)) {
			return n
		}
	}
	if pt := info.first[side]; pt >= 0 {
		return info.nameOrStatic(uint8(pt))
	}
	return ""
}

func (info *streamInfo) nameOrStatic(pt uint8) string {
	if n := info.name(pt); n != "" {
		return n
	}
	return staticNames[pt&0x7f]
}

// staticNames are the encodings of RFC 3551's static payload types
// (Tables 4 and 5).
var staticNames = [128]string{
	0: "PCMU", 3: "GSM", 4: "G723", 5: "DVI4", 6: "DVI4", 7: "LPC", 8: "PCMA", 9: "G722",
	10: "L16", 11: "L16", 12: "QCELP", 13: "CN", 14: "MPA", 15: "G728", 16: "DVI4", 17: "DVI4", 18: "G729",
	25: "CelB", 26: "JPEG", 28: "nv", 31: "H261", 32: "MPV", 33: "MP2T", 34: "H263",
}

// firstFormat reads the first payload type of an m= line's format list.
func firstFormat(fmts []byte) (uint8, bool) {
	f, _, _ := bytes.Cut(bytes.TrimLeft(fmts, " "), []byte(" "))
	n, ok := atoi(f, 127)
	return uint8(n), ok
}

// parseRTPMap reads the value of an SDP attribute line if it is an
// rtpmap (RFC 8866 §6.6: "rtpmap:<payload type> <encoding name>/<clock
// rate>[/<encoding parameters>]"): payload type 0-127, a non-empty
// encoding name and a clock rate that fits 32 bits.
func parseRTPMap(v []byte) (pt uint8, enc []byte, hz uint32, ok bool) {
	rest, found := bytes.CutPrefix(v, []byte("rtpmap:"))
	if !found {
		return 0, nil, 0, false
	}
	num, rest, found := bytes.Cut(rest, []byte(" "))
	if !found {
		return 0, nil, 0, false
	}
	p, ok := atoi(num, 127)
	if !ok {
		return 0, nil, 0, false
	}
	rest = bytes.TrimLeft(rest, " ")
	enc, rest, found = bytes.Cut(rest, []byte("/"))
	if !found || len(enc) == 0 || bytes.ContainsAny(enc, " \t") {
		return 0, nil, 0, false
	}
	clock, _, _ := bytes.Cut(rest, []byte("/"))
	r, ok := atoi(bytes.TrimRight(clock, " \t"), math.MaxUint32)
	if !ok {
		return 0, nil, 0, false
	}
	return uint8(p), enc, uint32(r), true
}

// atoi reads a decimal number of at most max from all of b, without the
// string conversion strconv would need.
func atoi(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > max {
		return 0, false
	}
	return n, true
}

// CallMedia returns what sipedge saw of the media of the call with this
// Call-ID: live for a call in progress, as it was at the end for one of
// the last 1 000 that ended. ok is false for a call whose media sipedge
// did not relay (or has forgotten). The Media of an ended call is shared:
// read it, do not change it.
func (f *Feature) CallMedia(callID string) (Media, bool) {
	f.mu.Lock()
	c := f.ids[callID]
	if c == nil {
		m, ok := f.ended.get(callID)
		f.mu.Unlock()
		return m, ok
	}
	f.mu.Unlock()
	m, _ := f.report(c, time.Now())
	return m, true
}

// report builds the media of c as judged at now, and the relay's stats
// it came from.
func (f *Feature) report(c *call, now time.Time) (Media, []media.StreamStats) {
	streams := c.rc.Streams()
	stats := make([]media.StreamStats, len(streams))
	for i, st := range streams {
		stats[i] = st.Stats()
	}
	m := Media{Streams: make([]Stream, 0, len(streams))}
	c.mu.Lock()
	sig, answered := c.sig, c.answered
	for i, st := range streams {
		info := c.streams[st.Index()]
		if info == nil {
			info = &streamInfo{first: [2]int16{-1, -1}}
		}
		s := Stream{Index: st.Index(), Type: info.typ, Legs: make([]Leg, 2)}
		for side := media.SideA; side <= media.SideB; side++ {
			ds := &stats[i].AtoB
			if side == media.SideB {
				ds = &stats[i].BtoA
			}
			relay, _ := st.Local(side)
			s.Legs[side] = leg(side, sig[side], relay, ds, info.codec(side, ds))
		}
		m.Streams = append(m.Streams, s)
	}
	c.mu.Unlock()
	Diagnose(&m, Facts{Answered: answered, Now: now, Grace: f.grace})
	return m, stats
}

// leg turns the relay's counters of one direction into a Leg.
func leg(side media.Side, sig, relay netip.AddrPort, ds *media.DirStats, codec string) Leg {
	l := Leg{Side: "caller", Signalling: sig, SDP: ds.SDP, SDPPrivate: ds.SDP.IsValid() && nat.Private(ds.SDP.Addr()),
		Relay: relay, Source: ds.Source, Latched: ds.Latched,
		Packets: ds.Packets, Bytes: ds.Bytes, RTCPPackets: ds.RTCPPackets, Forwarded: ds.Forwarded, Dropped: ds.Dropped,
		Foreign: ds.Foreign, ForeignSource: ds.ForeignSource, Lost: ds.Lost, Codec: codec,
		NoPeer: ds.NoPeer, SendErrors: ds.SendErrors, Kernel: ds.Kernel, InKernel: ds.InKernel}
	if side == media.SideB {
		l.Side = "callee"
	}
	if !ds.First.IsZero() {
		first, last := ds.First, ds.Last
		l.First, l.Last = &first, &last
	}
	if ds.RTP > 0 {
		l.LossPct = round(lossPct(ds), 2)
		l.JitterMS = round(float64(ds.Jitter)/float64(time.Millisecond), 2)
		mos := round(media.Estimate(codec, lossPct(ds), ds.Jitter, relayDelay).MOS, 2)
		l.MOS = &mos
	}
	return l
}

// lossPct is the share of expected RTP packets that never arrived
// (duplicates, which make RFC 3550's cumulative loss negative, count as
// no loss).
func lossPct(ds *media.DirStats) float64 {
	lost := max(ds.Lost, 0)
	expected := float64(ds.RTP) + float64(lost)
	if expected == 0 {
		return 0
	}
	return 100 * float64(lost) / expected
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// finish judges an ended call's media at its end and counts its streams
// in the metrics.
func (f *Feature) finish(c *call, end time.Time) Media {
	m, stats := f.report(c, end)
	for i, s := range m.Streams {
		f.stats.StreamsEnded.Add(1)
		switch n := btoi(s.Legs[0].Packets > 0) + btoi(s.Legs[1].Packets > 0); n {
		case 0:
			f.stats.ZeroPacket.Add(1)
		case 1:
			f.stats.OneWay.Add(1)
		}
		for side, l := range s.Legs {
			if l.MOS == nil {
				continue
			}
			ds := &stats[i].AtoB
			if side == 1 {
				ds = &stats[i].BtoA
			}
			f.stats.loss.Observe(lossPct(ds))
			f.stats.jitter.Observe(ds.Jitter)
			f.stats.mos.Observe(*l.MOS)
		}
	}
	return m
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// endedCalls keeps the media of the last endedKept calls that ended, by
// Call-ID, oldest forgotten first. Guarded by Feature.mu.
type endedCalls struct {
	byID map[string]endedMedia
	ring [endedKept]string
	n    int // calls ever put
}

type endedMedia struct {
	m   *Media
	seq int // its place in the ring, counted since the start
}

func newEndedCalls() endedCalls { return endedCalls{byID: make(map[string]endedMedia, endedKept)} }

// put keeps m for callID; a Call-ID that ends twice (a call that
// spiralled through sipedge) keeps its latest media.
func (e *endedCalls) put(callID string, m Media) {
	if e.n >= endedKept {
		// The oldest goes, unless its Call-ID was put again since.
		old := e.ring[e.n%endedKept]
		if x, ok := e.byID[old]; ok && x.seq == e.n-endedKept {
			delete(e.byID, old)
		}
	}
	e.ring[e.n%endedKept] = callID
	e.byID[callID] = endedMedia{m: &m, seq: e.n}
	e.n++
}

func (e *endedCalls) get(callID string) (Media, bool) {
	x, ok := e.byID[callID]
	if !ok {
		return Media{}, false
	}
	return *x.m, true
}

// MediaOf is CallMedia, or for a call whose media sipedge did not relay,
// a Media that says so and why, as far as the configuration tells.
func (f *Feature) MediaOf(callID string) Media {
	if m, ok := f.CallMedia(callID); ok {
		return m
	}
	switch f.cfg.Load().Mode {
	case Never:
		return notRelayedNever
	case Always:
		return notRelayedNoOffer
	}
	return notRelayedAuto
}

// The answers for calls the relay never saw, made once: with relay auto
// most calls on a network without NAT are such, and each call's line and
// each look at it would otherwise build the same sentence again. Their
// slices are shared: readers do not modify a Media.
var (
	notRelayedNever   = NotRelayed("media.relay is never")
	notRelayedNoOffer = NotRelayed("its INVITE carried no SDP offer, and only offers in the INVITE are relayed")
	notRelayedAuto    = NotRelayed("media.relay is auto and the call did not need it: no side behind NAT and both on one network; or its INVITE carried no SDP offer")
)
