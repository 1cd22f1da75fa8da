//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package txn

import "golang.org/x/sys/unix"

// allocChunk maps n bytes of anonymous memory outside the Go heap. The
// completed table stores only bytes in it (no Go pointers), so the
// collector need not see it; it is given back with freeChunk.
//
// The pages are populated by the mapping call itself (mapPopulate where
// the system has it): the table fills a chunk within a fraction of a
// second, so every page is touched anyway, and a page fault per 4 KiB
// page cost 10 µs each on a virtual machine measured here against 0.5 µs
// per page populated in the one call — at 16 000 REGISTERs a second the
// faults of the responses' bytes were most of the process's page faults
// and about a tenth of its CPU (docs/PERFORMANCE.md).
func allocChunk(n int) ([]byte, bool) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|mapPopulate)
	if err != nil {
		return nil, false
	}
	return b, true
}

func freeChunk(b []byte) { _ = unix.Munmap(b[:cap(b)]) }

// mapsChunks: chunks come from mmap here.
const mapsChunks = true
