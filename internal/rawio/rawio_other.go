//go:build !linux

package rawio

import (
	"net"
	"os"
)

// Fsync flushes f (the os package elsewhere).
func Fsync(f *os.File) error { return f.Sync() }

// WriteAll writes all of b to f.
func WriteAll(f *os.File, b []byte) error {
	_, err := f.Write(b)
	return err
}

// WriteStreamBuffers writes bufs to c in order.
func WriteStreamBuffers(c net.Conn, bufs [][]byte) error {
	nb := net.Buffers(bufs)
	_, err := nb.WriteTo(c)
	return err
}
