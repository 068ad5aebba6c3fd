package agent

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Bounds of the leftover sweep.
const (
	// sweepBudget bounds the time one listing of a mount root spends
	// reading names (checked between batches of names).
	sweepBudget = 30 * time.Second
	// maxSweepJobs bounds the sweeper's queue; a job that does not fit is
	// dropped (its files stay until the next agent start).
	maxSweepJobs = 4096
	// maxLeftoverNames bounds the probe file names remembered per mount
	// for removal by name.
	maxLeftoverNames = 64
	// maxSweepTries bounds how often a leftover that is still too young is
	// looked at again.
	maxSweepTries = 5
	// sweepMargin is added to the wait for a young leftover.
	sweepMargin = time.Second
	// maxLoggedNames bounds the file names in one log line.
	maxLoggedNames = 10
	// stopBound is how long an agent takes at most to exit after
	// SIGTERM (its checks in flight finish within ShutdownDrain); the
	// second listing of a root waits for it.
	stopBound = 5 * time.Second
	// maxSweepWait bounds how long a check waits for a call of the
	// sweep in progress on its root; then it goes on, its time running.
	maxSweepWait = 10 * time.Second
)

// sweeper removes probe files left behind, away from every check: one
// goroutine per running Monitor, fed by complete. It lists a mount's
// probe directory (probes.DirName) and its root twice per registration
// (after the mount's first successful check, and stopBound + the leftover
// age later), and otherwise only looks at files by name (names relative
// to the root, in either). Every call it makes on a root goes through a sweepGate, apart
// from the checks of that root. A mount is swept only
// while its last check succeeded, so the sweeper rarely meets a hung
// mount; if it does, it stays blocked there, and only the sweeper (one
// goroutine for the whole agent) waits: checks and health never depend on
// it.
//
// It measures file ages on the real clock, not the Monitor's: the files'
// times come from the file server's clock.
type sweeper struct {
	mon    *Monitor
	minAge time.Duration

	mu   sync.Mutex
	jobs []*sweepJob
	kick chan struct{}
}

type sweepJob struct {
	m    *mount
	path string
	// dir is the directory a listing lists, relative to the root: ""
	// (the root, where earlier versions and ProbeInRoot make probe
	// files) or probes.DirName.
	dir   string
	list  bool     // list dir once
	names []string // or look at these names only
	ref   probes.ServerTime
	// seen is a local time by which names were known to exist (the end
	// of the listing that found them); zero for names from elsewhere.
	seen  time.Time
	at    time.Time // not before
	tries int
	// relist marks the second listing of a registration.
	relist bool
}

func newSweeper(mon *Monitor) *sweeper {
	age := mon.cfg.LeftoverAge
	if age == 0 {
		age = probes.LeftoverAge(mon.cfg.Timeout)
	}
	return &sweeper{mon: mon, minAge: age, kick: make(chan struct{}, 1)}
}

