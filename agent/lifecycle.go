package agent

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// check is one check in flight, from its start to its record.
//
// Its operations are logged once, by the probes pipeline (log): the
// scheduler loop reads there, at the deadline, which operation is stuck,
// and the finished check hands the log's operations to the Observer in
// its record.
type check struct {
	mon *Monitor // nil for CheckOnce's
	m   *mount
	// spec is the mount's description when the check started: Register
	// may replace m.spec meanwhile.
	spec   *Mount
	start  time.Time
	cancel context.CancelFunc

	// Guarded by Monitor.mu: the deadline and the check's index in
	// Monitor.deadlines (-1 once out of it). extended says why the
	// deadline was moved past start + timeout (see ownDelay), once at
	// most; it is noDelay while it was not.
	deadline time.Time
	didx     int
	extended SelfDelayCause
	// paused is when the check began to wait for a call of the leftover
	// sweep on its root (zero while it does not): its time does not run
	// meanwhile (see awaitSweep). deferred is set when its deadline
	// passed during the wait and it was taken out of Monitor.deadlines,
	// for awaitSweep to put back; waitedSweep once it has waited.
	paused      time.Time
	deferred    bool
	waitedSweep bool

	// mu guards expired (the deadline gave up on the check) and done
	// (the check returned): whichever comes first decides the record.
	mu      sync.Mutex
	expired bool
	done    bool

	// full is set for a full check, clear for a transport check (see
	// Config.Grouping); decided at dispatch.
	full bool

	log probes.OpLog
	// rec is the check's record, handed to the Observer once.
	rec CheckRecord
}

// newCheck returns a check of m (described by spec) starting at start,
// with its deadline a timeout later.
func newCheck(m *mount, spec *Mount, start time.Time, timeout time.Duration) *check {
	c := &check{m: m, spec: spec, start: start, deadline: start.Add(timeout), didx: -1, extended: noDelay, full: true}
	c.log.Reset(start)
	return c
}

// runCheck runs one check. It never lists the mount root: the check's
// own probe file is removed by name, and leftovers of earlier instances
// are the sweeper's business.
func (mon *Monitor) runCheck(ctx context.Context, c *check) {
	defer c.cancel()
	var res probes.Result
	if c.full {
		res = probes.Check(ctx, c.spec.Path, probeOptions(mon.cfg, mon.owner, c))
	} else {
		res = probes.CheckTransport(ctx, c.spec.Path, probeOptions(mon.cfg, mon.owner, c))
	}
	if mon.afterProbe != nil {
		mon.afterProbe()
	}
	mon.complete(c, res)
}

// probeOptions are the options of check c: the probes pipeline with the
// mount table and tunnel preflight (which touch nothing on the mount),
// this instance's probe file names, the check's operation log, and the
// injected clock.
func probeOptions(cfg Config, owner probes.Owner, c *check) probes.Options {
	spec := c.spec
	o := probes.Options{
		Owner:         owner,
		Log:           &c.log,
		Now:           cfg.Clock.Now,
		FSType:        spec.FSType,
		Source:        spec.Source,
		TunnelAddr:    spec.TunnelAddr,
		TunnelTimeout: cfg.TunnelTimeout,
		MountTable:    cfg.MountTable,
		MountPoint:    cfg.RequireMountPoint,

		RequireWriteCheck: cfg.RequireWriteCheck,
		Superblock:        cfg.Grouping,
		InRoot:            cfg.ProbeInRoot,
	}
	if c.mon != nil {
		o.BeforeOp = c.beforeOp
	}
	if o.TunnelTimeout <= 0 {
		o.TunnelTimeout = min(cfg.Timeout/5, time.Second)
	}
	return o
}

// beforeOp runs before each operation of a Monitor's check: a step that
// creates or unlinks in the mount root first waits for a call of the
// leftover sweep in progress on that root, if any (see awaitSweep).
func (c *check) beforeOp(op probes.Op) {
	if op == probes.OpWrite || op == probes.OpDelete {
		c.mon.awaitSweep(c)
	}
}

