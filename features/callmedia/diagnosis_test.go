package callmedia_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipedge/features/callmedia"
)

var (
	t0       = time.Date(2024, 5, 6, 12, 3, 0, 0, time.UTC) // the answer
	relayA   = netip.MustParseAddrPort("203.0.113.1:30000")
	relayB   = netip.MustParseAddrPort("203.0.113.1:30002")
	callerIP = netip.MustParseAddrPort("192.0.2.10:5060")
	calleeIP = netip.MustParseAddrPort("198.51.100.7:5060")
)

func at(sec int) *time.Time { t := t0.Add(time.Duration(sec) * time.Second); return &t }

func mos(v float64) *float64 { return &v }

// sending is a leg that sent n packets from its SDP address, the first
// at second first and the last at second last after the answer.
func sending(side string, sig, sdp, relay netip.AddrPort, n uint64, first, last int) callmedia.Leg {
	return callmedia.Leg{Side: side, Signalling: sig, SDP: sdp, Relay: relay, Source: sdp, Latched: true,
		Packets: n, Bytes: n * 172, Forwarded: n, MOS: mos(4.4), Codec: "PCMU", First: at(first), Last: at(last)}
}

// silentLeg is a leg from which nothing came.
func silentLeg(side string, sig, sdp, relay netip.AddrPort) callmedia.Leg {
	return callmedia.Leg{Side: side, Signalling: sig, SDP: sdp, SDPPrivate: sdp.IsValid() && sdp.Addr().IsPrivate() || sdp.Addr().IsLoopback(),
		Relay: relay, Codec: "PCMU"}
}

func audio(a, b callmedia.Leg) []callmedia.Stream {
	return []callmedia.Stream{{Index: 0, Type: "audio", Legs: []callmedia.Leg{a, b}}}
}

