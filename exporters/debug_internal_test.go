package exporters

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// TestDebugStoreWindows: a mount's history holds its last n checks in order
// and its n slowest, slowest first with ties in arrival order, through
// the lists filling up and the windows sliding.
func TestDebugStoreWindows(t *testing.T) {
	t.Parallel()
	const n = 10
	d := newDebugStore(n)
	rnd := rand.New(rand.NewPCG(1, 2))
	var all []debugCheck
	for i := 0; i < 200; i++ {
		c := debugCheck{TraceID: string(rune('a' + i%26)), DurationMs: float64(rnd.IntN(20))}
		all = append(all, c)
		d.add(nil, "/mnt/a", c)

		dm := d.m["/mnt/a"]
		want := all[max(0, len(all)-n):]
		if !slices.EqualFunc(dm.Recent, want, func(a, b debugCheck) bool { return a.TraceID == b.TraceID && a.DurationMs == b.DurationMs }) {
			t.Fatalf("after %d checks, recent = %v, want %v", i+1, dm.Recent, want)
		}
		slow := slices.Clone(all)
		sort.SliceStable(slow, func(a, b int) bool { return slow[a].DurationMs > slow[b].DurationMs })
		slow = slow[:min(n, len(slow))]
		if !slices.EqualFunc(dm.Slowest, slow, func(a, b debugCheck) bool { return a.TraceID == b.TraceID && a.DurationMs == b.DurationMs }) {
			t.Fatalf("after %d checks, slowest = %v, want %v", i+1, dm.Slowest, slow)
		}
	}
}
