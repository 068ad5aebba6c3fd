package agent

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// These tests drive the state machine of a mount through its pure
// transition functions: no monitor, no goroutines, no clock, no sleeps.

var (
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pol = policy{interval: 30 * time.Second, timeout: 5 * time.Second, minRetry: time.Second}
)

func okResult(d time.Duration) probes.Result {
	return probes.Result{Mode: probes.ModeReadWrite, Ops: []probes.OpResult{
		{Op: probes.OpWrite, Duration: d / 2}, {Op: probes.OpRead, Duration: d / 2}}}
}

func failResult(op probes.Op, d time.Duration, err error) probes.Result {
	err = &probes.OpError{Op: op, Err: err}
	return probes.Result{Mode: probes.ModeReadWrite, Ops: []probes.OpResult{{Op: op, Duration: d, Err: err}},
		Err: err, FailedOp: op}
}

func TestCheckedTransition(t *testing.T) {
	t.Parallel()
	pending := MountStatus{Mount: &Mount{Path: "/mnt/a"}, State: StatePending}
	unhealthy := MountStatus{Mount: &Mount{Path: "/mnt/a"}, State: StateUnhealthy, ErrorCount: 5, ConsecutiveErrors: 3,
		Checks: 7, LastError: "x", Reason: probes.ReasonIOError, FailedOp: probes.OpWrite}
	hung := MountStatus{Mount: &Mount{Path: "/mnt/a"}, State: StateHung, ErrorCount: 2, ConsecutiveErrors: 2,
		Checks: 3, Reason: probes.ReasonHung, FailedOp: probes.OpRead, HungSince: t0.Add(-time.Minute)}
	jittered := pol
	jittered.jitter = 0.1
	eio := failResult(probes.OpWrite, time.Millisecond, syscall.EIO)
	cases := []struct {
		name      string
		old       MountStatus
		res       probes.Result
		p         policy
		r         float64
		elapsed   time.Duration // from start to now
		want      State
		wantDelay time.Duration
		check     func(t *testing.T, next MountStatus, out Outcome)
	}{
		{name: "first success: healthy, next at a random part of the interval",
			old: pending, res: okResult(2 * time.Millisecond), p: jittered, r: 0.5, elapsed: 2 * time.Millisecond,
			want: StateHealthy, wantDelay: time.Second + 29*time.Second/2,
			check: func(t *testing.T, next MountStatus, out Outcome) {
				if next.Checks != 1 || next.ResponseTime != 2*time.Millisecond || next.Ops.Len() != 2 || !slices.Equal(next.History.Durations(), []time.Duration{2 * time.Millisecond}) {
					t.Errorf("status %+v", next)
				}
				if !out.Success() || out.Err != nil || out.Duration != 2*time.Millisecond || out.Mode != probes.ModeReadWrite {
					t.Errorf("outcome %+v", out)
				}
			}},
		{name: "first success without jitter: the interval",
			old: pending, res: okResult(time.Millisecond), p: pol, elapsed: time.Millisecond,
			want: StateHealthy, wantDelay: 30 * time.Second},
		{name: "success with jitter: interval ± 10%",
			old: MountStatus{State: StateHealthy, Checks: 1}, res: okResult(time.Millisecond), p: jittered, r: 1, elapsed: time.Millisecond,
			want: StateHealthy, wantDelay: 33 * time.Second},
		{name: "recovery: consecutive errors reset, total kept",
			old: unhealthy, res: okResult(time.Millisecond), p: pol, elapsed: time.Millisecond,
			want: StateHealthy, wantDelay: 30 * time.Second,
			check: func(t *testing.T, next MountStatus, _ Outcome) {
				if next.ErrorCount != 5 || next.ConsecutiveErrors != 0 || next.LastError != "" || next.Reason != "" || next.FailedOp != "" || next.Checks != 8 {
					t.Errorf("status %+v", next)
				}
			}},
		{name: "failure: counted, classified, first backoff",
			old: pending, res: eio, p: pol, elapsed: time.Millisecond,
			want: StateUnhealthy, wantDelay: time.Second,
			check: func(t *testing.T, next MountStatus, out Outcome) {
				if next.ErrorCount != 1 || next.ConsecutiveErrors != 1 || next.Reason != probes.ReasonIOError || next.FailedOp != probes.OpWrite || next.LastError == "" {
					t.Errorf("status %+v", next)
				}
				if out.Success() || !errors.Is(out.Err, syscall.EIO) || out.Reason != probes.ReasonIOError || out.FailedOp != probes.OpWrite || out.TimedOut {
					t.Errorf("outcome %+v", out)
				}
			}},
		{name: "fourth failure in a row: 8s backoff",
			old: unhealthy, res: eio, p: pol, elapsed: time.Millisecond,
			want: StateUnhealthy, wantDelay: 8 * time.Second},
		{name: "interval below MinRetry: the next start is MinRetry after this one",
			old: MountStatus{State: StateHealthy}, res: okResult(time.Millisecond),
			p: policy{interval: 500 * time.Millisecond, timeout: 100 * time.Millisecond, minRetry: time.Second}, elapsed: 100 * time.Millisecond,
			want: StateHealthy, wantDelay: 900 * time.Millisecond},
		{name: "a slow failing check: the backoff counts from its end",
			old: pending, res: eio, p: pol, elapsed: 3 * time.Second,
			want: StateUnhealthy, wantDelay: time.Second},
		{name: "a hung mount's check returned in time: the hang is over",
			old: hung, res: okResult(time.Millisecond), p: pol, elapsed: time.Millisecond,
			want: StateHealthy, wantDelay: 30 * time.Second,
			check: func(t *testing.T, next MountStatus, _ Outcome) {
				if !next.HungSince.IsZero() {
					t.Errorf("HungSince %v after a completed check", next.HungSince)
				}
			}},
		{name: "read-only mode is published",
			old: pending, res: probes.Result{Mode: probes.ModeReadOnly}, p: pol, elapsed: time.Millisecond,
			want: StateHealthy, wantDelay: 30 * time.Second,
			check: func(t *testing.T, next MountStatus, out Outcome) {
				if next.Mode != probes.ModeReadOnly || out.Mode != probes.ModeReadOnly {
					t.Errorf("mode %s, outcome mode %s", next.Mode, out.Mode)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := tc.old
			next, out, delay := checked(&old, tc.res, t0, t0.Add(tc.elapsed), tc.p, tc.r)
			if next.State != tc.want || out.State != tc.want || delay != tc.wantDelay {
				t.Fatalf("state %s (outcome %s), delay %v; want %s, %v", next.State, out.State, delay, tc.want, tc.wantDelay)
			}
			if !next.LastCheck.Equal(t0.Add(tc.elapsed)) {
				t.Errorf("LastCheck %v", next.LastCheck)
			}
			if old.History != tc.old.History || old.Checks != tc.old.Checks {
				t.Error("the old status was modified")
			}
			if tc.check != nil {
				tc.check(t, next, out)
			}
		})
	}
}

func TestTimedOutTransition(t *testing.T) {
	t.Parallel()
	for _, old := range []MountStatus{
		{State: StatePending},
		{State: StateHealthy, Checks: 4, Ops: OpTimingsOf(OpTiming{probes.OpWrite, time.Millisecond}), History: HistoryOf(time.Millisecond)},
		{State: StateUnhealthy, Checks: 4, ErrorCount: 2, ConsecutiveErrors: 2},
	} {
		t.Run(string(old.State), func(t *testing.T) {
			start := t0
			now := t0.Add(pol.timeout)
			next, out, delay := timedOut(&old, probes.OpRead, start, now, pol)
			if next.State != StateHung || !next.HungSince.Equal(start) || !next.LastCheck.Equal(now) || next.ResponseTime != pol.timeout ||
				next.Ops.Len() != 0 || next.Checks != old.Checks+1 || next.ErrorCount != old.ErrorCount+1 ||
				next.ConsecutiveErrors != old.ConsecutiveErrors+1 || next.Reason != probes.ReasonTimeout || next.FailedOp != probes.OpRead ||
				next.LastError != "timeout after 5s in read: check deadline exceeded" || next.History.Durations()[next.History.Len()-1] != pol.timeout {
				t.Fatalf("status %+v", next)
			}
			if !out.TimedOut || out.State != StateHung || !errors.Is(out.Err, ErrTimeout) || out.Reason != probes.ReasonTimeout ||
				out.FailedOp != probes.OpRead || out.Duration != pol.timeout {
				t.Fatalf("outcome %+v", out)
			}
			if want := pol.backoff(next.ConsecutiveErrors); delay != want {
				t.Fatalf("delay %v, want %v", delay, want)
			}
		})
	}
}

// TestHungLifecycle walks a mount through a hang: the deadline, skipped
// checks while the call is stuck (each a failure with a growing backoff,
// the published check time untouched), the stuck call returning, and the
// recovery.
func TestHungLifecycle(t *testing.T) {
	t.Parallel()
	st := MountStatus{Mount: &Mount{Path: "/mnt/a"}, State: StatePending}
	st, _, _ = checked(&st, okResult(time.Millisecond), t0, t0.Add(time.Millisecond), pol, 0)
	start := t0.Add(30 * time.Second)
	now := start.Add(pol.timeout)
	st, _, delay := timedOut(&st, probes.OpWrite, start, now, pol)
	if delay != time.Second {
		t.Fatalf("first re-check after a deadline in %v, want MinRetry", delay)
	}
	lastCheck := st.LastCheck
	for i, want := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		now = now.Add(delay)
		st, delay = skipped(&st, now, pol)
		if delay != want {
			t.Fatalf("skip %d: next in %v, want %v", i+1, delay, want)
		}
		if st.State != StateHung || st.Reason != probes.ReasonHung || st.ConsecutiveErrors != uint64(i+2) || st.Checks != 2 || !st.LastCheck.Equal(lastCheck) {
			t.Fatalf("skip %d: %+v", i+1, st)
		}
		wantErr := fmt.Sprintf("timeout after 5s in write; still blocked after %v", now.Sub(start))
		if st.LastError != wantErr {
			t.Fatalf("skip %d: LastError %q, want %q", i+1, st.LastError, wantErr)
		}
	}
	now = now.Add(1500 * time.Millisecond)
	st, delay = returned(&st, start, now, pol)
	if delay != 0 || st.State != StateUnhealthy || !st.HungSince.IsZero() || st.Reason != probes.ReasonTimeout || st.ConsecutiveErrors != 7 ||
		st.LastError != fmt.Sprintf("timeout after 5s in write; the call returned after %v", now.Sub(start)) {
		t.Fatalf("returned: delay %v, %+v", delay, st)
	}
	st, out, _ := checked(&st, okResult(time.Millisecond), now, now.Add(time.Millisecond), pol, 0)
	if st.State != StateHealthy || st.ConsecutiveErrors != 0 || st.ErrorCount != 7 || st.Checks != 3 || !out.Success() {
		t.Fatalf("recovered: %+v", st)
	}
}

