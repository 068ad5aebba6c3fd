package exporters

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestDebugStoreWindows: a mount's history holds its last n checks in order
// and its n slowest, slowest first with ties in arrival order, through
// the lists filling up and the windows sliding.
func TestDebugStoreWindows(t *testing.T) {
	t.Parallel()
	const n = 10
	d := newDebugStore(n)
	rnd := rand.New(rand.NewPCG(1, 2))
	var all []debugRecord
	same := func(a, b debugRecord) bool { return a.trace == b.trace && a.dur == b.dur }
	for i := 0; i < 200; i++ {
		c := debugRecord{dur: time.Duration(rnd.IntN(20)) * time.Millisecond}
		c.trace[0], c.trace[1] = byte(i), byte(i>>8)
		all = append(all, c)
		d.add("/mnt/a", c, nil, 1)

		h := d.m["/mnt/a"]
		want := all[max(0, len(all)-n):]
		if !slices.EqualFunc(h.recent, want, same) {
			t.Fatalf("after %d checks, recent = %v, want %v", i+1, h.recent, want)
		}
		slow := slices.Clone(all)
		sort.SliceStable(slow, func(a, b int) bool { return slow[a].dur > slow[b].dur })
		slow = slow[:min(n, len(slow))]
		if !slices.EqualFunc(h.slowest, slow, same) {
			t.Fatalf("after %d checks, slowest = %v, want %v", i+1, h.slowest, slow)
		}
	}
}

// TestDebugRecordRendering: the compact record renders every field
// /debug/checks shows, with per-operation errors, microsecond times, the
// outcome derived from the state, and a name for an unknown operation.
func TestDebugRecordRendering(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	var r debugRecord
	r.addOp(probes.OpOpen, 7*time.Microsecond, nil)
	r.addOp(probes.OpWrite, 1500*time.Microsecond, errors.New("write(2): input/output error"))
	r.addOp("future", 2*time.Millisecond, nil)
	r.trace[15] = 0xab
	r.start, r.dur, r.state = start.UnixNano(), 3512*time.Microsecond, stateCode(agent.StateUnhealthy)
	r.fail.reason, r.fail.err = probes.ReasonIOError, "write: write(2): input/output error"
	c := r.check()
	want := debugCheck{TraceID: "000000000000000000000000000000ab", Start: start.UTC(), DurationMs: 3.512,
		Outcome: "failure", State: "unhealthy", Reason: "io_error", Error: "write: write(2): input/output error",
		Ops: []debugOp{{Op: "open", Ms: 0.007}, {Op: "write", Ms: 1.5, Error: "write(2): input/output error"}, {Op: "other", Ms: 2}}}
	if c.TraceID != want.TraceID || !c.Start.Equal(want.Start) || c.Start.Location() != time.UTC || c.DurationMs != want.DurationMs ||
		c.Outcome != want.Outcome || c.State != want.State || c.Reason != want.Reason || c.Error != want.Error || !slices.Equal(c.Ops, want.Ops) {
		t.Fatalf("rendered\n%+v\nwant\n%+v", c, want)
	}
	if got := unsafe.Sizeof(r); got != 88 {
		t.Errorf("debugRecord is %d bytes; its doc says 88", got)
	}
	ok := debugRecord{state: stateCode(agent.StateHealthy), nops: 1}
	if c := ok.check(); c.Outcome != "success" || c.Reason != "" || c.Error != "" || c.Ops[0].Error != "" {
		t.Fatalf("healthy record rendered as %+v", c)
	}
}
