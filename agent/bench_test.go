package agent

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Benchmarks of the monitor's hot paths, for benchstat:
//
//	go test -run '^$' -bench . -count 10 ./agent > new.txt
//
// The telemetry side of a check is benchmarked in exporters, the
// endpoints in httpapi; make bench measures the whole agent.

// benchMonitor registers n directories under a temporary directory.
func benchMonitor(b *testing.B, n int) (*Monitor, []*mount) {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Hostname = "bench"
	cfg.Logger = slog.New(slog.DiscardHandler)
	mon, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	dir := testutil.TmpfsDir(b)
	var ms []*mount
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("m%05d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := mon.Register(Mount{Path: p}); err != nil {
			b.Fatal(err)
		}
		ms = append(ms, mon.mounts[p])
	}
	return mon, ms
}

// benchStart does what dispatch and launch do for one mount, synchronously.
func (mon *Monitor) benchStart(m *mount) (*check, context.Context) {
	mon.mu.Lock()
	now := mon.clock.Now()
	mon.due.remove(m)
	c := newCheck(m, m.spec, now, mon.cfg.Timeout)
	heap.Push(&mon.deadlines, c)
	m.cur = c
	mon.inFlight++
	mon.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	return c, ctx
}

// BenchmarkCheck is one check of a local directory through the monitor:
// scheduling bookkeeping, deadline timer, the probe's I/O, and publishing
// the new status. Compare with probes.BenchmarkCheck for the I/O alone.
func BenchmarkCheck(b *testing.B) {
	mon, ms := benchMonitor(b, 1)
	m := ms[0]
	b.ReportAllocs()
	for b.Loop() {
		c, ctx := mon.benchStart(m)
		mon.runCheck(ctx, c)
	}
}

// BenchmarkPublish is the status publication at the end of a check with
// 1,000 mounts registered: new status, due-heap update, summary.
func BenchmarkPublish(b *testing.B) {
	mon, ms := benchMonitor(b, 1000)
	res := probes.Result{Mode: probes.ModeReadWrite, Ops: []probes.OpResult{
		{Op: probes.OpOpen, Duration: 10 * time.Microsecond},
		{Op: probes.OpWrite, Duration: 200 * time.Microsecond},
		{Op: probes.OpRead, Duration: 100 * time.Microsecond},
		{Op: probes.OpDelete, Duration: 50 * time.Microsecond},
	}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m := ms[i%len(ms)]
		i++
		c, _ := mon.benchStart(m)
		mon.complete(c, res)
		c.cancel()
	}
}

// countingObserver counts ended checks and signals when target is reached.
type countingObserver struct {
	n      atomic.Int64
	target atomic.Int64
	hit    chan struct{}
}

func (o *countingObserver) CheckSkipped(*Mount, time.Time) {}
func (o *countingObserver) CheckDone(*CheckRecord) {
	if o.n.Add(1) == o.target.Load() {
		o.hit <- struct{}{}
	}
}

// cpuTime is the CPU (user + system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSchedulerCPU runs the real scheduler on the wall clock: 200
// mounts on a tmpfs, checked every second with the default jitter, and
// reports the process CPU (user + system, from getrusage) per check as
// cpu-ns/check. One op is one check, so run it with a fixed count:
//
//	go test -run '^$' -bench SchedulerCPU -benchtime 2000x -count 6 ./agent
//
// It measures the scheduler, the hand-offs and the probe's I/O, without
// telemetry (a counting observer); ns/op is wall time and means little.
func BenchmarkSchedulerCPU(b *testing.B) {
	const mounts = 200
	obs := &countingObserver{hit: make(chan struct{}, 1)}
	cfg := DefaultConfig()
	cfg.Hostname = "bench"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Interval, cfg.Timeout = time.Second, 500*time.Millisecond
	cfg.Observer = obs
	mon, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	dir := testutil.TmpfsDir(b)
	for i := 0; i < mounts; i++ {
		p := filepath.Join(dir, fmt.Sprintf("m%05d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := mon.Register(Mount{Path: p}); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mon.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Two rounds to spread the mounts over the interval and warm up.
	obs.target.Store(2 * mounts)
	<-obs.hit
	b.ResetTimer()
	cpu0 := cpuTime(b)
	obs.target.Store(obs.n.Load() + int64(b.N))
	<-obs.hit
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/check")
}