func TestBackoffAndHealthyDelay(t *testing.T) {
	t.Parallel()
	p := policy{interval: 10 * time.Second, minRetry: time.Second, jitter: 0.2}
	for n, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		4: 8 * time.Second, 5: 10 * time.Second, 100: 10 * time.Second} {
		if got := p.backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
	for _, tc := range []struct {
		first bool
		r     float64
		want  time.Duration
	}{
		{true, 0, time.Second}, {true, 0.5, 5500 * time.Millisecond},
		{false, 0, 8 * time.Second}, {false, 0.5, 10 * time.Second}, {false, 0.75, 11 * time.Second},
	} {
		if got := p.healthyDelay(tc.first, tc.r); got != tc.want {
			t.Errorf("healthyDelay(first=%v, r=%v) = %v, want %v", tc.first, tc.r, got, tc.want)
		}
	}
	// MinRetry above the interval: the first delay is the interval.
	if got := (policy{interval: time.Second, minRetry: 2 * time.Second, jitter: 0.1}).healthyDelay(true, 0.3); got != time.Second {
		t.Errorf("first delay with MinRetry > interval = %v", got)
	}
}

func TestCoalesceWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		interval, minRetry, want time.Duration
	}{
		{30 * time.Second, time.Second, 100 * time.Millisecond},
		{time.Second, time.Second, 50 * time.Millisecond},
		{200 * time.Millisecond, 50 * time.Millisecond, 10 * time.Millisecond},
		{30 * time.Second, 40 * time.Millisecond, 20 * time.Millisecond},
	} {
		if got := coalesceWindow(Config{Interval: tc.interval, MinRetry: tc.minRetry}); got != tc.want {
			t.Errorf("interval %v, min retry %v: window %v, want %v", tc.interval, tc.minRetry, got, tc.want)
		}
	}
}