// add queues j; it never blocks. Callers may hold Monitor.mu.
func (s *sweeper) add(j *sweepJob) {
	s.mu.Lock()
	if len(s.jobs) >= maxSweepJobs {
		s.mu.Unlock()
		s.mon.log.Debug("leftover sweep queue full; job dropped", "mount", j.path)
		return
	}
	s.jobs = append(s.jobs, j)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// next takes the first job that is due, or says how long until one is.
func (s *sweeper) next(now time.Time) (*sweepJob, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait := time.Duration(-1)
	for i, j := range s.jobs {
		if !j.at.After(now) {
			s.jobs = append(s.jobs[:i], s.jobs[i+1:]...)
			return j, 0
		}
		if d := j.at.Sub(now); wait < 0 || d < wait {
			wait = d
		}
	}
	return nil, wait
}

// run works through the queue until ctx is cancelled.
func (s *sweeper) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		j, wait := s.next(time.Now())
		if j != nil {
			s.do(ctx, j)
			continue
		}
		if wait < 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// do runs one job, if its mount is still registered and healthy. Each of
// its calls on the root goes through a sweepGate, so it never overlaps a
// check of that root.
func (s *sweeper) do(ctx context.Context, j *sweepJob) {
	if !s.mon.sweepable(j) {
		return
	}
	gate := &sweepGate{mon: s.mon, m: j.m, ctx: ctx}
	opts := probes.SweepOptions{
		MinAge:     s.minAge,
		MaxEntries: s.mon.cfg.StaleScanLimit,
		Budget:     sweepBudget,
		MaxYoung:   maxLeftoverNames,
		Ref:        j.ref,
		Seen:       j.seen,
		Gate:       gate,
		Dir:        j.dir,
	}
	var res probes.SweepResult
	var err error
	if j.list {
		res, err = probes.SweepLeftovers(j.path, s.mon.owner, opts)
	} else {
		res, err = probes.RemoveLeftovers(j.path, s.mon.owner, j.names, opts)
	}
	log := s.mon.log.With("mount", j.path)
	if n := len(res.Removed); n > 0 {
		log.Info("removed leftover probe files", "count", n, "files", res.Removed[:min(n, maxLoggedNames)])
	}
	if res.Truncated {
		log.Info("leftover sweep stopped at its bound", "entries_read", res.Listed)
	}
	if err != nil {
		log.Debug("leftover sweep", "err", err)
	}
	if gate.refused {
		s.mon.handBack(j)
	}
	now := time.Now()
	if len(res.Young) > 0 && j.tries < maxSweepTries {
		// Young files are looked at again once old enough by their
		// times, or once watched for minAge, whichever comes first: a
		// file whose times are in the future (the server's clock was
		// stepped back) is so removed on time too.
		seen := j.seen
		if seen.IsZero() {
			seen = now
		}
		s.add(&sweepJob{m: j.m, path: j.path, names: res.Young, ref: res.Ref, seen: seen,
			at: now.Add(min(res.Wait, s.minAge-now.Sub(seen)) + sweepMargin), tries: j.tries + 1})
	}
	if j.list && !j.relist && !gate.refused {
		// One more listing, stopBound + minAge later: it finds the
		// files of an instance that was still stopping during the first
		// one (its last checks finish after the signal), all of them
		// made by then and old enough to remove at once.
		s.add(&sweepJob{m: j.m, path: j.path, dir: j.dir, list: true, relist: true, at: now.Add(stopBound + s.minAge + sweepMargin)})
	}
}

// sweepable reports whether j may touch its mount now: registered, and its
// last check succeeded. A job for a mount that is not healthy is parked on
// the mount and handed back after its next successful check.
func (mon *Monitor) sweepable(j *sweepJob) bool {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	m := j.m
	if m.removed {
		return false
	}
	if m.status.Load().State == StateHealthy {
		return true
	}
	switch {
	case j.relist:
		mon.sweeper.retryRelist(j)
	case j.list:
		m.swept = false
	default:
		m.parkJobLocked(j)
	}
	return false
}

// parkedLeftovers are probe file names a mount keeps for removal by name
// (at most maxLeftoverNames), and the server time learnt about them. A
// mount points to them only while there are some, so that the common
// mount without leftovers does not carry their room.
type parkedLeftovers struct {
	names []string
	ref   probes.ServerTime
	// seen is the latest time by which parked names of earlier
	// instances were known to exist (sweepJob.seen).
	seen time.Time
}

// parkJobLocked parks a names job on its mount, with what it learnt.
func (m *mount) parkJobLocked(j *sweepJob) {
	m.parkLeftoversLocked(j.names...)
	if p := m.parked; p != nil {
		p.ref = j.ref
		if j.seen.After(p.seen) {
			p.seen = j.seen
		}
	}
}

// parkLeftoversLocked remembers probe file names to remove after the
// mount's next successful check, at most maxLeftoverNames.
func (m *mount) parkLeftoversLocked(names ...string) {
	if len(names) == 0 {
		return
	}
	if m.parked == nil {
		m.parked = new(parkedLeftovers)
	}
	for _, n := range names {
		if len(m.parked.names) < maxLeftoverNames {
			m.parked.names = append(m.parked.names, n)
		}
	}
}

// sweepAfterLocked hands the sweeper what a mount's check left to do:
// after the first successful check of a registration the one listing of
// the root, after a successful check the names parked on the mount.
func (mon *Monitor) sweepAfterLocked(m *mount, ok bool) {
	if !ok || m.removed {
		return
	}
	if !m.swept {
		// The probe directory, and the root: where earlier versions
		// (and ProbeInRoot) make probe files. Each is listed twice per
		// registration (see do), the root never again after.
		m.swept = true
		mon.sweeper.add(&sweepJob{m: m, path: m.spec.Path, dir: probes.DirName, list: true})
		mon.sweeper.add(&sweepJob{m: m, path: m.spec.Path, list: true})
	}
	if p := m.parked; p != nil {
		mon.sweeper.add(&sweepJob{m: m, path: m.spec.Path, names: p.names, ref: p.ref, seen: p.seen})
		m.parked = nil
	}
}

// handBack keeps a job that its gate stopped (the mount stopped being
// healthy mid-job, or the agent is stopping): as sweepable does, it is
// handed back after the mount's next successful check.
func (mon *Monitor) handBack(j *sweepJob) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	m := j.m
	if m.removed {
		return
	}
	switch {
	case j.relist:
		mon.sweeper.retryRelist(j)
		return
	case j.list:
		m.swept = false
	default:
		m.parkJobLocked(j)
	}
	mon.sweepAfterLocked(m, m.status.Load().State == StateHealthy)
}

