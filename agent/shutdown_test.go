package agent_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// goroutinesIn counts the goroutines with fn in their stack.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	c := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			c++
		}
	}
	return c
}

// probeFiles lists the probe files in the mount root dir and in its
// probe directory (relative to dir), at once.
func probeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"", probes.DirName} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			if sub != "" && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), probes.FilePrefix) {
				out = append(out, filepath.Join(sub, e.Name()))
			}
		}
	}
	return out
}

// leftBehind lists what checks may not leave in the mount root dir:
// every entry but the probe directory, and every entry of that directory
// (which stays, empty, for the next check).
func leftBehind(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != probes.DirName || !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	in, _ := os.ReadDir(filepath.Join(dir, probes.DirName))
	for _, e := range in {
		out = append(out, filepath.Join(probes.DirName, e.Name()))
	}
	return out
}

// runUntil runs mon until the returned stop is called; stop cancels Run's
// context and returns how long Run took to return.
func runUntil(t *testing.T, mon *agent.Monitor) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mon.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() time.Duration {
		start := time.Now()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of its cancellation")
		}
		return time.Since(start)
	}
}

func drainConfig(timeout time.Duration) agent.Config {
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Logger = quietLogger()
	cfg.Interval = 10 * time.Second
	cfg.Timeout = timeout
	cfg.MinRetry = 50 * time.Millisecond
	cfg.Jitter = 0
	return cfg
}

// TestShutdownLetsChecksFinish: a check in its fsync (slow, 700 ms, but
// within its 2s deadline) when Run's context is cancelled finishes: Run
// returns once it has, within agent.ShutdownDrain, the probe file is gone
// at that moment and the check's result is on record. No goroutine of the
// monitor is left behind.
func TestShutdownLetsChecksFinish(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	fs.Set(faultfs.OpFsync, faultfs.Fault{Delay: 700 * time.Millisecond})
	mon, err := agent.New(drainConfig(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntil(t, mon)
	if err := mon.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the check in its fsync", func() bool { return fs.Calls(faultfs.OpFsync) >= 1 })
	if left := probeFiles(t, fs.Mountpoint()); len(left) != 1 {
		t.Fatalf("probe files mid-check: %q", left)
	}
	if d := stop(); d > agent.ShutdownDrain {
		t.Errorf("Run returned %v after its cancellation, more than %v", d, agent.ShutdownDrain)
	}
	if left := probeFiles(t, fs.Mountpoint()); len(left) != 0 {
		t.Fatalf("probe files left when Run returned: %q", left)
	}
	if st := status(t, mon, fs.Mountpoint()); st.Checks != 1 || st.State != agent.StateHealthy {
		t.Fatalf("the drained check: %+v", st)
	}
	testutil.WaitFor(t, "no goroutine of the monitor left", func() bool {
		return goroutinesIn("agent.(*Monitor).runCheck") == 0 && goroutinesIn("agent.(*sweeper).run") == 0
	})
}

// TestShutdownAbandonsStuckChecks: a check stuck in the kernel when Run's
// context is cancelled is abandoned at its deadline: Run returns within
// agent.ShutdownDrain, leaving exactly one goroutine behind (the stuck
// check's), which removes the probe file once the call returns.
func TestShutdownAbandonsStuckChecks(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	fs.Set(faultfs.OpFsync, faultfs.Fault{Hang: true})
	t.Cleanup(fs.Clear)
	mon, err := agent.New(drainConfig(500 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntil(t, mon)
	if err := mon.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	if err := fs.WaitBlocked(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if d := stop(); d > agent.ShutdownDrain {
		t.Errorf("Run returned %v after its cancellation, more than %v", d, agent.ShutdownDrain)
	}
	if n := goroutinesIn("agent.(*Monitor).runCheck"); n != 1 {
		t.Errorf("%d check goroutines after Run returned, want the one stuck", n)
	}
	fs.Clear()
	testutil.WaitFor(t, "the stuck check to finish", func() bool { return goroutinesIn("agent.(*Monitor).runCheck") == 0 })
	assertNoProbeFiles(t, fs.Mountpoint())
}
