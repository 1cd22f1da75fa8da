// Package sdp reads and rewrites SDP bodies (RFC 8866, offer/answer of
// RFC 3264) for NAT traversal and media relay.
//
// Like package sip it indexes the received bytes instead of decoding them:
// Parse records, for every line, its type and the spans of its value and of
// the whole line with its terminator; typed views (Origin, Conn, Media) are
// computed from those spans on demand and return sub-slices of the body.
// AppendRewrite writes the body again with only the bytes the relay must
// change replaced: connection addresses, media and RTCP ports, and,
// when asked, the ICE attributes. Everything else, including line endings
// (CRLF or bare LF, per line), attribute order, unknown lines and white
// space, is copied byte for byte, so a Plan that changes nothing writes the
// body unchanged.
package sdp

import "net/netip"

// span is a byte range [s, e) of Session.buf.
type span struct{ s, e int32 }

// attrKind classifies the attributes the relay reads or rewrites.
type attrKind uint8

const (
	attrOther attrKind = iota
	attrSendRecv
	attrSendOnly
	attrRecvOnly
	attrInactive
	attrRTCP
	attrRTCPMux
	attrCrypto
	attrFingerprint
	attrSetup
	// ICE attributes (RFC 8839 §5); keep them last and contiguous.
	attrCandidate
	attrRemoteCandidates
	attrEndOfCandidates
	attrICEUfrag
	attrICEPwd
	attrICEOptions
	attrICELite
	attrICEMismatch
	attrICEPacing
)

func (k attrKind) ice() bool { return k >= attrCandidate }

// line is one line of the index.
type line struct {
	typ   byte
	attr  attrKind
	value span  // after "<type>=", up to the terminator
	end   int32 // offset after the terminator; value.e when there is none
}

// conn is a parsed "<nettype> <addrtype> <address>" triple: a c= line or the
// address part of a=rtcp.
type conn struct {
	line    int32      // line index; -1 when absent
	typ     span       // addrtype as written: rewriting replaces [typ.s, end)
	addr    span       // address without the multicast suffix
	end     int32      // end of the address including "/ttl/n"
	ip      netip.Addr // valid when the address is an IP literal
	ip6     bool       // addrtype IP6
	host    bool       // a host name, not a literal
	ttl     int16      // IPv4 multicast TTL; -1 when absent
	numAddr int32      // multicast "/n"; 1 when absent
}

// hold reports the RFC 3264 §8.4 / RFC 2543 hold address 0.0.0.0 or "::".
func (c *conn) hold() bool { return c.ip.IsValid() && c.ip.IsUnspecified() }

// media is one media description (RFC 8866 §5.14) of the index.
type media struct {
	line     int32 // index of the m= line
	last     int32 // index of the last line of the section
	cAfter   int32 // index of the line after which a media-level c= goes (m= or a following i=)
	typ      span
	port     span // port digits
	proto    span
	fmts     span
	portN    int32
	count    int32 // port count; 1 when absent
	kind     Transport
	conn     conn // media-level c=
	nconn    int32
	rtcpLine int32 // a=rtcp line index; -1 when absent
	rtcpPort span
	rtcpN    int32
	rtcpAddr conn
	dir      Direction
	hasDir   bool
	attrs    Attr
	cands    int32
}

// Session is a parsed session description. It refers to the body passed to
// Parse, which must outlive it and must not be modified. A Session is
// reusable: Parse resets it and keeps its allocated capacity, so a warm
// Session parses without allocating.
type Session struct {
	// Limits bounds what Parse accepts; the zero value means the defaults.
	Limits Limits

	buf   []byte
	lines []line
	media []media
	ok    bool

	origin int32   // o= line index; -1 when absent
	ofield [6]span // username, sess-id, sess-version, nettype, addrtype, address
	sname  int32   // s= line index; -1 when absent
	conn   conn    // session-level c=
	dir    Direction
	hasDir bool
	attrs  Attr
}

// Limits bounds a session description. Exceeding one is answered with 488:
// the description may be valid, but sipedge will not spend more on it.
type Limits struct {
	MaxSize  int // body bytes; default 65536
	MaxLines int // lines; default 512
	MaxMedia int // media descriptions; default 32
}

// Default limits. A fat WebRTC offer with audio, video, data and a dozen
// candidates per stream has about 150 lines and 4 media descriptions.
const (
	DefaultMaxSize  = 64 << 10
	DefaultMaxLines = 512
	DefaultMaxMedia = 32
)

