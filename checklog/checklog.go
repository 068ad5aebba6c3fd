package checklog

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Default sizes of the log (exporters.Options.DebugRecent, DebugSlowest,
// DebugFailures).
const (
	DefaultRecent   = 256
	DefaultSlowest  = 32
	DefaultFailures = 128
)

// MaxText bounds each error text a record keeps, so that a failure costs
// at most a few KiB whatever its error quotes.
const MaxText = 1 << 10

// Op is one operation of a check, as /debug/checks shows it.
type Op struct {
	Op    string  `json:"op"`
	Ms    float64 `json:"ms"`
	Error string  `json:"error,omitempty"`
}

// Check is one check, as /debug/checks shows it.
type Check struct {
	MountPath  string    `json:"mountPath"`
	TraceID    string    `json:"traceId,omitempty"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	Outcome    string    `json:"outcome"`
	State      string    `json:"state"`
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`
	Ops        []Op      `json:"operations"`
}

// record is a check as the log keeps it: 88 bytes, and for a check
// without errors nothing allocated besides, so that the log stays small
// and cheap for the GC. It is turned into a Check only when asked for.
type record struct {
	trace trace.TraceID
	start int64 // Unix nanoseconds
	dur   time.Duration
	fail  *failure // nil unless the check or an operation failed
	state uint8    // index into states
	nops  uint8
	ops   [probes.NumSteps]uint8  // probes.StepIndex, opOther outside the table
	opUs  [probes.NumSteps]uint32 // microseconds, saturating
}

// failure is what a failed check adds to its record.
type failure struct {
	reason probes.Reason
	err    string
	opErrs [probes.NumSteps]string
}

// states are the states a check can end in, stored by index.
var states = []agent.State{agent.StatePending, agent.StateHealthy, agent.StateUnhealthy, agent.StateHung}

func stateCode(s agent.State) uint8 {
	if i := slices.Index(states, s); i >= 0 {
		return uint8(i)
	}
	return math.MaxUint8
}

func (r *record) stateName() agent.State {
	if int(r.state) < len(states) {
		return states[r.state]
	}
	return "unknown"
}

// failed reports whether the check ended unhealthy or hung.
func (r *record) failed() bool {
	st := r.stateName()
	return st == agent.StateUnhealthy || st == agent.StateHung
}

// opOther is the stored code, and otherOp the name shown, of an operation
// outside the step table.
const (
	opOther = math.MaxUint8
	otherOp = probes.Op("other")
)

// clip cuts s to MaxText bytes.
func clip(s string) string {
	if len(s) <= MaxText {
		return s
	}
	return strings.Clone(s[:MaxText]) + "…"
}

// newRecord is r as the log keeps it, with trace id tid.
func newRecord(r *agent.CheckRecord, tid trace.TraceID) record {
	rec := record{trace: tid, start: r.Start.UnixNano(), dur: r.End.Sub(r.Start), state: stateCode(r.Outcome.State)}
	for i := range r.Ops {
		rec.addOp(r.Ops[i].Op, r.Ops[i].Duration, r.Ops[i].Err)
	}
	errMsg := ""
	if r.Outcome.Err != nil {
		errMsg = r.Outcome.Err.Error()
	}
	if r.Outcome.Reason != probes.ReasonNone || errMsg != "" {
		if rec.fail == nil {
			rec.fail = &failure{}
		}
		rec.fail.reason, rec.fail.err = r.Outcome.Reason, errMsg
	}
	return rec
}

// addOp appends an operation, keeping the first probes.NumSteps (a check
// runs no more).
func (r *record) addOp(op probes.Op, d time.Duration, err error) {
	if int(r.nops) == probes.NumSteps {
		return
	}
	i := r.nops
	r.ops[i] = opOther
	if k := probes.StepIndex(op); k >= 0 {
		r.ops[i] = uint8(k)
	}
	r.opUs[i] = uint32(min(max(d.Microseconds(), 0), math.MaxUint32))
	if err != nil {
		if r.fail == nil {
			r.fail = &failure{}
		}
		r.fail.opErrs[i] = clip(err.Error())
	}
	r.nops++
}

// check renders the record.
func (r *record) check() Check {
	c := Check{
		Start:      time.Unix(0, r.start).UTC(),
		DurationMs: float64(r.dur.Microseconds()) / 1000,
		Outcome:    "success",
		State:      string(r.stateName()),
		Ops:        make([]Op, r.nops),
	}
	if r.trace.IsValid() { // a check whose spans were dropped has none
		c.TraceID = r.trace.String()
	}
	if r.failed() {
		c.Outcome = "failure"
	}
	for i := range c.Ops {
		op := otherOp
		if int(r.ops[i]) < probes.NumSteps {
			op = probes.StepOp(int(r.ops[i]))
		}
		c.Ops[i] = Op{Op: string(op), Ms: float64(r.opUs[i]) / 1000}
		if r.fail != nil {
			c.Ops[i].Error = r.fail.opErrs[i]
		}
	}
	if r.fail != nil {
		c.Reason, c.Error = string(r.fail.reason), r.fail.err
	}
	return c
}

// Entry is a check in the log with its mount and its sequence number (the
// order checks ended in).
type Entry struct {
	path string
	seq  uint64
	rec  record
}

// Check renders the entry.
func (e *Entry) Check() Check {
	c := e.rec.check()
	c.MountPath = pathesc.Escape(e.path)
	return c
}

// Log keeps the checks /debug/checks shows (see the package doc). A mount
// path is the agent's own string, not a copy.
type Log struct {
	nSlowest, maxFailures int

	mu       sync.Mutex
	recent   []Entry // ring; next is the slot written next
	next     int
	slowest  []Entry // slowest first; among equals the earlier ahead
	failures map[string]Entry
	seq      uint64 // checks recorded since start
}

// New returns a log of the last recent checks, the slowest slowest and the
// last failure of up to failures mounts (the mount whose last failure is
// oldest makes room). A size below zero counts as zero.
func New(recent, slowest, failures int) *Log {
	recent, slowest, failures = max(recent, 0), max(slowest, 0), max(failures, 0)
	return &Log{
		nSlowest: slowest, maxFailures: failures,
		recent:   make([]Entry, 0, recent),
		failures: make(map[string]Entry, failures),
	}
}

// Add files the check r with the trace id its spans were kept under (zero
// when none was kept).
func (l *Log) Add(r *agent.CheckRecord, tid trace.TraceID) {
	l.add(r.Mount.Path, newRecord(r, tid))
}

func (l *Log) add(path string, rec record) {
	if rec.fail != nil {
		rec.fail.err = clip(rec.fail.err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e := Entry{path: path, seq: l.seq, rec: rec}
	if len(l.recent) < cap(l.recent) {
		l.recent = append(l.recent, e)
	} else if len(l.recent) > 0 {
		l.recent[l.next] = e
	}
	if cap(l.recent) > 0 {
		l.next = (l.next + 1) % cap(l.recent)
	}
	i := sort.Search(len(l.slowest), func(i int) bool { return l.slowest[i].rec.dur < rec.dur })
	switch {
	case i >= l.nSlowest:
	case len(l.slowest) == l.nSlowest:
		copy(l.slowest[i+1:], l.slowest[i:l.nSlowest-1])
		l.slowest[i] = e
	default:
		l.slowest = slices.Insert(l.slowest, i, e)
	}
	if rec.failed() && l.maxFailures > 0 {
		if _, ok := l.failures[path]; !ok && len(l.failures) >= l.maxFailures {
			oldest := ""
			var seq uint64 = math.MaxUint64
			for p, f := range l.failures {
				if f.seq < seq {
					oldest, seq = p, f.seq
				}
			}
			delete(l.failures, oldest)
		}
		l.failures[path] = e
	}
}

// Len is the number of entries the log holds.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent) + len(l.slowest) + len(l.failures)
}

// Query selects what an answer shows.
type Query struct {
	// Mount keeps one mount, named as /healthz/mounts shows it
	// (escaped); "" keeps every mount.
	Mount string
	// Trace keeps the checks of one trace id (hex); "" any. A malformed
	// one matches nothing.
	Trace string
	// Limit is how many entries of each list are copied.
	Limit int
}

// matcher returns the test of q for an entry: the trace id is parsed once
// (a malformed one matches nothing).
func (q Query) matcher() func(e *Entry) bool {
	var id trace.TraceID
	bad := false
	mount := q.Mount
	if mount != "" {
		var err error
		mount, err = pathesc.Unescape(mount)
		bad = err != nil
	}
	if q.Trace != "" && !bad {
		var err error
		id, err = trace.TraceIDFromHex(strings.ToLower(q.Trace))
		bad = err != nil
	}
	return func(e *Entry) bool {
		return !bad && (mount == "" || e.path == mount) && (q.Trace == "" || e.rec.trace == id)
	}
}

// Selection is a query's answer: up to Limit entries of each list, and
// how many matched in all.
type Selection struct {
	// Checks is the number of checks recorded since start.
	Checks uint64
	// Recent is oldest first (the last Limit), Slowest slowest first,
	// Failures newest first.
	Recent, Slowest, Failures                []Entry
	RecentTotal, SlowestTotal, FailuresTotal int
}

// Select copies, under the lock, the entries q selects.
func (l *Log) Select(q Query) Selection {
	match := q.matcher()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Selection{Checks: l.seq}
	// The ring from newest to oldest, keeping the first Limit matches.
	n := len(l.recent)
	for k := 0; k < n; k++ {
		e := &l.recent[(l.next-1-k+2*n)%n]
		if match(e) {
			s.RecentTotal++
			if len(s.Recent) < q.Limit {
				s.Recent = append(s.Recent, *e)
			}
		}
	}
	slices.Reverse(s.Recent)
	for i := range l.slowest {
		if e := &l.slowest[i]; match(e) {
			s.SlowestTotal++
			if len(s.Slowest) < q.Limit {
				s.Slowest = append(s.Slowest, *e)
			}
		}
	}
	var fails []Entry
	for _, e := range l.failures {
		if match(&e) {
			fails = append(fails, e)
		}
	}
	slices.SortFunc(fails, func(a, b Entry) int { return cmp.Compare(b.seq, a.seq) })
	s.FailuresTotal = len(fails)
	s.Failures = fails[:min(len(fails), max(q.Limit, 0))]
	return s
}
