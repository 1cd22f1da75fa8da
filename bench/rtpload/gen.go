//go:build linux

package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"sipedge/internal/mmsg"
)

type genOpts struct {
	ready            string
	warm, dur, drain time.Duration
	// ramp spreads the streams' starts over this long (stream j of n
	// starts at j·ramp/n), as calls arrive over time; the warm-up and the
	// window come after it.
	ramp                             time.Duration
	pps, size                        int
	senders, receivers, socks, batch int
	label                            string
}

// ssrcBase marks the generator's streams: stream j sends SSRC ssrcBase+j.
const ssrcBase = 0x5e000000

// latency histogram: 1 µs buckets up to latCap.
const latCap = 200_000

// result is the JSON line the generator prints.
type result struct {
	Label      string  `json:"label,omitempty"`
	Calls      int     `json:"calls"`
	Streams    int     `json:"streams"`
	OfferedPPS float64 `json:"offered_pps"`
	SentPPS    float64 `json:"sent_pps"`
	RecvPPS    float64 `json:"recv_pps"`
	LossPct    float64 `json:"loss_pct"`
	Lost       int64   `json:"lost"`
	LossyStrms int     `json:"streams_with_loss"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	Maxms      float64 `json:"max_ms"` // 200 = at or beyond the histogram's cap
	GenLagms   float64 `json:"gen_lag_ms"`
	RelayCores float64 `json:"relay_cores"`
	GenCores   float64 `json:"gen_cores"`
	BusyCores  float64 `json:"busy_cores"`
	StealPct   float64 `json:"steal_pct"`
	OtherCores float64 `json:"other_cores"`       // busy - relay - gen: anything else running on the host
	RcvbufErrs int64   `json:"udp_rcvbuf_errors"` // kernel UDP RcvbufErrors over the run, all sockets
	SendFails  uint64  `json:"send_fails"`
	WindowS    float64 `json:"window_s"`
}

// stream is one direction of one call, as the generator sees it.
type stream struct {
	dst  mmsg.Addr // relay port this stream is sent to
	side int       // 0: sent from the A endpoints, 1: from B
	seq  uint16
	ts   uint32
	sent uint32
}

type gen struct {
	o       genOpts
	streams []stream
	socks   [2][]int // fds by side
	t0      int64    // schedule origin (nanotime)
	winFrom int64
	winTo   int64
	stopAt  int64 // senders stop
	recvEnd atomic.Bool

	sent      atomic.Uint64
	sendFails atomic.Uint64
	recvd     atomic.Uint64
	lagMax    atomic.Int64
	lagNow    atomic.Int64 // the worst lag since the last progress line

	recvCount [][]uint32 // by receiver thread, by stream
	hist      [][]uint32 // by receiver thread, latency in µs
}

func runGen(o genOpts) error {
	var l layout
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(o.ready)
		if err == nil && json.Unmarshal(b, &l) == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no ready file %s", o.ready)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if o.senders < 1 || o.receivers < 1 || o.socks < 1 || o.batch < 1 || o.pps < 1 || o.size < 20 {
		return errors.New("bad generator options")
	}
	g := &gen{o: o}
	peers := [2]string{l.PeerA, l.PeerB}
	for side := 0; side < 2; side++ {
		ap, err := netip.ParseAddrPort(peers[side])
		if err != nil {
			return err
		}
		for k := 0; k < o.socks; k++ {
			fd, err := bindReusePort(ap)
			if err != nil {
				return fmt.Errorf("bind %v: %w", ap, err)
			}
			defer unix.Close(fd)
			g.socks[side] = append(g.socks[side], fd)
		}
	}
	for i := 0; i < l.Calls; i++ {
		for side, list := range [2][]string{l.A, l.B} {
			ap, err := netip.ParseAddrPort(list[i])
			if err != nil {
				return err
			}
			g.streams = append(g.streams, stream{dst: mmsg.MakeAddr(ap), side: side, seq: uint16(i * 7), ts: uint32(i) * 1000})
		}
	}
	n := len(g.streams)
	for r := 0; r < o.receivers; r++ {
		g.recvCount = append(g.recvCount, make([]uint32, n))
		g.hist = append(g.hist, make([]uint32, latCap+1))
	}

	rb := udpCounters()
	g.t0 = nanotime() + int64(50*time.Millisecond)
	g.winFrom = g.t0 + int64(o.ramp) + int64(o.warm)
	g.winTo = g.winFrom + int64(o.dur)
	g.stopAt = g.winTo

	var wg sync.WaitGroup
	for r := 0; r < o.receivers; r++ {
		wg.Add(1)
		go g.receiver(r, &wg)
	}
	var sw sync.WaitGroup
	for t := 0; t < o.senders; t++ {
		sw.Add(1)
		go g.sender(t, &sw)
	}

	stopProgress := make(chan struct{})
	go g.progress(stopProgress)
	defer close(stopProgress)

	sleepUntil(g.winFrom)
	s0 := snapshot(l.PID)
	sent0, recv0 := g.sent.Load(), g.recvd.Load()
	sleepUntil(g.winTo)
	s1 := snapshot(l.PID)
	sent1, recv1 := g.sent.Load(), g.recvd.Load()
	sw.Wait()
	time.Sleep(o.drain)
	g.recvEnd.Store(true)
	wg.Wait()
	ra := udpCounters()

	wall := float64(s1.at-s0.at) / 1e9
	res := result{
		Label: o.label, Calls: l.Calls, Streams: n,
		OfferedPPS: float64(n * o.pps),
		SentPPS:    math.Round(float64(sent1-sent0) / wall),
		RecvPPS:    math.Round(float64(recv1-recv0) / wall),
		GenLagms:   round2(float64(g.lagMax.Load()) / 1e6),
		SendFails:  g.sendFails.Load(),
		RcvbufErrs: ra - rb,
		WindowS:    round2(wall),
	}
	cpuStats(&res, s0, s1, wall)
	var sentAll, recvAll int64
	for j := range g.streams {
		var got int64
		for r := range g.recvCount {
			got += int64(g.recvCount[r][j])
		}
		sentAll += int64(g.streams[j].sent)
		recvAll += got
		if got < int64(g.streams[j].sent) {
			res.LossyStrms++
		}
	}
	res.Lost = sentAll - recvAll
	if sentAll > 0 {
		res.LossPct = math.Round(1e6*float64(res.Lost)/float64(sentAll)) / 1e4
	}
	res.P50ms, res.P99ms, res.Maxms = g.percentiles()
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	return nil
}

// sender sends its share of the streams on a 1 ms wheel: stream j of
// this thread goes out in slot j mod (period/1ms). When the thread wakes
// late it sends every slot it missed at once (catch-up), so the offered
// rate holds; how late it was is the generator's lag.
func (g *gen) sender(t int, wg *sync.WaitGroup) {
	runtime.LockOSThread()
	nameThread(fmt.Sprintf("gen-send-%d", t))
	defer wg.Done()
	period := time.Second / time.Duration(g.o.pps)
	slots := max(int(period/time.Millisecond), 1)
	wheel := make([][]int, slots)
	k := 0
	for j := t; j < len(g.streams); j += g.o.senders {
		wheel[k%slots] = append(wheel[k%slots], j)
		k++
	}
	var bs [2]*batch
	for side := 0; side < 2; side++ {
		bs[side] = newBatch(g.o.batch, g.o.size, g.socks[side][t%len(g.socks[side])])
	}
	tsStep := uint32(8000 / g.o.pps) // 160 at 50 pps
	next := int64(0)
	for {
		now := nanotime()
		if now >= g.stopAt {
			break
		}
		target := (now - g.t0) / int64(time.Millisecond)
		for ; next <= target; next++ {
			sched := g.t0 + next*int64(time.Millisecond)
			if sched >= g.stopAt {
				break
			}
			lag := now - sched
			if sched >= g.winFrom && sched < g.winTo && lag > g.lagMax.Load() {
				g.lagMax.Store(lag) // one writer per thread; max is approximate across threads
			}
			if lag > g.lagNow.Load() {
				g.lagNow.Store(lag)
			}
			for _, j := range wheel[next%int64(slots)] {
				if g.o.ramp > 0 && sched < g.t0+int64(j)*int64(g.o.ramp)/int64(len(g.streams)) {
					continue // not started yet
				}
				s := &g.streams[j]
				b := bs[s.side]
				p := b.next(&s.dst)
				p[0], p[1] = 0x80, 0
				binary.BigEndian.PutUint16(p[2:], s.seq)
				binary.BigEndian.PutUint32(p[4:], s.ts)
				binary.BigEndian.PutUint32(p[8:], ssrcBase+uint32(j))
				binary.LittleEndian.PutUint64(p[12:], uint64(nanotime()))
				s.seq++
				s.ts += tsStep
				s.sent++
				if b.full() {
					g.flush(b)
				}
			}
		}
		for _, b := range bs {
			g.flush(b)
		}
		if wait := g.t0 + next*int64(time.Millisecond) - nanotime(); wait > 0 {
			ts := unix.NsecToTimespec(wait)
			_ = unix.Nanosleep(&ts, nil)
		}
	}
	for _, b := range bs {
		g.flush(b)
	}
}

// flush sends a batch; a packet the kernel refuses is retried a few
// times and then counted as a send failure (and as sent, so it shows as
// loss: the generator never hides its own trouble).
func (g *gen) flush(b *batch) {
	sent, tries := 0, 0
	for sent < b.n {
		k, err := mmsg.Send(b.fd, b.msgs[sent:b.n])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if tries++; tries > 3 {
				g.sendFails.Add(1)
				sent++
				tries = 0
				continue
			}
			time.Sleep(50 * time.Microsecond)
			continue
		}
		sent += k
	}
	g.sent.Add(uint64(b.n))
	b.n = 0
}

// receiver reads its share of the endpoint sockets with recvmmsg on a
// 1 ms poll (relay-limits.md §2b: the cheapest way to take the load) and
// counts per stream by SSRC.
func (g *gen) receiver(r int, wg *sync.WaitGroup) {
	runtime.LockOSThread()
	nameThread(fmt.Sprintf("gen-recv-%d", r))
	defer wg.Done()
	var fds []int
	for side := 0; side < 2; side++ {
		for k, fd := range g.socks[side] {
			if (side*len(g.socks[side])+k)%g.o.receivers == r {
				fds = append(fds, fd)
			}
		}
	}
	b := newBatch(g.o.batch, 2048, -1)
	count, hist := g.recvCount[r], g.hist[r]
	n := uint32(len(g.streams))
	tick := unix.NsecToTimespec(int64(time.Millisecond))
	for !g.recvEnd.Load() {
		for _, fd := range fds {
			for {
				k, err := mmsg.Recv(fd, b.msgs[:g.o.batch])
				if err != nil || k == 0 {
					break
				}
				now := nanotime()
				inWin := now >= g.winFrom && now < g.winTo
				for i := 0; i < k; i++ {
					p := b.bufs[i][:b.msgs[i].Len]
					if len(p) < 20 {
						continue
					}
					j := binary.BigEndian.Uint32(p[8:]) - ssrcBase
					if j >= n {
						continue
					}
					count[j]++
					if inWin {
						lat := (now - int64(binary.LittleEndian.Uint64(p[12:]))) / 1000
						hist[min(max(lat, 0), latCap)]++
					}
				}
				g.recvd.Add(uint64(k))
				if k < g.o.batch {
					break
				}
			}
		}
		_ = unix.Nanosleep(&tick, nil)
	}
}

// progress writes one line a second to stderr: packets sent and
// received in that second and the senders' worst lag in it, so that a
// run shows when the generator fell behind (during the ramp, the
// hand-overs or the window), not only by how much.
func (g *gen) progress(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var sent0, recv0 uint64
	for s := 1; ; s++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		sent, recv := g.sent.Load(), g.recvd.Load()
		phase := "ramp"
		switch now := nanotime(); {
		case now >= g.winTo:
			phase = "drain"
		case now >= g.winFrom:
			phase = "window"
		case now >= g.t0+int64(g.o.ramp):
			phase = "warm-up"
		}
		fmt.Fprintf(os.Stderr, "%3ds %-7s sent %7d/s received %7d/s lag %6.1f ms\n",
			s, phase, sent-sent0, recv-recv0, float64(g.lagNow.Swap(0))/1e6)
		sent0, recv0 = sent, recv
	}
}

// percentiles of the window's latency, in ms.
func (g *gen) percentiles() (p50, p99, maxv float64) {
	total := uint64(0)
	sum := make([]uint64, latCap+1)
	for _, h := range g.hist {
		for i, v := range h {
			sum[i] += uint64(v)
			total += uint64(v)
		}
	}
	if total == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	q := []float64{0.5, 0.99}
	out := make([]float64, len(q))
	acc := uint64(0)
	qi := 0
	for i, v := range sum {
		acc += v
		for qi < len(q) && float64(acc) >= q[qi]*float64(total) {
			out[qi] = float64(i) / 1000 // ms with µs resolution
			qi++
		}
		if v > 0 {
			maxv = float64(i) / 1000
		}
	}
	return out[0], out[1], maxv
}

func sleepUntil(t int64) {
	if d := t - nanotime(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}

var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// nameThread names the calling (locked) thread, so that top -H and perf
// tell the generator's senders and receivers apart.
func nameThread(name string) {
	b := append([]byte(name), 0)
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0)
}
