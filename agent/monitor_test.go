package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/fakeclock"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startMonitor runs a monitor with cfg (on cfg's clock) until the test
// ends.
func startMonitor(t *testing.T, cfg agent.Config) *agent.Monitor {
	t.Helper()
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mon.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return mon
}

// newFake returns a running monitor on a fake clock, for the tests that
// cannot run in a synctest bubble (newBubbled): those with a FUSE mount, a
// socket or a FIFO, where a goroutine blocked in the kernel would stop the
// bubble's time (and a regression would hang the test rather than fail
// it), and those that need a clock seen late (selfdelay_test.go).
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
	mon := startMonitor(t, cfg)
	testutil.WaitFor(t, "monitor running", func() bool { return mon.Summary().Running })
	return mon, clk
}

// newBubbled returns a running monitor on the real clock of the synctest
// bubble it is called in (testing/synctest): there time moves only when
// every goroutine of the bubble is blocked, so time.Sleep(d) moves it by
// exactly d, letting every timer due on the way fire in order, and
// synctest.Wait returns once the monitor has done all it can at the
// current instant (checks run, statuses published, the loop asleep). A
// test on it waits for no condition: it moves time and looks. Tests that
// need a FUSE mount, a socket or a clock that is late stay on the fake
// clock (newFake): a goroutine blocked in the kernel never lets the bubble's
// time move.
func newBubbled(t *testing.T, mutate func(*agent.Config)) *agent.Monitor {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Logger = quietLogger()
	cfg.Jitter = 0
	if mutate != nil {
		mutate(&cfg)
	}
	mon := startMonitor(t, cfg)
	synctest.Wait()
	if !mon.Summary().Running {
		t.Fatal("monitor not running")
	}
	return mon
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
	synctest.Test(t, testHealthyMount)
}

func testHealthyMount(t *testing.T) {
	start := time.Now()
	mon := newBubbled(t, nil)
	dir := t.TempDir()
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	if s := mon.Summary(); s.Pending != 1 || s.Ready() || !s.Healthy() {
		t.Fatalf("fresh mount: summary %+v, want pending, not ready, healthy", s)
	}
	synctest.Wait()
	st := status(t, mon, dir)
	if st.State != agent.StateHealthy {
		t.Fatalf("after the first check: %+v", st)
	}
	if st.Mode != probes.ModeReadWrite || st.ErrorCount != 0 || st.LastError != "" || st.Checks != 1 {
		t.Fatalf("status %+v", st)
	}
	ops := map[probes.Op]bool{}
	for op := range st.Ops.All() {
		ops[op] = true
	}
	for _, op := range []probes.Op{probes.OpWrite, probes.OpRead, probes.OpDelete} {
		if !ops[op] {
			t.Errorf("no timing for %s in %+v", op, st.Ops)
		}
	}
	if !st.LastCheck.Equal(start) {
		t.Errorf("LastCheck = %v, want the instant it was registered, %v", st.LastCheck, start)
	}
	if s := mon.Summary(); !s.Ready() || s.Mounts != 1 {
		t.Fatalf("summary %+v, want ready", s)
	}
	noProbeFiles(t, dir)
}

// noProbeFiles checks, in a synctest bubble once the monitor is done, that
// dir holds no probe file.
func noProbeFiles(t *testing.T, dir string) {
	t.Helper()
	synctest.Wait()
	for _, f := range probeFiles(t, dir) {
		t.Errorf("probe file left behind: %s", f)
	}
}

// assertNoProbeFiles waits until dir holds no probe file: a probe file
// whose unlink failed is removed by name in the background after the
// mount's next successful check.
func assertNoProbeFiles(t *testing.T, dir string) {
	t.Helper()
	var left []string
	testutil.WaitFor(t, "no probe file left behind", func() bool {
		left = probeFiles(t, dir)
		return len(left) == 0
	})
}

// TestScheduleAndBackoff follows a failing mount through the retry
// schedule (1s, 2s, 4s, ... capped at the interval) and its recovery.
func TestScheduleAndBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testScheduleAndBackoff)
}