// TestDiagnose: the verdict and the sentences for what the relay saw.
func TestDiagnose(t *testing.T) {
	callerMedia := netip.MustParseAddrPort("192.0.2.10:4000")
	calleeMedia := netip.MustParseAddrPort("198.51.100.7:4000")
	privateMedia := netip.MustParseAddrPort("10.0.0.5:4000")
	good := sending("caller", callerIP, callerMedia, relayA, 1500, 0, 30)
	for _, tc := range []struct {
		name    string
		streams []callmedia.Stream
		facts   callmedia.Facts
		audio   string
		want    []string // each a sentence, or the start of one ending in "…"
	}{
		{
			name:    "both ways",
			streams: audio(good, sending("callee", calleeIP, calleeMedia, relayB, 1500, 0, 30)),
			facts:   callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio:   "ok",
		},
		{
			name:    "callee behind NAT sends nothing",
			streams: audio(good, silentLeg("callee", calleeIP, privateMedia, relayB)),
			facts:   callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio:   "one-way",
			want: []string{"No packets from the callee since the call was answered at 12:03:00; its SDP advertised 10.0.0.5:4000, a private address, " +
				"and nothing arrived from its signalling address 198.51.100.7: it is behind NAT and its RTP does not get out to sipedge at 203.0.113.1:30002 " +
				"(a firewall or the NAT drops it, or the phone sends it elsewhere)."},
		},
		{
			name: "caller's SDP names another private network",
			streams: audio(silentLeg("caller", netip.MustParseAddrPort("127.0.0.1:5070"), netip.MustParseAddrPort("127.0.0.5:4000"), relayA),
				sending("callee", calleeIP, calleeMedia, relayB, 1500, 0, 30)),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "one-way",
			want:  []string{"No packets from the caller since the call was answered at 12:03:00; its SDP advertised 127.0.0.5:4000, a private address other than its signalling address 127.0.0.1, and nothing arrived at sipedge's 203.0.113.1:30000…"},
		},
		{
			name:    "public SDP, nothing sent",
			streams: audio(good, silentLeg("callee", calleeIP, calleeMedia, relayB)),
			facts:   callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio:   "one-way",
			want:    []string{"No packets from the callee since the call was answered at 12:03:00; its SDP advertised 198.51.100.7:4000 and sipedge waited for its RTP at 203.0.113.1:30002…"},
		},
		{
			name:    "silent, but too early to tell",
			streams: audio(sending("caller", callerIP, callerMedia, relayA, 100, 0, 2), silentLeg("callee", calleeIP, privateMedia, relayB)),
			facts:   callmedia.Facts{Answered: t0, Now: t0.Add(3 * time.Second)},
			audio:   "one-way",
		},
		{
			name:    "ringing: nobody is expected to send",
			streams: audio(silentLeg("caller", callerIP, callerMedia, relayA), silentLeg("callee", calleeIP, netip.AddrPort{}, relayB)),
			facts:   callmedia.Facts{Now: t0.Add(30 * time.Second)},
			audio:   "none",
		},
		{
			name:    "caller stopped while the callee went on",
			streams: audio(sending("caller", callerIP, callerMedia, relayA, 200, 0, 4), sending("callee", calleeIP, calleeMedia, relayB, 1500, 0, 30)),
			facts:   callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio:   "one-way",
			want:    []string{"No packets from the caller since 12:03:04 while the callee kept sending (200 packets before that, from 192.0.2.10:4000)."},
		},
		{
			name: "stopped, and another source was refused",
			streams: func() []callmedia.Stream {
				a := sending("caller", callerIP, callerMedia, relayA, 200, 0, 4)
				a.Foreign, a.ForeignSource, a.Dropped = 900, netip.MustParseAddrPort("192.0.2.10:4088"), 900
				return audio(a, sending("callee", calleeIP, calleeMedia, relayB, 1500, 0, 30))
			}(),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "one-way",
			want: []string{"No packets from the caller since 12:03:04 while the callee kept sending (200 packets before that, from 192.0.2.10:4000). " +
				"Packets for its side came from 192.0.2.10:4088 instead and were refused…"},
		},
		{
			name: "refused source while media flows",
			streams: func() []callmedia.Stream {
				a := good
				a.Foreign, a.ForeignSource = 60, netip.MustParseAddrPort("192.0.2.99:1234")
				return audio(a, sending("callee", calleeIP, calleeMedia, relayB, 1500, 0, 30))
			}(),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "ok",
			want:  []string{"60 packets for the caller's side came from 192.0.2.99:1234, not from 192.0.2.10:4000 it is latched to, and were refused."},
		},
		{
			name: "a few strays before the latch are no news",
			streams: func() []callmedia.Stream {
				a := good
				a.Foreign, a.ForeignSource = 3, netip.MustParseAddrPort("192.0.2.99:1234")
				return audio(a, sending("callee", calleeIP, calleeMedia, relayB, 1500, 0, 30))
			}(),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "ok",
		},
		{
			name: "callee's address never known",
			streams: func() []callmedia.Stream {
				a := sending("caller", callerIP, callerMedia, relayA, 1500, 0, 30)
				a.Forwarded, a.NoPeer, a.Dropped = 0, 1500, 1500
				return audio(a, silentLeg("callee", calleeIP, netip.AddrPort{}, relayB))
			}(),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "none",
			want: []string{
				"The callee received nothing: the caller's 1500 packets were dropped because the callee's media address was never known (its SDP gave none and it sent no packet to latch on to).",
				"No packets from the callee since the call was answered at 12:03:00; its SDP gave no address to send media to (on hold, or no answer with SDP), and it sent nothing to 203.0.113.1:30002.",
			},
		},
		{
			name: "sending on fails",
			streams: func() []callmedia.Stream {
				a := sending("caller", callerIP, callerMedia, relayA, 1500, 0, 30)
				a.Forwarded, a.SendErrors = 0, 1500
				return audio(a, silentLeg("callee", calleeIP, calleeMedia, relayB))
			}(),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "none",
			want: []string{
				"The callee received nothing: sending the caller's packets on to 198.51.100.7:4000 failed 1500 times (unreachable address or port).",
				"No packets from the callee since the call was answered at 12:03:00; its SDP advertised 198.51.100.7:4000…",
			},
		},
		{
			name:    "both stopped",
			streams: audio(sending("caller", callerIP, callerMedia, relayA, 500, 0, 10), sending("callee", calleeIP, calleeMedia, relayB, 500, 0, 11)),
			facts:   callmedia.Facts{Answered: t0, Now: t0.Add(40 * time.Second)},
			audio:   "none",
			want:    []string{"No packets from either side since 12:03:11: both phones stopped sending (on hold, or the network between them and sipedge failed)."},
		},
		{
			name: "ended call: phones stop at the BYE",
			streams: audio(sending("caller", callerIP, callerMedia, relayA, 500, 0, 10),
				sending("callee", calleeIP, calleeMedia, relayB, 500, 0, 10)),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(10*time.Second + 200*time.Millisecond)},
			audio: "ok",
		},
		{
			name: "poor quality",
			streams: func() []callmedia.Stream {
				a := good
				a.LossPct, a.JitterMS, a.MOS = 7.25, 31, mos(3.41)
				return audio(a, sending("callee", calleeIP, calleeMedia, relayB, 1500, 0, 30))
			}(),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "ok",
			want:  []string{"Poor audio from the caller: 7.2 % of its packets lost and 31 ms of jitter on the way to sipedge (estimated MOS 3.4)."},
		},
		{
			name: "video one-way, audio fine",
			streams: append(audio(good, sending("callee", calleeIP, calleeMedia, relayB, 1500, 0, 30)),
				callmedia.Stream{Index: 1, Type: "video", Legs: []callmedia.Leg{
					sending("caller", callerIP, netip.MustParseAddrPort("192.0.2.10:4002"), relayA, 900, 0, 30),
					silentLeg("callee", calleeIP, netip.MustParseAddrPort("198.51.100.7:4002"), relayB)}}),
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "ok",
			want:  []string{"Stream 1 (video): No packets from the callee since the call was answered at 12:03:00; its SDP advertised 198.51.100.7:4002…"},
		},
		{
			name:  "no stream",
			facts: callmedia.Facts{Answered: t0, Now: t0.Add(31 * time.Second)},
			audio: "none",
			want:  []string{"The call set up no media stream through sipedge."},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := callmedia.Media{Streams: tc.streams}
			callmedia.Diagnose(&m, tc.facts)
			if m.Audio != tc.audio {
				t.Errorf("audio %q, want %q", m.Audio, tc.audio)
			}
			if m.Diagnosis == nil {
				t.Error("diagnosis is nil: the JSON would say null, not []")
			}
			if len(m.Diagnosis) != len(tc.want) {
				t.Fatalf("diagnosis:\n%s\nwant:\n%s", strings.Join(m.Diagnosis, "\n"), strings.Join(tc.want, "\n"))
			}
			for i, w := range tc.want {
				got := m.Diagnosis[i]
				if p, ok := strings.CutSuffix(w, "…"); ok {
					if !strings.HasPrefix(got, p) {
						t.Errorf("sentence %d:\n%s\nwant it to start\n%s", i, got, p)
					}
				} else if got != w {
					t.Errorf("sentence %d:\n%s\nwant\n%s", i, got, w)
				}
			}
		})
	}
}

