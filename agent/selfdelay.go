package agent

import (
	"container/heap"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// SelfDelayCause says why a check's deadline passed through the agent's
// own doing rather than the mount's. Such a check is not judged by the
// deadline: it gets one extension and is judged by its real result.
type SelfDelayCause uint8

// The causes of self-inflicted delays.
const (
	// SelfDelayScheduling: the agent was not running when the deadline
	// passed (its scheduler woke late, e.g. CPU throttling), or the check
	// was between two calls, its last call returned before the deadline.
	SelfDelayScheduling SelfDelayCause = iota
	// SelfDelayHousekeeping: the check waited for the agent's own
	// listing of the mount root (the leftover sweep).
	SelfDelayHousekeeping
	// NumSelfDelayCauses is the number of causes.
	NumSelfDelayCauses
)

// noDelay marks a check whose deadline was never extended.
const noDelay = NumSelfDelayCauses

// String is the cause's label value: "scheduling" or "housekeeping".
func (c SelfDelayCause) String() string {
	switch c {
	case SelfDelayScheduling:
		return "scheduling"
	case SelfDelayHousekeeping:
		return "housekeeping"
	}
	return "unknown"
}

// lateSlack is how late the scheduler loop may see a deadline before the
// lateness counts as time the agent was not running. A loop woken by its
// timer on an idle node is late by well under a millisecond; a process
// throttled by its CPU cgroup is late by most of a CFS period (100 ms).
const lateSlack = 20 * time.Millisecond

// ownDelay reports whether a deadline that the scheduler loop sees at now
// passed through the agent's own doing: the loop itself was late by more
// than lateSlack (the agent was not running at the deadline, so a call
// that returned then has not been seen yet), or the check is in no call
// and its last call returned by the deadline (it is waiting for CPU, or
// never got to start its first call). A check in a call that started in
// time, seen on time, is the mount's: a timeout.
func ownDelay(deadline, now time.Time, inCall bool, lastEnd time.Time) bool {
	if now.Sub(deadline) > lateSlack {
		return true
	}
	return !inCall && !lastEnd.After(deadline)
}

// extendLocked gives a check whose deadline passed through the agent's own
// doing (ownDelay) more time, once (see extension): it then completes with
// its real result, or expires at the new deadline. Hang detection is so
// late by at most one timeout between calls, and by about the agent's own
// lateness in a call, and only when the agent itself was late.
// It runs with c.mu held and takes Monitor.mu.
func (mon *Monitor) extendLocked(c *check, now time.Time) bool {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	_, _, inCall := c.log.Current()
	if c.extended != noDelay || !ownDelay(c.deadline, now, inCall, c.log.LastEnd()) {
		return false
	}
	c.extended = SelfDelayScheduling
	c.deadline = now.Add(extension(mon.cfg.Timeout, now.Sub(c.deadline), inCall))
	heap.Push(&mon.deadlines, c)
	return true
}

// minCallGrace is the least extension given to a check seen late while
// in a call.
const minCallGrace = 250 * time.Millisecond

// extension is how much longer a check whose deadline was seen late by
// late gets. Between two calls it still has calls to make: one more
// timeout. In a call, only whether the call returned while the agent was
// not running is in doubt, and a returned call is seen as soon as the
// agent runs again: twice the lateness, at least minCallGrace, at most
// the timeout. A mount that is really stuck is so reported late by about
// the agent's own lateness, not by a whole timeout.
func extension(timeout, late time.Duration, inCall bool) time.Duration {
	if !inCall {
		return timeout
	}
	return min(timeout, max(2*late, minCallGrace))
}

// slowCalls reports whether a check's calls took at least timeout in all,
// and the operation during which they reached it: a check that completed
// past its deadline is still a timeout when the mount was that slow.
func slowCalls(res probes.Result, timeout time.Duration) (probes.Op, bool) {
	var sum time.Duration
	for _, o := range res.Ops {
		sum += o.Duration
		if sum >= timeout {
			return o.Op, true
		}
	}
	return "", false
}