func testScheduleAndBackoff(t *testing.T) {
	mon := newBubbled(t, func(c *agent.Config) { c.Interval = 10 * time.Second; c.Timeout = 2 * time.Second })
	dir := filepath.Join(t.TempDir(), "vol")
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	st := status(t, mon, dir)
	if st.Checks != 1 || st.State != agent.StateUnhealthy || st.Reason != probes.ReasonNotMounted || st.ConsecutiveErrors != 1 {
		t.Fatalf("missing dir: %+v", st)
	}
	if s := mon.Summary(); s.Healthy() || s.Ready() || len(s.UnhealthyPaths) != 1 {
		t.Fatalf("summary %+v", s)
	}
	// Expected gaps between checks: 1s, 2s, 4s, 8s, then the 10s interval.
	for i, gap := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second} {
		want := uint64(i + 2)
		time.Sleep(gap - time.Millisecond)
		synctest.Wait()
		if got := status(t, mon, dir).Checks; got != want-1 {
			t.Fatalf("check %d ran before its %v retry delay (checks=%d)", want, gap, got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := status(t, mon, dir).Checks; got != want {
			t.Fatalf("check %d did not run after its %v retry delay (checks=%d)", want, gap, got)
		}
	}
	if got := status(t, mon, dir).ErrorCount; got != 6 {
		t.Fatalf("ErrorCount = %d, want 6", got)
	}
	// Recovery: the next check after the directory appears is healthy and
	// resets the consecutive count but not the total.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	synctest.Wait()
	st = status(t, mon, dir)
	if st.State != agent.StateHealthy || st.ConsecutiveErrors != 0 || st.ErrorCount != 6 || st.LastError != "" || st.Reason != "" {
		t.Fatalf("after recovery: %+v", st)
	}
	// Healthy: the next check waits a full interval.
	n := st.Checks
	time.Sleep(10*time.Second - time.Millisecond)
	synctest.Wait()
	if status(t, mon, dir).Checks != n {
		t.Fatal("healthy mount re-checked before the interval")
	}
	time.Sleep(time.Millisecond)
	synctest.Wait()
	if status(t, mon, dir).Checks != n+1 {
		t.Fatal("healthy mount not re-checked at the interval")
	}
	noProbeFiles(t, dir)
}

func TestRegisterValidationAndUnregister(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testRegisterValidationAndUnregister)
}

func testRegisterValidationAndUnregister(t *testing.T) {
	mon := newBubbled(t, nil)
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
	synctest.Wait() // its first check done
	first := status(t, mon, dir)
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	if st := status(t, mon, dir); st != first {
		t.Fatal("registering the same description again published a new status")
	}
	if err := mon.Register(agent.Mount{Path: dir, FSType: "nfs4"}); err != nil {
		t.Fatalf("second Register: %v", err)
	}
	if s := mon.Summary(); s.Mounts != 1 {
		t.Fatalf("duplicate register: %d mounts", s.Mounts)
	}
	if st := status(t, mon, dir); st.FSType != "nfs4" || st.Mount == first.Mount {
		t.Fatalf("re-register did not update the description: %+v", st.Mount)
	}
	// A published status and its description are never modified.
	if first.FSType != "" || first.Path != dir {
		t.Fatalf("re-register modified a published description: %+v", first.Mount)
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
	testutil.WaitFor(t, "first check", func() bool { return status(t, mon, dir).Checks == 1 })
	testutil.WaitFor(t, "leftovers of earlier instances removed", func() bool {
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
		{"interval near the int64 maximum", func(c *agent.Config) { c.Interval = math.MaxInt64 - 1 }, "must not exceed 24h0m0s"},
		{"timeout over a day", func(c *agent.Config) { c.Interval, c.Timeout = math.MaxInt64, 25*time.Hour }, "check timeout 25h0m0s: must not exceed 24h0m0s"},
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
	testutil.WaitFor(t, "live", mon.Live)
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
	synctest.Test(t, testCapacityFreedStartsNextCheck)
}

func testCapacityFreedStartsNextCheck(t *testing.T) {
	start := time.Now()
	mon := newBubbled(t, func(c *agent.Config) { c.MaxConcurrent = 1 })
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
	synctest.Wait()
	if !time.Now().Equal(start) {
		t.Fatalf("the clock moved by %v", time.Since(start))
	}
	for _, p := range paths {
		if st := status(t, mon, p); st.Checks != 1 || !st.LastCheck.Equal(start) {
			t.Errorf("%s: %d checks, the last at %v; want every mount checked once, one at a time, with the clock stopped", p, st.Checks, st.LastCheck)
		}
	}
}

// TestCoalescedStarts: a wake for a due check also starts the checks due
// within the coalescing window (100 ms here), not those due later.
func TestCoalescedStarts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testCoalescedStarts)
}

func testCoalescedStarts(t *testing.T) {
	start := time.Now()
	mon := newBubbled(t, func(c *agent.Config) { c.Interval = 10 * time.Second })
	base := t.TempDir()
	var paths []string
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(60 * time.Millisecond)
		}
		p := filepath.Join(base, fmt.Sprintf("vol%d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := status(t, mon, p).Checks; n != 1 {
			t.Fatalf("%s: %d checks after registration, want 1", p, n)
		}
		paths = append(paths, p)
	}
	// Due at +10s, +10.06s and +10.12s.
	time.Sleep(10*time.Second - 120*time.Millisecond)
	synctest.Wait()
	at := start.Add(10 * time.Second)
	for _, p := range paths[:2] {
		if st := status(t, mon, p); st.Checks != 2 || !st.LastCheck.Equal(at) {
			t.Fatalf("%s: %d checks, the last at %v; want the second with the first due check at %v", p, st.Checks, st.LastCheck, at)
		}
	}
	if n := status(t, mon, paths[2]).Checks; n != 1 {
		t.Fatalf("a check due beyond the window started early (%d checks)", n)
	}
	time.Sleep(120*time.Millisecond - time.Nanosecond)
	synctest.Wait()
	if n := status(t, mon, paths[2]).Checks; n != 1 {
		t.Fatalf("a check due at +10.12s ran before it (%d checks)", n)
	}
	time.Sleep(time.Nanosecond)
	synctest.Wait()
	if st := status(t, mon, paths[2]); st.Checks != 2 || !st.LastCheck.Equal(start.Add(10*time.Second+120*time.Millisecond)) {
		t.Fatalf("the check due at +10.12s: %+v", st)
	}
}