// TestMediaJSON: the shape the call log and the API show.
func TestMediaJSON(t *testing.T) {
	m := callmedia.Media{Streams: audio(sending("caller", callerIP, netip.MustParseAddrPort("10.0.0.5:4000"), relayA, 123, 0, 2),
		silentLeg("callee", netip.AddrPort{}, netip.AddrPort{}, relayB))}
	m.Streams[0].Legs[0].SDPPrivate = true
	callmedia.Diagnose(&m, callmedia.Facts{Answered: t0, Now: t0.Add(3 * time.Second)})
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"audio":"one-way","diagnosis":[],"streams":[{"index":0,"type":"audio","legs":[` +
		`{"side":"caller","signalling":"192.0.2.10:5060","sdp":"10.0.0.5:4000","sdp_private":true,"relay":"203.0.113.1:30000",` +
		`"source":"10.0.0.5:4000","latched":true,"packets":123,"bytes":21156,"rtcp_packets":0,"forwarded":123,"kernel_packets":0,"in_kernel":false,"dropped":0,` +
		`"foreign":0,"foreign_source":"","lost":0,"loss_pct":0,"jitter_ms":0,"mos":4.4,"codec":"PCMU",` +
		`"first":"2024-05-06T12:03:00Z","last":"2024-05-06T12:03:02Z"},` +
		`{"side":"callee","signalling":"","sdp":"","sdp_private":false,"relay":"203.0.113.1:30002","source":"","latched":false,` +
		`"packets":0,"bytes":0,"rtcp_packets":0,"forwarded":0,"kernel_packets":0,"in_kernel":false,"dropped":0,"foreign":0,"foreign_source":"","lost":0,"loss_pct":0,` +
		`"jitter_ms":0,"mos":null,"codec":"PCMU","first":null,"last":null}]}]}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	nr, _ := json.Marshal(callmedia.NotRelayed("media.relay is never"))
	if !strings.HasPrefix(string(nr), `{"audio":"not-relayed","diagnosis":["sipedge did not relay this call's media (media.relay is never), so it cannot see it`) ||
		!strings.HasSuffix(string(nr), `"streams":[]}`) {
		t.Errorf("not relayed: %s", nr)
	}
}
