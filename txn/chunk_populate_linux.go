package txn

import "golang.org/x/sys/unix"

// mapPopulate asks mmap to fault the chunk's pages in at once (allocChunk).
const mapPopulate = unix.MAP_POPULATE
