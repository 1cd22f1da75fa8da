package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// secretLen is the size of the secret that signs Record-Route entries and
// keys digest nonces.
const secretLen = 32

// loadSecret reads <dir>/secret, creating it (0600, random) the first
// time. It must survive restarts: a dialog's in-dialog requests carry the
// Record-Route signature made with it, and a client's nonce stays valid.
// Several instances sharing it verify each other's nonces.
func loadSecret(dir string) ([]byte, error) {
	path := filepath.Join(dir, "secret")
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != secretLen {
			return nil, fmt.Errorf("%s: %d bytes, want %d: remove it and sipedge makes a new one (running dialogs from strangers then lose their in-dialog requests)", path, len(b), secretLen)
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, secretLen)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return b, f.Close()
}
