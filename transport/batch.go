package transport

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Outgoing is one message of a SendBatch.
type Outgoing struct {
	Proto Proto
	Dst   netip.AddrPort
	Data  []byte
}

// maxBatch is the most datagrams handed to one sendmmsg call (the kernel's
// UIO_MAXIOV limit is 1024).
const maxBatch = 256

// udpBatch is the reusable state of one sendmmsg call: the messages and
// the addresses they point to, so that a batch allocates nothing.
type udpBatch struct {
	ms    []ipv4.Message // each with one buffer and Addr pointing into addrs
	addrs []net.UDPAddr
	ips   [][16]byte
	dsts  []netip.AddrPort // ms[i]'s destination, for the tap
}

var udpBatches = sync.Pool{New: func() any {
	b := &udpBatch{
		ms:    make([]ipv4.Message, maxBatch),
		addrs: make([]net.UDPAddr, maxBatch),
		ips:   make([][16]byte, maxBatch),
		dsts:  make([]netip.AddrPort, maxBatch),
	}
	for i := range b.ms {
		b.ms[i].Buffers = make([][]byte, 1)
		b.ms[i].Addr = &b.addrs[i]
	}
	return b
}}

// SendBatch sends every message of out and returns how many could not be
// sent (each is logged at debug level). UDP datagrams that leave by the
// same socket go out together, up to 256 per sendmmsg(2) system call:
// a burst of responses, such as the 200s of every REGISTER one fsync of
// the registrar's log made durable, then costs one system call instead of
// hundreds. Stream messages are sent one by one, as Send does.
func (l *Layer) SendBatch(out []Outgoing) (failed int) {
	var b *udpBatch
	for i := 0; i < len(out); {
		o := &out[i]
		if o.Proto != UDP {
			if err := l.Send(o.Proto, o.Dst, o.Data); err != nil {
				failed++
				l.log.Debug("transport: send failed", "dst", o.Dst, "proto", o.Proto, "err", err)
			}
			i++
			continue
		}
		dst := unmap(o.Dst)
		u, _ := l.udpTo(dst.Addr())
		if u == nil || u.batch == nil || l.closing.Load() || !dst.IsValid() || dst.Port() == 0 {
			if err := l.Send(o.Proto, o.Dst, o.Data); err != nil {
				failed++
				l.log.Debug("transport: send failed", "dst", o.Dst, "proto", o.Proto, "err", err)
			}
			i++
			continue
		}
		if b == nil {
			b = udpBatches.Get().(*udpBatch)
		}
		// The run of UDP messages from i on that leave by socket u.
		n := 0
		same := dst.Addr() // known to leave by u
		for i < len(out) && n < maxBatch {
			o := &out[i]
			if o.Proto != UDP {
				break
			}
			d := unmap(o.Dst)
			if !d.IsValid() || d.Port() == 0 {
				break
			}
			if d.Addr() != same {
				if v, _ := l.udpTo(d.Addr()); v != u {
					break
				}
				same = d.Addr()
			}
			b.ips[n] = d.Addr().As16()
			a := &b.addrs[n]
			if d.Addr().Is4() {
				a.IP = b.ips[n][12:16]
			} else {
				a.IP = b.ips[n][:]
			}
			a.Port = int(d.Port())
			a.Zone = d.Addr().Zone()
			b.ms[n].Buffers[0] = o.Data
			b.dsts[n] = d
			n++
			i++
		}
		failed += u.writeBatch(b.ms[:n], b.dsts[:n])
		for k := range n {
			b.ms[k].Buffers[0] = nil // do not keep the caller's bytes alive
		}
	}
	if b != nil {
		udpBatches.Put(b)
	}
	return failed
}

// writeBatch sends ms (to dsts) with as few sendmmsg calls as the kernel
// allows. A message the kernel refuses is skipped and counted; the rest
// still go. Each message sent is tapped once the call that sent it returns.
func (u *udpListener) writeBatch(ms []ipv4.Message, dsts []netip.AddrPort) (failed int) {
	l := u.l
	for len(ms) > 0 {
		n, err := u.batch.WriteBatch(ms, 0)
		if n > 0 {
			if subs := l.taps.subs.Load(); subs != nil {
				for i := range n {
					l.tapOut(subs, UDP, l.udpLocal(u.addr, dsts[i].Addr()), dsts[i], nil, ms[i].Buffers[0])
				}
			}
			ms, dsts = ms[n:], dsts[n:]
			continue
		}
		failed++
		l.log.Debug("transport: UDP batch send failed", "local", u.addr, "dst", ms[0].Addr, "err", err)
		ms, dsts = ms[1:], dsts[1:]
	}
	return failed
}

// batchWriter is the sendmmsg(2) side of ipv4.PacketConn and
// ipv6.PacketConn (their Message types are one type).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// newBatchWriter wraps a UDP socket for SendBatch. An IPv4 socket and an
// IPv6 one (dual-stack included: Linux accepts an IPv4 destination on a
// dual-stack socket) each get their family's wrapper.
func newBatchWriter(uc *net.UDPConn, network string) batchWriter {
	if network == "udp4" {
		return ipv4.NewPacketConn(uc)
	}
	return v6Writer{ipv6.NewPacketConn(uc)}
}

type v6Writer struct{ c *ipv6.PacketConn }

func (w v6Writer) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	return w.c.WriteBatch(ms, flags)
}
