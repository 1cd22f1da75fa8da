// Package hep sends the SIP messages sipedge receives and sends to a
// HEP/EEP collector (Homer's heplify-server, sngrep -L, any HEP v3
// listener), as a capture agent does: decrypted TLS included, since the
// tap sees messages after TLS.
//
// HEP v3 ("HEP3", sipcapture's specification): a 6-byte header ("HEP3",
// total length) and chunks of vendor 0 (generic): type, length including
// the 6-byte chunk header, value. The encoder is written by hand: it is
// about a hundred lines, no maintained Go package does it (one decodes
// only, another lives inside an application), and it runs once per
// message, so it must not allocate.
package hep

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// Chunk types (generic vendor 0).
const (
	chunkFamily    = 0x0001 // u8: 2 IPv4, 10 IPv6
	chunkProto     = 0x0002 // u8: 6 TCP, 17 UDP
	chunkSrcIP4    = 0x0003
	chunkDstIP4    = 0x0004
	chunkSrcIP6    = 0x0005
	chunkDstIP6    = 0x0006
	chunkSrcPort   = 0x0007 // u16
	chunkDstPort   = 0x0008
	chunkTimeSec   = 0x0009 // u32
	chunkTimeUsec  = 0x000a // u32, microseconds within the second
	chunkProtoType = 0x000b // u8: 1 SIP
	chunkCaptureID = 0x000c // u32
	chunkAuthKey   = 0x000e // string
	chunkPayload   = 0x000f
	chunkNodeName  = 0x0013 // string
)

// ProtoSIP is the payload type of SIP messages.
const ProtoSIP = 1

// IP protocol numbers of the transport.
const (
	TCP = 6
	UDP = 17
)

// MaxDatagram bounds an encoded packet: sngrep reads at most 20 480 bytes
// of a HEP datagram (capture_hep.h), and the header's length is 16 bits.
const MaxDatagram = 20480

// Packet is one captured message.
type Packet struct {
	Src, Dst  netip.AddrPort
	Transport uint8 // TCP or UDP
	Time      time.Time
	Payload   []byte
}

// Agent identifies the capture agent in every packet.
type Agent struct {
	ID       uint32 // capture id (HEP v3: 32 bits)
	Password string
	Node     string // node name; empty: none
}

// Append encodes p as HEP v3 after dst. It returns dst unchanged and false
// when the packet would exceed MaxDatagram (the payload is never cut: a
// truncated SIP message misleads more than a missing one).
func Append(dst []byte, a *Agent, p *Packet) ([]byte, bool) {
	if len(p.Payload) > MaxDatagram {
		return dst, false
	}
	start := len(dst)
	dst = appendHead(dst, a, p.Src.Addr().Unmap(), p.Dst.Addr().Unmap(), p.Src.Port(), p.Dst.Port(), p.Transport, ProtoSIP, p.Time)
	dst = chunkBytes(dst, chunkPayload, p.Payload)
	n := len(dst) - start
	if n > MaxDatagram {
		return dst[:start], false
	}
	binary.BigEndian.PutUint16(dst[start+4:], uint16(n))
	return dst, true
}

// appendHead starts a HEP v3 packet at the end of dst: the packet header
// (its length written by the caller once the packet is whole) and the
// chunks every packet carries, address family to node name. Addresses of
// two families are written as IPv6 (IPv4-mapped): HEP has one family
// chunk.
func appendHead(dst []byte, a *Agent, src, dstAddr netip.Addr, srcPort, dstPort uint16, transport, protoType uint8, at time.Time) []byte {
	dst = append(dst, 'H', 'E', 'P', '3', 0, 0)
	v4 := src.Is4() && dstAddr.Is4()
	if v4 {
		dst = chunk8(dst, chunkFamily, 2)
	} else {
		dst = chunk8(dst, chunkFamily, 10)
	}
	dst = chunk8(dst, chunkProto, transport)
	if v4 {
		s, d := src.As4(), dstAddr.As4()
		dst = chunkBytes(dst, chunkSrcIP4, s[:])
		dst = chunkBytes(dst, chunkDstIP4, d[:])
	} else {
		s, d := src.As16(), dstAddr.As16()
		dst = chunkBytes(dst, chunkSrcIP6, s[:])
		dst = chunkBytes(dst, chunkDstIP6, d[:])
	}
	dst = chunk16(dst, chunkSrcPort, srcPort)
	dst = chunk16(dst, chunkDstPort, dstPort)
	dst = chunk32(dst, chunkTimeSec, uint32(at.Unix()))
	dst = chunk32(dst, chunkTimeUsec, uint32(at.Nanosecond()/1000))
	dst = chunk8(dst, chunkProtoType, protoType)
	dst = chunk32(dst, chunkCaptureID, a.ID)
	if a.Password != "" {
		dst = chunkString(dst, chunkAuthKey, a.Password)
	}
	if a.Node != "" {
		dst = chunkString(dst, chunkNodeName, a.Node)
	}
	return dst
}

func header(dst []byte, typ uint16, n int) []byte {
	return append(dst, 0, 0, byte(typ>>8), byte(typ), byte((n+6)>>8), byte(n+6))
}

func chunk8(dst []byte, typ uint16, v uint8) []byte {
	return append(header(dst, typ, 1), v)
}

func chunk16(dst []byte, typ uint16, v uint16) []byte {
	return binary.BigEndian.AppendUint16(header(dst, typ, 2), v)
}

func chunk32(dst []byte, typ uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(header(dst, typ, 4), v)
}

// chunkBytes: v is at most MaxDatagram bytes (Append checks), so its
// length fits the chunk's 16 bits.
func chunkBytes(dst []byte, typ uint16, v []byte) []byte {
	return append(header(dst, typ, len(v)), v...)
}

func chunkString(dst []byte, typ uint16, v string) []byte {
	if len(v) > 255 {
		v = v[:255]
	}
	return append(header(dst, typ, len(v)), v...)
}
