package agent

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// ErrTooManyMounts is returned by Register for a new path when
// Config.MaxMounts mounts are registered already.
var ErrTooManyMounts = errors.New("too many mounts registered")

// ErrTimeout marks a check that hit its deadline.
var ErrTimeout = errors.New("check deadline exceeded")

// heartbeatEvery is the longest the scheduler loop sleeps; the liveness
// endpoint and the freshness of the summary depend on it.
const heartbeatEvery = time.Second

// maxCoalesce bounds the coalescing window; see coalesceWindow.
const maxCoalesce = 100 * time.Millisecond

// coalesceWindow is how far ahead of its due time a check may start: when
// the scheduler loop wakes for a due check it also starts every check due
// within the window, so that one wake (and one pass over the due heap)
// serves several checks instead of one each. It is the least of 100 ms,
// a twentieth of the interval and half of MinRetry, so a check starts at
// most 5% of an interval early and a retry never comes sooner than half of
// MinRetry after the previous start. Checks only ever start early, never
// late, and deadlines are not coalesced at all: a hang is still reported
// at the check's start + timeout.
func coalesceWindow(cfg Config) time.Duration {
	return min(maxCoalesce, cfg.Interval/20, cfg.MinRetry/2)
}

// Monitor schedules checks of registered mounts and publishes their status.
// Its methods are safe for concurrent use.
type Monitor struct {
	cfg    Config
	pol    policy
	window time.Duration // see coalesceWindow
	clock  Clock
	log    *slog.Logger
	obs    Observer
	// owner names this monitor's probe files: the node and a random
	// instance id, so two agents on one node never take each other's
	// files for their own.
	owner   probes.Owner
	sweeper *sweeper
	// Guarded by mu: sweepOn is the mount a call of the leftover sweep
	// is in progress on (nil while none is), sweepDone is closed when
	// that call returns, and sweepIdle, while set, is closed when a check
	// ends (the sweeper waits for it). See sweepGate.
	sweepOn   *mount
	sweepDone chan struct{}
	sweepIdle chan struct{}

	mu        sync.Mutex
	mounts    map[string]*mount
	due       dueQueue
	deadlines deadlineHeap // checks in flight, by deadline
	inFlight  int
	pending   int
	unhealthy int
	hung      int
	stale     int
	// lastChecks holds, by mount slot, the time of each registered mount's
	// last completed check, as an offset from due.epoch, or noCheck while
	// it is pending; freeSlots are unused slots. The stale count reads
	// this one dense array instead of every mount's status.
	lastChecks   []time.Duration
	freeSlots    []int32
	unhealthySet map[string]struct{}
	// selfDelays counts, by cause, checks whose deadline passed through
	// the agent's own doing and that were judged by their real result.
	selfDelays [NumSelfDelayCauses]uint64
	running    bool
	// draining is set once Run's ctx is cancelled: no check starts, and
	// every completion wakes the loop.
	draining  bool
	heartbeat time.Time
	lastScan  time.Time
	// wakeAt is when the scheduler loop will next look at the due heap on
	// its own; complete wakes it only when it would otherwise be late.
	wakeAt    time.Time
	listDirty bool
	setDirty  bool
	rnd       *rand.Rand
	// orphans holds unregistered mounts whose check is still stuck, so a
	// re-registration of the same path cannot start a second check there.
	orphans map[string]*mount
	// tunnelWarned is set once the agent has said that a tunnel could not
	// be reached from its network namespace while the mount worked.
	tunnelWarned atomic.Bool

	wake    chan struct{}
	work    chan func() // hands a check to an idle worker
	summary atomic.Pointer[Summary]
	list    atomic.Pointer[[]*mount]
}

type mount struct {
	// spec is the mount's description, shared with its published
	// statuses: never modified, Register replaces it.
	spec   *Mount
	status atomic.Pointer[MountStatus]
	reg    registration

	// Guarded by Monitor.mu. The flags come first, where they fill the
	// padding after reg.
	removed bool
	// swept is set once the root's one listing for leftovers is queued.
	swept bool
	// queued is set while the mount has a valid entry in the due queue;
	// gen tells that entry from those it left behind.
	queued bool
	gen    uint32
	// slot is the mount's index in Monitor.lastChecks.
	slot int32
	cur  *check
	// parked holds probe file names to look at again by name after the
	// next successful check; nil while there are none (almost always).
	parked *parkedLeftovers
}

