package agent

import (
	"fmt"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// This file is the state machine of a mount: pure functions from the old
// status, what happened to a check, the settings and the time to the new
// status and the delay until the next check. The scheduler only moves
// data through them; they start nothing, lock nothing and read no clock.
//
//	pending   --check ok-->       healthy   (next: a random part of the interval)
//	any       --check ok-->       healthy   (next: interval ± jitter)
//	any       --check failed-->   unhealthy (next: backoff)
//	any       --deadline-->       hung      (next: backoff; the call stays stuck)
//	hung      --due, still stuck--> hung    (skipped: counted as a failure; next: backoff)
//	hung      --call returned-->  unhealthy (next: at once)

// Outcome is what one check produced, as its CheckRecord holds it: the
// check's own result, whatever happened to the mount meanwhile.
type Outcome struct {
	// State is healthy (success), unhealthy (failure) or hung (the check
	// hit its deadline).
	State State
	// Mode is the mode the check ran in.
	Mode probes.Mode
	// Reason classifies Err; ReasonNone on success.
	Reason probes.Reason
	// Err is the failure, nil on success. At a deadline it wraps
	// ErrTimeout.
	Err error
	// FailedOp is the operation Err came from.
	FailedOp probes.Op
	// Duration is the check's response time: from its start to its end,
	// the timeout at a deadline.
	Duration time.Duration
	// TimedOut is true when the check hit its deadline (State is hung).
	TimedOut bool
}

// Success reports whether the check succeeded.
func (o Outcome) Success() bool { return o.State == StateHealthy }

// policy is the part of Config the transitions depend on.
type policy struct {
	interval, timeout, minRetry time.Duration
	jitter                      float64
}

func (c Config) policy() policy {
	return policy{interval: c.Interval, timeout: c.Timeout, minRetry: c.MinRetry, jitter: c.Jitter}
}

// checked is the transition when a check returns before its deadline with
// res. start is when it started; r is a uniform random number in [0, 1)
// for the jitter. The delay until the next check counts from now, and the
// next start is never less than minRetry after this one.
func checked(old *MountStatus, res probes.Result, start, now time.Time, p policy, r float64) (MountStatus, Outcome, time.Duration) {
	next := *old
	if res.ModeKnown() {
		// A check that failed before it could tell (in the preflight or
		// at the root) leaves the mode as it was: none, until a check
		// has told it.
		next.Mode = res.Mode
	}
	next.LastCheck = now
	next.ResponseTime = res.Duration()
	next.History.add(next.ResponseTime)
	next.Ops = opTimingsOfResult(res.Ops)
	next.Checks++
	next.HungSince = time.Time{}
	out := Outcome{Mode: res.Mode, Duration: next.ResponseTime}
	var delay time.Duration
	if res.Err == nil {
		next.State = StateHealthy
		next.ConsecutiveErrors = 0
		next.LastError = ""
		next.Reason = probes.ReasonNone
		next.FailedOp = ""
		delay = p.healthyDelay(old.State == StatePending, r)
	} else {
		next.State = StateUnhealthy
		next.ErrorCount++
		next.ConsecutiveErrors++
		next.LastError = res.Err.Error()
		next.Reason = probes.Classify(res.Err)
		next.FailedOp = res.FailedOp
		delay = p.backoff(next.ConsecutiveErrors)
		out.Err = res.Err
	}
	out.State, out.Reason, out.FailedOp = next.State, next.Reason, next.FailedOp
	if earliest := start.Add(p.minRetry).Sub(now); delay < earliest {
		delay = earliest
	}
	return next, out, delay
}

// timedOut is the transition at a check's deadline: op is the operation it
// is stuck in. The mount is hung until the call returns.
func timedOut(old *MountStatus, op probes.Op, start, now time.Time, p policy) (MountStatus, Outcome, time.Duration) {
	err := fmt.Errorf("timeout after %v in %s: %w", p.timeout, op, ErrTimeout)
	next := *old
	next.State = StateHung
	next.LastCheck = now
	next.ResponseTime = p.timeout
	next.History.add(p.timeout)
	next.Ops = OpTimings{}
	next.ErrorCount++
	next.ConsecutiveErrors++
	next.Checks++
	next.LastError = err.Error()
	next.Reason = probes.ReasonTimeout
	next.FailedOp = op
	next.HungSince = start
	out := Outcome{State: StateHung, Mode: old.Mode, Reason: probes.ReasonTimeout, Err: err,
		FailedOp: op, Duration: p.timeout, TimedOut: true}
	return next, out, p.backoff(next.ConsecutiveErrors)
}

// tunnelExplains amends the transition at a deadline (timedOut) of a
// check whose tunnel step had failed (tunnelErr): the tunnel explains the
// hang, so the reason is tunnel_down and the message says both. The
// tunnel alone never fails a check (see probes.Result.TunnelErr).
func tunnelExplains(next *MountStatus, out *Outcome, tunnelErr error) {
	if tunnelErr == nil {
		return
	}
	out.Err = fmt.Errorf("%w (%w)", out.Err, tunnelErr)
	out.Reason = probes.ReasonTunnelDown
	next.Reason = probes.ReasonTunnelDown
	next.LastError = out.Err.Error()
}

// stuckReason is the reason of a mount whose stuck check is still stuck
// (or has just returned): tunnel_down when the tunnel explained the hang
// (tunnelExplains), else r.
func stuckReason(old *MountStatus, r probes.Reason) probes.Reason {
	if old.Reason == probes.ReasonTunnelDown {
		return old.Reason
	}
	return r
}

// skipped is the transition when a check is due while the previous one is
// still stuck: no check starts, and the missed check counts as a failure.
func skipped(old *MountStatus, now time.Time, p policy) (MountStatus, time.Duration) {
	next := *old
	next.ErrorCount++
	next.ConsecutiveErrors++
	next.Reason = stuckReason(old, probes.ReasonHung)
	next.LastError = fmt.Sprintf("timeout after %v in %s; still blocked after %v",
		p.timeout, old.FailedOp, now.Sub(old.HungSince).Round(time.Millisecond))
	return next, p.backoff(next.ConsecutiveErrors)
}

// returned is the transition when a call stuck past its deadline finally
// returns. The failure stays on record, and the mount is re-checked at
// once.
func returned(old *MountStatus, start, now time.Time, p policy) (MountStatus, time.Duration) {
	next := *old
	next.State = StateUnhealthy
	next.HungSince = time.Time{}
	next.Reason = stuckReason(old, probes.ReasonTimeout)
	next.LastError = fmt.Sprintf("timeout after %v in %s; the call returned after %v",
		p.timeout, old.FailedOp, now.Sub(start).Round(time.Millisecond))
	return next, 0
}

// healthyDelay is the wait before the next check of a healthy mount. After
// a mount's first check it is a random part (r) of the interval, so that
// mounts registered together spread out; then the interval with jitter.
func (p policy) healthyDelay(first bool, r float64) time.Duration {
	iv := p.interval
	if p.jitter == 0 {
		return iv
	}
	if first {
		least := min(p.minRetry, iv)
		return least + time.Duration(r*float64(iv-least))
	}
	return time.Duration(float64(iv) * (1 + p.jitter*(2*r-1)))
}

// backoff is the re-check delay after n consecutive failures: minRetry,
// doubling, capped at the interval.
func (p policy) backoff(n uint64) time.Duration {
	d := p.minRetry
	for i := uint64(1); i < n && d < p.interval; i++ {
		d *= 2
	}
	return min(d, p.interval)
}
