package probes

import (
	"context"
	"fmt"
	"net"
	"time"
)

// MountTable answers from the kernel's mount table which filesystem is
// mounted at a path. Implementations read a cached copy of the table and
// never touch the path itself.
type MountTable interface {
	Lookup(path string) (fstype, source string, ok bool)
}

// TunnelDialer checks that a mount's local TLS tunnel accepts
// connections, without touching the filesystem.
type TunnelDialer interface {
	DialTunnel(ctx context.Context, addr string, timeout time.Duration) error
}

// TCPTunnel is the TunnelDialer that opens (and closes) a TCP connection.
type TCPTunnel struct{}

// DialTunnel implements TunnelDialer with the package's DialTunnel.
func (TCPTunnel) DialTunnel(ctx context.Context, addr string, timeout time.Duration) error {
	return DialTunnel(ctx, addr, timeout)
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

// hasMountTable says whether the mounttable step runs: a mount table is
// given and the path was registered as a mount of a known filesystem type,
// or must be a mount point.
func (r *run) hasMountTable() bool {
	return r.opts.MountTable != nil && (r.opts.FSType != "" || r.opts.MountPoint)
}

// mountTable is the mounttable step: the path must still be the mount it
// was registered as. After an unmount the directory underneath is local
// disk, where a write would "succeed".
func (r *run) mountTable() error {
	o := &r.opts
	fstype, source, ok := o.MountTable.Lookup(r.root)
	switch {
	case !ok:
		return fmt.Errorf("mount table has no mount at %q: %w", r.root, ErrNotMountPoint)
	case o.FSType == "":
		// A mount point of any type (MountPoint).
	case fstype != o.FSType || (o.Source != "" && source != o.Source):
		return fmt.Errorf("mount table shows %s %q at %q, registered as %s %q: %w",
			fstype, source, r.root, o.FSType, o.Source, ErrNotMounted)
	}
	return nil
}

// hasTunnel says whether the tunnel step runs.
func (r *run) hasTunnel() bool { return r.opts.TunnelAddr != "" }

// tunnel is the tunnel step: the mount's tunnel accepts a connection.
// The step is advisory (see Result.TunnelErr): since efs-utils v2 every
// EFS mount goes through efs-proxy on the host's loopback, which an agent
// in a network namespace of its own cannot reach while the mount works.
func (r *run) tunnel() error {
	if err := r.opts.Tunnel.DialTunnel(r.ctx, r.opts.TunnelAddr, r.opts.TunnelTimeout); err != nil {
		return fmt.Errorf("tunnel %s: %w", r.opts.TunnelAddr, err)
	}
	return nil
}