type check struct {
	mon *Monitor // nil for CheckOnce's
	m   *mount
	// spec is the mount's description when the check started: Register
	// may replace m.spec meanwhile.
	spec   *Mount
	clock  Clock
	start  time.Time
	rec    CheckRecorder
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
	// meanwhile (see awaitSweep). parked is set when its deadline passed
	// during the wait and it was taken out of Monitor.deadlines;
	// waitedSweep once it has waited.
	paused      time.Time
	parked      bool
	waitedSweep bool

	mu      sync.Mutex
	op      probes.Op
	opStart time.Time
	// lastEnd is when the check's last call returned, on the check's
	// clock; zero before the first.
	lastEnd time.Time
	opOpen  bool // op has started and not ended
	expired bool
	done    bool
	// tunnelErr is the failure of the check's tunnel step: it explains a
	// deadline that passes later (see tunnelExplains).
	tunnelErr error
	// recMu orders the calls of rec: OpStart and OpEnd hold it while
	// they call rec (not mu, so that the scheduler loop can look at the
	// check meanwhile), expire while it ends the record.
	recMu sync.Mutex
}

// New returns a Monitor; call Run to start checking.
func New(cfg Config) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StaleScanLimit <= 0 {
		cfg.StaleScanLimit = DefaultConfig().StaleScanLimit
	}
	if cfg.MaxMounts <= 0 {
		cfg.MaxMounts = DefaultMaxMounts
	}
	owner, err := probes.NewOwner(cfg.Hostname)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	m := &Monitor{
		owner:        owner,
		cfg:          cfg,
		pol:          cfg.policy(),
		window:       coalesceWindow(cfg),
		clock:        cfg.Clock,
		log:          cfg.Logger,
		obs:          cfg.Observer,
		mounts:       make(map[string]*mount),
		unhealthySet: make(map[string]struct{}),
		orphans:      make(map[string]*mount),
		wake:         make(chan struct{}, 1),
		work:         make(chan func()),
		rnd:          rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	m.due.epoch = m.clock.Now()
	m.sweeper = newSweeper(m)
	m.mu.Lock()
	m.publishSummaryLocked()
	m.mu.Unlock()
	empty := []*mount{}
	m.list.Store(&empty)
	return m, nil
}

// Config returns the monitor's configuration.
func (mon *Monitor) Config() Config { return mon.cfg }

