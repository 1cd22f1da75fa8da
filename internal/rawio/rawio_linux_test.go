package rawio

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// WriteStreamBuffers writes every byte in order through partial writes
// and full socket buffers (a reader slower than the writer), and the
// connection's deadline stops it when nobody reads.
func TestWriteStreamBuffers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetWriteBuffer(4096)
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	r := rand.New(rand.NewPCG(1, 1))
	var bufs [][]byte
	var want []byte
	for i := range 2000 { // more than one writev's 1 024 buffers
		b := make([]byte, r.IntN(5000))
		if i%7 == 0 {
			b = nil // empty buffers are skipped
		}
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	got := make(chan []byte, 1)
	go func() {
		var out bytes.Buffer
		buf := make([]byte, 1500)
		for out.Len() < len(want) {
			n, err := peer.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				break
			}
			if out.Len()%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		got <- out.Bytes()
	}()
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := WriteStreamBuffers(c, bufs); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes, wrote %d; equal prefix %d", len(b), len(want), commonPrefix(b, want))
	}

	// Nobody reads any more: the deadline ends the write.
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	big := [][]byte{make([]byte, 64<<20)}
	if err := WriteStreamBuffers(c, big); err == nil {
		t.Fatal("a write nobody reads ended without an error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the deadline took %v", d)
	}
	io.Copy(io.Discard, io.LimitReader(peer, 0))
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