// TestTunnelDownHungLifecycle: a check whose tunnel step failed and that
// then hangs is hung with reason tunnel_down, and stays tunnel_down while
// it is skipped and when the call returns; without the tunnel's error the
// reasons are timeout, hung, timeout as before.
func TestTunnelDownHungLifecycle(t *testing.T) {
	t.Parallel()
	tunnelErr := &probes.OpError{Op: probes.OpTunnel, Err: fmt.Errorf("tunnel 127.0.0.1:20049: %w", probes.ErrTunnelDown)}
	for _, tc := range []struct {
		name                       string
		tunnelErr                  error
		atDeadline, skip, returned probes.Reason
	}{
		{"tunnel up", nil, probes.ReasonTimeout, probes.ReasonHung, probes.ReasonTimeout},
		{"tunnel down", tunnelErr, probes.ReasonTunnelDown, probes.ReasonTunnelDown, probes.ReasonTunnelDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			healthy := &MountStatus{Mount: &Mount{Path: "/m"}, State: StateHealthy, Mode: probes.ModeReadWrite}
			hung, out, _ := timedOut(healthy, probes.OpWrite, t0, t0.Add(pol.timeout), pol)
			tunnelExplains(&hung, &out, tc.tunnelErr)
			if hung.State != StateHung || hung.Reason != tc.atDeadline || out.Reason != tc.atDeadline || !errors.Is(out.Err, ErrTimeout) {
				t.Fatalf("at the deadline: %+v %+v", hung, out)
			}
			if tc.tunnelErr != nil && (!errors.Is(out.Err, probes.ErrTunnelDown) || hung.LastError != out.Err.Error()) {
				t.Fatalf("the tunnel's error is not in the outcome: %+v", out)
			}
			skip, _ := skipped(&hung, t0.Add(10*time.Second), pol)
			if skip.Reason != tc.skip {
				t.Fatalf("skipped: %+v", skip)
			}
			back, _ := returned(&skip, t0, t0.Add(20*time.Second), pol)
			if back.Reason != tc.returned || back.State != StateUnhealthy {
				t.Fatalf("returned: %+v", back)
			}
		})
	}
}

