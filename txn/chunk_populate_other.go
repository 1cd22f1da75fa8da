//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package txn

// mapPopulate: these systems fault a chunk's pages in one by one.
const mapPopulate = 0
