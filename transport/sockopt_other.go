//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package transport

// setV6Only is a no-op here: the net package already sets IPV6_V6ONLY on
// "udp6"/"tcp6" sockets and clears it on dual-stack "udp"/"tcp" ones.
func setV6Only(fd uintptr, on bool) error { return nil }
