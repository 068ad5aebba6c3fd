package exporters

import (
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// metricName maps one OTel instrument to its Prometheus name and HELP text.
// This table is the one place where the exported names are decided; the
// golden scrape test pins them.
type metricName struct {
	otel, prom, help string
	buckets          []float64
}

// LatencyBuckets are the operation latency histogram buckets, in seconds:
// from a fast local NFS round trip to the default check timeout and beyond.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Instrument names (OTel style) and the Prometheus names they export as.
var metricNames = []metricName{
	// efs_mount_health_status{mount_path}: 1 when the mount's last check
	// succeeded, 0 when it failed or is stuck. Absent until the first check.
	{"efs.mount.health.status", "efs_mount_health_status", "Health status of EFS mounts (1=healthy, 0=unhealthy)", nil},
	// efs_mount_response_time_ms{mount_path}: duration of the last check
	// (the timeout for one that hit its deadline). Absent until the first check.
	{"efs.mount.response_time", "efs_mount_response_time_ms", "Response time for mount health checks in milliseconds", nil},
	// efs_mount_error_total{mount_path}: failed checks since registration,
	// including checks missed because the previous one was stuck.
	{"efs.mount.errors", "efs_mount_error_total", "Total number of errors for mount health checks", nil},
	// efs_csi_driver_healthy: 1 when every registered mount is healthy.
	{"efs.csi_driver.healthy", "efs_csi_driver_healthy", "Overall health status of the CSI driver (1=healthy, 0=unhealthy)", nil},
	// efs_mount_operation_duration_seconds{operation}: latency of each
	// operation of every check; exemplars carry the check's trace id.
	{"efs.mount.operation.duration", "efs_mount_operation_duration_seconds", "Duration of mount check operations (write, read, delete, ...) in seconds", LatencyBuckets},
	// efs_mount_checks_total{outcome,reason}: checks by outcome and failure reason.
	{"efs.mount.checks", "efs_mount_checks_total", "Mount checks by outcome (success, failure) and failure reason", nil},
	// efs_mount_checks_in_flight: checks running and not past their deadline.
	{"efs.mount.checks.in_flight", "efs_mount_checks_in_flight", "Mount checks currently running before their deadline", nil},
	// efs_mounts_hung: mounts with a check stuck past its deadline.
	{"efs.mounts.hung", "efs_mounts_hung", "Number of mounts with a check stuck in the filesystem past its deadline", nil},
	// efs_mount_hung{mount_path}: 1 while the mount's check is stuck.
	{"efs.mount.hung", "efs_mount_hung", "Whether a check of the mount is stuck in the filesystem past its deadline (1=hung)", nil},
	// efs_mount_consecutive_errors{mount_path}: failures since the last success.
	{"efs.mount.consecutive_errors", "efs_mount_consecutive_errors", "Failed checks of the mount since its last successful check", nil},
	// efs_mount_last_check_timestamp_seconds{mount_path}: Unix time of the
	// last completed (or timed-out) check.
	{"efs.mount.last_check.timestamp", "efs_mount_last_check_timestamp_seconds", "Unix time of the mount's last completed check in seconds", nil},
	// NFS client statistics of registered NFS mounts, from
	// /proc/self/mountstats, per operation (READ, WRITE, GETATTR, ...),
	// in base units. They rise before checks start failing.
	{"efs.nfs.rpc.requests", "efs_nfs_rpc_requests_total", "NFS RPC requests sent, per mount and operation", nil},
	{"efs.nfs.rpc.retransmissions", "efs_nfs_rpc_retransmissions_total", "NFS RPC retransmissions (transmissions beyond the first), per mount and operation", nil},
	{"efs.nfs.rpc.major_timeouts", "efs_nfs_rpc_major_timeouts_total", "NFS RPC major timeouts, per mount and operation", nil},
	{"efs.nfs.rpc.rtt", "efs_nfs_rpc_rtt_seconds_total", "Cumulative NFS RPC round-trip time in seconds, per mount and operation", nil},
	{"efs.nfs.rpc.execute", "efs_nfs_rpc_execute_seconds_total", "Cumulative NFS RPC execution time (queue and round trip) in seconds, per mount and operation", nil},
	{"efs.nfs.transport.backlog", "efs_nfs_transport_backlog_total", "Cumulative NFS transport backlog queue length, sampled per request", nil},
	// efs_mount_info{mount_path,filesystem_id,access_point,pod_uid,volume}:
	// always 1, one series per registered mount, labels of unknown values
	// omitted. Join on mount_path to add them to the series above, as
	// kube-state-metrics' *_info series are joined.
	{"efs.mount.info", "efs_mount_info", "What the mount is: EFS file system, access point, pod UID and volume where known (always 1)", nil},
	// efs_health_agent_build_info{version,goversion}: always 1.
	{"efs.health_agent.build_info", "efs_health_agent_build_info", "Build information of efs-health-agent (always 1)", nil},
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
