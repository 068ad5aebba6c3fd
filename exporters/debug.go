package exporters

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// debugOp is one operation of a check, as /debug/checks shows it.
type debugOp struct {
	Op    string  `json:"op"`
	Ms    float64 `json:"ms"`
	Error string  `json:"error,omitempty"`
}

// debugCheck is one check, as /debug/checks shows it.
type debugCheck struct {
	MountPath  string    `json:"mountPath"`
	TraceID    string    `json:"traceId,omitempty"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	Outcome    string    `json:"outcome"`
	State      string    `json:"state"`
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`
	Ops        []debugOp `json:"operations"`
}

// debugRecord is a check as the store keeps it: 88 bytes, and for a
// check without errors nothing allocated besides, so that the store stays
// small and cheap for the GC. It is turned into a
// debugCheck only when /debug/checks is requested.
type debugRecord struct {
	trace trace.TraceID
	start int64 // Unix nanoseconds
	dur   time.Duration
	fail  *debugFailure // nil unless the check or an operation failed
	state uint8         // index into debugStates
	nops  uint8
	ops   [probes.NumSteps]uint8  // opCode: index into probes.Ops
	opUs  [probes.NumSteps]uint32 // microseconds, saturating
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

// maxDebugText bounds each error text a record keeps, so that a failure
// costs at most a few KiB whatever its error quotes.
const maxDebugText = 1 << 10

// clip cuts s to maxDebugText bytes.
func clip(s string) string {
	if len(s) <= maxDebugText {
		return s
	}
	return strings.Clone(s[:maxDebugText]) + "…"
}

// failed reports whether the check ended unhealthy or hung.
func (r *debugRecord) failed() bool {
	st := r.stateName()
	return st == agent.StateUnhealthy || st == agent.StateHung
}

// debugFailure is what a failed check adds to its record.
type debugFailure struct {
	reason probes.Reason
	err    string
	opErrs [probes.NumSteps]string
}

// addOp appends an operation, keeping the first probes.NumSteps (a
// check runs no more).
func (r *debugRecord) addOp(op probes.Op, d time.Duration, err error) {
	if int(r.nops) == probes.NumSteps {
		return
	}
	i := r.nops
	r.ops[i] = opCode(op)
	r.opUs[i] = uint32(min(max(d.Microseconds(), 0), math.MaxUint32))
	if err != nil {
		if r.fail == nil {
			r.fail = &debugFailure{}
		}
		r.fail.opErrs[i] = clip(err.Error())
	}
	r.nops++
}

// check renders the record.
func (r *debugRecord) check() debugCheck {
	c := debugCheck{
		Start:      time.Unix(0, r.start).UTC(),
		DurationMs: ms(r.dur),
		Outcome:    outcomeSuccess.Value.AsString(),
		State:      string(r.stateName()),
		Ops:        make([]debugOp, r.nops),
	}
	if r.trace.IsValid() { // a check whose spans were dropped has none
		c.TraceID = r.trace.String()
	}
	if r.failed() {
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

// Default sizes of the /debug/checks store (Options.DebugRecent,
// DebugSlowest, DebugFailures) and of a response.
const (
	DefaultDebugRecent   = 256
	DefaultDebugSlowest  = 32
	DefaultDebugFailures = 128
	// DefaultDebugLimit is how many checks of each list a response
	// shows unless ?limit= asks for more.
	DefaultDebugLimit = 20
	// MaxDebugLimit is the largest ?limit=.
	MaxDebugLimit = 1000
)

// debugEntry is a record in the store with its mount and its sequence
// number (the order checks ended in).
type debugEntry struct {
	path string
	seq  uint64
	rec  debugRecord
}

// debugStore keeps the checks /debug/checks shows, for all mounts
// together: the last nRecent checks (a ring), the nSlowest slowest since
// start, and the last failed check of up to maxFailures mounts (the
// mount whose last failure is oldest makes room). Its size does not depend
// on the number of mounts: at most nRecent + nSlowest + maxFailures
// records of 112 bytes, plus for a failed check its error texts, each cut
// at maxDebugText bytes. A mount path is the agent's own string, not a
// copy.
type debugStore struct {
	nSlowest, maxFailures int

	mu       sync.Mutex
	recent   []debugEntry // ring; next is the slot written next
	next     int
	slowest  []debugEntry // slowest first; among equals the earlier ahead
	failures map[string]debugEntry
	seq      uint64 // checks recorded since start
}

func newDebugStore(nRecent, nSlowest, maxFailures int) *debugStore {
	return &debugStore{
		nSlowest: nSlowest, maxFailures: maxFailures,
		recent:   make([]debugEntry, 0, nRecent),
		failures: make(map[string]debugEntry, maxFailures),
	}
}

// add files check rec of path. It only takes the store's own lock.
func (d *debugStore) add(path string, rec debugRecord) {
	if rec.fail != nil {
		rec.fail.err = clip(rec.fail.err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	e := debugEntry{path: path, seq: d.seq, rec: rec}
	if len(d.recent) < cap(d.recent) {
		d.recent = append(d.recent, e)
	} else if len(d.recent) > 0 {
		d.recent[d.next] = e
	}
	if cap(d.recent) > 0 {
		d.next = (d.next + 1) % cap(d.recent)
	}
	i := sort.Search(len(d.slowest), func(i int) bool { return d.slowest[i].rec.dur < rec.dur })
	switch {
	case i >= d.nSlowest:
	case len(d.slowest) == d.nSlowest:
		copy(d.slowest[i+1:], d.slowest[i:d.nSlowest-1])
		d.slowest[i] = e
	default:
		d.slowest = slices.Insert(d.slowest, i, e)
	}
	if rec.failed() && d.maxFailures > 0 {
		if _, ok := d.failures[path]; !ok && len(d.failures) >= d.maxFailures {
			oldest := ""
			var seq uint64 = math.MaxUint64
			for p, f := range d.failures {
				if f.seq < seq {
					oldest, seq = p, f.seq
				}
			}
			delete(d.failures, oldest)
		}
		d.failures[path] = e
	}
}

// records is the number of records the store holds (tests).
func (d *debugStore) records() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.recent) + len(d.slowest) + len(d.failures)
}

// debugQuery selects what a /debug/checks response shows.
type debugQuery struct {
	mount string // "" for every mount
	trace string // hex, "" for any
	limit int
}

// matcher returns the test of q for an entry: the trace id is parsed once
// (a malformed one matches nothing).
func (q debugQuery) matcher() func(e *debugEntry) bool {
	var id trace.TraceID
	bad := false
	mount := q.mount
	if mount != "" {
		// The filter names a mount as /healthz/mounts and mountPath show
		// it: escaped.
		var err error
		mount, err = pathesc.Unescape(mount)
		bad = err != nil
	}
	if q.trace != "" && !bad {
		var err error
		id, err = trace.TraceIDFromHex(q.trace)
		bad = err != nil
	}
	return func(e *debugEntry) bool {
		return !bad && (mount == "" || e.path == mount) && (q.trace == "" || e.rec.trace == id)
	}
}

// debugSelection is a query's answer: up to limit entries of each list,
// and how many matched in all.
type debugSelection struct {
	checks                                 uint64
	recent, slowest, failures              []debugEntry
	recentTotal, slowestTotal, failedTotal int
}

// selectChecks copies, under the lock, the entries q selects: at most
// q.limit per list, so the copy is bounded whatever the store holds.
// recent is oldest first (the last q.limit), slowest slowest first,
// failures newest first.
func (d *debugStore) selectChecks(q debugQuery) debugSelection {
	match := q.matcher()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := debugSelection{checks: d.seq}
	// The ring from newest to oldest, keeping the first limit matches.
	n := len(d.recent)
	for k := 0; k < n; k++ {
		e := &d.recent[(d.next-1-k+2*n)%n]
		if match(e) {
			s.recentTotal++
			if len(s.recent) < q.limit {
				s.recent = append(s.recent, *e)
			}
		}
	}
	slices.Reverse(s.recent)
	for i := range d.slowest {
		if e := &d.slowest[i]; match(e) {
			s.slowestTotal++
			if len(s.slowest) < q.limit {
				s.slowest = append(s.slowest, *e)
			}
		}
	}
	var fails []debugEntry
	for _, e := range d.failures {
		if match(&e) {
			fails = append(fails, e)
		}
	}
	slices.SortFunc(fails, func(a, b debugEntry) int { return -cmpSeq(a.seq, b.seq) })
	s.failedTotal = len(fails)
	s.failures = fails[:min(len(fails), q.limit)]
	return s
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// render turns an entry into its JSON form.
func (e *debugEntry) render() debugCheck {
	c := e.rec.check()
	c.MountPath = pathesc.Escape(e.path)
	return c
}

// DebugChecksHandler serves /debug/checks: the most recent checks of all
// mounts (oldest first), the slowest since start (slowest first) and each
// mount's last failed check (newest first), each with its mount, trace id
// (of its efs.mount.check span), start time, duration, per-operation
// milliseconds, outcome, state, reason and error. Query parameters:
// mount=PATH keeps one mount, trace=ID the checks of one trace, limit=N
// shows at most N checks per list (default DefaultDebugLimit, at most
// MaxDebugLimit), format=text renders a plain table instead of JSON. The
// response reports how many checks matched in each list. It reads memory
// only, copies at most limit records per list under the store's lock and
// writes each check as it is rendered.
func (t *Telemetry) DebugChecksHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		q := debugQuery{mount: v.Get("mount"), trace: strings.ToLower(v.Get("trace")), limit: DefaultDebugLimit}
		if l := v.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > MaxDebugLimit {
				http.Error(w, fmt.Sprintf("invalid limit=%q: must be a number from 1 to %d", l, MaxDebugLimit), http.StatusBadRequest)
				return
			}
			q.limit = n
		}
		sel := t.debug.selectChecks(q)
		if v.Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			writeDebugText(w, sel, q.limit)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		writeDebugJSON(w, sel, q.limit)
	})
}

