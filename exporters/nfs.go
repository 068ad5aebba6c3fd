package exporters

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// nfsInstruments registers the callback of the NFS client statistics of
// registered mounts (the efs_nfs_* rows of the names table): per-operation
// RPC counts, retransmissions, major timeouts, and cumulative round-trip
// and execution time, plus the transport backlog. It reads the snapshot
// Options.NFSStats returns, from memory; nothing when that is nil.
func (t *Telemetry) nfsInstruments(m metric.Meter, in *instrumentSet) error {
	if t.nfsStats == nil {
		return nil
	}
	req, retrans, timeouts := in.int64Observable(mNFSRequests), in.int64Observable(mNFSRetransmissions), in.int64Observable(mNFSMajorTimeouts)
	rtt, exec, backlog := in.float64Observable(mNFSRTT), in.float64Observable(mNFSExecute), in.int64Observable(mNFSBacklog)
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		stats := t.nfsStats()
		src := t.source()
		if len(stats) == 0 || src == nil {
			return nil
		}
		for _, st := range src.Statuses() {
			s, ok := stats[st.Path]
			if !ok {
				continue
			}
			path := MountPathKey.String(pathValue(st.Path))
			o.ObserveInt64(backlog, int64(s.Backlog), metric.WithAttributes(path))
			for _, op := range s.Ops {
				attrs := metric.WithAttributeSet(attribute.NewSet(path, attribute.String("operation", op.Name)))
				o.ObserveInt64(req, int64(op.Requests), attrs)
				o.ObserveInt64(retrans, int64(op.Retransmissions()), attrs)
				o.ObserveInt64(timeouts, int64(op.MajorTimeouts), attrs)
				o.ObserveFloat64(rtt, op.RTT.Seconds(), attrs)
				o.ObserveFloat64(exec, op.Execute.Seconds(), attrs)
			}
		}
		return nil
	}, in.observables(nfs)...)
	if err != nil {
		return fmt.Errorf("register NFS metric callback: %w", err)
	}
	return nil
}
