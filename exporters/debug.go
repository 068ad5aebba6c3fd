package exporters

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// PathDebugChecks is where DebugChecksHandler is meant to be mounted.
const PathDebugChecks = "/debug/checks"

// debugOp is one operation of a check, as /debug/checks shows it.
type debugOp struct {
	Op    string  `json:"op"`
	Ms    float64 `json:"ms"`
	Error string  `json:"error,omitempty"`
}

// debugCheck is one check, as /debug/checks shows it.
type debugCheck struct {
	TraceID    string    `json:"traceId"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	Outcome    string    `json:"outcome"`
	State      string    `json:"state"`
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`
	Ops        []debugOp `json:"operations"`
}

// debugMount is one mount's history as /debug/checks shows it: the last n
// checks, oldest first, and the n slowest since the mount was first seen,
// slowest first.
type debugMount struct {
	Recent  []debugCheck `json:"recent"`
	Slowest []debugCheck `json:"slowest"`
}

// maxDebugOps bounds the operations kept per check; a check reports at
// most seven (mounttable, tunnel, open, statfs, write, read, delete).
const maxDebugOps = 8

// debugRecord is a check as the store keeps it: 88 bytes, and for a
// check without errors nothing allocated besides, so that a mount's full
// history stays small and cheap for the GC. It is turned into a
// debugCheck only when /debug/checks is requested.
type debugRecord struct {
	trace trace.TraceID
	start int64 // Unix nanoseconds
	dur   time.Duration
	fail  *debugFailure // nil unless the check or an operation failed
	state uint8         // index into debugStates
	nops  uint8
	ops   [maxDebugOps]uint8  // index into knownOps
	opUs  [maxDebugOps]uint32 // microseconds, saturating
}

// debugStates are the states a check can end in, stored by index.
var debugStates = []agent.State{agent.StatePending, agent.StateHealthy, agent.StateUnhealthy, agent.StateHung}

func stateCode(s agent.State) uint8 {
	if i := slices.Index(debugStates, s); i >= 0 {
		return uint8(i)
	}
	return math.MaxUint8
}

func (r *debugRecord) stateName() agent.State {
	if int(r.state) < len(debugStates) {
		return debugStates[r.state]
	}
	return "unknown"
}

// debugFailure is what a failed check adds to its record.
type debugFailure struct {
	reason probes.Reason
	err    string
	opErrs [maxDebugOps]string
}

// addOp appends an operation, keeping the first maxDebugOps.
func (r *debugRecord) addOp(op probes.Op, d time.Duration, err error) {
	if int(r.nops) == maxDebugOps {
		return
	}
	i := r.nops
	r.ops[i] = opCode(op)
	r.opUs[i] = uint32(min(max(d.Microseconds(), 0), math.MaxUint32))
	if err != nil {
		if r.fail == nil {
			r.fail = &debugFailure{}
		}
		r.fail.opErrs[i] = err.Error()
	}
	r.nops++
}

// check renders the record.
func (r *debugRecord) check() debugCheck {
	c := debugCheck{
		TraceID:    r.trace.String(),
		Start:      time.Unix(0, r.start).UTC(),
		DurationMs: ms(r.dur),
		Outcome:    outcomeSuccess.Value.AsString(),
		State:      string(r.stateName()),
		Ops:        make([]debugOp, r.nops),
	}
	if st := r.stateName(); st == agent.StateUnhealthy || st == agent.StateHung {
		c.Outcome = outcomeFailure.Value.AsString()
	}
	for i := range c.Ops {
		c.Ops[i] = debugOp{Op: string(opName(r.ops[i])), Ms: float64(r.opUs[i]) / 1000}
		if r.fail != nil {
			c.Ops[i].Error = r.fail.opErrs[i]
		}
	}
	if r.fail != nil {
		c.Reason, c.Error = string(r.fail.reason), r.fail.err
	}
	return c
}

// records is a mount's history in the store.
type records struct {
	recent, slowest []debugRecord
	// reg is the registration of the mount's latest check: the store
	// learns from it, without calling the monitor, when the mount is gone.
	reg agent.Registration
}

// debugStore keeps each mount's debugMount. Memory is bounded by 2n checks
// per mount, and by the registered mounts: a mount's history is dropped
// once the source no longer lists it (checked at every /debug/checks
// request), when a check ends after its mount was unregistered, and
// whenever the store holds more than twice the registered mounts plus a
// margin (then by each history's registration, without a call back into
// the monitor).
type debugStore struct {
	n  int
	mu sync.Mutex
	m  map[string]*records
}

// pruneMargin lets a few unregistered mounts linger in the store between
// prunes, so that a prune does not run on every new mount.
const pruneMargin = 16

func newDebugStore(n int) *debugStore { return &debugStore{n: n, m: map[string]*records{}} }