// blockingTable is a mount table whose lookups of its NFS mounts block
// while it is closed: a check stuck in preflight, on the fake clock,
// without FUSE. Other paths are not mount points.
type blockingTable struct {
	nfs     map[string]bool // read-only
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	blocked atomic.Int32
}

func (b *blockingTable) Lookup(p string) (string, string, bool) {
	if !b.nfs[p] {
		return "", "", false
	}
	b.mu.Lock()
	gate := b.gate
	b.mu.Unlock()
	if gate != nil {
		b.blocked.Add(1)
		<-gate
		b.blocked.Add(-1)
	}
	return "nfs4", "fs-1.efs:/", true
}

func (b *blockingTable) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gate = make(chan struct{})
}

func (b *blockingTable) open() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.gate)
	b.gate = nil
}

// TestStuckCheck follows a check that never returns through the
// scheduler: hung exactly at its deadline, skipped
// checks while it is stuck (one blocked call, no new timer), and an
// immediate re-check when the call returns.
func TestStuckCheck(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testStuckCheck)
}

func testStuckCheck(t *testing.T) {
	dir := t.TempDir()
	tab := &blockingTable{nfs: map[string]bool{dir: true}}
	t0 := time.Now()
	mon := newBubbled(t, func(c *agent.Config) {
		c.Interval, c.Timeout, c.MountTable = 10*time.Second, 2*time.Second, tab
	})
	if err := mon.Register(agent.Mount{Path: dir, FSType: "nfs4", Source: "fs-1.efs:/"}); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	if st := status(t, mon, dir); st.State != agent.StateHealthy {
		t.Fatalf("first check: %+v", st)
	}

	tab.close()
	start := t0.Add(10 * time.Second)
	time.Sleep(10 * time.Second)
	synctest.Wait()
	if n := tab.blocked.Load(); n != 1 {
		t.Fatalf("%d calls blocked in the mount table, want the second check's", n)
	}
	time.Sleep(2*time.Second - time.Millisecond)
	synctest.Wait()
	if st := status(t, mon, dir); st.State != agent.StateHealthy {
		t.Fatalf("hung before the deadline: %+v", st)
	}
	time.Sleep(time.Millisecond)
	synctest.Wait()
	st := status(t, mon, dir)
	if st.State != agent.StateHung || !st.LastCheck.Equal(start.Add(2*time.Second)) || !st.HungSince.Equal(start) || st.Reason != probes.ReasonTimeout ||
		st.FailedOp != probes.OpMountTable || mon.Summary().InFlight != 0 || mon.Summary().Hung != 1 {
		t.Fatalf("at the deadline: %+v, summary %+v", st, mon.Summary())
	}

	// Backoff 1s, 2s, 4s: three skipped checks, still one blocked call.
	for i, gap := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		time.Sleep(gap)
		synctest.Wait()
		if got, want := status(t, mon, dir).ConsecutiveErrors, uint64(i+2); got != want {
			t.Fatalf("skip %d after %v: %d consecutive errors, want %d", i+1, gap, got, want)
		}
	}
	st = status(t, mon, dir)
	if st.State != agent.StateHung || st.Reason != probes.ReasonHung || st.Checks != 2 || tab.blocked.Load() != 1 {
		t.Fatalf("while stuck: %+v, %d blocked calls", st, tab.blocked.Load())
	}
	// The last check ended at the deadline, 7s ago: not stale yet
	// (interval + timeout = 12s). The next skip, 8s later, finds it 15s
	// old: stale, and the agent is not ready.
	if s := mon.Summary(); s.Stale != 0 {
		t.Fatalf("stale after 7s: %+v", s)
	}
	time.Sleep(8 * time.Second)
	synctest.Wait()
	if s := mon.Summary(); s.Stale != 1 || s.Ready() || status(t, mon, dir).ConsecutiveErrors != 5 {
		t.Fatalf("stale: summary %+v, status %+v", s, status(t, mon, dir))
	}

	// The call returns: the mount is re-checked at once, on the same
	// instant, and recovers.
	now := time.Now()
	tab.open()
	synctest.Wait()
	if st := status(t, mon, dir); st.State != agent.StateHealthy || st.Checks != 3 || st.ConsecutiveErrors != 0 || st.ErrorCount != 5 || !st.LastCheck.Equal(now) {
		t.Fatalf("after the stuck call returned: %+v", st)
	}
	// The stale count is taken at most a second apart.
	time.Sleep(time.Second)
	synctest.Wait()
	if s := mon.Summary(); s.Stale != 0 || !s.Ready() {
		t.Fatalf("not fresh and ready a second after recovery: %+v", s)
	}
}

