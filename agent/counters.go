package agent

import (
	"math"
	"slices"
	"time"
)

// counters are the figures of the Summary, kept as statuses change so
// that publishing a Summary is O(1): the count of mounts by state, the
// unhealthy paths, the checks the agent itself delayed, and the time of
// each mount's last check for the stale count. Guarded by Monitor.mu.
type counters struct {
	pending, unhealthy, hung, stale int
	unhealthySet                    map[string]struct{}
	// setDirty is set when unhealthySet changed since the last Summary.
	setDirty bool
	// selfDelays counts, by cause, checks whose deadline passed through
	// the agent's own doing and that were judged by their real result.
	selfDelays [NumSelfDelayCauses]uint64
	// lastChecks holds, by mount slot, the time of each registered
	// mount's last completed check, as an offset from the due queue's
	// epoch, or noCheck while it is pending; freeSlots are unused slots.
	// The stale count reads this one dense array instead of every
	// mount's status.
	lastChecks []time.Duration
	freeSlots  []int32
	lastScan   time.Time
}

// noCheck marks a free slot or a pending mount in counters.lastChecks.
const noCheck = time.Duration(math.MinInt64)

// count adds d mounts of state s (path is the mount's).
func (c *counters) count(s State, d int, path string) {
	switch s {
	case StatePending:
		c.pending += d
	case StateUnhealthy:
		c.unhealthy += d
	case StateHung:
		c.unhealthy += d
		c.hung += d
	}
	if s == StateUnhealthy || s == StateHung {
		if d > 0 {
			c.unhealthySet[path] = struct{}{}
		} else {
			delete(c.unhealthySet, path)
		}
		c.setDirty = true
	}
}

// allocSlot returns a free slot of lastChecks.
func (c *counters) allocSlot() int32 {
	if n := len(c.freeSlots); n > 0 {
		s := c.freeSlots[n-1]
		c.freeSlots = c.freeSlots[:n-1]
		return s
	}
	c.lastChecks = append(c.lastChecks, noCheck)
	return int32(len(c.lastChecks) - 1)
}

// freeSlot gives a slot back.
func (c *counters) freeSlot(s int32) {
	c.lastChecks[s] = noCheck
	c.freeSlots = append(c.freeSlots, s)
}

// setLast records st as the status of the mount in slot s.
func (c *counters) setLast(s int32, st *MountStatus, epoch time.Time) {
	if st.State == StatePending {
		c.lastChecks[s] = noCheck
	} else {
		c.lastChecks[s] = st.LastCheck.Sub(epoch)
	}
}

// scanStale counts the mounts whose last check is older than limit (an
// offset from epoch): one pass over a dense array of 8 bytes a mount.
func (c *counters) scanStale(now time.Time, limit time.Duration) {
	c.lastScan = now
	n := 0
	for _, at := range c.lastChecks {
		if at != noCheck && at < limit {
			n++
		}
	}
	c.stale = n
}

// unhealthyPaths returns the sorted unhealthy paths, at most MaxListed:
// those of old when the set has not changed since.
func (c *counters) unhealthyPaths(old *Summary) []string {
	defer func() { c.setDirty = false }()
	if old != nil && !c.setDirty {
		return old.UnhealthyPaths
	}
	if len(c.unhealthySet) == 0 {
		return nil
	}
	paths := make([]string, 0, len(c.unhealthySet))
	for p := range c.unhealthySet {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	if len(paths) > MaxListed {
		paths = paths[:MaxListed]
	}
	return paths
}
