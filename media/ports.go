//go:build linux

package media

import (
	"fmt"
	"net/netip"
)

// pool hands out the port pairs of one local address. Free pairs wait in a
// FIFO ring: a released pair goes to the back and is reused last, so
// packets still in flight to a finished call (a peer that has not yet
// processed the BYE) do not land in a new call on the same port.
type pool struct {
	addr  netip.Addr
	first int     // RTP port of pair 0
	ring  []int32 // pair indexes; free ones are ring[head : head+free] mod len
	head  int
	free  int
}

func newPool(addr netip.Addr, cfg Config) *pool {
	n := cfg.pairs()
	p := &pool{addr: addr, first: cfg.PortMin, ring: make([]int32, n), free: n}
	for i := range p.ring {
		p.ring[i] = int32(i)
	}
	return p
}

func (p *pool) pop() int32 {
	i := p.ring[p.head]
	p.head = (p.head + 1) % len(p.ring)
	p.free--
	return i
}

func (p *pool) push(i int32) {
	p.ring[(p.head+p.free)%len(p.ring)] = i
	p.free++
}

// pair is a bound RTP/RTCP socket pair taken from a pool.
type pair struct {
	pool     *pool
	idx      int32
	rtp      int // fds
	rtcp     int
	rtpPort  netip.AddrPort
	rtcpPort netip.AddrPort
}

// take binds the next free pair. A pair whose port another process holds
// goes to the back of the ring and the next one is tried: ports in the
// range are not reserved against the rest of the system (the kernel's
// ephemeral range may overlap it). Every free pair is tried at most once;
// then ErrNoPorts. Running out of file descriptors is ErrNoPorts too: both
// mean "no capacity now", which the proxy answers with 503.
func (p *pool) take() (pair, error) {
	for tries := p.free; tries > 0; tries-- {
		idx := p.pop()
		port := p.first + 2*int(idx)
		pr := pair{pool: p, idx: idx,
			rtpPort:  netip.AddrPortFrom(p.addr, uint16(port)),
			rtcpPort: netip.AddrPortFrom(p.addr, uint16(port+1)),
		}
		var err error
		if pr.rtp, err = bindUDP(pr.rtpPort); err == nil {
			if pr.rtcp, err = bindUDP(pr.rtcpPort); err == nil {
				return pr, nil
			}
			closeFD(pr.rtp)
		}
		p.push(idx)
		switch {
		case portTaken(err):
			continue
		case outOfFDs(err):
			return pair{}, fmt.Errorf("%w on %v: %v", ErrNoPorts, p.addr, err)
		default:
			return pair{}, fmt.Errorf("media: bind %v: %w", pr.rtpPort, err)
		}
	}
	return pair{}, fmt.Errorf("%w on %v", ErrNoPorts, p.addr)
}

// release closes the pair's sockets and returns it to the back of the ring.
func (pr *pair) release() {
	closeFD(pr.rtp)
	closeFD(pr.rtcp)
	pr.pool.push(pr.idx)
}
