package agent

import (
	"testing"
	"time"
	"unsafe"
)

// Per-mount memory: what the Monitor keeps for every registered mount is
// its scheduler entry, the published status and the shared description
// (plus the path's bytes and a map entry). These bounds are Go size
// classes on 64-bit platforms; a field that pushes a struct past one costs
// every mount the next class, so grow them only on purpose (and update
// docs/mounts.md, "How many").
const (
	maxStatusSize = 320 // MountStatus, allocated per check, one kept per mount; 320 since SharedProof took it past 288
	maxEntrySize  = 48  // mount, one per mount
	// Mount, one per registration (and per change): 144 since the
	// attribution's service (EFS or S3 Files) took it past 128.
	maxDescSize = 144
)

func TestPerMountSize(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"MountStatus", unsafe.Sizeof(MountStatus{}), maxStatusSize},
		{"mount", unsafe.Sizeof(mount{}), maxEntrySize},
		{"Mount", unsafe.Sizeof(Mount{}), maxDescSize},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, more than its bound of %d", c.name, c.size, c.max)
		}
	}
}

// TestCheckedAllocates: a successful check's transition allocates nothing:
// the history and the operation timings live in the status itself.
func TestCheckedAllocates(t *testing.T) {
	old := MountStatus{Mount: &Mount{Path: "/mnt/a"}, State: StateHealthy, History: HistoryOf(1, 2, 3)}
	res := okResult(2 * time.Millisecond)
	var next MountStatus
	allocs := testing.AllocsPerRun(100, func() {
		next, _, _ = checked(&old, res, t0, t0.Add(time.Millisecond), pol, 0.5)
		old = next
	})
	if allocs != 0 {
		t.Fatalf("checked allocates %v times per check", allocs)
	}
	if old.History.Len() != HistoryLen || old.Ops.Len() == 0 {
		t.Fatalf("history %v, ops %v", old.History.Durations(), old.Ops.List())
	}
}
