//go:build race

// Package race tells whether the binary was built with the race detector
// (-race). Tests of allocation counts and of bytes per call read it: the
// detector allocates on its own and makes sync.Pool drop a quarter of
// what is put back, so those figures mean nothing under it.
package race

// Enabled is true in a build with -race.
const Enabled = true
