package exporters

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// metricID names a row of metricNames.
type metricID int

// The metrics, one row each in metricNames.
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
	// mounts: observed from the source's statuses (state.go).
	mounts
	// nfs: observed from the NFS client statistics (state.go).
	nfs
)

// metricName is one metric: the OTel instrument (name, unit, kind), its
// Prometheus name and HELP text, its histogram buckets, and which
// callback observes it. This table is the one place where the exported
// metrics are decided: New creates every instrument from it and the views
// rename them; the golden scrape test pins the result.
type metricName struct {
	otel, prom, help, unit string
	kind                   kind
	group                  group
	// labels are the Prometheus label names of the series (the OTel
	// attribute keys), in the order Prometheus sorts them.
	labels  []string
	buckets []float64
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

// metricNames are the instruments (OTel style names) and the Prometheus
// names they export as.
var metricNames = [numMetrics]metricName{
	// efs_mount_health_status{mount_path}: 1 when the mount's last check
	// succeeded, 0 when it failed or is stuck. Absent until the first check.
	mHealth: {"efs.mount.health.status", "efs_mount_health_status", "Health status of EFS mounts (1=healthy, 0=unhealthy)", "", int64Gauge, mounts, lMount, nil},
	// efs_mount_response_time_ms{mount_path}: duration of the last check
	// (the timeout for one that hit its deadline). Absent until the first check.
	mResponseTime: {"efs.mount.response_time", "efs_mount_response_time_ms", "Response time for mount health checks in milliseconds", "ms", float64Gauge, mounts, lMount, nil},
	// efs_mount_error_total{mount_path}: failed checks since registration,
	// including checks missed because the previous one was stuck.
	mErrors: {"efs.mount.errors", "efs_mount_error_total", "Total number of errors for mount health checks", "", int64ObservableCounter, mounts, lMount, nil},
	// efs_csi_driver_healthy: 1 when every registered mount is healthy.
	mDriverHealthy: {"efs.csi_driver.healthy", "efs_csi_driver_healthy", "Overall health status of the CSI driver (1=healthy, 0=unhealthy)", "", int64Gauge, mounts, nil, nil},
	// efs_mount_operation_duration_seconds{operation}: latency of each
	// operation of every check; exemplars carry the trace id of a check
	// that kept its spans.
	mOpDuration: {"efs.mount.operation.duration", "efs_mount_operation_duration_seconds", "Duration of mount check operations (write, read, delete, ...) in seconds", "s", float64Histogram, recorded, lOperation, LatencyBuckets},
	// efs_mount_checks_total{outcome,reason}: checks by outcome and failure reason.
	mChecks: {"efs.mount.checks", "efs_mount_checks_total", "Mount checks by outcome (success, failure) and failure reason", "", int64Counter, recorded, lCheck, nil},
	// efs_mount_checks_in_flight: checks running and not past their deadline.
	mInFlight: {"efs.mount.checks.in_flight", "efs_mount_checks_in_flight", "Mount checks currently running before their deadline", "", int64Gauge, mounts, nil, nil},
	// efs_mounts_hung: mounts with a check stuck past its deadline.
	mHungMounts: {"efs.mounts.hung", "efs_mounts_hung", "Number of mounts with a check stuck in the filesystem past its deadline", "", int64Gauge, mounts, nil, nil},
	// efs_mounts_shared_proof: mounts whose state comes from the full
	// check of another mount of their group (HEALTH_GROUP_CHECKS), their
	// own last check a transport check; which one is in /healthz/mounts.
	// One series per node, whatever the number of mounts and groups.
	mSharedProof: {"efs.mounts.shared_proof", "efs_mounts_shared_proof", "Number of mounts whose state comes from another grouped mount's full check, their own check a transport check (statfs)", "", int64Gauge, mounts, nil, nil},
	// efs_mount_hung{mount_path}: 1 while the mount's check is stuck.
	mHung: {"efs.mount.hung", "efs_mount_hung", "Whether a check of the mount is stuck in the filesystem past its deadline (1=hung)", "", int64Gauge, mounts, lMount, nil},
	// efs_mount_consecutive_errors{mount_path}: failures since the last success.
	mConsecutiveErrors: {"efs.mount.consecutive_errors", "efs_mount_consecutive_errors", "Failed checks of the mount since its last successful check", "", int64Gauge, mounts, lMount, nil},
	// efs_mount_last_check_timestamp_seconds{mount_path}: Unix time of the
	// last completed (or timed-out) check.
	mLastCheck: {"efs.mount.last_check.timestamp", "efs_mount_last_check_timestamp_seconds", "Unix time of the mount's last completed check in seconds", "s", float64Gauge, mounts, lMount, nil},
	// efs_mount_check_mode{mount_path,mode}: 1, one series per checked
	// mount, labelled with the mode of its last check that could tell
	// (read-write, read-only, write-denied). Absent until the first check.
	mMode: {"efs.mount.check_mode", "efs_mount_check_mode", "Mode of the mount's last check (read-write, read-only, write-denied: the probe file may not be created, checked read-only); always 1", "", int64Gauge, mounts, lMode, nil},
	// NFS client statistics of registered NFS mounts, from
	// /proc/self/mountstats (package nfsstats), per operation (READ,
	// WRITE, GETATTR, ...), in base units. They rise before checks start
	// failing.
	mNFSRequests:        {"efs.nfs.rpc.requests", "efs_nfs_rpc_requests_total", "NFS RPC requests sent, per mount and operation", "", int64ObservableCounter, nfs, lMountOp, nil},
	mNFSRetransmissions: {"efs.nfs.rpc.retransmissions", "efs_nfs_rpc_retransmissions_total", "NFS RPC retransmissions (transmissions beyond the first), per mount and operation", "", int64ObservableCounter, nfs, lMountOp, nil},
	mNFSMajorTimeouts:   {"efs.nfs.rpc.major_timeouts", "efs_nfs_rpc_major_timeouts_total", "NFS RPC major timeouts, per mount and operation", "", int64ObservableCounter, nfs, lMountOp, nil},
	mNFSRTT:             {"efs.nfs.rpc.rtt", "efs_nfs_rpc_rtt_seconds_total", "Cumulative NFS RPC round-trip time in seconds, per mount and operation", "s", float64ObservableCounter, nfs, lMountOp, nil},
	mNFSExecute:         {"efs.nfs.rpc.execute", "efs_nfs_rpc_execute_seconds_total", "Cumulative NFS RPC execution time (queue and round trip) in seconds, per mount and operation", "s", float64ObservableCounter, nfs, lMountOp, nil},
	mNFSBacklog:         {"efs.nfs.transport.backlog", "efs_nfs_transport_backlog_total", "Cumulative NFS transport backlog queue length, sampled per request", "", int64ObservableCounter, nfs, lMount, nil},
	// efs_mount_info{mount_path,filesystem_id,access_point,pod_uid,service,volume}:
	// service is "efs" or "s3files" (Amazon S3 Files, mounted through the
	// same efs-proxy) where known.
	// always 1, one series per registered mount, labels of unknown values
	// omitted. Join on mount_path to add them to the series above, as
	// kube-state-metrics' *_info series are joined.
	mInfo: {"efs.mount.info", "efs_mount_info", "What the mount is: file system, access point, service (efs or s3files), pod UID and volume where known (always 1)", "", int64Gauge, mounts, lInfo, nil},
	// efs_health_agent_build_info{version,goversion}: always 1.
	mBuildInfo: {"efs.health_agent.build_info", "efs_health_agent_build_info", "Build information of efs-health-agent (always 1)", "", int64Gauge, mounts, lBuild, nil},
	// efs_health_agent_self_delays_total{cause}: checks whose deadline
	// passed through the agent's own doing, not the mount's, and that
	// were judged by their real result instead of as timeouts: cause
	// "scheduling" (the agent was not running, e.g. CPU throttling) or
	// "housekeeping" (the check waited for the agent's own listing of the
	// mount root). Both series are always present.
	mSelfDelays: {"efs.health_agent.self_delays", "efs_health_agent_self_delays_total", "Checks whose deadline passed because the agent itself was not scheduled (cause=scheduling) or its own housekeeping was in the way (cause=housekeeping), judged by their real result instead of as timeouts", "", int64ObservableCounter, mounts, lCause, nil},
}

// views renames every instrument to its Prometheus name, sets its HELP,
// and gives the latency histogram its buckets.
func views() []sdkmetric.View {
	out := make([]sdkmetric.View, 0, len(metricNames))
	for _, n := range metricNames {
		s := sdkmetric.Stream{Name: n.prom, Description: n.help}
		if n.buckets != nil {
			s.Aggregation = sdkmetric.AggregationExplicitBucketHistogram{Boundaries: n.buckets}
		}
		out = append(out, sdkmetric.NewView(sdkmetric.Instrument{Name: n.otel}, s))
	}
	return out
}

// instrumentSet holds the instrument of every row of metricNames, by id.
type instrumentSet [numMetrics]any

// newInstruments creates one instrument per row of metricNames.
func newInstruments(m metric.Meter) (*instrumentSet, error) {
	var s instrumentSet
	var errs []error
	for id, n := range metricNames {
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
	for id, n := range metricNames {
		if n.group == g {
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
