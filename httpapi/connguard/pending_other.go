//go:build !linux

package connguard

import "net"

// pendingRequest cannot peek here: no connection counts as holding a
// request unread, and the connection cap closes silent ones by age alone.
func pendingRequest(net.Conn, probeRoutes) pending { return pendingNone }
