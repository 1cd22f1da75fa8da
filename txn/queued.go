package txn

import (
	"sync"

	"sipedge/transport"
)

// BatchSender is an optional capability of a Sender: sending many messages
// at once (transport.Layer.SendBatch, sendmmsg for UDP). Without it the
// queued responses are sent one by one.
type BatchSender interface {
	SendBatch(out []transport.Outgoing) (failed int)
}

// RespondQueued is Respond without the copy (b becomes the transaction's)
// for a caller that must not spend its time
// on the network: the response is queued and sent, with every other
// response queued meanwhile, by the layer's sender goroutine. It is meant
// for the store's committer, which makes a whole batch of REGISTERs
// durable with one fsync and would otherwise send their hundreds of 200s
// one system call at a time before it could start the next batch.
// The transaction's state moves when the response is sent, not when it is
// queued: until then a retransmitted request is absorbed without an answer,
// as in the Trying state it is still in (RFC 3261 §17.2.2).
func (st *Server) RespondQueued(b []byte, code int) {
	st.l.replies.push(queuedReply{st: st, b: b, code: code})
}

type queuedReply struct {
	st   *Server
	b    []byte
	code int
}

// replyQueue feeds the sender goroutine, started on first use. Between
// BeginQueued and EndQueued (the store's committer running one batch's
// callbacks) responses wait, and EndQueued sends them itself when they
// all leave by UDP: one sendmmsg(2) and no goroutine to wake, which is
// what a REGISTER costs at ordinary rates. Stream writes may block (a
// full TCP window), so a batch with any goes to the goroutine.
type replyQueue struct {
	l        *Layer
	mu       sync.Mutex
	q        []queuedReply
	batching int           // open BeginQueued/EndQueued brackets
	flushQ   []queuedReply // EndQueued's, reused
	flushOut []transport.Outgoing
	running  bool
	closed   bool
	kick     chan struct{} // capacity 1: "the queue is not empty"
	done     chan struct{} // closed when the sender goroutine has ended
}

func (r *replyQueue) push(q queuedReply) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.l.stats.SendErrors.Add(1) // shutting down: as a send on a closed transport
		return
	}
	r.q = append(r.q, q)
	if r.batching > 0 {
		r.mu.Unlock() // EndQueued sends it
		return
	}
	r.startLocked()
	r.mu.Unlock()
	r.signal()
}

// startLocked starts the sender goroutine unless it runs; r.mu held.
func (r *replyQueue) startLocked() {
	if !r.running {
		r.running = true
		r.kick = make(chan struct{}, 1)
		r.done = make(chan struct{})
		go r.loop()
	}
}

// signal tells the sender the queue is not empty.
func (r *replyQueue) signal() {
	select {
	case r.kick <- struct{}{}:
	default: // already signalled: the sender will find what was queued
	}
}

// BeginQueued holds queued responses until EndQueued (store.BatchHooks).
// Brackets may overlap (several stores, a store's committer and a reader
// writing its own batch, store.Store.Enter): each EndQueued sends what is
// queued when it comes.
func (l *Layer) BeginQueued() {
	l.replies.mu.Lock()
	l.replies.batching++
	l.replies.mu.Unlock()
}

// EndQueued sends the responses queued since BeginQueued: on the calling
// goroutine when they all go by UDP, else through the sender goroutine.
func (l *Layer) EndQueued() {
	r := &l.replies
	r.mu.Lock()
	r.batching--
	if len(r.q) == 0 {
		r.mu.Unlock()
		return
	}
	if r.closed {
		l.stats.SendErrors.Add(uint64(len(r.q))) // shutting down, as push counts them
		clear(r.q)
		r.q = r.q[:0]
		r.mu.Unlock()
		return
	}
	for i := range r.q {
		if r.q[i].st.proto != transport.UDP {
			r.startLocked()
			r.mu.Unlock()
			r.signal()
			return
		}
	}
	// The reused buffers go with the caller (another EndQueued running
	// meanwhile allocates its own) and come back when it is done.
	q, out := r.q, r.flushOut[:0]
	r.q, r.flushQ, r.flushOut = r.flushQ[:0], nil, nil
	r.mu.Unlock()
	for i := range q {
		q[i].st.respond(q[i].b, q[i].code, true, &out)
	}
	l.sendBatch(out)
	clear(q)
	clear(out)
	r.mu.Lock()
	if r.flushQ == nil {
		r.flushQ, r.flushOut = q[:0], out[:0]
	}
	r.mu.Unlock()
}

// loop sends whatever is queued, each round as one batch.
func (r *replyQueue) loop() {
	defer close(r.done)
	var q []queuedReply
	var out []transport.Outgoing
	for range r.kick {
		r.mu.Lock()
		q, r.q = r.q, q[:0]
		closed := r.closed
		r.mu.Unlock()
		for i := range q {
			q[i].st.respond(q[i].b, q[i].code, true, &out)
		}
		r.l.sendBatch(out)
		clear(q)
		clear(out)
		out = out[:0]
		if closed {
			return
		}
	}
}

// close sends what is queued and stops the sender goroutine.
func (r *replyQueue) close() {
	r.mu.Lock()
	r.closed = true
	running := r.running
	r.mu.Unlock()
	if !running {
		return
	}
	r.signal()
	<-r.done
}

func (l *Layer) sendBatch(out []transport.Outgoing) {
	if len(out) == 0 {
		return
	}
	if bs, ok := l.cfg.Sender.(BatchSender); ok {
		if failed := bs.SendBatch(out); failed > 0 {
			l.stats.SendErrors.Add(uint64(failed))
		}
		return
	}
	for _, o := range out {
		l.send(o.Proto, o.Dst, o.Data)
	}
}
