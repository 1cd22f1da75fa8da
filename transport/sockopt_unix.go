//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package transport

import "syscall"

// setV6Only sets IPV6_V6ONLY explicitly, rather than relying on the
// platform default (Linux: net.ipv6.bindv6only, usually 0) or on what the
// net package happens to do for "udp6"/"tcp6".
func setV6Only(fd uintptr, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, v)
}
