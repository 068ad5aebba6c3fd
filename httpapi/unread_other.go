//go:build !linux

package httpapi

import "net"

// hasUnread cannot ask the kernel here: no connection counts as having
// unread bytes, and the connection cap closes silent ones by age alone.
func hasUnread(net.Conn) bool { return false }
