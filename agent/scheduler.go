package agent

import (
	"container/heap"
	"context"
	"errors"
	"time"
)

func (mon *Monitor) poke() {
	select {
	case mon.wake <- struct{}{}:
	default:
	}
}

// ShutdownDrain bounds how long Run waits, once ctx is cancelled, for the
// checks in flight to finish and remove their probe files.
const ShutdownDrain = 2 * time.Second

// Run schedules checks until ctx is cancelled. Then it starts no more
// checks and waits for those in flight that are not stuck: each has until
// its own deadline, and all of them at most ShutdownDrain (wall clock), to
// finish and remove its probe file. Checks stuck in the kernel (past their
// deadline) cannot be waited for and are abandoned. Run returns within
// ShutdownDrain of the cancellation.
//
// One goroutine runs the loop with one re-armed timer. Each turn it ends
// the checks past their deadline, starts the due checks (with those due
// within the coalescing window), and sleeps until the next due check, the
// next deadline or the heartbeat, whichever comes first. Checks run on
// worker goroutines; a completed check wakes the loop only when a mount is
// due before the loop's next wake (or while Run drains).
func (mon *Monitor) Run(ctx context.Context) error {
	mon.mu.Lock()
	if mon.running {
		mon.mu.Unlock()
		return errors.New("monitor: already running")
	}
	mon.running = true
	mon.draining = false
	mon.mu.Unlock()
	// Idle workers exit when Run returns; one still in a check exits
	// when its check returns.
	stop := make(chan struct{})
	defer close(stop)
	defer func() {
		mon.mu.Lock()
		mon.running = false
		mon.draining = false
		mon.publishSummaryLocked()
		mon.mu.Unlock()
	}()

	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go mon.sweeper.run(sweepCtx)

	timer := mon.clock.NewTimer(heartbeatEvery)
	defer timer.Stop()
	cancelled := ctx.Done()
	var drained <-chan time.Time // fires ShutdownDrain after cancellation
	var t turn
	for {
		mon.dispatch(&t)
		if mon.obs != nil {
			for _, m := range t.skipped {
				mon.obs.CheckSkipped(m, t.now)
			}
		}
		for _, c := range t.starts {
			mon.launch(c, stop)
		}
		for _, c := range t.expired {
			mon.expire(c, t.now)
		}
		if len(t.expired) > 0 {
			// Capacity was given back and the mounts re-queued: look
			// again before sleeping.
			continue
		}
		if drained != nil && t.inFlight == 0 {
			return nil
		}
		timer.Reset(max(t.wakeAt.Sub(mon.clock.Now()), 0))
		select {
		case <-cancelled:
			cancelled = nil
			drain := time.NewTimer(ShutdownDrain)
			defer drain.Stop()
			drained = drain.C
			mon.mu.Lock()
			mon.draining = true
			n := mon.inFlight
			mon.mu.Unlock()
			if n > 0 {
				mon.log.Info("stopping: waiting for checks in flight", "checks", n, "at_most", ShutdownDrain)
			}
		case <-drained:
			mon.mu.Lock()
			n := mon.inFlight
			mon.mu.Unlock()
			mon.log.Warn("stopping: checks still in flight abandoned", "checks", n)
			return nil
		case <-mon.wake:
		case <-timer.Chan():
		}
	}
}

// turn is what one pass of the scheduler loop does once it has released
// the lock. Its slices are reused from turn to turn.
type turn struct {
	now     time.Time
	starts  []*check
	expired []*check
	skipped []*Mount
	wakeAt  time.Time
	// inFlight is the number of checks in flight and not stuck.
	inFlight int
}