// add files check c of path, from registration reg; mounts is the number
// of registered mounts when the check ended. It takes the store's lock
// briefly and calls nothing outside the store.
func (d *debugStore) add(path string, c debugRecord, reg agent.Registration, mounts int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.m[path]
	if reg != nil && !reg.Registered() {
		// Unregistered while the check ran: drop the mount's history,
		// unless it is a later registration's.
		if h != nil && h.reg == reg {
			delete(d.m, path)
		}
		return
	}
	if h == nil {
		if len(d.m) >= 2*mounts+pruneMargin {
			for p, h := range d.m {
				if h.reg != nil && !h.reg.Registered() {
					delete(d.m, p)
				}
			}
		}
		h = &records{}
		d.m[path] = h
	}
	h.reg = reg
	// Both lists grow with the checks a mount has had, up to n: a mount
	// with one check costs one record, not n.
	if len(h.recent) == d.n {
		copy(h.recent, h.recent[1:])
		h.recent[d.n-1] = c
	} else {
		h.recent = append(growTo(h.recent, d.n), c)
	}
	// Slowest first; among equals the earlier check stays ahead.
	i := sort.Search(len(h.slowest), func(i int) bool { return h.slowest[i].dur < c.dur })
	switch {
	case i >= d.n:
	case len(h.slowest) == d.n:
		copy(h.slowest[i+1:], h.slowest[i:d.n-1])
		h.slowest[i] = c
	default:
		h.slowest = slices.Insert(growTo(h.slowest, d.n), i, c)
	}
}

// growTo makes room for one more element in s, doubling its capacity but
// never beyond n, so that a full list holds exactly n.
func growTo(s []debugRecord, n int) []debugRecord {
	if len(s) < cap(s) {
		return s
	}
	c := min(max(2*cap(s), 1), n)
	return slices.Grow(s, c-len(s))
}

// liveSet is the set of registered mount paths.
func liveSet(src Source) map[string]bool {
	sts := src.Statuses()
	live := make(map[string]bool, len(sts))
	for _, st := range sts {
		live[st.Path] = true
	}
	return live
}

// prune drops the history of every mount not in live.
func (d *debugStore) prune(live map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.m {
		if !live[p] {
			delete(d.m, p)
		}
	}
}

// snapshot copies the store (the records, under the lock) and renders it.
func (d *debugStore) snapshot() map[string]debugMount {
	d.mu.Lock()
	raw := make(map[string]records, len(d.m))
	for p, h := range d.m {
		raw[p] = records{recent: slices.Clone(h.recent), slowest: slices.Clone(h.slowest)}
	}
	d.mu.Unlock()
	render := func(rs []debugRecord) []debugCheck {
		out := make([]debugCheck, len(rs))
		for i := range rs {
			out[i] = rs[i].check()
		}
		return out
	}
	out := make(map[string]debugMount, len(raw))
	for p, h := range raw {
		out[p] = debugMount{Recent: render(h.recent), Slowest: render(h.slowest)}
	}
	return out
}

// mounts is the number of mounts with a history (tests).
func (d *debugStore) mounts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}

// DebugChecksHandler serves /debug/checks: for each registered mount its
// most recent checks (oldest first) and its slowest checks since start
// (slowest first), each with its start time, duration, per-operation
// milliseconds, outcome, state, reason, error and the trace id of its
// efs.mount.check span. Query parameters: mount=PATH keeps one mount,
// trace=ID keeps the checks of that trace, format=text renders a plain
// table instead of JSON. It reads memory only, and drops the history of
// mounts that are no longer registered.
func (t *Telemetry) DebugChecksHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if src := t.source(); src != nil {
			t.debug.prune(liveSet(src))
		}
		snap := t.debug.snapshot()
		q := r.URL.Query()
		if m := q.Get("mount"); m != "" {
			dm, ok := snap[m]
			snap = map[string]debugMount{}
			if ok {
				snap[m] = dm
			}
		}
		if id := strings.ToLower(q.Get("trace")); id != "" {
			other := func(c debugCheck) bool { return c.TraceID != id }
			for p, dm := range snap {
				dm.Recent = slices.DeleteFunc(dm.Recent, other)
				dm.Slowest = slices.DeleteFunc(dm.Slowest, other)
				if len(dm.Recent)+len(dm.Slowest) == 0 {
					delete(snap, p)
				} else {
					snap[p] = dm
				}
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		if q.Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			writeDebugText(w, snap)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap)
	})
}

// writeDebugText renders snap as one line per check, mounts sorted.
func writeDebugText(w io.Writer, snap map[string]debugMount) {
	paths := make([]string, 0, len(snap))
	for p := range snap {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		dm := snap[p]
		fmt.Fprintf(w, "%q\n", p)
		for _, part := range []struct {
			title  string
			checks []debugCheck
		}{{"recent (oldest first)", dm.Recent}, {"slowest", dm.Slowest}} {
			fmt.Fprintf(w, "  %s:\n", part.title)
			for _, c := range part.checks {
				fmt.Fprintf(w, "    %s %10.3fms %-7s %-17s trace=%s", c.Start.Format(time.RFC3339Nano), c.DurationMs, c.Outcome, c.Reason, c.TraceID)
				for _, o := range c.Ops {
					fmt.Fprintf(w, " %s=%.3f", o.Op, o.Ms)
				}
				if c.Error != "" {
					fmt.Fprintf(w, " error=%q", c.Error)
				}
				fmt.Fprintln(w)
			}
		}
	}
}
