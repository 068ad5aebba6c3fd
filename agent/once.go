package agent

import (
	"context"
	"fmt"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Once is what CheckOnce found.
type Once struct {
	// Outcome is the check's outcome as the Monitor records it: healthy,
	// unhealthy with a reason, or hung at the deadline (TimedOut, with
	// FailedOp the operation the check was stuck in).
	Outcome Outcome
	// Result is the check's result when it returned before its deadline.
	Result probes.Result
	// Late, for a check that hit its deadline, receives the check's
	// result once the stuck call returns and the check has finished (its
	// probe file then removed by name, or named in Result.Leftovers).
	// Nil when the check returned in time.
	Late <-chan probes.Result
}

// CheckOnce runs one check of spec through the same pipeline as the
// Monitor: the mount-table and tunnel preflight, the read-write (or
// read-only) steps with a probe file owned by a fresh instance of
// cfg.Hostname, under cfg.Timeout. As in Register, a spec without a
// filesystem type takes it from cfg.MountTable when the path is a mount
// point. CheckOnce returns at the deadline, or when ctx is done, even
// while the check is stuck in the kernel: the check's goroutine finishes
// on its own when the call returns (removing its probe file) and sends
// its result on Once.Late.
func CheckOnce(ctx context.Context, cfg Config, spec Mount) (Once, error) {
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if err := cfg.Validate(); err != nil {
		return Once{}, err
	}
	if err := ValidatePath(spec.Path); err != nil {
		return Once{}, err
	}
	owner, err := probes.NewOwner(cfg.Hostname)
	if err != nil {
		return Once{}, fmt.Errorf("check: %w", err)
	}
	if spec.FSType == "" && cfg.MountTable != nil {
		if fstype, source, ok := cfg.MountTable.Lookup(spec.Path); ok {
			spec.FSType, spec.Source = fstype, source
		}
	}
	pol := cfg.policy()
	start := cfg.Clock.Now()
	// The check tracks the operation in progress exactly as a Monitor's
	// does, so the deadline names the same operation.
	c := newCheck(nil, &spec, start, cfg.Timeout)
	checkCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	done := make(chan probes.Result, 1)
	go func() {
		defer cancel()
		done <- probes.Check(checkCtx, spec.Path, probeOptions(cfg, owner, c))
	}()
	timer := cfg.Clock.NewTimer(cfg.Timeout)
	defer timer.Stop()
	pending := &MountStatus{Mount: &spec, State: StatePending}
	var res probes.Result
	select {
	case res = <-done:
	case <-timer.Chan():
	case <-ctx.Done():
	}
	if res.Mode == "" {
		select {
		case res = <-done: // returned just in time
		default:
		}
	}
	if res.Mode != "" {
		_, out, _ := checked(pending, res, start, cfg.Clock.Now(), pol, 0)
		return Once{Outcome: out, Result: res}, nil
	}
	c.atDeadline(pending, cfg.Clock.Now(), pol)
	return Once{Outcome: c.rec.Outcome, Late: done}, nil
}
