//go:build !linux

package transport

import "errors"

// reusePortGroups is false where SO_REUSEPORT does not spread one port's
// datagrams over several sockets: one socket is then read by several
// goroutines.
const reusePortGroups = false

func setReusePort(fd uintptr) error { return errors.New("SO_REUSEPORT groups need Linux") }
