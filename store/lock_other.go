//go:build !unix

package store

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir only creates dir/LOCK where flock is unavailable: the caller
// must make sure one process at a time opens the store.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return f, nil
}