// retryRelist queues the second listing of a root again, minAge later,
// when its mount was not healthy at its time (at most maxSweepTries
// times): the mount is not listed from scratch for it.
func (s *sweeper) retryRelist(j *sweepJob) {
	if j.tries >= maxSweepTries {
		return
	}
	s.add(&sweepJob{m: j.m, path: j.path, dir: j.dir, list: true, relist: true, tries: j.tries + 1,
		at: time.Now().Add(s.minAge + sweepMargin)})
}

// sweepGate keeps the sweep's calls on a mount root apart from the
// mount's checks (probes.Gate): a call starts only while no check of the
// mount is in flight, and a check that is about to create or unlink in
// the root while a call is in progress waits for it (awaitSweep), its
// time not running. The kernel would otherwise hold the check's create or
// unlink behind the sweep's getdents for as long as that batch takes on
// the server, and the agent's own housekeeping would fail its check.
type sweepGate struct {
	mon *Monitor
	m   *mount
	ctx context.Context
	// refused is set when Enter stopped the sweep.
	refused bool
}

// Enter implements probes.Gate: it waits until no check of the mount is
// in flight, and refuses once the mount is unregistered or not healthy
// (a check stuck past its deadline makes it hung) or the sweeper stops.
func (g *sweepGate) Enter() bool {
	mon := g.mon
	for {
		mon.mu.Lock()
		if g.m.removed || g.m.status.Load().State != StateHealthy || g.ctx.Err() != nil {
			mon.mu.Unlock()
			g.refused = true
			return false
		}
		if g.m.cur == nil {
			mon.sweepOn, mon.sweepDone = g.m, make(chan struct{})
			mon.mu.Unlock()
			return true
		}
		idle := make(chan struct{})
		mon.sweepIdle = idle
		mon.mu.Unlock()
		// complete closes idle; the timer bounds the wait for a check
		// that is stuck (its mount is hung by the next look).
		t := time.NewTimer(mon.cfg.Timeout)
		select {
		case <-idle:
		case <-t.C:
		case <-g.ctx.Done():
		}
		t.Stop()
	}
}

// Leave implements probes.Gate.
func (g *sweepGate) Leave() {
	mon := g.mon
	mon.mu.Lock()
	close(mon.sweepDone)
	mon.sweepOn, mon.sweepDone = nil, nil
	mon.mu.Unlock()
}

// awaitSweep runs on a check's goroutine before a step that creates or
// unlinks in the mount root. While a call of the sweep is in progress on
// that root, the check waits for it, at most maxSweepWait, and its
// deadline moves by the time it waited: the agent's own housekeeping
// never counts against the mount. The check has passed its open and
// statfs of the root by then, so a mount that does not answer at all is
// still reported at its usual time.
func (mon *Monitor) awaitSweep(c *check) {
	mon.mu.Lock()
	if mon.sweepOn != c.m {
		mon.mu.Unlock()
		return
	}
	done := mon.sweepDone
	c.paused = mon.clock.Now()
	mon.mu.Unlock()
	t := time.NewTimer(maxSweepWait)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	mon.mu.Lock()
	c.deadline = c.deadline.Add(mon.clock.Now().Sub(c.paused))
	c.paused = time.Time{}
	c.waitedSweep = true
	wake := false
	switch {
	case c.didx >= 0:
		heap.Fix(&mon.deadlines, c.didx)
	case c.deferred:
		c.deferred = false
		heap.Push(&mon.deadlines, c)
		wake = c.deadline.Before(mon.wakeAt)
	}
	mon.mu.Unlock()
	if wake {
		mon.poke()
	}
}
