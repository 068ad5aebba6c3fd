package exporters

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/nfsstats"
)

// metricID names a row of metricDefs.
type metricID int

// The metrics, one row each in metricDefs.
const (
	mHealth metricID = iota
	mResponseTime
	mErrors
	mDriverHealthy
	mOpDuration
	mChecks
	mInFlight
	mHungMounts
	mHung
	mConsecutiveErrors
	mLastCheck
	mMode
	mNFSRequests
	mNFSRetransmissions
	mNFSMajorTimeouts
	mNFSRTT
	mNFSExecute
	mNFSBacklog
	mInfo
	mBuildInfo
	mSelfDelays
	mSharedProof
	numMetrics
)

// kind is the OTel instrument a row creates.
type kind uint8

const (
	float64Histogram kind = iota
	int64Counter
	int64Gauge   // observable
	float64Gauge // observable
	int64ObservableCounter
	float64ObservableCounter
)

// group is the callback that observes an observable instrument.
type group uint8

const (
	// recorded: a synchronous instrument, recorded by the Observer.
	recorded group = iota
	// mounts: observed from the source's statuses and summary (gatherer.go).
	mounts
	// nfs: observed from the NFS client statistics (gatherer.go).
	nfs
)

// metricDef is one metric: the OTel instrument (name, unit, kind), its
// Prometheus name and HELP text, its label names, its histogram buckets,
// and, for an observable metric, the one function that produces its
// series from the state in memory, for /metrics and for OTLP alike
// (observeState). This table is the one place where the exported metrics
// are decided: New creates every instrument from it, the views rename
// them, observeState produces every observable series from it, and the
// golden scrape test pins the result. A new metric is a row here (and an
// id above); a recorded one is also recorded by the Observer.
type metricDef struct {
	otel, prom, help, unit string
	kind                   kind
	// labels are the Prometheus label names of the series (the OTel
	// attribute keys), in the order Prometheus sorts them.
	labels  []string
	buckets []float64

	// The producer of an observable row: exactly one is set (a recorded
	// row has none).
	//
	// global reports the series without a mount: emit once per series,
	// with the values of labels in order.
	global func(g globals, emit func(v float64, values ...string))
	// mount reports a mount's series: ok false for none; other is the
	// value of the row's label besides mount_path, if it has one.
	mount func(st *agent.MountStatus) (v float64, other string, ok bool)
	// mountLabels reports a mount's one series whose labels are those of
	// names (a subset of labels, in order), with value 1.
	mountLabels func(st *agent.MountStatus) (names, values []string)
	// nfsMount reports a mount's series from its NFS client statistics;
	// nfsOp one series per mount and NFS operation (the row's other label).
	nfsMount func(ns *nfsstats.Mount) float64
	nfsOp    func(op *nfsstats.Op) float64
}

// group is the callback that observes the row.
func (d *metricDef) group() group {
	switch {
	case d.nfsMount != nil || d.nfsOp != nil:
		return nfs
	case d.global != nil || d.mount != nil || d.mountLabels != nil:
		return mounts
	}
	return recorded
}

// observable reports whether row d is read from state (served by
// stateGatherer) rather than recorded.
func (d *metricDef) observable() bool { return d.group() != recorded }

// globals is what the series without a mount are read from: the source's
// summary and statuses (nil before a source is set) and the build.
type globals struct {
	sum                *agent.Summary
	sts                []*agent.MountStatus
	goVersion, version string
}

// fromSummary is a global producer of one series read from the summary,
// absent while there is no source.
func fromSummary(f func(*agent.Summary) float64) func(globals, func(float64, ...string)) {
	return func(g globals, emit func(float64, ...string)) {
		if g.sum != nil {
			emit(f(g.sum))
		}
	}
}

// always is a mount producer of a series every registered mount has.
func always(f func(*agent.MountStatus) float64) func(*agent.MountStatus) (float64, string, bool) {
	return func(st *agent.MountStatus) (float64, string, bool) { return f(st), "", true }
}

// checked is a mount producer of a series absent until the mount's first
// check, so a pending mount cannot trip an "unhealthy" alert.
func checked(f func(*agent.MountStatus) float64) func(*agent.MountStatus) (float64, string, bool) {
	return func(st *agent.MountStatus) (float64, string, bool) {
		if st.State == agent.StatePending {
			return 0, "", false
		}
		return f(st), "", true
	}
}

