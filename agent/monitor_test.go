package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/fakeclock"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newFake returns a running monitor on a fake clock.
func newFake(t *testing.T, mutate func(*agent.Config)) (*agent.Monitor, *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(epoch)
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Clock = clk
	cfg.Logger = quietLogger()
	cfg.Jitter = 0
	if mutate != nil {
		mutate(&cfg)
	}
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mon.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "monitor running", func() bool { return mon.Summary().Running })
	return mon, clk
}

// waitFor polls cond in real time; the work it waits for (real I/O on a
// temp dir) takes microseconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func status(t *testing.T, mon *agent.Monitor, path string) *agent.MountStatus {
	t.Helper()
	st, ok := mon.Status(path)
	if !ok {
		t.Fatalf("%s not registered", path)
	}
	return st
}

func TestHealthyMount(t *testing.T) {
	t.Parallel()
	mon, _ := newFake(t, nil)
	dir := t.TempDir()
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	if s := mon.Summary(); s.Pending != 1 || s.Ready() || !s.Healthy() {
		t.Fatalf("fresh mount: summary %+v, want pending, not ready, healthy", s)
	}
	waitFor(t, "first check", func() bool { return status(t, mon, dir).State == agent.StateHealthy })
	st := status(t, mon, dir)
	if st.Mode != probes.ModeReadWrite || st.ErrorCount != 0 || st.LastError != "" || st.Checks != 1 {
		t.Fatalf("status %+v", st)
	}
	ops := map[probes.Op]bool{}
	for _, o := range st.Ops {
		ops[o.Op] = true
	}
	for _, op := range []probes.Op{probes.OpWrite, probes.OpRead, probes.OpDelete} {
		if !ops[op] {
			t.Errorf("no timing for %s in %+v", op, st.Ops)
		}
	}
	if !st.LastCheck.Equal(epoch) {
		t.Errorf("LastCheck = %v, want the fake clock's %v", st.LastCheck, epoch)
	}
	if s := mon.Summary(); !s.Ready() || s.Mounts != 1 {
		t.Fatalf("summary %+v, want ready", s)
	}
	assertNoProbeFiles(t, dir)
}

// assertNoProbeFiles waits until dir holds no probe file: a probe file
// whose unlink failed is removed by name in the background after the
// mount's next successful check.
func assertNoProbeFiles(t *testing.T, dir string) {
	t.Helper()
	var left []string
	waitFor(t, "no probe file left behind", func() bool {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		left = left[:0]
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), probes.FilePrefix) {
				left = append(left, e.Name())
			}
		}
		return len(left) == 0
	})
}

// TestScheduleAndBackoff follows a failing mount through the retry
// schedule (1s, 2s, 4s, ... capped at the interval) and its recovery.
func TestScheduleAndBackoff(t *testing.T) {
	t.Parallel()
	mon, clk := newFake(t, func(c *agent.Config) { c.Interval = 10 * time.Second; c.Timeout = 2 * time.Second })
	dir := filepath.Join(t.TempDir(), "vol")
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first failure", func() bool { return status(t, mon, dir).Checks == 1 })
	st := status(t, mon, dir)
	if st.State != agent.StateUnhealthy || st.Reason != probes.ReasonNotMounted || st.ConsecutiveErrors != 1 {
		t.Fatalf("missing dir: %+v", st)
	}
	if s := mon.Summary(); s.Healthy() || s.Ready() || len(s.UnhealthyPaths) != 1 {
		t.Fatalf("summary %+v", s)
	}
	// Expected gaps between checks: 1s, 2s, 4s, 8s, then the 10s interval.
	for i, gap := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second} {
		want := uint64(i + 2)
		clk.Advance(gap - time.Millisecond)
		time.Sleep(5 * time.Millisecond)
		if got := status(t, mon, dir).Checks; got != want-1 {
			t.Fatalf("check %d ran before its %v retry delay (checks=%d)", want, gap, got)
		}
		clk.Advance(time.Millisecond)
		waitFor(t, "retry", func() bool { return status(t, mon, dir).Checks == want })
	}
	if got := status(t, mon, dir).ErrorCount; got != 6 {
		t.Fatalf("ErrorCount = %d, want 6", got)
	}
	// Recovery: the next check after the directory appears is healthy and
	// resets the consecutive count but not the total.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Second)
	waitFor(t, "recovery", func() bool { return status(t, mon, dir).State == agent.StateHealthy })
	st = status(t, mon, dir)
	if st.ConsecutiveErrors != 0 || st.ErrorCount != 6 || st.LastError != "" || st.Reason != "" {
		t.Fatalf("after recovery: %+v", st)
	}
	// Healthy: the next check waits a full interval.
	n := st.Checks
	clk.Advance(10*time.Second - time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if status(t, mon, dir).Checks != n {
		t.Fatal("healthy mount re-checked before the interval")
	}
	clk.Advance(time.Millisecond)
	waitFor(t, "interval check", func() bool { return status(t, mon, dir).Checks == n+1 })
	assertNoProbeFiles(t, dir)
}

