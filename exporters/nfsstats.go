package exporters

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/procfs"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// NFSOperations are the NFS operations whose RPC statistics are exported;
// the rest of the ~60 per-op lines would multiply the series for little
// diagnostic value.
var NFSOperations = []string{"READ", "WRITE", "COMMIT", "OPEN", "CLOSE", "GETATTR", "SETATTR", "LOOKUP", "ACCESS", "CREATE", "REMOVE", "READDIR"}

// MountStatsFunc reads the kernel's NFS client statistics, e.g.
// procfs.NewFS("/proc") then fs.Self() and MountStats().
type MountStatsFunc func() ([]*procfs.Mount, error)

// SelfMountStats reads /proc/self/mountstats.
func SelfMountStats() ([]*procfs.Mount, error) {
	fs, err := procfs.NewFS("/proc")
	if err != nil {
		return nil, err
	}
	p, err := fs.Self()
	if err != nil {
		return nil, err
	}
	return p.MountStats()
}

// RefreshNFSStats reads the NFS client statistics into the cache the
// metric callback serves from. Scrapes never read /proc themselves.
func (t *Telemetry) RefreshNFSStats() error {
	if t.mountStats == nil {
		return nil
	}
	mounts, err := t.mountStats()
	if err != nil {
		return fmt.Errorf("read NFS mount statistics: %w", err)
	}
	m := make(map[string]*procfs.MountStatsNFS, len(mounts))
	for _, mt := range mounts {
		if s, ok := mt.Stats.(*procfs.MountStatsNFS); ok {
			m[mt.Mount] = s
		}
	}
	t.nfs.Store(&m)
	return nil
}

// RunNFSStats refreshes the NFS statistics every interval until ctx ends.
func (t *Telemetry) RunNFSStats(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := t.RefreshNFSStats(); err != nil {
			t.log.Debug("NFS statistics", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// nfsInstruments registers the NFS client statistics of registered mounts:
// per-operation RPC counts, retransmissions, major timeouts, and
// cumulative round-trip and execution time, plus the transport backlog.
// They rise before checks start failing.
func (t *Telemetry) nfsInstruments(m metric.Meter) error {
	req, err1 := m.Int64ObservableCounter("efs.nfs.rpc.requests")
	retrans, err2 := m.Int64ObservableCounter("efs.nfs.rpc.retransmissions")
	timeouts, err3 := m.Int64ObservableCounter("efs.nfs.rpc.major_timeouts")
	rtt, err4 := m.Float64ObservableCounter("efs.nfs.rpc.rtt", metric.WithUnit("s"))
	exec, err5 := m.Float64ObservableCounter("efs.nfs.rpc.execute", metric.WithUnit("s"))
	backlog, err6 := m.Int64ObservableCounter("efs.nfs.transport.backlog")
	for _, err := range []error{err1, err2, err3, err4, err5, err6} {
		if err != nil {
			return fmt.Errorf("create NFS instruments: %w", err)
		}
	}
	wanted := map[string]bool{}
	for _, op := range NFSOperations {
		wanted[op] = true
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		stats := t.nfs.Load()
		src := t.source()
		if stats == nil || len(*stats) == 0 || src == nil {
			return nil
		}
		for _, st := range src.Statuses() {
			s, ok := (*stats)[st.Path]
			if !ok {
				continue
			}
			path := MountPathKey.String(pathValue(st.Path))
			var bl uint64
			for _, tr := range s.Transport {
				bl += tr.CumulativeBacklog
			}
			o.ObserveInt64(backlog, int64(bl), metric.WithAttributes(path))
			for _, op := range s.Operations {
				if !wanted[op.Operation] {
					continue
				}
				attrs := metric.WithAttributeSet(attribute.NewSet(path, attribute.String("operation", op.Operation)))
				o.ObserveInt64(req, int64(op.Requests), attrs)
				if op.Transmissions >= op.Requests {
					o.ObserveInt64(retrans, int64(op.Transmissions-op.Requests), attrs)
				}
				o.ObserveInt64(timeouts, int64(op.MajorTimeouts), attrs)
				o.ObserveFloat64(rtt, float64(op.CumulativeTotalResponseMilliseconds)/1000, attrs)
				o.ObserveFloat64(exec, float64(op.CumulativeTotalRequestMilliseconds)/1000, attrs)
			}
		}
		return nil
	}, req, retrans, timeouts, rtt, exec, backlog)
	return err
}
