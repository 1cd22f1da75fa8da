package transport

import "net/netip"

// Outgoing is one message of a SendBatch.
type Outgoing struct {
	Proto Proto
	Dst   netip.AddrPort
	Data  []byte
}

// maxBatch is the most datagrams handed to one sendmmsg call (the kernel's
// UIO_MAXIOV limit is 1024).
const maxBatch = 256

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
		if u == nil || u.raw == nil || l.closing.Load() || !dst.IsValid() || dst.Port() == 0 {
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
			b.set(n, d, o.Data)
			n++
			i++
		}
		failed += u.writeBatch(b, n)
		b.clear(n) // do not keep the caller's bytes alive
	}
	if b != nil {
		udpBatches.Put(b)
	}
	return failed
}

// writeBatch sends messages [0, n) of b with as few system calls as the
// kernel allows. A message the kernel refuses is skipped and counted; the
// rest still go. Each message sent is tapped once the call that sent it
// returns.
func (u *udpListener) writeBatch(b *udpBatch, n int) (failed int) {
	l := u.l
	for from := 0; from < n; {
		sent, err := u.raw.sendFrom(b, from, n)
		if sent > 0 {
			if subs := l.taps.subs.Load(); subs != nil {
				for i := from; i < from+sent; i++ {
					l.tapOut(subs, UDP, l.udpLocal(u.addr, b.dsts[i].Addr()), b.dsts[i], nil, b.bufs[i])
				}
			}
			from += sent
			continue
		}
		failed++
		l.log.Debug("transport: UDP batch send failed", "local", u.addr, "dst", b.dsts[from], "err", err)
		from++
	}
	return failed
}
