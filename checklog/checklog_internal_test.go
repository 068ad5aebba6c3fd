package checklog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestLogWindows: the log holds the last n checks of all mounts
// in order and the n slowest, slowest first with ties in arrival order,
// through the lists filling up and the windows sliding; a query returns
// them in that order, up to its limit, with the totals.
func TestLogWindows(t *testing.T) {
	t.Parallel()
	const n = 10
	d := New(n, n, n)
	rnd := rand.New(rand.NewPCG(1, 2))
	var all []Entry
	same := func(a, b Entry) bool {
		return a.path == b.path && a.rec.trace == b.rec.trace && a.rec.dur == b.rec.dur
	}
	for i := 0; i < 200; i++ {
		c := record{dur: time.Duration(rnd.IntN(20)) * time.Millisecond}
		c.trace[0], c.trace[1] = byte(i), byte(i>>8)
		path := fmt.Sprintf("/mnt/%d", i%7)
		all = append(all, Entry{path: path, rec: c})
		d.add(path, c)

		sel := d.Select(Query{Limit: n})
		want := all[max(0, len(all)-n):]
		if !slices.EqualFunc(sel.Recent, want, same) || sel.RecentTotal != len(want) {
			t.Fatalf("after %d checks, recent = %v (total %d), want %v", i+1, sel.Recent, sel.RecentTotal, want)
		}
		slow := slices.Clone(all)
		sort.SliceStable(slow, func(a, b int) bool { return slow[a].rec.dur > slow[b].rec.dur })
		slow = slow[:min(n, len(slow))]
		if !slices.EqualFunc(sel.Slowest, slow, same) {
			t.Fatalf("after %d checks, slowest = %v, want %v", i+1, sel.Slowest, slow)
		}
		if sel.Checks != uint64(i+1) {
			t.Fatalf("checks recorded = %d, want %d", sel.Checks, i+1)
		}
	}
	// A mount filter and a limit: the newest of that mount, oldest first,
	// and how many matched.
	sel := d.Select(Query{Mount: "/mnt/3", Limit: 1})
	var mine []Entry
	for _, e := range all[len(all)-n:] {
		if e.path == "/mnt/3" {
			mine = append(mine, e)
		}
	}
	if sel.RecentTotal != len(mine) || len(sel.Recent) != 1 || !same(sel.Recent[0], mine[len(mine)-1]) {
		t.Fatalf("?mount=/mnt/3&limit=1: %v of %d, want the last of %v", sel.Recent, sel.RecentTotal, mine)
	}
}

// TestLogBounded: the log's records and the bytes they hold are
// the same for 1,000 mounts as for 20,000, each with full histories and
// failures quoting long paths; each mount's last failure is kept for the
// most recently failed mounts, the oldest making room.
func TestLogBounded(t *testing.T) {
	t.Parallel()
	size := func(mounts int) (records, bytes int, d *Log) {
		d = New(DefaultRecent, DefaultSlowest, DefaultFailures)
		long := strings.Repeat("x", 4000)
		for round := 0; round < 3; round++ {
			for m := 0; m < mounts; m++ {
				path := fmt.Sprintf("/var/lib/kubelet/pods/%08d/%s", m, long)
				var r record
				r.dur = time.Duration(m+round) * time.Microsecond
				r.state = stateCode(agent.StateHealthy)
				if m%2 == 0 {
					r.state = stateCode(agent.StateUnhealthy)
					r.addOp(probes.OpWrite, time.Millisecond, errors.New("write "+path+": input/output error"))
					r.fail.reason, r.fail.err = probes.ReasonIOError, "write "+path+": input/output error"
				}
				d.add(path, r)
			}
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		count := func(e *Entry) {
			records++
			bytes += int(unsafe.Sizeof(*e))
			if f := e.rec.fail; f != nil {
				bytes += int(unsafe.Sizeof(*f)) + len(f.err)
				for _, s := range f.opErrs {
					bytes += len(s)
				}
			}
		}
		for i := range d.recent {
			count(&d.recent[i])
		}
		for i := range d.slowest {
			count(&d.slowest[i])
		}
		for _, e := range d.failures {
			count(&e)
		}
		return records, bytes, d
	}
	r1, b1, _ := size(1000)
	r2, b2, d := size(20000)
	most := DefaultRecent + DefaultSlowest + DefaultFailures
	if r2 > most || b2 > most*(int(unsafe.Sizeof(Entry{}))+int(unsafe.Sizeof(failure{}))+2*MaxText+8) {
		t.Fatalf("20,000 mounts: %d records, %d bytes; bound %d records", r2, b2, most)
	}
	if r2 != r1 || b2 > b1*11/10 {
		t.Fatalf("the log grows with the mounts: %d records, %d bytes for 1,000 mounts; %d, %d for 20,000", r1, b1, r2, b2)
	}
	// The last failures are those of the mounts that failed last.
	sel := d.Select(Query{Limit: 1000})
	if sel.FailuresTotal != DefaultFailures || !strings.Contains(sel.Failures[0].path, "/00019998/") {
		t.Fatalf("last failures: %d, newest %q", sel.FailuresTotal, sel.Failures[0].path[:40])
	}
}

// TestRecordRendering: the compact record renders every field
// /debug/checks shows, with per-operation errors, microsecond times, the
// outcome derived from the state, and a name for an unknown operation.
func TestRecordRendering(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	var r record
	r.addOp(probes.OpOpen, 7*time.Microsecond, nil)
	r.addOp(probes.OpWrite, 1500*time.Microsecond, errors.New("write(2): input/output error"))
	r.addOp("future", 2*time.Millisecond, nil)
	r.trace[15] = 0xab
	r.start, r.dur, r.state = start.UnixNano(), 3512*time.Microsecond, stateCode(agent.StateUnhealthy)
	r.fail.reason, r.fail.err = probes.ReasonIOError, "write: write(2): input/output error"
	c := r.check()
	want := Check{TraceID: "000000000000000000000000000000ab", Start: start.UTC(), DurationMs: 3.512,
		Outcome: "failure", State: "unhealthy", Reason: "io_error", Error: "write: write(2): input/output error",
		Ops: []Op{{Op: "open", Ms: 0.007}, {Op: "write", Ms: 1.5, Error: "write(2): input/output error"}, {Op: "other", Ms: 2}}}
	if c.TraceID != want.TraceID || !c.Start.Equal(want.Start) || c.Start.Location() != time.UTC || c.DurationMs != want.DurationMs ||
		c.Outcome != want.Outcome || c.State != want.State || c.Reason != want.Reason || c.Error != want.Error || !slices.Equal(c.Ops, want.Ops) {
		t.Fatalf("rendered\n%+v\nwant\n%+v", c, want)
	}
	if got := unsafe.Sizeof(r); got != 88 {
		t.Errorf("record is %d bytes; its doc says 88", got)
	}
	if got := unsafe.Sizeof(Entry{}); got != 112 {
		t.Errorf("Entry is %d bytes; the package doc and docs/telemetry.md say 112", got)
	}
	ok := record{state: stateCode(agent.StateHealthy), nops: 1}
	if c := ok.check(); c.Outcome != "success" || c.Reason != "" || c.Error != "" || c.Ops[0].Error != "" {
		t.Fatalf("healthy record rendered as %+v", c)
	}
}
