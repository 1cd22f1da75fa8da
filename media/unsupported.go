//go:build !linux

package media

import (
	"errors"
	"net/netip"
	"time"
)

// ErrUnsupported: the relay's data path is built on Linux epoll,
// recvmmsg and sendmmsg. Elsewhere sipedge runs without media relay.
var ErrUnsupported = errors.New("media: relay not supported on this OS")

// Relay is unavailable on this OS: New fails.
type Relay struct{}

// Call is unavailable on this OS.
type Call struct{}

// Stream is unavailable on this OS.
type Stream struct{}

func New(cfg Config) (*Relay, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, ErrUnsupported
}
func (r *Relay) Close() error                                                 { return nil }
func (r *Relay) Call(id string) (*Call, error)                                { return nil, ErrUnsupported }
func (r *Relay) Stats() RelayStats                                            { return RelayStats{} }
func (r *Relay) SetLimits(maxCalls, maxStreams int, inactivity time.Duration) {}
func (c *Call) ID() string                                                    { return "" }
func (c *Call) Stream(index int, a, b netip.Addr) (*Stream, error)            { return nil, ErrUnsupported }
func (c *Call) Close()                                                        {}
func (c *Call) Fork(key string) (*Call, error)                                { return nil, ErrUnsupported }
func (c *Call) Keep(key string)                                               {}
func (c *Call) Streams() []*Stream                                            { return nil }
func (s *Stream) Index() int                                                  { return 0 }
func (s *Stream) Local(side Side) (rtp, rtcp netip.AddrPort)                  { return }
func (s *Stream) SetPeer(side Side, rtp, rtcp netip.AddrPort) error           { return ErrUnsupported }
func (s *Stream) SetClockRate(pt uint8, hz uint32)                            {}
func (s *Stream) Stats() StreamStats                                          { return StreamStats{} }
