package capture

import (
	"net/netip"
	"time"
)

// Message is one kept SIP message, as the API shows it.
type Message struct {
	Time time.Time `json:"time"`
	// Dir is "in" for a message sipedge received, "out" for one it sent.
	Dir       string `json:"dir"`
	Transport string `json:"transport"` // UDP, TCP or TLS (the text is the decrypted message)
	// Local is sipedge's socket: for a UDP socket bound to a wildcard
	// address, the address sipedge used towards the same peer in this
	// call, when it sent anything (see resolveLocal); Remote is the peer.
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	// Size is the message's length; Text holds at most MaxMessageBytes
	// of it.
	Size int `json:"size"`
	// Label is the ladder arrow's text (Label); SDP the summary of an SDP
	// body (SDPSummary), empty without one.
	Label string `json:"label"`
	SDP   string `json:"sdp,omitempty"`
	Text  string `json:"text"`
}

// Src is where the message came from: the peer for a received message,
// sipedge for a sent one.
func (m *Message) Src() netip.AddrPort {
	if m.Dir == "in" {
		return m.Remote
	}
	return m.Local
}

// Dst is where the message went.
func (m *Message) Dst() netip.AddrPort {
	if m.Dir == "in" {
		return m.Local
	}
	return m.Remote
}

// resolveLocal names sipedge's address on messages received on a socket
// bound to a wildcard address, which the tap reports as 0.0.0.0 or ::
// (finding the real one would cost a control message per read): the
// address a sent message of the same call left from on the same port,
// to the same peer if there is one. A ladder then has one column per
// socket of sipedge instead of two, and a pcap frame a real destination.
func resolveLocal(msgs []Message) {
	for i := range msgs {
		m := &msgs[i]
		if !m.Local.Addr().IsUnspecified() {
			continue
		}
		var best netip.Addr
		for j := range msgs {
			o := &msgs[j]
			oa := o.Local.Addr()
			// An IPv4 wildcard socket sends from IPv4 addresses; an IPv6
			// one ([::], dual stack) may send from either.
			if o.Local.Port() != m.Local.Port() || !oa.IsValid() || oa.IsUnspecified() || m.Local.Addr().Is4() && !oa.Is4() {
				continue
			}
			if o.Remote == m.Remote {
				best = oa
				break
			}
			if !best.IsValid() {
				best = oa
			}
		}
		if best.IsValid() {
			m.Local = netip.AddrPortFrom(best, m.Local.Port())
		}
	}
}
