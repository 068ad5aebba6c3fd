package agent

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/tmpfs"
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
	dir := tmpfs.Dir(b)
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

// start does what dispatch and launch do for one mount, synchronously.
func (mon *Monitor) benchStart(m *mount) (*check, context.Context) {
	mon.mu.Lock()
	now := mon.clock.Now()
	if m.idx >= 0 {
		heap.Remove(&mon.due, m.idx)
	}
	c := &check{m: m, spec: m.spec, clock: mon.clock, start: now, op: probes.OpOpen, opStart: now, rec: nopRecorder{}}
	m.cur = c
	mon.inFlight++
	mon.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.timer = mon.clock.AfterFunc(mon.cfg.Timeout, func() { mon.expire(c) })
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
