package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestChurn registers and unregisters many distinct mount paths while the
// scheduler checks them (100 live at a time, half of them real
// directories): heap, goroutines and OS threads stay flat, and only live
// mounts are listed (goroutines and threads may vary with the checks in
// flight and the idle workers, at most MaxConcurrent). CHURN_MOUNTS sets
// the number of paths (default 10,000; `make soak` runs 100,000).
//
// It runs on loaded CI machines: it waits for conditions with generous
// deadlines instead of sleeping, and its bounds leave room for the
// workers and the background sweeper while still catching a leak that
// grows with the number of paths.
func TestChurn(t *testing.T) {
	total := 10000
	if v, err := strconv.Atoi(os.Getenv("CHURN_MOUNTS")); err == nil && v > 0 {
		total = v
	}
	mon := newReal(t, 100*time.Millisecond, 50*time.Millisecond)
	base := t.TempDir()
	const live = 100
	var h0 uint64
	var g0, th0 int
	for i := 0; i < total; i++ {
		p := filepath.Join(base, fmt.Sprintf("pod-%d", i))
		if i%2 == 0 {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			t.Fatal(err)
		}
		if i >= live {
			old := filepath.Join(base, fmt.Sprintf("pod-%d", i-live))
			if !mon.Unregister(old) {
				t.Fatalf("%s was not registered", old)
			}
			_ = os.Remove(old)
		}
		if i%1000 == 998 {
			// Let the scheduler catch up: the newest real directory gets
			// its first check.
			testutil.WaitForWithin(t, 60*time.Second, "a check of "+p, func() bool {
				st, ok := mon.Status(p)
				return ok && st.Checks > 0
			})
		}
		if i == total/5 {
			h0, g0, th0 = liveHeap(), runtime.NumGoroutine(), threads()
		}
	}
	slack := agent.DefaultConfig().MaxConcurrent + 8
	var h1 uint64
	var g1, th1 int
	settled := func() bool {
		h1, g1, th1 = liveHeap(), runtime.NumGoroutine(), threads()
		return h1 <= h0+4<<20 && g1 <= g0+slack && th1 <= th0+slack
	}
	deadline := time.Now().Add(60 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after %d paths: heap %d→%d KiB, goroutines %d→%d, threads %d→%d", total, h0>>10, h1>>10, g0, g1, th0, th1)
	if h1 > h0+4<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB", h0>>10, h1>>10)
	}
	if g1 > g0+slack {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if th1 > th0+slack {
		t.Errorf("threads grew from %d to %d", th0, th1)
	}
	if s := mon.Summary(); s.Mounts != live {
		t.Errorf("summary counts %d mounts, want %d", s.Mounts, live)
	}
	sts := mon.Statuses()
	if len(sts) != live {
		t.Fatalf("%d statuses listed, want %d", len(sts), live)
	}
	for _, st := range sts {
		var n int
		fmt.Sscanf(filepath.Base(st.Path), "pod-%d", &n)
		if n < total-live {
			t.Fatalf("unregistered mount %s still listed", st.Path)
		}
	}
	// No check may still be writing in the directories when they are
	// removed at the end of the test.
	for _, st := range sts {
		mon.Unregister(st.Path)
	}
	testutil.WaitForWithin(t, 60*time.Second, "checks in flight to finish", func() bool { return mon.Summary().InFlight == 0 })
}
