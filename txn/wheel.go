package txn

import (
	"sync"
	"sync/atomic"
	"time"
)

// Wheel is a hashed timing wheel: one goroutine drives every transaction
// timer, and starting or stopping a timer is O(1) under a mutex. With 10 ms
// ticks and 4096 slots a lap is ~41 s; longer timers (Timer C, 3 min) wait
// out their extra laps in the slot. 100 000 transactions with three timers
// each cost a few MB and no goroutines.
//
// The goroutine does not tick while nothing is due: after each round it
// sleeps until the first slot that holds a timer (looking at most
// maxSleep ticks ahead), and a timer armed earlier than that wakes it. An
// idle server thus wakes about once a second (the completed-transaction
// sweep) instead of a hundred times; under load the next slot is never
// empty and it ticks as before.
type Wheel struct {
	mu    sync.Mutex
	slots []timerList
	tick  time.Duration
	cur   uint64 // ticks processed
	// until is the tick the goroutine sleeps until (it processes every
	// tick up to it when it wakes); a timer due earlier kicks it.
	until uint64
	kick  chan struct{}
	start time.Time
	stop  chan struct{}
	done  chan struct{}
	fire  []*Timer // reused batch of expired timers
	now   func() time.Time
	// rounds counts the goroutine's wake-ups (for tests).
	rounds atomic.Uint64
}

// maxSleep bounds the look-ahead for the next timer (and so the longest
// sleep): 512 ticks, 5 s at the usual 10 ms.
const maxSleep = 512

// Timer is a wheel entry. The zero value is stopped; Reset arms it.
type Timer struct {
	fn         func()
	owner      timerOwner // instead of fn: no closure to allocate
	kind       uint8      // passed to owner.fire
	w          *Wheel
	at         uint64 // absolute tick
	prev, next *Timer
	slot       int32 // -1 when not in the wheel
}

type timerList struct{ head *Timer }

const wheelSlots = 4096

// newWheel starts a wheel with the given tick.
func newWheel(tick time.Duration) *Wheel {
	w := &Wheel{
		slots: make([]timerList, wheelSlots),
		tick:  tick,
		start: time.Now(),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		kick:  make(chan struct{}, 1),
		now:   time.Now,
	}
	go w.run()
	return w
}

// NewTimer returns a stopped timer that calls fn on the wheel goroutine.
// fn must not block: it should hand long work elsewhere.
func (w *Wheel) NewTimer(fn func()) *Timer { return &Timer{fn: fn, w: w, slot: -1} }

// timerOwner is a transaction whose timers are embedded in it: the wheel
// calls fire(kind) instead of a bound method value, so creating a
// transaction costs no allocation per timer.
type timerOwner interface{ fire(kind uint8) }

// initTimer prepares an embedded, stopped timer.
func (w *Wheel) initTimer(t *Timer, owner timerOwner, kind uint8) {
	*t = Timer{owner: owner, kind: kind, w: w, slot: -1}
}

// Reset (re)arms t to fire after d (rounded up to the tick).
func (t *Timer) Reset(d time.Duration) {
	w := t.w
	w.mu.Lock()
	w.unlink(t)
	ticks := uint64((d + w.tick - 1) / w.tick)
	if ticks == 0 {
		ticks = 1
	}
	base := w.cur
	if w.until > w.cur+1 {
		// The goroutine sleeps past the next tick, so cur may be behind
		// the clock: count from the clock, or the timer would fire early.
		base = max(base, w.elapsed())
	}
	t.at = base + ticks
	if t.at < w.until {
		w.until = t.at
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	s := int32(t.at % wheelSlots)
	t.slot = s
	l := &w.slots[s]
	t.prev, t.next = nil, l.head
	if l.head != nil {
		l.head.prev = t
	}
	l.head = t
	w.mu.Unlock()
}

// Stop disarms t. It reports whether t was armed. A timer whose function
// is already running is not waited for.
func (t *Timer) Stop() bool {
	w := t.w
	w.mu.Lock()
	armed := t.slot >= 0
	w.unlink(t)
	w.mu.Unlock()
	return armed
}

func (w *Wheel) unlink(t *Timer) {
	if t.slot < 0 {
		return
	}
	l := &w.slots[t.slot]
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		l.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	}
	t.prev, t.next, t.slot = nil, nil, -1
}

// Close stops the wheel goroutine. Pending timers never fire.
func (w *Wheel) Close() {
	close(w.stop)
	<-w.done
}

// Len returns the number of armed timers (for tests and metrics; O(slots)).
func (w *Wheel) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for i := range w.slots {
		for t := w.slots[i].head; t != nil; t = t.next {
			n++
		}
	}
	return n
}

// elapsed is the number of whole ticks since the wheel started.
func (w *Wheel) elapsed() uint64 { return uint64(w.now().Sub(w.start) / w.tick) }

// next returns the first tick after cur whose slot holds a timer, or
// cur+maxSleep. A slot holding only timers of later laps counts: the
// goroutine then wakes for nothing, which is harmless.
func (w *Wheel) next() uint64 {
	for k := w.cur + 1; k < w.cur+maxSleep; k++ {
		if w.slots[k%wheelSlots].head != nil {
			return k
		}
	}
	return w.cur + maxSleep
}

func (w *Wheel) run() {
	defer close(w.done)
	tm := time.NewTimer(w.tick)
	defer tm.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tm.C:
		case <-w.kick:
		}
		w.rounds.Add(1)
		// Catch up on ticks missed while the process was descheduled or
		// the wheel slept, so timers are late by at most the scheduling
		// delay, never lost.
		target := w.elapsed()
		w.mu.Lock()
		for w.cur < target {
			w.cur++
			l := &w.slots[w.cur%wheelSlots]
			for t := l.head; t != nil; {
				next := t.next
				if t.at <= w.cur {
					w.unlink(t)
					w.fire = append(w.fire, t)
				}
				t = next
			}
		}
		batch := w.fire
		w.fire = w.fire[:0]
		w.until = w.next()
		wake := w.start.Add(time.Duration(w.until) * w.tick)
		w.mu.Unlock()
		for i, t := range batch {
			if t.owner != nil {
				t.owner.fire(t.kind)
			} else {
				t.fn()
			}
			batch[i] = nil
		}
		// A kick that came while the timers above were armed is stale:
		// until already accounts for them.
		select {
		case <-w.kick:
		default:
		}
		w.mu.Lock()
		if u := w.start.Add(time.Duration(w.until) * w.tick); u.Before(wake) {
			wake = u // a timer armed by a batch function
		}
		w.mu.Unlock()
		tm.Reset(max(time.Until(wake), 0))
	}
}
