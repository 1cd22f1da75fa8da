//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package txn

import "golang.org/x/sys/unix"

// allocChunk maps n bytes of anonymous memory outside the Go heap. The
// completed table stores only bytes in it (no Go pointers), so the
// collector need not see it; it is given back with freeChunk.
func allocChunk(n int) ([]byte, bool) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, false
	}
	return b, true
}

func freeChunk(b []byte) { _ = unix.Munmap(b[:cap(b)]) }

// mapsChunks: chunks come from mmap here.
const mapsChunks = true