func TestRegisterValidationAndUnregister(t *testing.T) {
	t.Parallel()
	mon, _ := newFake(t, nil)
	for _, p := range []string{"", "relative/path", "/a/../b", "/a/"} {
		if err := mon.Register(agent.Mount{Path: p}); err == nil {
			t.Errorf("Register(%q) accepted", p)
		} else if !strings.Contains(err.Error(), "mount path") {
			t.Errorf("Register(%q): error %q does not name the setting", p, err)
		}
	}
	dir := t.TempDir()
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	if err := mon.Register(agent.Mount{Path: dir, FSType: "nfs4"}); err != nil {
		t.Fatalf("second Register: %v", err)
	}
	if s := mon.Summary(); s.Mounts != 1 {
		t.Fatalf("duplicate register: %d mounts", s.Mounts)
	}
	if st := status(t, mon, dir); st.FSType != "nfs4" {
		t.Fatalf("re-register did not update the description: %+v", st)
	}
	if !mon.Unregister(dir) || mon.Unregister(dir) {
		t.Fatal("Unregister should report true once")
	}
	if s := mon.Summary(); s.Mounts != 0 || s.Pending != 0 || !s.Ready() {
		t.Fatalf("after unregister: %+v", s)
	}
	if len(mon.Statuses()) != 0 {
		t.Fatal("Statuses still lists the mount")
	}
}

// TestStaleProbeFilesRemoved plants files a crashed run could leave, and
// files that must never be touched. The sweep runs in the background after
// the mount's first successful check.
func TestStaleProbeFilesRemoved(t *testing.T) {
	t.Parallel()
	mon, _ := newFake(t, func(c *agent.Config) { c.LeftoverAge = time.Nanosecond })
	dir := t.TempDir()
	earlier, err := probes.NewOwner("node-a")
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		n, err := earlier.NewFileName()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ours := name()
	legacy := probes.HostPrefix("node-a") + "0123456789abcdef.tmp"
	other := probes.HostPrefix("node-b") + "0123456789abcdef.tmp"
	link := name()
	target := filepath.Join(t.TempDir(), "precious")
	for _, f := range []string{ours, legacy, other} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	// A FIFO under a probe-file name: opening it would block forever.
	fifo := name()
	if err := syscall.Mkfifo(filepath.Join(dir, fifo), 0o600); err != nil {
		t.Fatal(err)
	}
	// A symlink to a directory under a probe-file name.
	dirLink := name()
	if err := os.Symlink(filepath.Dir(target), filepath.Join(dir, dirLink)); err != nil {
		t.Fatal(err)
	}
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first check", func() bool { return status(t, mon, dir).Checks == 1 })
	waitFor(t, "leftovers of earlier instances removed", func() bool {
		_, err1 := os.Lstat(filepath.Join(dir, ours))
		_, err2 := os.Lstat(filepath.Join(dir, legacy))
		return os.IsNotExist(err1) && os.IsNotExist(err2)
	})
	for _, keep := range []string{other, link, fifo, dirLink} {
		if _, err := os.Lstat(filepath.Join(dir, keep)); err != nil {
			t.Errorf("%s must not be touched: %v", keep, err)
		}
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep" {
		t.Errorf("symlink target changed: %q %v", b, err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	base := agent.DefaultConfig()
	base.Hostname = "h"
	cases := []struct {
		name   string
		mutate func(*agent.Config)
		want   string
	}{
		{"zero interval", func(c *agent.Config) { c.Interval = 0 }, "check interval 0s"},
		{"negative timeout", func(c *agent.Config) { c.Timeout = -time.Second }, "check timeout -1s"},
		{"timeout over interval", func(c *agent.Config) { c.Timeout = time.Minute }, "must not exceed the check interval 30s"},
		{"no hostname", func(c *agent.Config) { c.Hostname = "" }, "hostname"},
		{"bad jitter", func(c *agent.Config) { c.Jitter = 1 }, "jitter 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestLiveFollowsRun(t *testing.T) {
	t.Parallel()
	cfg := agent.DefaultConfig()
	cfg.Hostname = "h"
	cfg.Logger = quietLogger()
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mon.Live() {
		t.Fatal("live before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mon.Run(ctx) }()
	waitFor(t, "live", mon.Live)
	cancel()
	<-done
	if mon.Live() {
		t.Fatal("live after Run returned")
	}
}

// TestCapacityFreedStartsNextCheck: with room for one check at a time, a
// check that completes lets the next due mount start at once, without the
// clock moving: the scheduler loop is woken when it held checks back.
func TestCapacityFreedStartsNextCheck(t *testing.T) {
	t.Parallel()
	mon, _ := newFake(t, func(c *agent.Config) { c.MaxConcurrent = 1 })
	base := t.TempDir()
	var paths []string
	for i := 0; i < 5; i++ {
		p := filepath.Join(base, fmt.Sprintf("vol%d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	waitFor(t, "every mount checked once, one at a time, with the clock stopped", func() bool {
		for _, p := range paths {
			if status(t, mon, p).Checks != 1 {
				return false
			}
		}
		return true
	})
}

// TestReregisterWhileChecking: discovery re-registers a path (a changed
// description) while its checks run. Under -race this catches a check
// reading the mount's description without the lock.
func TestReregisterWhileChecking(t *testing.T) {
	mon := newReal(t, 100*time.Millisecond, 50*time.Millisecond)
	dir := t.TempDir()
	checks := func() uint64 {
		st, ok := mon.Status(dir)
		if !ok {
			return 0
		}
		return st.Checks
	}
	for i := 0; checks() < 5; i++ {
		if err := mon.Register(agent.Mount{Path: dir, Source: fmt.Sprintf("fs-%d:/", i%2)}); err != nil {
			t.Fatal(err)
		}
		if i > 1_000_000 {
			t.Fatal("checks did not run")
		}
	}
}
