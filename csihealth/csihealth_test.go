package csihealth_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

func TestCondition(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 30, 0, time.UTC)
	for _, tc := range []struct {
		st       agent.MountStatus
		abnormal bool
		want     string
	}{
		{agent.MountStatus{State: agent.StatePending}, false, "pending"},
		{agent.MountStatus{State: agent.StateHealthy, Mode: probes.ModeReadWrite, ResponseTime: 3 * time.Millisecond, LastCheck: now.Add(-5 * time.Second)}, false, "healthy (read-write): last check took 3ms, 5s ago"},
		{agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonStaleFileHandle, ConsecutiveErrors: 2, LastError: "write: create: stale NFS file handle"}, true, "unhealthy (stale_file_handle) after 2 consecutive failed checks: write: create: stale NFS file handle"},
		{agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonIOError, ConsecutiveErrors: 1, LastError: "write: input/output error"}, true, "unhealthy (io_error) after 1 consecutive failed check: write"},
		{agent.MountStatus{State: agent.StateHung, FailedOp: probes.OpWrite, HungSince: now.Add(-12 * time.Second), LastError: "timeout after 5s in write"}, true, "hung: a check has been stuck in write for 12s"},
	} {
		c := csihealth.Condition(&tc.st, now)
		if c.Abnormal != tc.abnormal || !strings.Contains(c.Message, tc.want) {
			t.Errorf("%s: %+v, want abnormal=%v containing %q", tc.st.State, c, tc.abnormal, tc.want)
		}
	}
}

// TestUnpublishWhileHung: unpublishing a volume whose check is stuck in
// the kernel returns at once, and the stuck check does not resurrect it.
func TestUnpublishWhileHung(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	cfg := agent.DefaultConfig()
	cfg.Hostname = "n"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Interval, cfg.Timeout, cfg.MinRetry = 200*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	mon, _ := agent.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = mon.Run(ctx) }()
	h := csihealth.New(mon)
	fs.Set(faultfs.OpWrite, faultfs.Fault{Hang: true})
	if err := h.Publish(agent.Mount{Path: fs.Mountpoint()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, ok := h.VolumeCondition(fs.Mountpoint()); ok && c.Abnormal && strings.HasPrefix(c.Message, "hung") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never reported hung")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if !h.Unpublish(fs.Mountpoint()) {
		t.Fatal("not monitored")
	}
	if d := time.Since(start); d > testutil.Promptly {
		t.Fatalf("Unpublish took %v while the check is stuck", d)
	}
	fs.Clear()
	time.Sleep(300 * time.Millisecond)
	if _, ok := h.VolumeCondition(fs.Mountpoint()); ok {
		t.Fatal("the stuck check's return resurrected the volume")
	}
}