// writeDebugJSON writes sel as one JSON object, one check at a time.
func writeDebugJSON(w io.Writer, sel debugSelection, limit int) {
	bw := bufio.NewWriterSize(w, 4<<10)
	defer bw.Flush()
	enc := json.NewEncoder(bw)
	fmt.Fprintf(bw, "{\"checksRecorded\":%d,\"limit\":%d", sel.checks, limit)
	for _, part := range []struct {
		name  string
		total int
		es    []debugEntry
	}{{"recent", sel.recentTotal, sel.recent}, {"slowest", sel.slowestTotal, sel.slowest}, {"lastFailures", sel.failedTotal, sel.failures}} {
		fmt.Fprintf(bw, ",\n%q:%d,\n%q:[", part.name+"Total", part.total, part.name)
		for i := range part.es {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteByte('\n')
			_ = enc.Encode(part.es[i].render()) // ends in a newline
		}
		bw.WriteByte(']')
	}
	bw.WriteString("}\n")
}

// writeDebugText renders sel as one line per check.
func writeDebugText(w io.Writer, sel debugSelection, limit int) {
	bw := bufio.NewWriterSize(w, 4<<10)
	defer bw.Flush()
	fmt.Fprintf(bw, "checks recorded: %d\n", sel.checks)
	for _, part := range []struct {
		title string
		total int
		es    []debugEntry
	}{{"recent (oldest first)", sel.recentTotal, sel.recent}, {"slowest", sel.slowestTotal, sel.slowest},
		{"last failure per mount (newest first)", sel.failedTotal, sel.failures}} {
		fmt.Fprintf(bw, "%s: %d of %d (limit %d)\n", part.title, len(part.es), part.total, limit)
		for i := range part.es {
			c := part.es[i].render()
			fmt.Fprintf(bw, "  %s %10.3fms %-7s %-17s trace=%s mount=%q", c.Start.Format(time.RFC3339Nano), c.DurationMs, c.Outcome, c.Reason, c.TraceID, c.MountPath)
			for _, o := range c.Ops {
				fmt.Fprintf(bw, " %s=%.3f", o.Op, o.Ms)
			}
			if c.Error != "" {
				fmt.Fprintf(bw, " error=%q", c.Error)
			}
			bw.WriteByte('\n')
		}
	}
}
