//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package txn

// allocChunk: without mmap the chunks come from the Go heap.
func allocChunk(n int) ([]byte, bool) { return nil, false }

func freeChunk(b []byte) {}

// mapsChunks: chunks come from the Go heap here.
const mapsChunks = false