// ValidatePath reports whether p can be registered: absolute and clean.
func ValidatePath(p string) error {
	if p == "" {
		return errors.New("mount path: must not be empty")
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("mount path %q: must be absolute", p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("mount path %q: must be clean (%q)", p, filepath.Clean(p))
	}
	return nil
}

// Register adds a mount and schedules its first check at once. Registering
// a path that is already registered updates its description and is
// otherwise a no-op. It never touches the filesystem.
func (mon *Monitor) Register(spec Mount) error {
	if err := ValidatePath(spec.Path); err != nil {
		return err
	}
	if spec.FSType == "" && mon.cfg.MountTable != nil {
		// A path that is a mount point now is verified against the mount
		// table before every check from here on.
		if fstype, source, ok := mon.cfg.MountTable.Lookup(spec.Path); ok {
			spec.FSType, spec.Source = fstype, source
		}
	}
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if m, ok := mon.mounts[spec.Path]; ok {
		if *m.spec != spec {
			// Published statuses and checks in flight keep the old
			// description; it is never modified.
			desc := spec
			m.spec = &desc
			st := *m.status.Load()
			st.Mount = &desc
			m.status.Store(&st)
		}
		return nil
	}
	if len(mon.mounts) >= mon.cfg.MaxMounts {
		return fmt.Errorf("register %q: %w (at most %d)", spec.Path, ErrTooManyMounts, mon.cfg.MaxMounts)
	}
	now := mon.clock.Now()
	desc := spec
	m := &mount{spec: &desc, slot: mon.allocSlotLocked()}
	st := &MountStatus{Mount: &desc, State: StatePending}
	m.status.Store(st)
	mon.mounts[spec.Path] = m
	mon.pending++
	mon.due.push(m, now)
	mon.listDirty = true
	mon.publishSummaryLocked()
	mon.log.Info("mount registered", "mount", spec.Path, "fstype", spec.FSType)
	mon.poke()
	return nil
}

// Unregister removes a mount. It never blocks on the filesystem, even while
// the mount's check is stuck there; the stuck goroutine is left to finish
// on its own and its result is discarded. It reports whether the path was
// registered.
func (mon *Monitor) Unregister(path string) bool {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	m, ok := mon.mounts[path]
	if !ok {
		return false
	}
	delete(mon.mounts, path)
	m.removed = true
	m.reg.ended.Store(true)
	if m.cur != nil {
		mon.orphans[path] = m
	}
	mon.due.remove(m)
	mon.freeSlotLocked(m.slot)
	mon.countLocked(m.status.Load().State, -1, path)
	mon.listDirty = true
	mon.publishSummaryLocked()
	mon.log.Info("mount unregistered", "mount", path)
	return true
}

// Status returns the status of one mount.
func (mon *Monitor) Status(path string) (*MountStatus, bool) {
	mon.mu.Lock()
	m, ok := mon.mounts[path]
	mon.mu.Unlock()
	if !ok {
		return nil, false
	}
	return m.status.Load(), true
}

// Statuses returns every mount's status, sorted by path. The values are
// immutable; the slice is the caller's.
func (mon *Monitor) Statuses() []*MountStatus {
	list := mon.mountList()
	out := make([]*MountStatus, len(list))
	for i, m := range list {
		out[i] = m.status.Load()
	}
	return out
}

func (mon *Monitor) mountList() []*mount {
	mon.mu.Lock()
	if mon.listDirty {
		l := make([]*mount, 0, len(mon.mounts))
		for _, m := range mon.mounts {
			l = append(l, m)
		}
		slices.SortFunc(l, func(a, b *mount) int {
			switch {
			case a.spec.Path < b.spec.Path:
				return -1
			case a.spec.Path > b.spec.Path:
				return 1
			}
			return 0
		})
		mon.list.Store(&l)
		mon.listDirty = false
	}
	mon.mu.Unlock()
	return *mon.list.Load()
}

// Summary returns the aggregate health. O(1).
func (mon *Monitor) Summary() *Summary { return mon.summary.Load() }

// Live reports whether the scheduler is running and its loop has turned
// recently.
func (mon *Monitor) Live() bool {
	s := mon.summary.Load()
	return s.Running && mon.clock.Now().Sub(s.Heartbeat) < 5*heartbeatEvery
}

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
			mon.launch(c)
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
	skipped []Mount
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
	if now.Sub(mon.lastScan) >= heartbeatEvery {
		mon.scanStaleLocked(now)
	}
	for mon.deadlines.Len() > 0 && !mon.deadlines[0].deadline.After(now) {
		c := heap.Pop(&mon.deadlines).(*check)
		if !c.paused.IsZero() {
			// Waiting for the agent's own sweep: its time does not
			// run; awaitSweep puts it back.
			c.parked = true
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
			t.skipped = append(t.skipped, *m.spec)
			continue
		}
		if mon.inFlight >= mon.cfg.MaxConcurrent {
			break
		}
		mon.due.pop()
		c := &check{mon: mon, m: m, spec: m.spec, clock: mon.clock, start: now, op: probes.OpOpen, opStart: now,
			deadline: now.Add(mon.cfg.Timeout), extended: noDelay}
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

// scanStaleLocked counts mounts whose last check is older than
// interval + timeout: one pass over a dense array of 8 bytes a mount.
func (mon *Monitor) scanStaleLocked(now time.Time) {
	mon.lastScan = now
	limit := now.Sub(mon.due.epoch) - mon.cfg.Interval - mon.cfg.Timeout
	n := 0
	for _, at := range mon.lastChecks {
		if at != noCheck && at < limit {
			n++
		}
	}
	mon.stale = n
}

// noCheck marks a free slot or a pending mount in Monitor.lastChecks.
const noCheck = time.Duration(math.MinInt64)

// allocSlotLocked returns a free slot of Monitor.lastChecks.
func (mon *Monitor) allocSlotLocked() int32 {
	if n := len(mon.freeSlots); n > 0 {
		s := mon.freeSlots[n-1]
		mon.freeSlots = mon.freeSlots[:n-1]
		return s
	}
	mon.lastChecks = append(mon.lastChecks, noCheck)
	return int32(len(mon.lastChecks) - 1)
}

// freeSlotLocked gives a slot back.
func (mon *Monitor) freeSlotLocked(s int32) {
	mon.lastChecks[s] = noCheck
	mon.freeSlots = append(mon.freeSlots, s)
}

// launch hands a check to a worker goroutine; its deadline is already in
// the deadline heap.
func (mon *Monitor) launch(c *check) {
	spec := c.spec
	if mon.obs != nil {
		c.rec = mon.obs.CheckStart(*spec, c.start)
	} else {
		c.rec = nopRecorder{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	job := func() { mon.runCheck(ctx, c) }
	select {
	case mon.work <- job:
	default:
		go mon.worker(job)
	}
}

// workerIdle is how long an idle worker waits for another check before it
// exits: between one and two workerIdle periods.
const workerIdle = 10 * time.Second

// worker runs checks handed to it until it has had none for a whole
// workerIdle period. Reusing goroutines saves their creation and stack
// growth on every check; a worker stuck in the kernel simply never comes
// back for more, and a new one is started when no idle worker takes a
// check. Idleness is judged by a ticker, not by a timer reset after every
// check: re-arming a timer can wake the runtime's network poller, a
// system call per check.
func (mon *Monitor) worker(job func()) {
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
		case <-tick.C:
			if !busy {
				return
			}
			busy, job = false, nil
		}
	}
}

// runCheck runs one check. It never lists the mount root: the check's
// own probe file is removed by name, and leftovers of earlier instances
// are the sweeper's business.
func (mon *Monitor) runCheck(ctx context.Context, c *check) {
	defer c.cancel()
	mon.complete(c, probes.Check(ctx, c.spec.Path, probeOptions(mon.cfg, mon.owner, c.spec, c)))
}

// probeOptions are the options of one check of spec: the probes pipeline
// with the mount table and tunnel preflight (which touch nothing on the
// mount), this instance's probe file names, and the injected clock.
func probeOptions(cfg Config, owner probes.Owner, spec *Mount, obs probes.Observer) probes.Options {
	o := probes.Options{
		Owner:         owner,
		Observer:      obs,
		Now:           cfg.Clock.Now,
		FSType:        spec.FSType,
		Source:        spec.Source,
		TunnelAddr:    spec.TunnelAddr,
		TunnelTimeout: cfg.TunnelTimeout,
		MountTable:    cfg.MountTable,

		RequireWriteCheck: cfg.RequireWriteCheck,
	}
	if o.TunnelTimeout <= 0 {
		o.TunnelTimeout = min(cfg.Timeout/5, time.Second)
	}
	return o
}

// OpStart implements probes.Observer. A step that creates or unlinks in
// the mount root first waits for a call of the leftover sweep in progress
// on that root, if any (see awaitSweep).
func (c *check) OpStart(op probes.Op) {
	if c.mon != nil && (op == probes.OpWrite || op == probes.OpDelete) {
		c.mon.awaitSweep(c)
	}
	c.recMu.Lock()
	defer c.recMu.Unlock()
	c.mu.Lock()
	c.op = op
	c.opStart = c.clock.Now()
	c.opOpen = true
	at, expired := c.opStart, c.expired
	c.mu.Unlock()
	if !expired {
		c.rec.OpStart(op, at)
	}
}

// OpEnd implements probes.Observer. It stamps when the call returned, so
// that a deadline passing after that is known not to be the mount's.
func (c *check) OpEnd(op probes.Op, d time.Duration, err error) {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	c.mu.Lock()
	c.opOpen = false
	if op == probes.OpTunnel && err != nil {
		c.tunnelErr = err
	}
	c.lastEnd = c.clock.Now()
	expired := c.expired
	c.mu.Unlock()
	if !expired {
		c.rec.OpEnd(op, d, err)
	}
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
	op, opStart, opOpen, tunnelErr := c.op, c.opStart, c.opOpen, c.tunnelErr
	c.mu.Unlock()
	c.cancel()
	// An OpStart or OpEnd that saw the check before it expired finishes
	// its record first.
	c.recMu.Lock()
	defer c.recMu.Unlock()

	mon.mu.Lock()
	mon.inFlight--
	m := c.m
	old := m.status.Load()
	next, out, delay := timedOut(old, op, c.start, now, mon.pol)
	tunnelExplains(&next, &out, tunnelErr)
	if !m.removed {
		mon.setStatusLocked(m, old, &next)
		mon.requeueLocked(m, now.Add(delay))
	}
	out.Registration, out.Mounts = &m.reg, len(mon.mounts)
	mon.publishSummaryLocked()
	mon.mu.Unlock()
	if opOpen {
		// End the stuck operation's record at the deadline; the kernel
		// may hold the call much longer.
		c.rec.OpEnd(op, now.Sub(opStart), out.Err)
	}
	c.rec.End(out, now)
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
	// late: the check ended past start + timeout, its deadline moved
	// through the agent's own doing (cause).
	cause := c.extended
	if cause == noDelay && c.waitedSweep {
		cause = SelfDelayHousekeeping
	}
	late := cause != noDelay && now.Sub(c.start) > mon.cfg.Timeout
	old := m.status.Load()
	var out Outcome
	succeeded := false
	if expired {
		if !m.removed {
			// The stuck call finally returned (and the check removed its
			// probe file by name). The failure stays on record; re-check
			// at once.
			next, delay := returned(old, c.start, now, mon.pol)
			mon.log.Info("stuck check returned", "mount", m.spec.Path,
				"op", old.FailedOp, "blocked_for", now.Sub(c.start).Round(time.Millisecond))
			mon.setStatusLocked(m, old, &next)
			mon.requeueLocked(m, now.Add(delay))
		}
	} else if op, slow := slowCalls(res, mon.cfg.Timeout); late && slow {
		// Past its deadline, and the calls themselves took the whole
		// timeout: the mount was slow, whatever else delayed the check.
		hung, o, delay := timedOut(old, op, c.start, now, mon.pol)
		out = o
		out.Registration, out.Mounts = &m.reg, len(mon.mounts)
		if !m.removed {
			next, _ := returned(&hung, c.start, now, mon.pol)
			mon.setStatusLocked(m, old, &next)
			mon.requeueLocked(m, now.Add(delay))
		}
	} else {
		if late {
			// The deadline passed through the agent's own doing, and
			// the check's calls took less than the timeout: judged by
			// its real result.
			mon.selfDelays[cause]++
		}
		succeeded = res.Err == nil
		var next MountStatus
		var delay time.Duration
		next, out, delay = checked(old, res, c.start, now, mon.pol, mon.rnd.Float64())
		out.Registration, out.Mounts = &m.reg, len(mon.mounts)
		if !m.removed {
			if res.Retried {
				mon.log.Info("probe file vanished mid-check (removed by something else); checked again with a fresh name",
					"mount", m.spec.Path, "healthy", res.Err == nil)
			}
			mon.logCheckLocked(c.spec, old, &next, &res)
			mon.setStatusLocked(m, old, &next)
			mon.requeueLocked(m, now.Add(delay))
		}
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
		c.rec.End(out, now)
	}
	if wake {
		mon.poke()
	}
}

// setStatusLocked publishes st for m, keeps the counters, and logs state
// changes (not every check).
func (mon *Monitor) setStatusLocked(m *mount, old, st *MountStatus) {
	path := m.spec.Path
	if old.State != st.State {
		mon.countLocked(old.State, -1, path)
		mon.countLocked(st.State, +1, path)
	}
	m.status.Store(st)
	if st.State == StatePending {
		mon.lastChecks[m.slot] = noCheck
	} else {
		mon.lastChecks[m.slot] = st.LastCheck.Sub(mon.due.epoch)
	}
	mon.logTransition(old, st)
}

func (mon *Monitor) countLocked(s State, d int, path string) {
	switch s {
	case StatePending:
		mon.pending += d
	case StateUnhealthy:
		mon.unhealthy += d
	case StateHung:
		mon.unhealthy += d
		mon.hung += d
	}
	if s == StateUnhealthy || s == StateHung {
		if d > 0 {
			mon.unhealthySet[path] = struct{}{}
		} else {
			delete(mon.unhealthySet, path)
		}
		mon.setDirty = true
	}
}

func (mon *Monitor) logTransition(old, st *MountStatus) {
	if old.State == st.State && old.Mode == st.Mode {
		return
	}
	l := mon.log.With("mount", st.Path, "from", string(old.State), "to", string(st.State))
	switch st.State {
	case StateHealthy:
		if old.State == StatePending {
			l.Info("mount healthy", "mode", string(st.Mode), "response_time", st.ResponseTime)
		} else if old.State != StateHealthy {
			l.Info("mount recovered", "mode", string(st.Mode), "response_time", st.ResponseTime)
		} else if st.Mode != probes.ModeWriteDenied && old.Mode != probes.ModeWriteDenied {
			// A change into or out of write-denied has a line of its
			// own (logCheckLocked).
			l.Info("mount mode changed", "mode", string(st.Mode), "previous_mode", string(old.Mode))
		}
	case StateUnhealthy:
		if old.State != StateHung {
			l.Warn("mount unhealthy", "reason", string(st.Reason), "op", string(st.FailedOp), "err", st.LastError)
		}
	case StateHung:
		l.Error("mount hung", "op", string(st.FailedOp), "err", st.LastError)
	}
}

// logCheckLocked says what a returned check found that its state does
// not: once per agent process, that a tunnel could not be reached from
// this network namespace while the mount worked; and once per mount each
// time the check falls back to write-denied, or leaves it.
func (mon *Monitor) logCheckLocked(spec *Mount, old, next *MountStatus, res *probes.Result) {
	if res.Err == nil && res.TunnelErr != nil && mon.tunnelWarned.CompareAndSwap(false, true) {
		mon.log.Warn("tunnel checks cannot be made from this network namespace",
			"mount", spec.Path, "tunnel_addr", spec.TunnelAddr, "err", res.TunnelErr,
			"detail", "the mount's I/O works while its tunnel does not accept connections here (an agent outside the host network beside efs-proxy); tunnel_down then only explains a failing or hung check")
	}
	switch {
	case next.Mode == old.Mode:
	case next.Mode == probes.ModeWriteDenied:
		mon.log.Warn("probe file creation denied: checking the mount read-only",
			"mount", spec.Path, "err", res.WriteDenied,
			"detail", "the agent may not create files in the mount root (root squash, an EFS file-system policy without ClientRootAccess, or a root owned by another user); set HEALTH_REQUIRE_WRITE_CHECK=true to count that as a failure")
	case old.Mode == probes.ModeWriteDenied:
		mon.log.Info("probe file creation allowed again: write check resumed", "mount", spec.Path, "mode", string(next.Mode))
	}
}

func (mon *Monitor) publishSummaryLocked() {
	s := &Summary{
		Mounts:     len(mon.mounts),
		Pending:    mon.pending,
		Unhealthy:  mon.unhealthy,
		Hung:       mon.hung,
		Stale:      mon.stale,
		InFlight:   mon.inFlight,
		Heartbeat:  mon.heartbeat,
		Running:    mon.running,
		SelfDelays: mon.selfDelays,
	}
	if old := mon.summary.Load(); old != nil && !mon.setDirty {
		s.UnhealthyPaths = old.UnhealthyPaths
	} else if len(mon.unhealthySet) > 0 {
		paths := make([]string, 0, len(mon.unhealthySet))
		for p := range mon.unhealthySet {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		if len(paths) > MaxListed {
			paths = paths[:MaxListed]
		}
		s.UnhealthyPaths = paths
	}
	mon.setDirty = false
	mon.summary.Store(s)
}

type nopRecorder struct{}

func (nopRecorder) OpStart(probes.Op, time.Time)          {}
func (nopRecorder) OpEnd(probes.Op, time.Duration, error) {}
func (nopRecorder) End(Outcome, time.Time)                {}