// recordingObserver keeps every check's outcome. Each of its methods reads
// the monitor's mount list, which takes the monitor's lock: were any event
// delivered under that lock, the test would deadlock.
type recordingObserver struct {
	mon      atomic.Pointer[agent.Monitor]
	mu       sync.Mutex
	outcomes map[string][]agent.Outcome
	records  map[string][]agent.CheckRecord
	skipped  map[string]int
}

func (o *recordingObserver) touch() {
	if mon := o.mon.Load(); mon != nil {
		_ = mon.Statuses()
	}
}

func (o *recordingObserver) CheckDone(r *agent.CheckRecord) {
	o.touch()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes[r.Mount.Path] = append(o.outcomes[r.Mount.Path], r.Outcome)
	o.records[r.Mount.Path] = append(o.records[r.Mount.Path], agent.CheckRecord{Mount: r.Mount, Start: r.Start, End: r.End,
		Outcome: r.Outcome, Ops: slices.Clone(r.Ops)})
}

func (o *recordingObserver) CheckSkipped(m *agent.Mount, _ time.Time) {
	o.touch()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.skipped[m.Path]++
}

func (o *recordingObserver) get(path string) []agent.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.outcomes[path])
}

func (o *recordingObserver) record(path string, i int) agent.CheckRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.records[path][i]
}

// TestObserverOutcomes: CheckDone receives each check's own record
// (success, failure, deadline, and a check whose mount was unregistered
// while it ran), exactly once per check, and no event is delivered under
// the monitor's lock.
func TestObserverOutcomes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testObserverOutcomes)
}

