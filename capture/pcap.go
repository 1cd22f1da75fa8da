package capture

import (
	"bufio"
	"encoding/binary"
	"io"
	"net/netip"
)

// WritePcap writes msgs as a libpcap file (the classic format with
// microsecond time stamps, link type Ethernet) that Wireshark, tcpdump
// and sngrep -I read: each message one Ethernet + IPv4 or IPv6 + UDP
// frame from its source to its destination address and port, with valid
// IP and UDP checksums. Messages sipedge received or sent over TCP or TLS
// are written the same way, as UDP datagrams with the real addresses and
// ports and the decrypted text: there is no TCP stream to rebuild (no
// handshake, sequence numbers or segments was kept), and SIP tools read
// SIP over UDP best. A message kept cut (over MaxMessageBytes) is written
// as kept.
func WritePcap(w io.Writer, msgs []Message) error {
	bw := bufio.NewWriter(w)
	var gh [24]byte
	binary.LittleEndian.PutUint32(gh[0:], 0xa1b2c3d4) // microseconds
	binary.LittleEndian.PutUint16(gh[4:], 2)
	binary.LittleEndian.PutUint16(gh[6:], 4)
	binary.LittleEndian.PutUint32(gh[16:], 262144) // snaplen
	binary.LittleEndian.PutUint32(gh[20:], 1)      // LINKTYPE_ETHERNET
	bw.Write(gh[:])
	frame := make([]byte, 0, 2048)
	for i := range msgs {
		m := &msgs[i]
		frame = appendFrame(frame[:0], m.Src(), m.Dst(), []byte(m.Text), uint16(i))
		var rh [16]byte
		us := m.Time.UnixMicro()
		binary.LittleEndian.PutUint32(rh[0:], uint32(us/1e6))
		binary.LittleEndian.PutUint32(rh[4:], uint32(us%1e6))
		binary.LittleEndian.PutUint32(rh[8:], uint32(len(frame)))
		binary.LittleEndian.PutUint32(rh[12:], uint32(len(frame)))
		bw.Write(rh[:])
		bw.Write(frame)
	}
	return bw.Flush()
}

// appendFrame appends an Ethernet frame carrying payload in a UDP datagram
// from src to dst. Both are written as IPv4 when both are IPv4 (or
// IPv4-mapped), as IPv6 otherwise (an IPv4 one then mapped, ::ffff:a.b.c.d).
// The payload is cut to what one datagram holds.
func appendFrame(b []byte, src, dst netip.AddrPort, payload []byte, id uint16) []byte {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	v4 := sa.Is4() && da.Is4()
	if !v4 {
		sa, da = netip.AddrFrom16(sa.As16()), netip.AddrFrom16(da.As16())
	}
	// Ethernet II: locally administered MAC addresses (no real hardware
	// was involved), then the EtherType.
	b = append(b, 0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01)
	if v4 {
		payload = payload[:min(len(payload), 65535-20-8)]
		b = append(b, 0x08, 0x00)
		ip := len(b)
		total := 20 + 8 + len(payload)
		b = append(b, 0x45, 0, byte(total>>8), byte(total), byte(id>>8), byte(id), 0x40, 0, // DF
			64, 17, 0, 0) // TTL, UDP, checksum below
		s4, d4 := sa.As4(), da.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
		binary.BigEndian.PutUint16(b[ip+10:], ^fold(sum(0, b[ip:ip+20])))
		// UDP over IPv4, pseudo-header of RFC 768.
		ps := sum(0, s4[:])
		ps = sum(ps, d4[:])
		ps += 17 + uint32(8+len(payload))
		return appendUDP(b, src.Port(), dst.Port(), payload, ps)
	}
	payload = payload[:min(len(payload), 65535-8)]
	b = append(b, 0x86, 0xdd)
	plen := 8 + len(payload)
	b = append(b, 0x60, 0, 0, 0, byte(plen>>8), byte(plen), 17, 64) // version, payload length, UDP, hop limit
	s16, d16 := sa.As16(), da.As16()
	b = append(b, s16[:]...)
	b = append(b, d16[:]...)
	// UDP over IPv6: pseudo-header of RFC 8200 §8.1.
	ps := sum(0, s16[:])
	ps = sum(ps, d16[:])
	ps += 17 + uint32(plen)
	return appendUDP(b, src.Port(), dst.Port(), payload, ps)
}

// appendUDP appends the UDP header and payload; pseudo is the sum of the
// pseudo-header.
func appendUDP(b []byte, sport, dport uint16, payload []byte, pseudo uint32) []byte {
	u := len(b)
	n := 8 + len(payload)
	b = append(b, byte(sport>>8), byte(sport), byte(dport>>8), byte(dport), byte(n>>8), byte(n), 0, 0)
	b = append(b, payload...)
	c := ^fold(sum(pseudo, b[u:]))
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(b[u+6:], c)
	return b
}

// sum adds b as big-endian 16-bit words to s (the Internet checksum,
// RFC 1071), an odd last byte padded with zero.
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
		if s >= 1<<31 {
			s = s&0xffff + s>>16
		}
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
