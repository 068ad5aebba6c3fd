package agent

import (
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// CheckRecord is one finished check: the one record a check produces,
// handed once to the Observer (telemetry: the check counter, the latency
// histograms, the span tree, /debug/checks) and folded into the mount's
// MountStatus (/healthz/mounts, the status page, the per-mount gauges of
// /metrics). A record is complete when the Observer receives it and is not
// modified afterwards; an Observer that keeps anything past CheckDone
// copies it.
type CheckRecord struct {
	// Mount is the mount's description when the check started (Register
	// may have replaced it since).
	Mount *Mount
	// Start is when the check started, and End when it returned or hit
	// its deadline, on the agent's clock.
	Start, End time.Time
	// Outcome is the check's own result (healthy, unhealthy with a
	// reason, or hung at its deadline), whatever happened to the mount's
	// status meanwhile; also when the mount was unregistered while the
	// check ran and no status was published for it.
	Outcome Outcome
	// Ops are the operations the check started, in order, each with its
	// start, duration and error, preflight steps included. At a deadline
	// the operation stuck in the filesystem is the last one, its
	// duration running to the deadline and its error wrapping ErrTimeout.
	Ops []probes.OpResult
}
