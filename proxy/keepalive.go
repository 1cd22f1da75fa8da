package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"sync"
	"time"

	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// KeepAlive keeps the NAT mappings of phones registered over UDP from
// behind a NAT open: a NAT forgets a UDP mapping after a quiet while (often
// 30 s, sometimes less), and then no call can reach the phone until it
// registers again. sipedge sends each such binding a packet every
// Interval. With OPTIONS, a phone that answers nothing MaxFailures times
// in a row is taken out of the location service (its binding removed)
// instead of letting calls ring into the void.
type KeepAlive struct {
	Interval    time.Duration // 0: no keep-alives
	Method      string        // "options" (default) or "crlf" (a bare CRLFCRLF, RFC 5626 §3.5.1 style; nothing comes back)
	MaxFailures int           // OPTIONS without any answer before the binding goes; default 3
}

// keepAlives is the state of the keep-alive sender.
type keepAlives struct {
	mu       sync.Mutex
	failures map[string]int // aor "\x00" contact → OPTIONS in a row without answer
	stop     chan struct{}
	done     chan struct{}
}

// StartKeepAlives starts the sender (once, after Attach). Close stops it.
func (c *Core) StartKeepAlives(ka KeepAlive) {
	if ka.Interval <= 0 || c.cfg.Registrar == nil {
		return
	}
	if ka.MaxFailures <= 0 {
		ka.MaxFailures = 3
	}
	c.ka.failures = map[string]int{}
	c.ka.stop, c.ka.done = make(chan struct{}), make(chan struct{})
	go c.keepAliveLoop(ka)
}

func (c *Core) stopKeepAlives() {
	if c.ka.stop != nil {
		close(c.ka.stop)
		<-c.ka.done
	}
}

type kaTarget struct {
	aor, uri string
	src      netip.AddrPort
}

// keepAliveLoop sends one round per Interval, spread over the interval in
// 100 ms steps so that a hundred thousand phones do not get their packet
// in the same millisecond.
func (c *Core) keepAliveLoop(ka KeepAlive) {
	defer close(c.ka.done)
	const step = 100 * time.Millisecond
	steps := max(1, int(ka.Interval/step))
	tk := time.NewTicker(step)
	defer tk.Stop()
	var round []kaTarget
	next, perStep := 0, 0
	for i := 0; ; i++ {
		if i%steps == 0 {
			// A phone that registered within half an interval has just
			// refreshed its mapping itself; its first keep-alive comes
			// between half an interval and one and a half after that.
			round = round[:0]
			recent := time.Now().Add(-ka.Interval / 2)
			c.cfg.Registrar.RangeNAT(func(aor, uri string, src netip.AddrPort, updated time.Time) {
				if updated.Before(recent) {
					round = append(round, kaTarget{aor, uri, src})
				}
			})
			next, perStep = 0, (len(round)+steps-1)/steps
		}
		for end := min(len(round), next+perStep); next < end; next++ {
			c.keepAlive(ka, &round[next])
		}
		select {
		case <-c.ka.stop:
			return
		case <-tk.C:
		}
	}
}

func (c *Core) keepAlive(ka KeepAlive, t *kaTarget) {
	c.stats.KeepAlives.Add(1)
	if ka.Method == "crlf" {
		if err := c.Send(transport.UDP, t.src, []byte("\r\n\r\n")); err != nil {
			c.stats.SendErrors.Add(1)
		}
		return
	}
	local, ok := c.local.forDest(transport.UDP, t.src.Addr())
	if !ok {
		return
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	branch := sip.MagicCookie + "ka" + id
	b := make([]byte, 0, 400)
	b = append(b, "OPTIONS "...)
	b = append(b, t.uri...)
	b = append(b, " SIP/2.0\r\nVia: SIP/2.0/UDP "...)
	b = appendHostPort(b, local)
	b = append(b, ";branch="...)
	b = append(b, branch...)
	b = append(b, ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:keepalive@"...)
	b = appendHostPort(b, local)
	b = append(b, ">;tag="...)
	b = append(b, id...)
	b = append(b, "\r\nTo: <"...)
	b = append(b, t.uri...)
	b = append(b, ">\r\nCall-ID: "...)
	b = append(b, id...)
	b = append(b, "@keepalive\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"...)
	h := &kaProbe{c: c, key: t.aor + "\x00" + t.uri, aor: t.aor, uri: t.uri, max: ka.MaxFailures}
	if _, err := c.txn.NewClient(sip.OPTIONS, []byte("OPTIONS"), []byte(branch), b, transport.UDP, t.src, h, nil); err != nil {
		c.stats.SendErrors.Add(1)
	}
}

// kaProbe is the client transaction handler of one keep-alive OPTIONS.
type kaProbe struct {
	c        *Core
	key      string
	aor, uri string
	max      int
}

// OnResponse: any answer, even an error, shows the phone is there and its
// NAT mapping open.
func (p *kaProbe) OnResponse(_ *txn.Client, m *sip.Message) {
	if m.StatusCode() < 200 {
		return
	}
	p.c.ka.mu.Lock()
	delete(p.c.ka.failures, p.key)
	p.c.ka.mu.Unlock()
}

func (p *kaProbe) OnTimeout(*txn.Client, bool)         { p.failed() }
func (p *kaProbe) OnTransportError(*txn.Client, error) { p.failed() }

func (p *kaProbe) failed() {
	c := p.c
	c.stats.KeepAliveFailures.Add(1)
	c.ka.mu.Lock()
	c.ka.failures[p.key]++
	n := c.ka.failures[p.key]
	if n >= p.max {
		delete(c.ka.failures, p.key)
	}
	c.ka.mu.Unlock()
	if n >= p.max && c.cfg.Registrar.Remove(p.aor, p.uri) {
		c.stats.BindingsRemoved.Add(1)
		c.log.Info("binding removed: no answer to keep-alives", "aor", p.aor, "contact", p.uri, "failures", n)
	}
}
