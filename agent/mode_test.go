package agent_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/fakeclock"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestWriteDeniedMode: a mount where the probe file may not be created
// (EACCES on the create, as on a root-squashed export) is healthy in mode
// write-denied, and the agent says so once, however many checks run, and
// once again when the write check works again. A failure in between (the
// root not opening) does not make it say so again.
func TestWriteDeniedMode(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	logs := &logRecorder{}
	mon, clk := newFake(t, func(c *agent.Config) { c.Logger = slog.New(logs) })
	p := fs.Mountpoint()
	fs.Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EACCES})
	if err := mon.Register(agent.Mount{Path: p}); err != nil {
		t.Fatal(err)
	}
	next := func(what string) *agent.MountStatus { return nextCheck(t, mon, clk, p, what) }
	testutil.WaitFor(t, "first check", func() bool { return status(t, mon, p).State == agent.StateHealthy })
	for i := range 3 {
		st := status(t, mon, p)
		if i > 0 {
			st = next("another check")
		}
		if st.State != agent.StateHealthy || st.Mode != probes.ModeWriteDenied {
			t.Fatalf("check %d: %+v", i, st)
		}
	}
	const denied = "WARN probe file creation denied: checking the mount read-only mount="
	if n := logs.count(denied); n != 1 {
		t.Fatalf("%d write-denied warnings, want 1: %q", n, logs.recs)
	}
	// A check that fails before it can tell the mode keeps it.
	fs.Set(faultfs.OpStatfs, faultfs.Fault{Errno: syscall.EIO, Times: 1})
	if st := next("a failing check"); st.State != agent.StateUnhealthy || st.Mode != probes.ModeWriteDenied ||
		st.FailedOp != probes.OpStatfs || st.Reason != probes.ReasonIOError {
		t.Fatalf("write-denied, root not answering: %+v", st)
	}
	if st := next("recovery"); st.State != agent.StateHealthy || st.Mode != probes.ModeWriteDenied {
		t.Fatalf("recovered: %+v", st)
	}
	if n := logs.count(denied); n != 1 {
		t.Fatalf("%d write-denied warnings after a failure in between, want 1", n)
	}
	fs.Clear()
	if st := next("write allowed"); st.State != agent.StateHealthy || st.Mode != probes.ModeReadWrite {
		t.Fatalf("write allowed again: %+v", st)
	}
	next("another check")
	if n := logs.count("INFO probe file creation allowed again"); n != 1 {
		t.Fatalf("%d lines that the write check resumed, want 1: %q", n, logs.recs)
	}
	assertNoProbeFiles(t, p)
}

// TestRequireWriteCheck: with RequireWriteCheck a refused create is the
// failure permission_denied.
func TestRequireWriteCheck(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	mon, _ := newFake(t, func(c *agent.Config) { c.RequireWriteCheck = true })
	fs.Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EACCES})
	if err := mon.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "first check", func() bool { return status(t, mon, fs.Mountpoint()).Checks > 0 })
	st := status(t, mon, fs.Mountpoint())
	if st.State != agent.StateUnhealthy || st.Reason != probes.ReasonPermissionDenied || st.FailedOp != probes.OpWrite ||
		st.Mode != probes.ModeReadWrite {
		t.Fatalf("write check required, create refused: %+v", st)
	}
}

// TestNoModeUntilKnown: a mount whose checks failed before they could
// tell its mode (the root missing, as after an unmount) has no mode, not
// read-write, in its status (and so in /healthz/mounts, the status page
// and efs_mount_mode); the first check that gets far enough sets it.
func TestNoModeUntilKnown(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mon := newBubbled(t, nil)
		p := filepath.Join(t.TempDir(), "volume")
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		st := status(t, mon, p)
		if st.State != agent.StateUnhealthy || st.Reason != probes.ReasonNotMounted || st.Mode != "" {
			t.Fatalf("first check of a missing root: state %s reason %s mode %q, want unhealthy, not_mounted, no mode", st.State, st.Reason, st.Mode)
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		time.Sleep(agent.DefaultConfig().Interval)
		synctest.Wait()
		if st := status(t, mon, p); st.State != agent.StateHealthy || st.Mode != probes.ModeReadWrite {
			t.Fatalf("once the root answers: state %s mode %q, want healthy read-write", st.State, st.Mode)
		}
	})
}

// TestDirRefusedMode: a probe directory that is a symlink (planted on the
// fault filesystem) is refused: the mount is healthy in mode dir-refused,
// the agent says so once, however many checks run, and once again when
// the symlink is gone and the write check works again. Under
// ProbeInRoot the same mount is checked with the probe file in the root,
// in mode read-write-root, and the symlink is never looked at.
func TestDirRefusedMode(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	logs := &logRecorder{}
	mon, clk := newFake(t, func(c *agent.Config) { c.Logger = slog.New(logs) })
	p := fs.Mountpoint()
	link := filepath.Join(p, probes.DirName)
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if err := mon.Register(agent.Mount{Path: p}); err != nil {
		t.Fatal(err)
	}
	next := func(what string) *agent.MountStatus { return nextCheck(t, mon, clk, p, what) }
	testutil.WaitFor(t, "first check", func() bool { return status(t, mon, p).State == agent.StateHealthy })
	for i := range 3 {
		st := status(t, mon, p)
		if i > 0 {
			st = next("another check")
		}
		if st.State != agent.StateHealthy || st.Mode != probes.ModeDirRefused || st.ErrorCount != 0 {
			t.Fatalf("check %d: %+v", i, st)
		}
	}
	const refused = "WARN probe directory refused: checking the mount read-only mount="
	if n := logs.count(refused); n != 1 {
		t.Fatalf("%d dir-refused warnings, want 1: %q", n, logs.recs)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if st := next("the symlink gone"); st.State != agent.StateHealthy || st.Mode != probes.ModeReadWrite {
		t.Fatalf("symlink gone: %+v", st)
	}
	next("another check")
	if n := logs.count("INFO probe directory accepted again"); n != 1 {
		t.Fatalf("%d lines that the write check resumed, want 1: %q", n, logs.recs)
	}
	assertNoProbeFiles(t, p)

	root := t.TempDir()
	if err := os.Symlink(t.TempDir(), filepath.Join(root, probes.DirName)); err != nil {
		t.Fatal(err)
	}
	inRoot, _ := newFake(t, func(c *agent.Config) { c.ProbeInRoot = true })
	if err := inRoot.Register(agent.Mount{Path: root}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy in mode read-write-root", func() bool {
		st := status(t, inRoot, root)
		return st.State == agent.StateHealthy && st.Mode == probes.ModeReadWriteRoot
	})
}

// nextCheck moves the fake clock past the next due check of p and returns
// the status once that check has completed.
func nextCheck(t *testing.T, mon *agent.Monitor, clk *fakeclock.Clock, p, what string) *agent.MountStatus {
	t.Helper()
	n := status(t, mon, p).Checks
	clk.Advance(31 * time.Second)
	testutil.WaitFor(t, what, func() bool { return status(t, mon, p).Checks > n })
	return status(t, mon, p)
}
