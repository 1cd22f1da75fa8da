package transport

import "golang.org/x/sys/unix"

// reusePortGroups: Linux spreads the datagrams of a port over a group of
// SO_REUSEPORT sockets by a hash of the source and destination, so each
// flow stays on one socket (see listenUDP).
const reusePortGroups = true

func setReusePort(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}
