package transport

import "syscall"

// listenControl returns a net.ListenConfig Control function that sets
// IPV6_V6ONLY to v6only (0 or 1) on IPv6 sockets before bind (-1 leaves
// it alone) and, if reusePort, SO_REUSEPORT. It runs between socket() and
// bind(), the only time these options may be changed.
func listenControl(v6only int, reusePort bool) func(network, address string, c syscall.RawConn) error {
	if v6only < 0 && !reusePort {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if v6only >= 0 && network[len(network)-1] == '6' { // else the kernel chose an IPv4 socket after all
				serr = setV6Only(fd, v6only == 1)
			}
			if serr == nil && reusePort {
				serr = setReusePort(fd)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