func (l Limits) withDefaults() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxSize > 1<<30 {
		l.MaxSize = 1 << 30 // offsets are int32
	}
	if l.MaxLines <= 0 {
		l.MaxLines = DefaultMaxLines
	}
	if l.MaxMedia <= 0 {
		l.MaxMedia = DefaultMaxMedia
	}
	return l
}

// Direction is the media direction attribute of RFC 3264 §5.1 / RFC 8866
// §6.7. The zero value is SendRecv, the default when none is given.
type Direction uint8

const (
	SendRecv Direction = iota
	SendOnly
	RecvOnly
	Inactive
)

var dirNames = [...]string{"sendrecv", "sendonly", "recvonly", "inactive"}

func (d Direction) String() string { return dirNames[d&3] }

// Transport classifies the proto field of m= (RFC 8866 §5.14 and the IANA
// "proto" registry) by what a UDP relay can carry.
type Transport uint8

const (
	// TransportOther is anything sipedge does not relay: TCP/MSRP,
	// TCP/RTP/AVP, UDP/DTLS/SCTP, TCP/BFCP...
	TransportOther Transport = iota
	// TransportRTP is RTP over UDP: RTP/AVP, RTP/AVPF, RTP/SAVP,
	// RTP/SAVPF (RFC 3551, 4585, 3711, 5124) and UDP/TLS/RTP/SAVP(F)
	// (RFC 5764 DTLS-SRTP).
	TransportRTP
	// TransportUDPTL is T.38 fax over UDPTL (ITU-T T.38 Annex D,
	// "m=image <port> udptl t38"): one UDP flow, no RTCP.
	TransportUDPTL
	// TransportUDP is "udp": an unspecified protocol over UDP.
	TransportUDP
)

// Relayable reports whether a UDP media relay can carry the stream.
func (t Transport) Relayable() bool { return t != TransportOther }

// RTP reports an RTP-based transport, which has an RTCP flow (RFC 3550 §11).
func (t Transport) RTP() bool { return t == TransportRTP }

// Attr is a set of attributes found at one level (session or media).
type Attr uint16

const (
	AttrICEUfrag    Attr = 1 << iota // a=ice-ufrag (RFC 8839 §5.4)
	AttrICEPwd                       // a=ice-pwd (RFC 8839 §5.4)
	AttrICEOptions                   // a=ice-options (RFC 8839 §5.6)
	AttrICELite                      // a=ice-lite (RFC 8839 §5.3)
	AttrCandidate                    // at least one a=candidate (RFC 8839 §5.1)
	AttrRTCPMux                      // a=rtcp-mux (RFC 5761 §5.1.1)
	AttrCrypto                       // a=crypto (RFC 4568 §9.1)
	AttrFingerprint                  // a=fingerprint (RFC 8122 §5)
	AttrSetup                        // a=setup (RFC 4145 §4)
)

// Conn is a connection address: of a c= line (RFC 8866 §5.7) or of an
// a=rtcp attribute (RFC 3605 §2.1). The zero Conn (Raw nil) means absent.
type Conn struct {
	Raw      []byte     // the address as written, without "/ttl" or "/n"
	Addr     netip.Addr // the address when Raw is an IP literal; invalid for a host name
	IP6      bool       // address type IP6 (else IP4)
	Hostname bool       // Raw is a host name (allowed by RFC 8866 §9 for both types)
	TTL      int        // IPv4 multicast TTL; -1 when absent
	NumAddr  int        // multicast address count "/n"; 1 when absent
}

// Present reports whether the address exists.
func (c Conn) Present() bool { return c.Raw != nil }

// IsHold reports the "do not send" address 0.0.0.0 or "::" (RFC 3264 §8.4
// and the RFC 2543 convention for hold).
func (c Conn) IsHold() bool { return c.Addr.IsValid() && c.Addr.IsUnspecified() }

// Multicast reports a multicast literal.
func (c Conn) Multicast() bool { return c.Addr.IsValid() && c.Addr.IsMulticast() }

// RTCP is the a=rtcp attribute of RFC 3605 §2.1.
type RTCP struct {
	Present bool
	Port    int
	Conn    Conn // the optional address; Raw nil when the attribute has none
}

// Origin holds the fields of the o= line (RFC 8866 §5.2) as written.
type Origin struct {
	Username, SessID, SessVersion, NetType, AddrType, Address []byte
}