// TestModeKept: a check that fails before it can tell its mode (preflight,
// open) keeps the mount's mode, none for a mount no check has told it
// yet; one that fails later, or succeeds, sets it.
func TestModeKept(t *testing.T) {
	t.Parallel()
	denied := &MountStatus{Mount: &Mount{Path: "/m"}, State: StateHealthy, Mode: probes.ModeWriteDenied}
	for _, tc := range []struct {
		name string
		res  probes.Result
		want probes.Mode
	}{
		{"open fails", failResult(probes.OpOpen, time.Millisecond, syscall.ENOENT), probes.ModeWriteDenied},
		{"mount table fails", failResult(probes.OpMountTable, 0, probes.ErrNotMounted), probes.ModeWriteDenied},
		{"write fails", failResult(probes.OpWrite, time.Millisecond, syscall.EIO), probes.ModeReadWrite},
		{"read-write check works", okResult(time.Millisecond), probes.ModeReadWrite},
	} {
		next, _, _ := checked(denied, tc.res, t0, t0.Add(time.Millisecond), pol, 0)
		if next.Mode != tc.want {
			t.Errorf("%s: mode %s, want %s", tc.name, next.Mode, tc.want)
		}
	}
	pending := &MountStatus{Mount: &Mount{Path: "/m"}, State: StatePending}
	for _, op := range []probes.Op{probes.OpMountTable, probes.OpOpen} {
		next, _, _ := checked(pending, failResult(op, 0, syscall.ENOENT), t0, t0, pol, 0)
		if next.Mode != "" {
			t.Errorf("a first check that fails in %s: mode %q, want none (not known)", op, next.Mode)
		}
		if next, _, _ = checked(&next, okResult(time.Millisecond), t0, t0, pol, 0); next.Mode != probes.ModeReadWrite {
			t.Errorf("then a check that works: mode %q, want read-write", next.Mode)
		}
	}
}