// The label sets of the table.
var (
	lMount     = []string{string(MountPathKey)}
	lMountOp   = []string{string(MountPathKey), "operation"}
	lOperation = []string{"operation"}
	lCheck     = []string{"outcome", "reason"}
	lMode      = []string{"mode", string(MountPathKey)}
	lBuild     = []string{"goversion", "version"}
	lCause     = []string{"cause"}
	// lInfo are efs_mount_info's labels; a series carries only those
	// whose value is known (mount_path always).
	lInfo = []string{"access_point", "filesystem_id", string(MountPathKey), "pod_uid", "service", "volume"}
)

// LatencyBuckets are the operation latency histogram buckets, in seconds:
// from a fast local NFS round trip to the default check timeout and beyond.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// metricDefs are the metrics, one row each.
var metricDefs = [numMetrics]metricDef{
	// efs_mount_health_status{mount_path}: 1 when the mount's last check
	// succeeded, 0 when it failed or is stuck. Absent until the first check.
	mHealth: {otel: "efs.mount.health.status", prom: "efs_mount_health_status",
		help: "Health status of EFS mounts (1=healthy, 0=unhealthy)", kind: int64Gauge, labels: lMount,
		mount: checked(func(st *agent.MountStatus) float64 { return float64(b2i(st.Healthy())) })},
	// efs_mount_response_time_ms{mount_path}: duration of the last check
	// (the timeout for one that hit its deadline). Absent until the first check.
	mResponseTime: {otel: "efs.mount.response_time", prom: "efs_mount_response_time_ms",
		help: "Response time for mount health checks in milliseconds", unit: "ms", kind: float64Gauge, labels: lMount,
		mount: checked(func(st *agent.MountStatus) float64 { return float64(st.ResponseTime.Microseconds()) / 1000 })},
	// efs_mount_error_total{mount_path}: failed checks since registration,
	// including checks missed because the previous one was stuck.
	mErrors: {otel: "efs.mount.errors", prom: "efs_mount_error_total",
		help: "Total number of errors for mount health checks", kind: int64ObservableCounter, labels: lMount,
		mount: always(func(st *agent.MountStatus) float64 { return float64(st.ErrorCount) })},
	// efs_csi_driver_healthy: 1 when every registered mount is healthy.
	mDriverHealthy: {otel: "efs.csi_driver.healthy", prom: "efs_csi_driver_healthy",
		help: "Overall health status of the CSI driver (1=healthy, 0=unhealthy)", kind: int64Gauge,
		global: fromSummary(func(s *agent.Summary) float64 { return float64(b2i(s.Healthy())) })},
	// efs_mount_operation_duration_seconds{operation}: latency of each
	// operation of every check; exemplars carry the trace id of a check
	// that kept its spans.
	mOpDuration: {otel: "efs.mount.operation.duration", prom: "efs_mount_operation_duration_seconds",
		help: "Duration of mount check operations (write, read, delete, ...) in seconds", unit: "s", kind: float64Histogram,
		labels: lOperation, buckets: LatencyBuckets},
	// efs_mount_checks_total{outcome,reason}: checks by outcome and failure reason.
	mChecks: {otel: "efs.mount.checks", prom: "efs_mount_checks_total",
		help: "Mount checks by outcome (success, failure) and failure reason", kind: int64Counter, labels: lCheck},
	// efs_mount_checks_in_flight: checks running and not past their deadline.
	mInFlight: {otel: "efs.mount.checks.in_flight", prom: "efs_mount_checks_in_flight",
		help: "Mount checks currently running before their deadline", kind: int64Gauge,
		global: fromSummary(func(s *agent.Summary) float64 { return float64(s.InFlight) })},
	// efs_mounts_hung: mounts with a check stuck past its deadline.
	mHungMounts: {otel: "efs.mounts.hung", prom: "efs_mounts_hung",
		help: "Number of mounts with a check stuck in the filesystem past its deadline", kind: int64Gauge,
		global: fromSummary(func(s *agent.Summary) float64 { return float64(s.Hung) })},
	// efs_mounts_shared_proof: mounts whose state comes from the full
	// check of another mount of their group (HEALTH_GROUP_CHECKS), their
	// own last check a transport check; which one is in /healthz/mounts.
	// One series per node, whatever the number of mounts and groups.
	// Absent while there is no source.
	mSharedProof: {otel: "efs.mounts.shared_proof", prom: "efs_mounts_shared_proof",
		help: "Number of mounts whose state comes from another grouped mount's full check, their own check a transport check (statfs)", kind: int64Gauge,
		global: func(g globals, emit func(float64, ...string)) {
			if g.sum == nil {
				return
			}
			shared := 0
			for _, st := range g.sts {
				if st.SharedProof != nil {
					shared++
				}
			}
			emit(float64(shared))
		}},
	// efs_mount_hung{mount_path}: 1 while the mount's check is stuck.
	mHung: {otel: "efs.mount.hung", prom: "efs_mount_hung",
		help: "Whether a check of the mount is stuck in the filesystem past its deadline (1=hung)", kind: int64Gauge, labels: lMount,
		mount: checked(func(st *agent.MountStatus) float64 { return float64(b2i(st.State == agent.StateHung)) })},
	// efs_mount_consecutive_errors{mount_path}: failures since the last success.
	mConsecutiveErrors: {otel: "efs.mount.consecutive_errors", prom: "efs_mount_consecutive_errors",
		help: "Failed checks of the mount since its last successful check", kind: int64Gauge, labels: lMount,
		mount: always(func(st *agent.MountStatus) float64 { return float64(st.ConsecutiveErrors) })},
	// efs_mount_last_check_timestamp_seconds{mount_path}: Unix time of the
	// last completed (or timed-out) check.
	mLastCheck: {otel: "efs.mount.last_check.timestamp", prom: "efs_mount_last_check_timestamp_seconds",
		help: "Unix time of the mount's last completed check in seconds", unit: "s", kind: float64Gauge, labels: lMount,
		mount: checked(func(st *agent.MountStatus) float64 { return float64(st.LastCheck.UnixMilli()) / 1000 })},
	// efs_mount_check_mode{mount_path,mode}: 1, one series per checked
	// mount, labelled with the mode of its last check that could tell
	// (read-write, read-only, write-denied, read-write-root, dir-refused).
	// Absent until the first check that could tell.
	mMode: {otel: "efs.mount.check_mode", prom: "efs_mount_check_mode",
		help: "Mode of the mount's last check (read-write, read-only, write-denied: the probe file may not be created, checked read-only; read-write-root: the probe file is made in the mount root; dir-refused: the probe directory is not the agent's, checked read-only); always 1",
		kind: int64Gauge, labels: lMode,
		mount: func(st *agent.MountStatus) (float64, string, bool) {
			return 1, string(st.Mode), st.State != agent.StatePending && st.Mode != ""
		}},
	// NFS client statistics of registered NFS mounts, from
	// /proc/self/mountstats (package nfsstats), per operation (READ,
	// WRITE, GETATTR, ...), in base units. They rise before checks start
	// failing.
	mNFSRequests: {otel: "efs.nfs.rpc.requests", prom: "efs_nfs_rpc_requests_total",
		help: "NFS RPC requests sent, per mount and operation", kind: int64ObservableCounter, labels: lMountOp,
		nfsOp: func(op *nfsstats.Op) float64 { return float64(op.Requests) }},
	mNFSRetransmissions: {otel: "efs.nfs.rpc.retransmissions", prom: "efs_nfs_rpc_retransmissions_total",
		help: "NFS RPC retransmissions (transmissions beyond the first), per mount and operation", kind: int64ObservableCounter, labels: lMountOp,
		nfsOp: func(op *nfsstats.Op) float64 { return float64(op.Retransmissions()) }},
	mNFSMajorTimeouts: {otel: "efs.nfs.rpc.major_timeouts", prom: "efs_nfs_rpc_major_timeouts_total",
		help: "NFS RPC major timeouts, per mount and operation", kind: int64ObservableCounter, labels: lMountOp,
		nfsOp: func(op *nfsstats.Op) float64 { return float64(op.MajorTimeouts) }},
	mNFSRTT: {otel: "efs.nfs.rpc.rtt", prom: "efs_nfs_rpc_rtt_seconds_total",
		help: "Cumulative NFS RPC round-trip time in seconds, per mount and operation", unit: "s", kind: float64ObservableCounter, labels: lMountOp,
		nfsOp: func(op *nfsstats.Op) float64 { return op.RTT.Seconds() }},
	mNFSExecute: {otel: "efs.nfs.rpc.execute", prom: "efs_nfs_rpc_execute_seconds_total",
		help: "Cumulative NFS RPC execution time (queue and round trip) in seconds, per mount and operation", unit: "s", kind: float64ObservableCounter, labels: lMountOp,
		nfsOp: func(op *nfsstats.Op) float64 { return op.Execute.Seconds() }},
	mNFSBacklog: {otel: "efs.nfs.transport.backlog", prom: "efs_nfs_transport_backlog_total",
		help: "Cumulative NFS transport backlog queue length, sampled per request", kind: int64ObservableCounter, labels: lMount,
		nfsMount: func(ns *nfsstats.Mount) float64 { return float64(ns.Backlog) }},
	// efs_mount_info{mount_path,filesystem_id,access_point,pod_uid,service,volume}:
	// always 1, one series per registered mount, labels of unknown values
	// omitted; service is "efs" or "s3files" (Amazon S3 Files, mounted
	// through the same efs-proxy) where known. Join on mount_path to add
	// them to the series above, as kube-state-metrics' *_info series are
	// joined.
	mInfo: {otel: "efs.mount.info", prom: "efs_mount_info",
		help: "What the mount is: file system, access point, service (efs or s3files), pod UID and volume where known (always 1)",
		kind: int64Gauge, labels: lInfo,
		mountLabels: func(st *agent.MountStatus) ([]string, []string) { return infoLabels(st.Path, st.Attribution) }},
	// efs_health_agent_build_info{version,goversion}: always 1.
	mBuildInfo: {otel: "efs.health_agent.build_info", prom: "efs_health_agent_build_info",
		help: "Build information of efs-health-agent (always 1)", kind: int64Gauge, labels: lBuild,
		global: func(g globals, emit func(float64, ...string)) { emit(1, g.goVersion, g.version) }},
	// efs_health_agent_self_delays_total{cause}: checks whose deadline
	// passed through the agent's own doing, not the mount's, and that
	// were judged by their real result instead of as timeouts: cause
	// "scheduling" (the agent was not running, e.g. CPU throttling) or
	// "housekeeping" (the check waited for the agent's own listing of the
	// mount root). Both series are always present.
	mSelfDelays: {otel: "efs.health_agent.self_delays", prom: "efs_health_agent_self_delays_total",
		help: "Checks whose deadline passed because the agent itself was not scheduled (cause=scheduling) or its own housekeeping was in the way (cause=housekeeping), judged by their real result instead of as timeouts",
		kind: int64ObservableCounter, labels: lCause,
		global: func(g globals, emit func(float64, ...string)) {
			if g.sum == nil {
				return
			}
			for c := range agent.NumSelfDelayCauses {
				emit(float64(g.sum.SelfDelays[c]), c.String())
			}
		}},
}

