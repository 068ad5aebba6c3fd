package probes_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// closedPort returns the address of a TCP listener that was opened and
// closed: nothing listens there any more, as after efs-proxy died, or as
// seen from a network namespace without it.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestTunnelExplains: the tunnel step never fails a check by itself. On
// the fault filesystem, with a real TCP port that accepts and one that
// was closed: a working mount behind an unreachable tunnel is healthy
// (the result says the tunnel was not reached); a failing mount behind it
// fails as tunnel_down, keeping both errors; behind a working tunnel the
// failure keeps its own reason.
func TestTunnelExplains(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	up, down := ln.Addr().String(), closedPort(t)
	check := func(addr string) probes.Result {
		return probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Hostname: "h", TunnelAddr: addr, TunnelTimeout: time.Second})
	}

	if res := check(up); res.Err != nil || res.TunnelErr != nil {
		t.Fatalf("tunnel up, I/O fine: %+v", res)
	}
	res := check(down)
	if res.Err != nil || !errors.Is(res.TunnelErr, probes.ErrTunnelDown) || !strings.Contains(res.TunnelErr.Error(), down) {
		t.Fatalf("tunnel down, I/O fine: want healthy with the tunnel's error, got %+v", res)
	}

	fs.Set(faultfs.OpWrite, faultfs.Fault{Errno: syscall.EIO})
	defer fs.Clear()
	res = check(down)
	if probes.Classify(res.Err) != probes.ReasonTunnelDown || res.FailedOp != probes.OpWrite || !errors.Is(res.Err, syscall.EIO) ||
		!strings.Contains(res.Err.Error(), "input/output error") || !strings.Contains(res.Err.Error(), down) {
		t.Fatalf("tunnel down, I/O failing: want tunnel_down in write with both errors, got %+v", res)
	}
	res = check(up)
	if probes.Classify(res.Err) != probes.ReasonIOError || res.TunnelErr != nil {
		t.Fatalf("tunnel up, I/O failing: want io_error, got %+v", res)
	}
}

// mountTable is a fixed mount table: path to filesystem type.
type mountTable map[string]string

func (m mountTable) Lookup(p string) (string, string, bool) {
	t, ok := m[p]
	return t, "", ok
}

// TestMountPoint: with MountPoint, a path the mount table has no mount at
// fails in the mounttable step as "not a mount point", an ErrNotMounted
// classified not_mounted, without being touched; a mount point of any
// type passes on to the I/O. Without MountPoint and with no filesystem
// type known, the path is checked as a plain directory.
func TestMountPoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := probes.Options{Hostname: "h", MountTable: mountTable{}, MountPoint: true}
	res := probes.Check(context.Background(), dir, opts)
	if res.FailedOp != probes.OpMountTable || !errors.Is(res.Err, probes.ErrNotMountPoint) || !errors.Is(res.Err, probes.ErrNotMounted) ||
		probes.Classify(res.Err) != probes.ReasonNotMounted || !strings.HasSuffix(res.Err.Error(), ": not a mount point") || len(res.Ops) != 1 {
		t.Fatalf("plain directory that must be a mount point: %+v", res)
	}
	opts.MountTable = mountTable{dir: "tmpfs"}
	if res := probes.Check(context.Background(), dir, opts); res.Err != nil || res.Mode != probes.ModeReadWrite {
		t.Fatalf("a mount point of any type: %+v", res)
	}
	opts.MountTable, opts.MountPoint = mountTable{}, false
	if res := probes.Check(context.Background(), dir, opts); res.Err != nil || res.Mode != probes.ModeReadWrite {
		t.Fatalf("a plain directory checked as one: %+v", res)
	}
}
