package txn

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sipedge/sip"
	"sipedge/transport"
)

// dialSender is a Sender whose connection-oriented sends block until
// released, as a TCP connect to a silent peer does, and that has no open
// connection.
type dialSender struct {
	release chan struct{}
	err     error
	mu      sync.Mutex
	sends   int
}

func (d *dialSender) Send(p transport.Proto, dst netip.AddrPort, b []byte) error {
	<-d.release
	d.mu.Lock()
	d.sends++
	d.mu.Unlock()
	return d.err
}

func (d *dialSender) HasConn(transport.Proto, netip.AddrPort) bool { return false }

type errHandler struct {
	Discard
	got chan error
}

func (h errHandler) OnTransportError(_ *Client, err error) { h.got <- err }

// TestConnectOffCaller: a client transaction over TCP to a peer with no
// open connection returns at once (the connect happens on another
// goroutine), and a failed connect still ends it with OnTransportError.
func TestConnectOffCaller(t *testing.T) {
	d := &dialSender{release: make(chan struct{}), err: errors.New("connection refused")}
	l := New(Config{T1: testT1, Sender: d, Tick: 2 * time.Millisecond})
	defer l.Close()
	h := errHandler{got: make(chan error, 1)}
	req := []byte("OPTIONS sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKdial1\r\n" +
		"From: <sip:x@y>;tag=1\r\nTo: <sip:a@192.0.2.1>\r\nCall-ID: d1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	done := make(chan struct{})
	go func() {
		if _, err := l.NewClient(Out{Method: sip.OPTIONS, MethodName: []byte("OPTIONS"), Branch: []byte("z9hG4bKdial1"), Msg: req, Dest: transport.Dest{Proto: transport.TCP, Addr: netip.MustParseAddrPort("192.0.2.1:5060")}}, h); err != nil {
			t.Error(err)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("NewClient waited for the connect")
	}
	select {
	case err := <-h.got:
		t.Fatalf("transport error before the connect finished: %v", err)
	default:
	}
	close(d.release)
	select {
	case err := <-h.got:
		if err == nil || err.Error() != "connection refused" {
			t.Fatalf("got %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no OnTransportError after the failed connect")
	}
	if n, _ := l.Counts(); n != 0 {
		t.Fatalf("%d server transactions", n)
	}
	if _, c := l.Counts(); c != 0 {
		t.Fatalf("%d client transactions left after the failed connect", c)
	}
	if l.Stats().Dials != 1 {
		t.Fatalf("dials %d", l.Stats().Dials)
	}
}

// TestDialBound: past maxDialing waiting connects, a new one fails at once
// as a transport error instead of adding a goroutine.
func TestDialBound(t *testing.T) {
	d := &dialSender{release: make(chan struct{})}
	l := New(Config{T1: testT1, Sender: d, Tick: 2 * time.Millisecond})
	defer func() { close(d.release); l.Close() }()
	for i := 0; i < maxDialing; i++ {
		l.send(transport.TCP, netip.MustParseAddrPort("192.0.2.1:5060"), []byte("x"))
	}
	h := errHandler{got: make(chan error, 1)}
	req := []byte("OPTIONS sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKdial2\r\n" +
		"From: <sip:x@y>;tag=1\r\nTo: <sip:a@192.0.2.1>\r\nCall-ID: d2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	if _, err := l.NewClient(Out{Method: sip.OPTIONS, MethodName: []byte("OPTIONS"), Branch: []byte("z9hG4bKdial2"), Msg: req, Dest: transport.Dest{Proto: transport.TCP, Addr: netip.MustParseAddrPort("192.0.2.2:5060")}}, h); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.got:
		if !errors.Is(err, ErrTooManyDials) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no transport error past the bound")
	}
}
