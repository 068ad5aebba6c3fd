package agent_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// newReal returns a running monitor on the wall clock with short timings,
// for tests against the FUSE fault filesystem.
func newReal(t *testing.T, interval, timeout time.Duration) *agent.Monitor {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Logger = quietLogger()
	cfg.Interval = interval
	cfg.Timeout = timeout
	cfg.MinRetry = 50 * time.Millisecond
	cfg.Jitter = 0
	mon := startMonitor(t, cfg)
	return mon
}

// threads is the number of OS threads of this process.
func threads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			var n int
			for _, c := range strings.TrimSpace(v) {
				n = n*10 + int(c-'0')
			}
			return n
		}
	}
	return -1
}

// TestHungMount is the behaviour the agent exists for: a mount whose
// syscalls block forever is reported hung by interval + timeout, the
// endpoints stay fast, exactly one goroutine is stuck however many
// intervals pass, other mounts keep being checked, and when the mount is
// released it recovers at once and leaves no probe file behind.
func TestHungMount(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	const interval, timeout = 200 * time.Millisecond, 100 * time.Millisecond
	mon := newReal(t, interval, timeout)
	other := t.TempDir()
	for _, p := range []string{fs.Mountpoint(), other} {
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "both healthy", func() bool { return mon.Summary().Ready() })

	fs.Set(faultfs.OpWrite, faultfs.Fault{Hang: true})
	hungAt := time.Now()
	testutil.WaitFor(t, "hung in write", func() bool {
		st := status(t, mon, fs.Mountpoint())
		return st.State == agent.StateHung && st.FailedOp == probes.OpWrite
	})
	if d := time.Since(hungAt); d > interval+timeout+testutil.Promptly {
		t.Errorf("hang detected after %v, want about interval + timeout", d)
	}
	st := status(t, mon, fs.Mountpoint())
	if !strings.Contains(st.LastError, "timeout after 100ms in write") || st.Reason != probes.ReasonTimeout || st.HungSince.IsZero() {
		t.Fatalf("hung status %+v", st)
	}

	// Endpoints answer at once, and say what is wrong.
	srv := httptest.NewServer(httpapi.NewRouter(mon, httpapi.Options{}))
	defer srv.Close()
	for path, code := range map[string]int{"/healthz": 503, "/healthz/ready": 503, "/healthz/live": 200, "/healthz/mounts": 200, "/": 200} {
		start := time.Now()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, code)
		}
		if d := time.Since(start); d > testutil.Promptly {
			t.Errorf("GET %s took %v while a mount is hung", path, d)
		}
	}

	// Many intervals later: still one stuck write, no pile-up of checks,
	// threads flat, and the healthy mount kept being checked on time.
	// On a loaded machine the deadline can pass before the stuck write
	// has reached the filesystem: it is counted once it is held there.
	if err := fs.WaitBlocked(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	writes := fs.Calls(faultfs.OpWrite)
	thr := threads()
	g := runtime.NumGoroutine()
	otherChecks := status(t, mon, other).Checks
	hungErrors := status(t, mon, fs.Mountpoint()).ConsecutiveErrors
	testutil.WaitFor(t, "many intervals: the healthy mount checked 12 more times, the hung one skipped 3 times", func() bool {
		return status(t, mon, other).Checks >= otherChecks+12 && status(t, mon, fs.Mountpoint()).ConsecutiveErrors >= hungErrors+3
	})
	if n := fs.Calls(faultfs.OpWrite); n != writes {
		t.Errorf("%d more writes reached the hung mount: a second check started", n-writes)
	}
	if fs.Blocked() != 1 {
		t.Errorf("%d requests blocked in the filesystem, want 1", fs.Blocked())
	}
	if d := threads() - thr; d > 2 {
		t.Errorf("threads grew by %d while hung", d)
	}
	if d := runtime.NumGoroutine() - g; d > 2 {
		t.Errorf("goroutines grew by %d while hung", d)
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	}
	// Its checks kept running (above); one of them may have met the
	// 100 ms timeout on a loaded machine, so its health is waited for.
	testutil.WaitFor(t, "the healthy mount healthy while the other is hung", func() bool {
		return status(t, mon, other).State == agent.StateHealthy
	})
	st = status(t, mon, fs.Mountpoint())
	if st.State != agent.StateHung || st.Reason != probes.ReasonHung || st.ConsecutiveErrors < 3 {
		t.Errorf("after many intervals: %+v", st)
	}
	if !mon.Live() {
		t.Error("not live while a mount is hung")
	}

	// Release: the stuck write returns, the mount is re-checked at once,
	// recovers, and no probe file is left behind.
	fs.Clear()
	released := time.Now()
	testutil.WaitFor(t, "recovered", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
	if d := time.Since(released); d > testutil.Promptly {
		t.Errorf("recovery took %v", d)
	}
	testutil.WaitFor(t, "ready", func() bool { return mon.Summary().Ready() })
	assertNoProbeFiles(t, fs.Mountpoint())
}

// TestFaults is the fault matrix: each errno on each operation it can hit,
// slowness below and above the timeout, hangs in each operation, and a
// flapping mount. For each: the state, reason, failing operation and
// counters while the fault holds, recovery after it ends, and no probe
// file left behind.
//
// On a loaded machine a check may also time out now and then: each case
// waits for the failure it causes rather than for the first failure, and
// clears its fault even when it fails.
func TestFaults(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	mon := newReal(t, 300*time.Millisecond, 250*time.Millisecond)
	if err := mon.Register(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
	cases := []struct {
		name   string
		op     faultfs.Op
		fault  faultfs.Fault
		reason probes.Reason
		failOp probes.Op
	}{
		{"EIO on write", faultfs.OpWrite, faultfs.Fault{Errno: syscall.EIO}, probes.ReasonIOError, probes.OpWrite},
		{"ESTALE on create", faultfs.OpCreate, faultfs.Fault{Errno: syscall.ESTALE}, probes.ReasonStaleFileHandle, probes.OpWrite},
		{"ENOSPC on write", faultfs.OpWrite, faultfs.Fault{Errno: syscall.ENOSPC}, probes.ReasonNoSpace, probes.OpWrite},
		{"EIO on read", faultfs.OpRead, faultfs.Fault{Errno: syscall.EIO}, probes.ReasonIOError, probes.OpRead},
		{"EIO on delete", faultfs.OpUnlink, faultfs.Fault{Errno: syscall.EIO}, probes.ReasonIOError, probes.OpDelete},
		{"EIO on fsync", faultfs.OpFsync, faultfs.Fault{Errno: syscall.EIO}, probes.ReasonIOError, probes.OpWrite},
		{"ESTALE on read", faultfs.OpRead, faultfs.Fault{Errno: syscall.ESTALE}, probes.ReasonProbeFileLost, probes.OpRead},
		{"ENOENT on read", faultfs.OpRead, faultfs.Fault{Errno: syscall.ENOENT}, probes.ReasonProbeFileLost, probes.OpRead},
		{"ENOENT on delete", faultfs.OpUnlink, faultfs.Fault{Errno: syscall.ENOENT}, probes.ReasonProbeFileLost, probes.OpDelete},
		{"EACCES on delete", faultfs.OpUnlink, faultfs.Fault{Errno: syscall.EACCES}, probes.ReasonPermissionDenied, probes.OpDelete},
		{"EROFS on write after create", faultfs.OpWrite, faultfs.Fault{Errno: syscall.EROFS}, probes.ReasonReadOnly, probes.OpWrite},
		{"slow fsync above the timeout", faultfs.OpFsync, faultfs.Fault{Delay: 600 * time.Millisecond}, probes.ReasonTimeout, probes.OpWrite},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := status(t, mon, fs.Mountpoint()).ErrorCount
			fs.Set(tc.op, tc.fault)
			defer fs.Clear()
			testutil.WaitFor(t, "failure", func() bool {
				st := status(t, mon, fs.Mountpoint())
				return st.State == agent.StateUnhealthy && st.Reason == tc.reason && st.FailedOp == tc.failOp
			})
			st := status(t, mon, fs.Mountpoint())
			if st.Reason != tc.reason || st.FailedOp != tc.failOp || st.ErrorCount <= errs || st.LastError == "" {
				t.Fatalf("status %+v, want reason %s in %s", st, tc.reason, tc.failOp)
			}
			fs.Clear()
			testutil.WaitFor(t, "recovery", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
			if st := status(t, mon, fs.Mountpoint()); st.ConsecutiveErrors != 0 || st.LastError != "" {
				t.Fatalf("after recovery %+v", st)
			}
			assertNoProbeFiles(t, fs.Mountpoint())
		})
	}
	t.Run("slow under the timeout", func(t *testing.T) {
		fs.Set(faultfs.OpFsync, faultfs.Fault{Delay: 60 * time.Millisecond})
		defer fs.Clear()
		write := func(st *agent.MountStatus) time.Duration {
			for op, d := range st.Ops.All() {
				if op == probes.OpWrite {
					return d
				}
			}
			return 0
		}
		// A healthy check whose write shows the slow fsync.
		testutil.WaitFor(t, "slow healthy check", func() bool {
			st := status(t, mon, fs.Mountpoint())
			return st.State == agent.StateHealthy && write(st) >= 60*time.Millisecond
		})
		if st := status(t, mon, fs.Mountpoint()); st.ResponseTime < 60*time.Millisecond {
			t.Fatalf("slow mount: %+v", st)
		}
	})
	for _, op := range []faultfs.Op{faultfs.OpCreate, faultfs.OpRead, faultfs.OpUnlink} {
		t.Run("hang in "+string(op), func(t *testing.T) {
			fs.Set(op, faultfs.Fault{Hang: true})
			defer fs.Clear()
			want := map[faultfs.Op]probes.Op{faultfs.OpCreate: probes.OpWrite, faultfs.OpRead: probes.OpRead, faultfs.OpUnlink: probes.OpDelete}[op]
			testutil.WaitFor(t, "hung", func() bool {
				st := status(t, mon, fs.Mountpoint())
				return st.State == agent.StateHung && st.FailedOp == want
			})
			if st := status(t, mon, fs.Mountpoint()); st.FailedOp != want || !strings.Contains(st.LastError, "in "+string(want)) {
				t.Fatalf("hung in %s: %+v", op, st)
			}
			fs.Clear()
			testutil.WaitFor(t, "recovery", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
			assertNoProbeFiles(t, fs.Mountpoint())
		})
	}
	t.Run("flapping: fails every other check", func(t *testing.T) {
		var healthy, failed int
		seen := status(t, mon, fs.Mountpoint()).Checks
		for i := 0; i < 6; i++ {
			if i%2 == 0 {
				fs.Set(faultfs.OpWrite, faultfs.Fault{Errno: syscall.EIO, Times: 1})
			}
			testutil.WaitFor(t, "next check", func() bool { return status(t, mon, fs.Mountpoint()).Checks > seen })
			st := status(t, mon, fs.Mountpoint())
			seen = st.Checks
			if st.State == agent.StateHealthy {
				healthy++
			} else {
				failed++
			}
		}
		if healthy < 2 || failed < 2 {
			t.Fatalf("flapping mount: %d healthy, %d failed checks", healthy, failed)
		}
		fs.Clear()
		testutil.WaitFor(t, "recovery", func() bool { return status(t, mon, fs.Mountpoint()).State == agent.StateHealthy })
		assertNoProbeFiles(t, fs.Mountpoint())
	})
	t.Run("read-only filesystem", func(t *testing.T) {
		fs.Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EROFS})
		defer fs.Clear()
		testutil.WaitFor(t, "healthy in read-only mode", func() bool {
			st := status(t, mon, fs.Mountpoint())
			return st.Mode == probes.ModeReadOnly && st.State == agent.StateHealthy
		})
		fs.Clear()
		testutil.WaitFor(t, "read-write again", func() bool { return status(t, mon, fs.Mountpoint()).Mode == probes.ModeReadWrite })
	})
}
