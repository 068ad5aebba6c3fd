package probes

import (
	"context"
	"fmt"
	"net"
	"time"
)

// Fail returns the Result of a check that failed in op before any I/O.
func Fail(op Op, d time.Duration, err error) Result {
	err = &OpError{Op: op, Err: err}
	return Result{Mode: ModeReadWrite, Ops: []OpResult{{Op: op, Duration: d, Err: err}}, Err: err, FailedOp: op}
}

// DialTunnel checks that a local TLS tunnel (efs-utils' stunnel or
// efs-proxy) accepts a TCP connection at addr within timeout. It never
// touches the filesystem; the error wraps ErrTunnelDown.
func DialTunnel(ctx context.Context, addr string, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTunnelDown, err)
	}
	return c.Close()
}
