package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
//
// Its parts, by file: the registry of mounts (registry.go), the
// scheduler loop with its due queue and deadline heap (scheduler.go),
// the lifecycle of one check, from its start to its record
// (lifecycle.go), the Summary's counters (counters.go), and the leftover
// sweep (sweep.go).
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

	mu sync.Mutex
	// The registry: mounts by path, and orphans, the unregistered mounts
	// whose check is still stuck, so that a re-registration of the same
	// path cannot start a second check there.
	mounts  map[string]*mount
	orphans map[string]*mount
	// Grouping (group.go): the groups by key, and each grouped mount's
	// part; empty while Config.Grouping is off.
	groups    map[string]*group
	members   map[*mount]*member
	listDirty bool
	// The scheduler: mounts by due time, checks in flight by deadline.
	due       dueQueue
	deadlines deadlineHeap
	inFlight  int
	running   bool
	// draining is set once Run's ctx is cancelled: no check starts, and
	// every completion wakes the loop.
	draining  bool
	heartbeat time.Time
	// wakeAt is when the scheduler loop will next look at the due heap on
	// its own; complete wakes it only when it would otherwise be late.
	wakeAt time.Time
	rnd    *rand.Rand
	counts counters

	// tunnelWarned is set once the agent has said that a tunnel could not
	// be reached from its network namespace while the mount worked.
	tunnelWarned atomic.Bool

	// afterProbe, set only by tests, runs on a check's goroutine once its
	// calls have returned and before the check completes: it holds the
	// goroutine as a CPU-starved agent would.
	afterProbe func()

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

	// Guarded by Monitor.mu.
	removed bool
	// swept is set once the root's one listing for leftovers is queued.
	swept bool
	// queued is set while the mount has a valid entry in the due queue;
	// gen tells that entry from those it left behind.
	queued bool
	gen    uint32
	// slot is the mount's index in counters.lastChecks.
	slot int32
	cur  *check
	// parked holds probe file names to look at again by name after the
	// next successful check; nil while there are none (almost always).
	parked *parkedLeftovers
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
		owner:   owner,
		cfg:     cfg,
		pol:     cfg.policy(),
		window:  coalesceWindow(cfg),
		clock:   cfg.Clock,
		log:     cfg.Logger,
		obs:     cfg.Observer,
		mounts:  make(map[string]*mount),
		orphans: make(map[string]*mount),
		groups:  make(map[string]*group),
		members: make(map[*mount]*member),
		counts:  counters{unhealthySet: make(map[string]struct{})},
		wake:    make(chan struct{}, 1),
		work:    make(chan func()),
		rnd:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
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

// Summary returns the aggregate health. O(1).
func (mon *Monitor) Summary() *Summary { return mon.summary.Load() }

// Live reports whether the scheduler is running and its loop has turned
// recently.
func (mon *Monitor) Live() bool {
	s := mon.summary.Load()
	return s.Running && mon.clock.Now().Sub(s.Heartbeat) < 5*heartbeatEvery
}

// publishSummaryLocked publishes the Summary of the counters.
func (mon *Monitor) publishSummaryLocked() {
	c := &mon.counts
	s := &Summary{
		Mounts:     len(mon.mounts),
		Pending:    c.pending,
		Unhealthy:  c.unhealthy,
		Hung:       c.hung,
		Stale:      c.stale,
		InFlight:   mon.inFlight,
		Heartbeat:  mon.heartbeat,
		Running:    mon.running,
		SelfDelays: c.selfDelays,
	}
	s.UnhealthyPaths = c.unhealthyPaths(mon.summary.Load())
	mon.summary.Store(s)
}