// atDeadline gives up on check c at now, the one deadline routine of the
// Monitor and CheckOnce: the check's log is frozen, its operation in
// progress (the one stuck in the kernel) ending now with the deadline's
// error, and the check is recorded as hung in that operation (or, between
// two, in the last one started). A failed tunnel step explains the hang
// (tunnel_down). It returns the status that follows old, the delay until
// the next check, and fills in c.rec.
func (c *check) atDeadline(old *MountStatus, now time.Time, pol policy) (MountStatus, time.Duration) {
	c.cancel()
	op, ops, open := c.log.Freeze(now)
	next, out, delay := timedOut(old, op, c.start, now, pol)
	tunnelExplains(&next, &out, c.log.Failed(probes.OpTunnel))
	if open {
		ops[len(ops)-1].Err = out.Err
	}
	c.rec = CheckRecord{Mount: c.spec, Start: c.start, End: now, Outcome: out, Ops: ops}
	return next, delay
}

// expire runs on the scheduler loop at a check's deadline (now), after
// dispatch took the check out of the deadline heap.
func (mon *Monitor) expire(c *check, now time.Time) {
	c.mu.Lock()
	if c.done || mon.extendLocked(c, now) {
		c.mu.Unlock()
		return
	}
	c.expired = true
	c.mu.Unlock()

	mon.mu.Lock()
	mon.inFlight--
	m := c.m
	old := m.status.Load()
	next, delay := c.atDeadline(old, now, mon.pol)
	if !m.removed {
		mon.groupedLocked(c, false, 0, false, now, &next)
		mon.setStatusLocked(m, old, &next)
		mon.requeueLocked(m, now.Add(delay))
	}
	mon.publishSummaryLocked()
	mon.mu.Unlock()
	mon.observe(&c.rec)
}

// observe hands a finished check's record to the Observer.
func (mon *Monitor) observe(r *CheckRecord) {
	if mon.obs != nil {
		mon.obs.CheckDone(r)
	}
}

// complete runs when a check's goroutine returns from the filesystem.
func (mon *Monitor) complete(c *check, res probes.Result) {
	c.mu.Lock()
	c.done = true
	expired := c.expired
	c.mu.Unlock()
	now := mon.clock.Now()

	mon.mu.Lock()
	m := c.m
	mon.releaseLocked(c, expired, now)
	succeeded := false
	if expired {
		mon.stuckReturnedLocked(c, now)
	} else {
		succeeded = mon.judgeLocked(c, res, now)
	}
	if !m.removed {
		// A probe file whose unlink failed is removed by name after a
		// later successful check.
		m.parkLeftoversLocked(res.Leftovers...)
		mon.sweepAfterLocked(m, succeeded)
	}
	// Wake the scheduler loop only if it would otherwise be late: a mount
	// is due before the loop's next wake. That covers this mount's retry,
	// a re-registration released above, and mounts held back for lack of
	// capacity (they are overdue). A healthy check's next run is an
	// interval away, so usually the loop sleeps on.
	next, ok := mon.due.next()
	wake := (ok && next.Before(mon.wakeAt)) || mon.draining
	mon.publishSummaryLocked()
	mon.mu.Unlock()
	if !expired {
		mon.observe(&c.rec)
	}
	if wake {
		mon.poke()
	}
}

// releaseLocked gives back what a returned check held: its mount, its
// capacity (unless its deadline already did), its place in the deadline
// heap, a re-registration of its path waiting for it, and the sweeper
// waiting for a check to end.
func (mon *Monitor) releaseLocked(c *check, expired bool, now time.Time) {
	m := c.m
	m.cur = nil
	if !expired {
		mon.inFlight--
	}
	if c.didx >= 0 {
		heap.Remove(&mon.deadlines, c.didx)
	}
	if m.removed && mon.orphans[m.spec.Path] == m {
		// A stuck check of an unregistered mount returned: a mount
		// registered again at the same path may now be checked.
		delete(mon.orphans, m.spec.Path)
		if again := mon.mounts[m.spec.Path]; again != nil && again.queued {
			mon.due.push(again, now)
		}
	}
	if mon.sweepIdle != nil {
		// The sweeper waits for a check to end before its next call.
		close(mon.sweepIdle)
		mon.sweepIdle = nil
	}
}

