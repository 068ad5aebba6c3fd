package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Config configures a Monitor. Start from DefaultConfig.
type Config struct {
	// Interval is the time between two checks of a healthy mount.
	Interval time.Duration
	// Timeout is the deadline of one check.
	Timeout time.Duration
	// MinRetry is the first re-check delay after a failure; it doubles on
	// each further failure up to Interval. It is also the minimum time
	// between two check starts on one mount, less the scheduler's
	// coalescing window (at most 100 ms and half of MinRetry).
	MinRetry time.Duration
	// MaxConcurrent bounds the checks running at once (hung checks past
	// their deadline do not count).
	MaxConcurrent int
	// MaxMounts bounds the registered mounts (default DefaultMaxMounts):
	// Register refuses a new path beyond it with ErrTooManyMounts, so a
	// mount table that grows without bound cannot grow the agent's
	// memory with it.
	MaxMounts int
	// Jitter spreads checks: each healthy re-check is delayed by
	// Interval × (1 ± Jitter), and the second check of a new mount by a
	// random part of the interval, so mounts registered together do not
	// stay in step. 0 disables it.
	Jitter float64
	// Hostname names this host in probe files. Required.
	Hostname string
	// StaleScanLimit bounds the directory entries read by the one
	// background listing of a mount root that looks for probe files left
	// behind by earlier instances on this node.
	StaleScanLimit int
	// LeftoverAge is the age (by the file's own modification and change
	// times) a probe file of another instance on this node must reach
	// before it is removed as a leftover: by then no check can still be
	// using it. 0 means probes.LeftoverAge(Timeout): twice the timeout, at
	// least 30s.
	LeftoverAge time.Duration
	// Clock defaults to the wall clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Observer receives check events for telemetry; may be nil.
	Observer Observer
	// MountTable, if set, is consulted before each check of a mount whose
	// filesystem type is known: a path that is no longer that mount fails
	// with reason not_mounted without being touched (after an unmount the
	// directory underneath is local disk, where a write would "succeed").
	MountTable MountTable
	// RequireMountPoint, with MountTable, makes every path checked have to
	// be a mount point: one the mount table has no mount at fails
	// not_mounted untouched, whatever its filesystem type. Without it such
	// a path (registered without a filesystem type, and not a mount point
	// when registered) is checked as the plain directory it is.
	RequireMountPoint bool
	// TunnelTimeout bounds the TCP connect to a mount's TLS tunnel
	// (default: a fifth of the timeout, at most 1s).
	TunnelTimeout time.Duration
	// RequireWriteCheck makes a refused create of the probe file
	// (EACCES/EPERM) the failure permission_denied; by default such a
	// mount is checked read-only in mode write-denied.
	RequireWriteCheck bool
	// ProbeInRoot makes the probe files in the mount root, as earlier
	// versions did, instead of in probes.DirName (mode read-write-root):
	// for operators who may not add a directory to a volume. Every check
	// then changes the root, which every other client of the volume
	// revalidates.
	ProbeInRoot bool
	// Grouping makes the mounts of one file system share one full check
	// per interval, every other mount's check being a transport check
	// (see GroupKey and RotateEvery). Off by default.
	Grouping bool
}

// MountTable answers from the kernel's mount table which filesystem is
// mounted at a path; see probes.MountTable.
type MountTable = probes.MountTable

// MaxInterval is the longest check interval and timeout a Monitor
// accepts. It keeps every sum of times the scheduler and the readiness
// rule form (interval + timeout, backed-off retries) far from overflowing
// a time.Duration.
const MaxInterval = 24 * time.Hour

// DefaultMaxMounts is the default of Config.MaxMounts: far above the
// volumes one node mounts, and a steady-state heap of about 11 MB at the
// bench's 1.1 KB per mount, inside the 128 MiB the manifests give.
const DefaultMaxMounts = 10000

// DefaultConfig returns the documented defaults: interval 30s, timeout 5s.
func DefaultConfig() Config {
	return Config{
		Interval:       30 * time.Second,
		Timeout:        5 * time.Second,
		MinRetry:       time.Second,
		MaxConcurrent:  16,
		MaxMounts:      DefaultMaxMounts,
		Jitter:         0.1,
		StaleScanLimit: 100000,
	}
}

// Validate reports the first invalid setting, naming it and its value.
func (c Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("check interval %v: must be positive", c.Interval))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("check timeout %v: must be positive", c.Timeout))
	}
	if c.Interval > MaxInterval {
		errs = append(errs, fmt.Errorf("check interval %v: must not exceed %v", c.Interval, MaxInterval))
	}
	if c.Timeout > MaxInterval {
		errs = append(errs, fmt.Errorf("check timeout %v: must not exceed %v", c.Timeout, MaxInterval))
	}
	if c.Timeout > 0 && c.Interval > 0 && c.Timeout > c.Interval {
		errs = append(errs, fmt.Errorf("check timeout %v: must not exceed the check interval %v", c.Timeout, c.Interval))
	}
	if c.MinRetry <= 0 {
		errs = append(errs, fmt.Errorf("min retry %v: must be positive", c.MinRetry))
	}
	if c.MaxConcurrent <= 0 {
		errs = append(errs, fmt.Errorf("max concurrent checks %d: must be positive", c.MaxConcurrent))
	}
	if c.Jitter < 0 || c.Jitter >= 1 {
		errs = append(errs, fmt.Errorf("jitter %v: must be in [0, 1)", c.Jitter))
	}
	if c.LeftoverAge < 0 {
		errs = append(errs, fmt.Errorf("leftover age %v: must not be negative", c.LeftoverAge))
	}
	if c.Hostname == "" {
		errs = append(errs, errors.New("hostname: must not be empty"))
	}
	return errors.Join(errs...)
}
