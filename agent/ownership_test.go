package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestTwoAgentsOneNode: two agents with the same node name check one
// volume whose every operation takes 150 ms (a rolling update with
// maxSurge, or the DaemonSet next to the CSI sidecar). The second starts
// while the first is in the middle of a check. Over a dozen intervals
// neither ever reports an error: neither removes a file the other is using.
func TestTwoAgentsOneNode(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	// A check is about 14 operations, 2s here, more when the two agents'
	// creates and unlinks wait for each other on the root's lock.
	const interval = 4 * time.Second
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Logger = quietLogger()
	cfg.Interval = interval
	cfg.Timeout = interval
	cfg.MinRetry = 100 * time.Millisecond
	cfg.Jitter = 0
	cfg.LeftoverAge = 0 // the default: twice the timeout, at least 30s

	fs.Set(faultfs.OpAll, faultfs.Fault{Delay: 150 * time.Millisecond})
	a := startMonitor(t, cfg)
	if err := a.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	// The first agent's probe file exists: it is mid-check.
	testutil.WaitFor(t, "first agent mid-check", func() bool { return fs.Calls(faultfs.OpCreate) >= 1 })
	if st := status(t, a, fs.Mountpoint()); st.State != agent.StatePending {
		t.Fatalf("first agent finished its check before the second started: %+v", st)
	}
	b := startMonitor(t, cfg)
	if err := b.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(12 * interval)
	deadline := end.Add(60 * time.Second)
	for {
		sa, sb := status(t, a, fs.Mountpoint()), status(t, b, fs.Mountpoint())
		for _, st := range []*agent.MountStatus{sa, sb} {
			if st.ErrorCount != 0 {
				t.Fatalf("false alarm with two agents on one node: %+v", st)
			}
		}
		if time.Now().After(end) && sa.Checks >= 10 && sb.Checks >= 10 {
			t.Logf("check times: %v / %v", sa.History.Durations(), sb.History.Durations())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checks did not run: %d and %d", sa.Checks, sb.Checks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSlowRootListing: a root that takes 3s to list, with a 1.5 s check
// timeout (generous for the race detector on a loaded machine; a check
// that listed the root would still miss it by 1.5 s). Checks never list
// the root, so the mount stays healthy and is never hung, and the
// background listings happen once each: of the probe directory, and of the
// root (for earlier versions' files).
func TestSlowRootListing(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	fs.Set(faultfs.OpReaddir, faultfs.Fault{Delay: 3 * time.Second})
	mon := newReal(t, 1600*time.Millisecond, 1500*time.Millisecond)
	if err := mon.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
	testutil.WaitFor(t, "the two listings", func() bool { return fs.Calls(faultfs.OpReaddir) >= 2 })
	n := status(t, mon, fs.Mountpoint()).Checks
	// Checks go on while the listing is slow, and long after it.
	deadline := time.Now().Add(30 * time.Second)
	for status(t, mon, fs.Mountpoint()).Checks < n+4 {
		if st := status(t, mon, fs.Mountpoint()); st.ErrorCount != 0 || st.State != agent.StateHealthy {
			t.Fatalf("a slow root listing changed the mount's health: %+v", st)
		}
		if time.Now().After(deadline) {
			t.Fatal("checks stalled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := status(t, mon, fs.Mountpoint()); st.ErrorCount != 0 || st.State != agent.StateHealthy {
		t.Fatalf("a slow root listing changed the mount's health: %+v", st)
	}
	if c := fs.Calls(faultfs.OpReaddir); c != 2 {
		t.Fatalf("%d listings, want one of the root and one of the probe directory per agent start", c)
	}
}

// TestLongNodeNameHealthy: a node name of 253 characters (the Kubernetes
// limit) gives a healthy mount.
func TestLongNodeNameHealthy(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("ip-10-0-0-1.", 22)[:252] + "x"
	mon, _ := newFake(t, func(c *agent.Config) { c.Hostname = long })
	dir := t.TempDir()
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "first check", func() bool { return status(t, mon, dir).Checks == 1 })
	if st := status(t, mon, dir); st.State != agent.StateHealthy {
		t.Fatalf("253-character node name: %+v", st)
	}
	if !probes.IsProbeFile(probes.HostPrefix(long)+"0123456789abcdef.tmp", long) {
		t.Fatal("long node name not matched")
	}
	assertNoProbeFiles(t, dir)
}

// TestSlowListingNeverFailsAChecks: every batch of the root's listing
// (one getdents call, FUSE READDIR) takes 3s, with a 1.5 s check timeout
// (generous for the race detector on a loaded machine; a check held behind
// a batch from its start would still miss it by 1.5 s).
// The kernel holds the root's lock for a batch, and a check's create and
// unlink need it: were a check to wait behind a batch of the agent's own
// leftover sweep, it would time out in write. The sweep never overlaps a
// check of the same root, so no check fails while the root is listed,
// batch after batch, and the listing still completes: the leftover of an
// earlier instance in the root is removed.
func TestSlowListingNeverFailsAChecks(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	// Enough names for several batches of the sweep's listing.
	for i := range 200 {
		if err := os.WriteFile(filepath.Join(fs.Mountpoint(), fmt.Sprintf("user-file-with-a-long-name-%04d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	leftover := probes.HostPrefix("node-a") + "0123456789abcdef.tmp"
	if err := os.WriteFile(filepath.Join(fs.Mountpoint(), leftover), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fs.Set(faultfs.OpGetdents, faultfs.Fault{Delay: 3 * time.Second})
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Logger = quietLogger()
	cfg.Interval, cfg.Timeout = 1600*time.Millisecond, 1500*time.Millisecond
	cfg.MinRetry = 50 * time.Millisecond
	cfg.Jitter = 0
	cfg.LeftoverAge = time.Nanosecond
	mon := startMonitor(t, cfg)
	if err := mon.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
	gone := func() bool {
		_, err := os.Lstat(filepath.Join(fs.Mountpoint(), leftover))
		return os.IsNotExist(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !gone() || fs.Calls(faultfs.OpGetdents) < 3 {
		if st := status(t, mon, fs.Mountpoint()); st.ErrorCount != 0 || st.State != agent.StateHealthy {
			t.Fatalf("the agent's own listing failed a check: %+v", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listing did not complete: %d batches, leftover gone %v", fs.Calls(faultfs.OpGetdents), gone())
		}
		time.Sleep(20 * time.Millisecond)
	}
	n := status(t, mon, fs.Mountpoint()).Checks
	testutil.WaitFor(t, "checks after the listing", func() bool { return status(t, mon, fs.Mountpoint()).Checks >= n+3 })
	if st := status(t, mon, fs.Mountpoint()); st.ErrorCount != 0 || st.State != agent.StateHealthy {
		t.Fatalf("after the listing: %+v", st)
	}
	t.Logf("%d listing batches; %d checks; self delays %v", fs.Calls(faultfs.OpGetdents), status(t, mon, fs.Mountpoint()).Checks, mon.Summary().SelfDelays)
}

// TestHungListingBounds: the root's listing hangs in getdents (a mount
// that answers open and statfs but not READDIR). Only the sweeper is
// stuck in it; the next check waits for that call with its time stopped,
// for at most 10s, then goes on and, held behind the hung call by the
// kernel, is reported hung. The agent then has exactly one stuck
// goroutine for the mount plus the sweeper, however many intervals pass,
// and both finish when the call returns; the mount recovers with no probe
// file left.
func TestHungListingBounds(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	t.Cleanup(fs.Clear)
	mon := newReal(t, 300*time.Millisecond, 200*time.Millisecond)
	fs.Set(faultfs.OpGetdents, faultfs.Fault{Hang: true})
	if err := mon.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
	if err := fs.WaitBlocked(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	blockedAt := time.Now()
	testutil.WaitFor(t, "hung behind the hung listing", func() bool {
		return status(t, mon, fs.Mountpoint()).State == agent.StateHung
	})
	if d := time.Since(blockedAt); d > 300*time.Millisecond+10*time.Second+200*time.Millisecond+2*time.Second {
		t.Errorf("hung reported %v after the listing hung, want at most interval + 10s + timeout", d)
	}
	errs := status(t, mon, fs.Mountpoint()).ConsecutiveErrors
	testutil.WaitFor(t, "three missed checks", func() bool {
		return status(t, mon, fs.Mountpoint()).ConsecutiveErrors >= errs+3
	})
	if n, s := goroutinesIn("agent.(*Monitor).runCheck"), goroutinesIn("agent.(*sweeper).run"); n != 1 || s != 1 {
		t.Errorf("%d stuck checks and %d sweepers, want 1 and 1", n, s)
	}
	if b := fs.Blocked(); b != 1 {
		t.Errorf("%d requests blocked in the filesystem, want the one getdents", b)
	}
	fs.Clear()
	testutil.WaitFor(t, "recovered", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
	testutil.WaitFor(t, "the stuck check gone", func() bool { return goroutinesIn("agent.(*Monitor).runCheck") <= 1 })
	assertNoProbeFiles(t, fs.Mountpoint())
}
