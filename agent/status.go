package agent

import (
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// State is a mount's health state.
type State string

// Mount states.
const (
	// StatePending: registered, no check has completed yet.
	StatePending State = "pending"
	// StateHealthy: the last check succeeded.
	StateHealthy State = "healthy"
	// StateUnhealthy: the last check failed.
	StateUnhealthy State = "unhealthy"
	// StateHung: a check is stuck in the filesystem past its deadline.
	StateHung State = "hung"
)

// Mount describes a mount to monitor. Only Path is required; the rest, when
// known (from the mount table or the CSI request), sharpens diagnosis.
type Mount struct {
	// Path is the absolute, clean mount point.
	Path string
	// FSType is the filesystem type from the mount table, e.g. "nfs4".
	FSType string
	// Source is the mounted device, e.g. "fs-1234.efs.us-east-1.amazonaws.com:/".
	Source string
	// TunnelAddr is the host:port of a local TLS tunnel the mount goes
	// through, if any (EFS mounts with the tls option).
	TunnelAddr string
	// Attribution is what the mount is (EFS file system and access point,
	// pod and volume), as far as the node knows; empty fields are unknown.
	Attribution Attribution
}

// MountStatus is the published health of one mount. A value is never
// modified after it is published; readers may keep it.
type MountStatus struct {
	// Mount is the mount's description, shared by every status published
	// for the same registration until Register changes it; never nil in a
	// published status, and never modified (a changed description is a
	// new Mount).
	*Mount
	State State
	Mode  probes.Mode
	// LastCheck is when the last check completed or hit its deadline;
	// zero while pending.
	LastCheck time.Time
	// ResponseTime is the duration of the whole last check (the timeout
	// for a check that hit its deadline).
	ResponseTime time.Duration
	// ErrorCount counts failed checks since registration.
	ErrorCount uint64
	// ConsecutiveErrors counts failed checks since the last success.
	ConsecutiveErrors uint64
	// Checks counts completed checks (including those that hit the deadline).
	Checks uint64
	// LastError is the last failure's message, "" after a success.
	LastError string
	// Reason classifies LastError.
	Reason probes.Reason
	// FailedOp is the operation the last failure came from.
	FailedOp probes.Op
	// HungSince is when the stuck check started; zero unless State is hung.
	HungSince time.Time
	// Ops are the per-operation times of the last completed check (none
	// after a check that hit its deadline).
	Ops OpTimings
	// SharedProof, when set, says that the state comes from a full check
	// of another mount of the group (Config.Grouping), this mount's own
	// last check having been a transport check; nil when it comes from
	// the mount's own check.
	SharedProof *Proof
	// History holds the response times of the last HistoryLen checks,
	// oldest first (a check that hit its deadline counts as the timeout).
	History History
}

// Healthy reports whether the last check succeeded.
func (s *MountStatus) Healthy() bool { return s.State == StateHealthy }

// Summary is the aggregate health, maintained incrementally so that the
// health endpoints answer in O(1). A value is immutable once published.
type Summary struct {
	Mounts    int
	Pending   int
	Unhealthy int // unhealthy or hung
	Hung      int
	// Stale counts mounts whose last check is older than interval + timeout
	// (recomputed about once a second).
	Stale int
	// InFlight counts checks running before their deadline.
	InFlight int
	// UnhealthyPaths lists up to MaxListed unhealthy mounts, sorted.
	UnhealthyPaths []string
	// Heartbeat is the last time the scheduler loop ran.
	Heartbeat time.Time
	// Running is true between Run's start and its return.
	Running bool
	// SelfDelays counts, by cause, checks whose deadline passed through
	// the agent's own doing (not scheduled, or its own housekeeping in
	// the way) and that were therefore judged by their real result, not
	// as timeouts, since the Monitor was made.
	SelfDelays [NumSelfDelayCauses]uint64
}

// MaxListed bounds Summary.UnhealthyPaths.
const MaxListed = 20

// Healthy: every registered mount's last check succeeded or is pending
// (zero mounts is healthy).
func (s *Summary) Healthy() bool { return s.Unhealthy == 0 }

// Ready: every mount has completed a check, is healthy and fresh.
func (s *Summary) Ready() bool { return s.Unhealthy == 0 && s.Pending == 0 && s.Stale == 0 }
