package sip

// Limits bound what the parser accepts. They protect the process from
// hostile or broken peers: a message that exceeds one is answered with the
// status in the ParseError (requests) or dropped (responses), never partly
// processed. The zero value of a field means "use the default".
type Limits struct {
	// MaxMessageSize bounds a whole message: start line, headers and body.
	// Exceeding it answers 513 Message Too Large (RFC 3261 §21.5.14).
	// Datagram bytes after the Content-Length body are not part of the
	// message (RFC 3261 §18.3) and do not count.
	MaxMessageSize int
	// MaxBodySize bounds Content-Length. Exceeding it answers
	// 413 Request Entity Too Large (RFC 3261 §21.4.11).
	MaxBodySize int
	// MaxHeaders bounds the number of header lines (513).
	MaxHeaders int
	// MaxLineLength bounds one header field, folded lines included (513).
	MaxLineLength int
	// MaxVias bounds the number of Via values (513): a longer chain is a
	// loop or an attack, never a real path.
	MaxVias int
}

// Default limits. 64 KiB is the largest UDP datagram and far above any real
// signalling message; the others are generous multiples of what phones and
// PBXs send (a fat INVITE carries 20–40 headers and a handful of Vias).
const (
	DefaultMaxMessageSize = 65535
	DefaultMaxBodySize    = 60000
	DefaultMaxHeaders     = 128
	DefaultMaxLineLength  = 8192
	DefaultMaxVias        = 64
)

// DefaultLimits is used when a nil *Limits is passed.
var DefaultLimits = Limits{
	MaxMessageSize: DefaultMaxMessageSize,
	MaxBodySize:    DefaultMaxBodySize,
	MaxHeaders:     DefaultMaxHeaders,
	MaxLineLength:  DefaultMaxLineLength,
	MaxVias:        DefaultMaxVias,
}

// withDefaults returns l with every zero field replaced by its default.
func (l *Limits) withDefaults() Limits {
	if l == nil {
		return DefaultLimits
	}
	r := *l
	if r.MaxMessageSize <= 0 {
		r.MaxMessageSize = DefaultMaxMessageSize
	}
	if r.MaxBodySize <= 0 {
		r.MaxBodySize = DefaultMaxBodySize
	}
	if r.MaxHeaders <= 0 {
		r.MaxHeaders = DefaultMaxHeaders
	}
	if r.MaxHeaders > 10000 {
		r.MaxHeaders = 10000 // the index stores header positions as int16
	}
	if r.MaxLineLength <= 0 {
		r.MaxLineLength = DefaultMaxLineLength
	}
	if r.MaxVias <= 0 {
		r.MaxVias = DefaultMaxVias
	}
	return r
}