// stuckReturnedLocked handles the return of a check its deadline gave up
// on: the stuck call finally returned (and the check removed its probe
// file by name). The failure stays on record; the mount is checked again
// at once.
func (mon *Monitor) stuckReturnedLocked(c *check, now time.Time) {
	m := c.m
	if m.removed {
		return
	}
	old := m.status.Load()
	next, delay := returned(old, c.start, now, mon.pol)
	mon.log.Info("stuck check returned", "mount", m.spec.Path,
		"op", old.FailedOp, "blocked_for", now.Sub(c.start).Round(time.Millisecond))
	mon.setStatusLocked(m, old, &next)
	mon.requeueLocked(m, now.Add(delay))
}

// judgeLocked decides what a check that returned before its deadline
// found, publishes the mount's next status, fills in c.rec, and reports
// whether the check succeeded. A check whose deadline moved through the
// agent's own doing (cause) and that ended past start + timeout is
// judged by its calls: a timeout when they took the whole timeout,
// otherwise its real result.
func (mon *Monitor) judgeLocked(c *check, res probes.Result, now time.Time) bool {
	m := c.m
	cause := c.extended
	if cause == noDelay && c.waitedSweep {
		cause = SelfDelayHousekeeping
	}
	late := cause != noDelay && now.Sub(c.start) > mon.cfg.Timeout
	old := m.status.Load()
	c.rec = CheckRecord{Mount: c.spec, Start: c.start, End: now, Ops: c.log.Ops()}
	if op, slow := slowCalls(res, mon.cfg.Timeout); late && slow {
		// Past its deadline, and the calls themselves took the whole
		// timeout: the mount was slow, whatever else delayed the check.
		hung, out, delay := timedOut(old, op, c.start, now, mon.pol)
		c.rec.Outcome = out
		if !m.removed {
			next, _ := returned(&hung, c.start, now, mon.pol)
			mon.groupedLocked(c, false, res.Dev, res.DevKnown, now, &next)
			mon.setStatusLocked(m, old, &next)
			mon.requeueLocked(m, now.Add(delay))
		}
		return false
	}
	if late {
		// The deadline passed through the agent's own doing, and the
		// check's calls took less than the timeout: judged by its real
		// result.
		mon.counts.selfDelays[cause]++
	}
	next, out, delay := checked(old, res, c.start, now, mon.pol, mon.rnd.Float64())
	c.rec.Outcome = out
	if !m.removed {
		if res.Retried {
			mon.log.Info("probe file vanished mid-check (removed by something else); checked again with a fresh name",
				"mount", m.spec.Path, "healthy", res.Err == nil)
		}
		mon.logCheckLocked(c.spec, old, &next, &res)
		mon.groupedLocked(c, res.Err == nil, res.Dev, res.DevKnown, now, &next)
		mon.setStatusLocked(m, old, &next)
		mon.requeueLocked(m, now.Add(delay))
		mon.steerLocked(m, now)
	}
	return res.Err == nil
}

// setStatusLocked publishes st for m, keeps the counters, and logs state
// changes (not every check).
func (mon *Monitor) setStatusLocked(m *mount, old, st *MountStatus) {
	path := m.spec.Path
	if old.State != st.State {
		mon.counts.count(old.State, -1, path)
		mon.counts.count(st.State, +1, path)
	}
	m.status.Store(st)
	mon.counts.setLast(m.slot, st, mon.due.epoch)
	mon.logTransition(old, st)
}
