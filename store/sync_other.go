//go:build !linux

package store

import "os"

func fsync(f *os.File) error { return f.Sync() }

func writeAll(f *os.File, b []byte) error {
	_, err := f.Write(b)
	return err
}