// views renames every instrument to its Prometheus name, sets its HELP,
// and gives the latency histogram its buckets.
func views() []sdkmetric.View {
	out := make([]sdkmetric.View, 0, len(metricDefs))
	for _, n := range metricDefs {
		s := sdkmetric.Stream{Name: n.prom, Description: n.help}
		if n.buckets != nil {
			s.Aggregation = sdkmetric.AggregationExplicitBucketHistogram{Boundaries: n.buckets}
		}
		out = append(out, sdkmetric.NewView(sdkmetric.Instrument{Name: n.otel}, s))
	}
	return out
}

// instrumentSet holds the instrument of every row of metricDefs, by id.
type instrumentSet [numMetrics]any

// newInstruments creates one instrument per row of metricDefs.
func newInstruments(m metric.Meter) (*instrumentSet, error) {
	var s instrumentSet
	var errs []error
	for id, n := range metricDefs {
		unit := metric.WithUnit(n.unit)
		var err error
		switch n.kind {
		case float64Histogram:
			s[id], err = m.Float64Histogram(n.otel, unit)
		case int64Counter:
			s[id], err = m.Int64Counter(n.otel, unit)
		case int64Gauge:
			s[id], err = m.Int64ObservableGauge(n.otel, unit)
		case float64Gauge:
			s[id], err = m.Float64ObservableGauge(n.otel, unit)
		case int64ObservableCounter:
			s[id], err = m.Int64ObservableCounter(n.otel, unit)
		case float64ObservableCounter:
			s[id], err = m.Float64ObservableCounter(n.otel, unit)
		default:
			err = fmt.Errorf("unknown instrument kind %d", n.kind)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.otel, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("create instruments: %w", err)
	}
	return &s, nil
}

// observables lists the instruments the callback of g observes.
func (s *instrumentSet) observables(g group) []metric.Observable {
	var out []metric.Observable
	for id, n := range metricDefs {
		if n.group() == g {
			out = append(out, s[id].(metric.Observable))
		}
	}
	return out
}

// The typed instruments, for the code that records or observes them. A
// row whose kind does not match its use panics at New, in every test.
func (s *instrumentSet) histogram(id metricID) metric.Float64Histogram {
	return s[id].(metric.Float64Histogram)
}
func (s *instrumentSet) counter(id metricID) metric.Int64Counter { return s[id].(metric.Int64Counter) }
func (s *instrumentSet) int64Observable(id metricID) metric.Int64Observable {
	return s[id].(metric.Int64Observable)
}
func (s *instrumentSet) float64Observable(id metricID) metric.Float64Observable {
	return s[id].(metric.Float64Observable)
}
