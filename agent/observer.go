package agent

import (
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Observer receives check events, for telemetry. Its methods are called from
// check goroutines and the scheduler loop, never under the monitor's lock,
// and must not block. An observer must not call back into the Monitor: the
// events carry what it needs.
type Observer interface {
	// CheckStart is called when a check of path starts. The returned
	// CheckRecorder receives that check's events.
	CheckStart(m Mount, start time.Time) CheckRecorder
	// CheckSkipped is called when a check of path is due but the previous
	// one is still stuck in the filesystem.
	CheckSkipped(m Mount, at time.Time)
}

// CheckRecorder receives the events of one check. End is called exactly
// once; no call follows it.
type CheckRecorder interface {
	OpStart(op probes.Op, at time.Time)
	// OpEnd is called when an operation returns, or at the check's deadline
	// for the operation that is stuck (err then wraps ErrTimeout).
	OpEnd(op probes.Op, d time.Duration, err error)
	// End is called when the check completes or hits its deadline, with
	// the check's own outcome (also when the mount was unregistered
	// while the check ran and no status was published for it).
	End(o Outcome, at time.Time)
}
