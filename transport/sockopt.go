package transport

import "syscall"

// listenControl returns a net.ListenConfig Control function that sets
// IPV6_V6ONLY to v6only (0 or 1) on IPv6 sockets before bind; -1 leaves the
// socket alone. It runs between socket() and bind(), the only time the
// option may be changed.
func listenControl(v6only int) func(network, address string, c syscall.RawConn) error {
	if v6only < 0 {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		if network[len(network)-1] != '6' {
			return nil // the kernel chose an IPv4 socket after all
		}
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setV6Only(fd, v6only == 1) }); err != nil {
			return err
		}
		return serr
	}
}
