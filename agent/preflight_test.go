package agent_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// table is an in-memory mount table.
type table struct {
	mu sync.Mutex
	m  map[string][2]string
}

func (t *table) Lookup(p string) (string, string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[p]
	return e[0], e[1], ok
}

func (t *table) set(p, fstype, source string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if fstype == "" {
		delete(t.m, p)
		return
	}
	t.m[p] = [2]string{fstype, source}
}

// TestUnmountedPathNotTouched: once the mount table no longer lists the
// registered mount, the check fails as not_mounted and writes nothing into
// the directory underneath.
func TestUnmountedPathNotTouched(t *testing.T) {
	t.Parallel()
	tab := &table{m: map[string][2]string{}}
	dir := t.TempDir()
	tab.set(dir, "nfs4", "fs-1.efs:/")
	mon, clk := newFake(t, func(c *agent.Config) { c.MountTable = tab })
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy", func() bool { return status(t, mon, dir).State == agent.StateHealthy })
	if st := status(t, mon, dir); st.FSType != "nfs4" || st.Source != "fs-1.efs:/" {
		t.Fatalf("registration did not take the fstype from the mount table: %+v", st)
	}
	for _, tc := range []struct{ name, fstype, source, want string }{
		{"unmounted", "", "", "mount table has no mount"},
		{"replaced by another filesystem", "ext4", "/dev/vda1", "mount table shows ext4"},
	} {
		tab.set(dir, tc.fstype, tc.source)
		// A directory we can watch: after the unmount, nothing may be written.
		n := status(t, mon, dir).Checks
		clk.Advance(31 * time.Second)
		testutil.WaitFor(t, tc.name, func() bool { return status(t, mon, dir).Checks > n })
		st := status(t, mon, dir)
		if st.State != agent.StateUnhealthy || st.Reason != probes.ReasonNotMounted || !strings.Contains(st.LastError, tc.want) {
			t.Fatalf("%s: %+v", tc.name, st)
		}
		tab.set(dir, "nfs4", "fs-1.efs:/")
		clk.Advance(31 * time.Second)
		testutil.WaitFor(t, "recovery", func() bool { return status(t, mon, dir).State == agent.StateHealthy })
	}
	// A plain directory (not a mount point) is checked without the table.
	plain := t.TempDir()
	if err := mon.Register(agent.Mount{Path: plain}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "plain dir healthy", func() bool { return status(t, mon, plain).State == agent.StateHealthy })
}

// logRecorder keeps the messages (and mount attribute) of the log
// records of a monitor.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "LEVEL message mount"
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "mount" || a.Key == "tunnel_addr" {
			line += " " + a.Key + "=" + a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, line)
	return nil
}

// count is the number of records whose line contains every one of parts.
func (l *logRecorder) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(r, p)
		}
		if all {
			n++
		}
	}
	return n
}

// tunnelListener is a TCP port that accepts connections until closed.
func tunnelListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// TestTunnelDown: the tunnel never fails a working mount. With the
// tunnel's port closed (efs-proxy dead, or an agent in a network
// namespace of its own, where nothing listens on the host's loopback) a
// mount whose I/O works stays healthy, and the agent says once that
// tunnel checks cannot be made from here; when the I/O then fails, the
// reason is tunnel_down.
func TestTunnelDown(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	ln := tunnelListener(t)
	logs := &logRecorder{}
	mon, clk := newFake(t, func(c *agent.Config) { c.Logger = slog.New(logs) })
	other := t.TempDir()
	addr := ln.Addr().String()
	for _, p := range []string{fs.Mountpoint(), other} {
		if err := mon.Register(agent.Mount{Path: p, FSType: "nfs4", TunnelAddr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "healthy through the tunnel", func() bool { return mon.Summary().Ready() })
	ln.Close()
	for range 3 {
		n := status(t, mon, fs.Mountpoint()).Checks
		clk.Advance(31 * time.Second)
		testutil.WaitFor(t, "checks with the tunnel down", func() bool {
			return status(t, mon, fs.Mountpoint()).Checks > n && status(t, mon, other).Checks > n
		})
		for _, p := range []string{fs.Mountpoint(), other} {
			if st := status(t, mon, p); st.State != agent.StateHealthy {
				t.Fatalf("tunnel down, I/O fine: %+v", st)
			}
		}
	}
	const warn = "WARN tunnel checks cannot be made from this network namespace"
	if n := logs.count(warn, "tunnel_addr="+addr); n != 1 {
		t.Fatalf("%d warnings that the tunnel cannot be checked from here, want 1 (logs %q)", n, logs.recs)
	}
	assertNoProbeFiles(t, fs.Mountpoint())

	fs.Set(faultfs.OpWrite, faultfs.Fault{Errno: syscall.EIO})
	clk.Advance(31 * time.Second)
	testutil.WaitFor(t, "tunnel_down", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateUnhealthy })
	st := status(t, mon, fs.Mountpoint())
	if st.Reason != probes.ReasonTunnelDown || st.FailedOp != probes.OpWrite || !strings.Contains(st.LastError, addr) ||
		!strings.Contains(st.LastError, "input/output error") {
		t.Fatalf("tunnel down, I/O failing: %+v", st)
	}
	if st := status(t, mon, other); st.State != agent.StateHealthy {
		t.Fatalf("the other mount: %+v", st)
	}
}

// TestTunnelDownHung: a check that hangs past its deadline after its
// tunnel could not be reached is hung with reason tunnel_down, and stays
// so while it is stuck and once the call returns.
func TestTunnelDownHung(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	ln := tunnelListener(t)
	addr := ln.Addr().String()
	ln.Close()
	mon := newReal(t, 300*time.Millisecond, 150*time.Millisecond)
	if err := mon.Register(agent.Mount{Path: fs.Mountpoint(), FSType: "nfs4", TunnelAddr: addr}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy with the tunnel down", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
	fs.Set(faultfs.OpWrite, faultfs.Fault{Hang: true})
	testutil.WaitFor(t, "hung", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHung })
	st := status(t, mon, fs.Mountpoint())
	if st.Reason != probes.ReasonTunnelDown || st.FailedOp != probes.OpWrite || !strings.Contains(st.LastError, "timeout after") ||
		!strings.Contains(st.LastError, addr) {
		t.Fatalf("hung behind a dead tunnel: %+v", st)
	}
	n := st.ConsecutiveErrors
	testutil.WaitFor(t, "a check skipped while stuck", func() bool { return status(t, mon, fs.Mountpoint()).ConsecutiveErrors > n })
	if st := status(t, mon, fs.Mountpoint()); st.Reason != probes.ReasonTunnelDown {
		t.Fatalf("still stuck: %+v", st)
	}
	fs.Clear()
	testutil.WaitFor(t, "recovered", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
	assertNoProbeFiles(t, fs.Mountpoint())
}
