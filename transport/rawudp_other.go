//go:build !linux

package transport

import (
	"net"
	"net/netip"
	"sync"
)

// rawUDP is the raw system-call path of Linux (rawudp_linux.go); elsewhere
// the net package's own calls serve, one datagram per call.
type rawUDP struct{}

func newRawUDP(*net.UDPConn) *rawUDP { return nil }

// udpBatch and reader exist only for the Linux path.
type udpBatch struct {
	dsts []netip.AddrPort
	bufs [][]byte
}

var udpBatches = sync.Pool{New: func() any { return &udpBatch{} }}

func (b *udpBatch) set(int, netip.AddrPort, []byte) {}
func (b *udpBatch) clear(int)                       {}
func (r *rawUDP) sendFrom(*udpBatch, int, int) (int, error) {
	return 0, net.ErrClosed
}

type reader struct{}

func (u *udpListener) newReader(int) *reader { return nil }
func (r *reader) read() (int, error)         { return 0, net.ErrClosed }
func (r *reader) data(int) []byte            { return nil }
func (r *reader) src(int) netip.AddrPort     { return netip.AddrPort{} }

func (u *udpListener) writeTo(data []byte, dst netip.AddrPort) error {
	_, err := u.conn.WriteToUDPAddrPort(data, dst)
	return err
}