// dispatch takes the checks past their deadline out of the deadline heap,
// pops due mounts while there is capacity (and with them every mount due
// within the coalescing window), and sets the time the loop should next
// wake: the next due mount or deadline, at most heartbeatEvery from now.
func (mon *Monitor) dispatch(t *turn) {
	clear(t.starts)
	clear(t.expired)
	clear(t.skipped)
	t.starts, t.expired, t.skipped = t.starts[:0], t.expired[:0], t.skipped[:0]
	mon.mu.Lock()
	defer mon.mu.Unlock()
	now := mon.clock.Now()
	t.now = now
	mon.heartbeat = now
	if now.Sub(mon.counts.lastScan) >= heartbeatEvery {
		mon.counts.scanStale(now, now.Sub(mon.due.epoch)-mon.cfg.Interval-mon.cfg.Timeout)
	}
	for mon.deadlines.Len() > 0 && !mon.deadlines[0].deadline.After(now) {
		c := heap.Pop(&mon.deadlines).(*check)
		if !c.paused.IsZero() {
			// Waiting for the agent's own sweep: its time does not
			// run; awaitSweep puts it back.
			c.deferred = true
			continue
		}
		t.expired = append(t.expired, c)
	}
	horizon := now
	if _, ok := mon.due.dueBy(now); ok {
		horizon = now.Add(mon.window)
	}
	for !mon.draining {
		m, ok := mon.due.dueBy(horizon)
		if !ok {
			break
		}
		if o := mon.orphans[m.spec.Path]; m.cur != nil || (o != nil && o != m) {
			// The previous check is stuck past its deadline: never start a
			// second one. Count the missed check and look again later
			// (after MinRetry at least, so beyond the horizon).
			mon.due.pop()
			mon.skipLocked(m, now)
			t.skipped = append(t.skipped, m.spec)
			continue
		}
		if mon.inFlight >= mon.cfg.MaxConcurrent {
			break
		}
		mon.due.pop()
		c := newCheck(m, m.spec, now, mon.cfg.Timeout)
		c.mon = mon
		c.full = mon.planLocked(m, now)
		heap.Push(&mon.deadlines, c)
		m.cur = c
		mon.inFlight++
		t.starts = append(t.starts, c)
	}
	mon.publishSummaryLocked()
	mon.wakeAt = now.Add(heartbeatEvery)
	if next, ok := mon.due.next(); ok && mon.inFlight < mon.cfg.MaxConcurrent && next.Before(mon.wakeAt) {
		mon.wakeAt = next
	}
	if mon.deadlines.Len() > 0 && mon.deadlines[0].deadline.Before(mon.wakeAt) {
		mon.wakeAt = mon.deadlines[0].deadline
	}
	t.wakeAt = mon.wakeAt
	t.inFlight = mon.inFlight
}

// launch hands a check to a worker goroutine; its deadline is already in
// the deadline heap. A worker started here exits once stop is closed.
func (mon *Monitor) launch(c *check, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	job := func() { mon.runCheck(ctx, c) }
	select {
	case mon.work <- job:
	default:
		go mon.worker(job, stop)
	}
}

// workerIdle is how long an idle worker waits for another check before it
// exits: between one and two workerIdle periods.
const workerIdle = 10 * time.Second

// worker runs checks handed to it until it has had none for a whole
// workerIdle period, or until stop is closed (Run has returned) and it
// has no check. Reusing goroutines saves their creation and stack
// growth on every check; a worker stuck in the kernel simply never comes
// back for more, and a new one is started when no idle worker takes a
// check. Idleness is judged by a ticker, not by a timer reset after every
// check: re-arming a timer can wake the runtime's network poller, a
// system call per check.
func (mon *Monitor) worker(job func(), stop <-chan struct{}) {
	tick := time.NewTicker(workerIdle)
	defer tick.Stop()
	busy := false
	for {
		if job != nil {
			job()
			busy = true
		}
		select {
		case job = <-mon.work:
		case <-stop:
			return
		case <-tick.C:
			if !busy {
				return
			}
			busy, job = false, nil
		}
	}
}

// skipLocked records a check that could not start because the previous one
// is still stuck.
func (mon *Monitor) skipLocked(m *mount, now time.Time) {
	old := m.status.Load()
	next, delay := skipped(old, now, mon.pol)
	mon.setStatusLocked(m, old, &next)
	mon.requeueLocked(m, now.Add(delay))
}

// requeueLocked queues m for a check at due.
func (mon *Monitor) requeueLocked(m *mount, due time.Time) {
	mon.due.push(m, due)
	if mb := mon.members[m]; mb != nil {
		mb.next = due
	}
}
