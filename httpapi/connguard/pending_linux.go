package connguard

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pendingRequest peeks (MSG_PEEK, without waiting) at the first bytes the
// kernel holds received on c and not yet read, and tells what they are. A
// connection that is not a socket, or that cannot be peeked at, holds
// nothing.
func pendingRequest(c net.Conn, routes probeRoutes) pending {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return pendingNone
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return pendingNone
	}
	var buf [32]byte
	n := 0
	if err := rc.Control(func(fd uintptr) {
		n, _, _ = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil || n <= 0 {
		return pendingNone
	}
	return routes.classify(buf[:n])
}