func testObserverOutcomes(t *testing.T) {
	obs := &recordingObserver{outcomes: map[string][]agent.Outcome{}, records: map[string][]agent.CheckRecord{}, skipped: map[string]int{}}
	base := t.TempDir()
	ok, missing, stuck, gone := filepath.Join(base, "ok"), filepath.Join(base, "missing"), filepath.Join(base, "stuck"), filepath.Join(base, "gone")
	tab := &blockingTable{nfs: map[string]bool{stuck: true, gone: true}}
	mon := newBubbled(t, func(c *agent.Config) {
		c.Interval, c.Timeout, c.MountTable, c.Observer = 10*time.Second, 2*time.Second, tab, obs
	})
	obs.mon.Store(mon)
	for _, p := range []string{ok, stuck, gone} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{ok, missing} {
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := len(obs.get(p)); n != 1 {
			t.Fatalf("%d records for the first check of %s", n, p)
		}
	}
	if out := obs.get(ok)[0]; !out.Success() || out.Err != nil || out.TimedOut {
		t.Errorf("healthy check: %+v", out)
	}
	// The record holds every operation, with its start, in order, within
	// the check.
	rec := obs.record(ok, 0)
	var ops []probes.Op
	for i, o := range rec.Ops {
		ops = append(ops, o.Op)
		if o.Start.Before(rec.Start) || o.Start.Add(o.Duration).After(rec.End) || (i > 0 && o.Start.Before(rec.Ops[i-1].Start)) || o.Err != nil {
			t.Errorf("operation %d of the healthy check: %+v in a check from %v to %v", i, o, rec.Start, rec.End)
		}
	}
	if want := []probes.Op{probes.OpOpen, probes.OpWrite, probes.OpRead, probes.OpDelete}; !slices.Equal(ops, want) {
		t.Errorf("healthy check's operations %v, want %v", ops, want)
	}
	if out := obs.get(missing)[0]; out.Success() || out.Reason != probes.ReasonNotMounted || out.Err == nil || out.State != agent.StateUnhealthy {
		t.Errorf("failed check: %+v", out)
	}

	// A check stuck past its deadline ends once, at the deadline.
	tab.close()
	nfs := func(p string) agent.Mount { return agent.Mount{Path: p, FSType: "nfs4", Source: "fs-1.efs:/"} }
	if err := mon.Register(nfs(stuck)); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	if n := tab.blocked.Load(); n != 1 {
		t.Fatalf("%d calls blocked, want the stuck check's", n)
	}
	time.Sleep(2 * time.Second)
	synctest.Wait()
	if n := len(obs.get(stuck)); n != 1 {
		t.Fatalf("%d records of the stuck check at its deadline, want 1", n)
	}
	if out := obs.get(stuck)[0]; !out.TimedOut || out.State != agent.StateHung || !errors.Is(out.Err, agent.ErrTimeout) ||
		out.FailedOp != probes.OpMountTable || out.Duration != 2*time.Second {
		t.Errorf("timed-out check: %+v", out)
	}
	// The stuck operation ends the record at the deadline, with its error.
	if rec := obs.record(stuck, 0); len(rec.Ops) != 1 || rec.Ops[0].Op != probes.OpMountTable ||
		rec.Ops[0].Duration != 2*time.Second || !errors.Is(rec.Ops[0].Err, agent.ErrTimeout) || rec.End.Sub(rec.Start) != 2*time.Second {
		t.Errorf("timed-out check's record: %+v", rec)
	}
	time.Sleep(time.Second)
	synctest.Wait()
	obs.mu.Lock()
	skipped := obs.skipped[stuck]
	obs.mu.Unlock()
	if skipped != 1 {
		t.Fatalf("%d skipped checks of the stuck mount a second after its deadline, want 1", skipped)
	}

	// A check whose mount is unregistered while it runs still reports
	// its own result, and no status is published for it.
	if err := mon.Register(nfs(gone)); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	if n := tab.blocked.Load(); n != 2 {
		t.Fatalf("%d calls blocked, want the stuck one and the second", n)
	}
	mon.Unregister(gone)
	mon.Unregister(stuck)
	tab.open()
	synctest.Wait()
	if got := obs.get(gone); len(got) != 1 || !got[0].Success() {
		t.Errorf("check of an unregistered mount: %+v", got)
	}
	if st, found := mon.Status(gone); found {
		t.Errorf("status published for an unregistered mount: %+v", st)
	}
	if n := tab.blocked.Load(); n != 0 {
		t.Errorf("%d calls still blocked once the table answers", n)
	}
	if n := len(obs.get(stuck)); n != 1 {
		t.Errorf("CheckDone called %d times for the stuck check", n)
	}
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

// TestMaxMounts: registration stops at Config.MaxMounts with
// ErrTooManyMounts, updating a registered path still works, and an
// unregistered path makes room again.
func TestMaxMounts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testMaxMounts)
}

func testMaxMounts(t *testing.T) {
	mon := newBubbled(t, func(c *agent.Config) { c.MaxMounts = 3 })
	base := t.TempDir()
	p := func(i int) string { return filepath.Join(base, fmt.Sprintf("vol%d", i)) }
	for i := range 3 {
		if err := mon.Register(agent.Mount{Path: p(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := mon.Register(agent.Mount{Path: p(3)}); !errors.Is(err, agent.ErrTooManyMounts) {
		t.Fatalf("fourth mount: %v, want ErrTooManyMounts", err)
	}
	if err := mon.Register(agent.Mount{Path: p(0), Source: "fs-1:/"}); err != nil {
		t.Fatalf("updating a registered mount at the limit: %v", err)
	}
	if n := mon.Summary().Mounts; n != 3 {
		t.Fatalf("%d mounts registered, want 3", n)
	}
	mon.Unregister(p(1))
	if err := mon.Register(agent.Mount{Path: p(3)}); err != nil {
		t.Fatalf("after an unregister: %v", err)
	}
}