// Media is the view of one media description.
type Media struct {
	Index     int
	Type      []byte // "audio", "video", "image", "application"...
	Port      int
	PortCount int // "/<number of ports>"; 1 when absent
	Proto     []byte
	Transport Transport
	Formats   []byte // the fmt list as written
	// Conn is the effective connection address: the media-level c= when
	// there is one (ConnMediaLevel), else the session-level c= (RFC 8866
	// §5.7). Raw is nil only for a rejected stream (port 0) with neither.
	Conn           Conn
	ConnMediaLevel bool
	RTCP           RTCP
	// Direction is the media-level direction attribute, else the
	// session-level one, else sendrecv (RFC 3264 §5.1).
	Direction Direction
	// Hold reports a stream put on hold: direction sendonly or inactive
	// (RFC 3264 §8.4), or the connection address 0.0.0.0 / "::" (the
	// RFC 2543 convention RFC 3264 §8.4 still asks answerers to accept).
	Hold       bool
	Candidates int  // number of a=candidate lines
	Attrs      Attr // attributes at media level
}

// Has reports whether the media description carries attribute a.
func (m *Media) Has(a Attr) bool { return m.Attrs&a != 0 }

// Rejected reports a stream with port 0 (RFC 3264 §6, §8.2).
func (m *Media) Rejected() bool { return m.Port == 0 }

func (s *Session) b(sp span) []byte { return s.buf[sp.s:sp.e] }

func (s *Session) connView(c *conn) Conn {
	if c.line < 0 {
		return Conn{}
	}
	return Conn{Raw: s.b(c.addr), Addr: c.ip, IP6: c.ip6, Hostname: c.host,
		TTL: int(c.ttl), NumAddr: int(c.numAddr)}
}

// Bytes returns the body as given to Parse.
func (s *Session) Bytes() []byte { return s.buf }

// NumLines returns the number of lines (trailing empty lines not counted).
func (s *Session) NumLines() int { return len(s.lines) }

// Line returns the type letter and the value of line i as written.
func (s *Session) Line(i int) (typ byte, value []byte) {
	l := &s.lines[i]
	return l.typ, s.b(l.value)
}

// LineSpan returns the offsets of line i, from its type letter to the end
// of its terminator.
func (s *Session) LineSpan(i int) (start, end int) {
	l := &s.lines[i]
	return int(l.value.s) - 2, int(l.end)
}

// Origin returns the o= fields.
func (s *Session) Origin() Origin {
	if s.origin < 0 {
		return Origin{}
	}
	f := &s.ofield
	return Origin{s.b(f[0]), s.b(f[1]), s.b(f[2]), s.b(f[3]), s.b(f[4]), s.b(f[5])}
}

// Version returns the sess-version of the o= line (RFC 8866 §5.2). A
// rewritten description is a new version only if the caller says so:
// RFC 3264 §8 asks for the version to grow by one whenever a description
// differs from the previous one sent in the dialog, which only the dialog
// knows. ok is false when the field is not a decimal number below 2^64.
func (s *Session) Version() (v uint64, ok bool) {
	if s.origin < 0 {
		return 0, false
	}
	b := s.b(s.ofield[2])
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// Conn returns the session-level connection address (Raw nil when absent).
func (s *Session) Conn() Conn { return s.connView(&s.conn) }

// Direction returns the session-level direction attribute, sendrecv when
// there is none (RFC 3264 §5.1).
func (s *Session) Direction() Direction { return s.dir }

// Attrs returns the attributes found at session level.
func (s *Session) Attrs() Attr { return s.attrs }

// Has reports whether attribute a is present at session level.
func (s *Session) Has(a Attr) bool { return s.attrs&a != 0 }

// NumMedia returns the number of media descriptions.
func (s *Session) NumMedia() int { return len(s.media) }

// Media returns the view of media description i.
func (s *Session) Media(i int) Media {
	m := &s.media[i]
	v := Media{
		Index:      i,
		Type:       s.b(m.typ),
		Port:       int(m.portN),
		PortCount:  int(m.count),
		Proto:      s.b(m.proto),
		Transport:  m.kind,
		Formats:    s.b(m.fmts),
		Direction:  s.dir,
		Candidates: int(m.cands),
		Attrs:      m.attrs,
	}
	if m.conn.line >= 0 {
		v.Conn, v.ConnMediaLevel = s.connView(&m.conn), true
	} else {
		v.Conn = s.connView(&s.conn)
	}
	if m.rtcpLine >= 0 {
		v.RTCP = RTCP{Present: true, Port: int(m.rtcpN), Conn: s.connView(&m.rtcpAddr)}
	}
	if m.hasDir {
		v.Direction = m.dir
	}
	v.Hold = v.Direction == SendOnly || v.Direction == Inactive || v.Conn.IsHold()
	return v
}
