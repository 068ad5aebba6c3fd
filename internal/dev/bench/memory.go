//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// registerDirs makes n directories under dir and registers them as NFS
// mounts on a monitor checking every interval.
func registerDirs(dir string, n int, interval, timeout time.Duration, tel *exporters.Telemetry) *agent.Monitor {
	mon := newMonitor(interval, timeout, tel, 64)
	for i := 0; i < n; i++ {
		d := filepath.Join(dir, fmt.Sprintf("v%05d", i))
		_ = os.Mkdir(d, 0o755)
		_ = mon.Register(agent.Mount{Path: d, FSType: "nfs4", Source: "fs-0123456789abcdef.efs.us-east-1.amazonaws.com:/"})
	}
	return mon
}

// withMounts registers n tmpfs directories, runs the checks until each has
// completed one, and returns the monitor and the function that stops it.
func withMounts(dir string, n int, tel *exporters.Telemetry) (*agent.Monitor, func()) {
	mon := registerDirs(dir, n, 30*time.Second, 5*time.Second, tel)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = mon.Run(ctx) }()
	for mon.Summary().Pending > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	return mon, cancel
}

// memory: live heap per registered mount after checks and scrapes.
func memory(r *report) {
	r.add("## 2. Memory per mount (target: ≤ 1 KiB per mount in the steady state, linear)")
	r.add("")
	r.add("| mounts | checks per mount | heap before | heap after checks + scrapes | per mount |")
	r.add("|---|---|---|---|---|")
	for _, row := range []struct{ n, checks int }{{1000, 1}, {10000, 1}, {1000, 12}} {
		dir, done := tmpfsDir()
		base := heapAlloc()
		tel := newTelemetry()
		var mon *agent.Monitor
		stop := func() {}
		if row.checks == 1 {
			mon, stop = withMounts(dir, row.n, tel)
		} else {
			mon = withChecks(dir, row.n, row.checks, tel)
		}
		h := httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler()})
		for _, p := range []string{"/metrics", "/healthz/mounts", "/"} {
			serve(h, p)
		}
		serve(httpapi.DebugChecks(tel.CheckLog()), httpapi.PathDebugChecks)
		after := heapAlloc()
		label := "1 (first check)"
		if row.checks > 1 {
			label = fmt.Sprintf("≥ %d (histories full)", row.checks)
		}
		per := float64(after-base) / float64(row.n)
		r.add("| %d | %s | %d KiB | %d KiB | %.0f B |", row.n, label, base>>10, after>>10, per)
		if row.checks > 1 {
			r.target("2. heap per mount in the steady state", fmt.Sprintf("%.0f B", per), per/1024, 1, " KiB")
		}
		stop()
		_ = tel.Shutdown(context.Background())
		runtime.KeepAlive(mon)
		done()
	}
	r.add("")
}

// withChecks registers n tmpfs directories, checks them every 100 ms until
// each has had k checks (enough to fill its /debug/checks and latency
// histories), then stops the scheduler and lets the checks in flight end,
// so that the heap holds the steady state and no check's garbage.
func withChecks(dir string, n, k int, tel *exporters.Telemetry) *agent.Monitor {
	mon := registerDirs(dir, n, 100*time.Millisecond, 50*time.Millisecond, tel)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = mon.Run(ctx) }()
	for {
		least := uint64(k)
		for _, st := range mon.Statuses() {
			least = min(least, st.Checks)
		}
		if least >= uint64(k) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	for mon.Summary().InFlight > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	return mon
}
