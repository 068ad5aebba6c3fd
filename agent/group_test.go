//go:build linux

package agent_test

import (
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// kinds records, per mount, how many full and transport checks returned.
type kinds struct {
	mu        sync.Mutex
	full, tpt map[string]int
}

func newKinds() *kinds { return &kinds{full: map[string]int{}, tpt: map[string]int{}} }

func (k *kinds) CheckDone(r *agent.CheckRecord) {
	full := slices.ContainsFunc(r.Ops, func(o probes.OpResult) bool { return o.Op == probes.OpWrite })
	k.mu.Lock()
	defer k.mu.Unlock()
	if full {
		k.full[r.Mount.Path]++
	} else if !r.Outcome.TimedOut {
		k.tpt[r.Mount.Path]++
	}
}

func (k *kinds) CheckSkipped(*agent.Mount, time.Time) {}

func (k *kinds) counts() (full, tpt map[string]int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps(k.full), maps(k.tpt)
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// newGrouped returns a running monitor with grouping on, on the wall
// clock with short timings, and the recorder of its checks' kinds.
func newGrouped(t *testing.T, interval, timeout time.Duration) (*agent.Monitor, *kinds) {
	t.Helper()
	k := newKinds()
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Logger = quietLogger()
	cfg.Interval, cfg.Timeout, cfg.MinRetry = interval, timeout, 50*time.Millisecond
	cfg.Grouping = true
	cfg.Observer = k
	return startMonitor(t, cfg), k
}

// bindMounts binds src at n fresh directories: n more mounts of src's
// superblock.
func bindMounts(t *testing.T, src string, n int) []string {
	t.Helper()
	var out []string
	for range n {
		d := t.TempDir()
		if err := unix.Mount(src, d, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s: %v", src, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(d, unix.MNT_DETACH) })
		out = append(out, d)
	}
	return out
}

// TestGroupedSuperblock: four mounts of one superblock (a FUSE fault
// filesystem and three binds of it) are one group. On the healthy path
// most of their checks are transport checks (no probe file), every mount
// does a full check itself in turn, and each shows where its state comes
// from. When the filesystem hangs, every mount's own call hangs, and
// every one is shown hung: they share one superblock, so that is the truth.
func TestGroupedSuperblock(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	paths := append([]string{fs.Mountpoint()}, bindMounts(t, fs.Mountpoint(), 3)...)
	const interval, timeout = 200 * time.Millisecond, 150 * time.Millisecond
	mon, k := newGrouped(t, interval, timeout)
	for _, p := range paths {
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			t.Fatal(err)
		}
	}
	// Every mount proves itself in turn (at least once every RotateEvery
	// intervals), and the others' state is the shared proof's.
	shared := map[string]bool{}
	testutil.WaitFor(t, "every mount's full check done twice, and each shown on a shared proof", func() bool {
		full, _ := k.counts()
		for _, p := range paths {
			if st := status(t, mon, p); st.State == agent.StateHealthy && st.SharedProof != nil {
				if st.SharedProof.By == p || !slices.Contains(paths, st.SharedProof.By) {
					t.Fatalf("%s: shared proof %+v", p, st.SharedProof)
				}
				shared[p] = true
			}
		}
		for _, p := range paths {
			if full[p] < 2 || !shared[p] {
				return false
			}
		}
		return true
	})
	// Full checks are a fraction of the checks: about one per interval
	// for the four mounts, and a create per full check only.
	full0, tpt0 := k.counts()
	creates0 := fs.Calls(faultfs.OpCreate)
	from := time.Now()
	testutil.WaitFor(t, "40 more checks", func() bool {
		full, tpt := k.counts()
		return sum(full)+sum(tpt)-sum(full0)-sum(tpt0) >= 40
	})
	full, tpt := k.counts()
	nFull, nAll := sum(full)-sum(full0), sum(full)+sum(tpt)-sum(full0)-sum(tpt0)
	creates := fs.Calls(faultfs.OpCreate) - creates0
	if nFull*2 > nAll || creates > int64(nFull)+1 {
		t.Errorf("%d full checks (%d creates) of %d checks: grouping should make most of them transport checks", nFull, creates, nAll)
	}
	// Nor more checks than without grouping: each mount at most one per
	// interval less the jitter, and the rotation brings at most one check
	// a interval forward. (A loaded machine only makes fewer.)
	if ivs := float64(time.Since(from)) / float64(interval); float64(nAll) > float64(len(paths))*(ivs/0.9+1)+ivs+1 {
		t.Errorf("%d checks of %d mounts in %.1f intervals: grouping adds checks", nAll, len(paths), ivs)
	}

	// Hang the filesystem: each mount's own call hangs, in whichever kind
	// of check it is, and each is shown hung.
	fs.Set(faultfs.OpAll, faultfs.Fault{Hang: true})
	hungAt := time.Now()
	testutil.WaitFor(t, "all four hung", func() bool {
		for _, p := range paths {
			if status(t, mon, p).State != agent.StateHung {
				return false
			}
		}
		return true
	})
	t.Logf("all four hung %v after the hang (interval + timeout %v)", time.Since(hungAt).Round(time.Millisecond), interval+timeout)
	for _, p := range paths {
		if st := status(t, mon, p); st.SharedProof != nil {
			t.Errorf("%s: hung on its own call, yet shown on a shared proof %+v", p, st.SharedProof)
		}
	}
	fs.Clear()
	testutil.WaitFor(t, "all four healthy again", func() bool { return mon.Summary().Ready() })
}

// TestGroupedSeparateTransports is the EFS layout: two mounts attributed to
// one file system, access point and path, each with its own transport (two
// fault filesystems, two superblocks). A fault of one never shows on the
// other: a full disk fails only the full mount, with its own reason, after
// the other proved itself (its own full check, brought forward), and a
// hung transport hangs only the mount whose own call hangs: found by that
// mount's transport check (its statfs), whoever makes the full check.
// (Timings leave a loaded machine room: a slow check must not time out.)
func TestGroupedSeparateTransports(t *testing.T) {
	a, b := testutil.MountFaultFS(t), testutil.MountFaultFS(t)
	const interval, timeout = 600 * time.Millisecond, 400 * time.Millisecond
	mon, k := newGrouped(t, interval, timeout)
	attr := agent.Attribution{FileSystemID: "fs-0123456789abcdef0", Service: agent.ServiceEFS}
	for _, p := range []string{a.Mountpoint(), b.Mountpoint()} {
		if err := mon.Register(agent.Mount{Path: p, Source: "127.0.0.1:/", Attribution: attr}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "one of them on a shared proof", func() bool {
		return mon.Summary().Ready() && (status(t, mon, a.Mountpoint()).SharedProof != nil || status(t, mon, b.Mountpoint()).SharedProof != nil)
	})

	// a's file system is full: a fails with no_space, from its own check;
	// b proves itself (a full check of its own) and stays healthy.
	fullB0, _ := k.counts()
	a.Set(faultfs.OpWrite, faultfs.Fault{Errno: syscall.ENOSPC})
	a.Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.ENOSPC})
	testutil.WaitFor(t, "a unhealthy with no_space, b's own full check done after it", func() bool {
		st := status(t, mon, a.Mountpoint())
		full, _ := k.counts()
		return st.State == agent.StateUnhealthy && st.Reason == probes.ReasonNoSpace && full[b.Mountpoint()] > fullB0[b.Mountpoint()]
	})
	for range 3 {
		if st := status(t, mon, b.Mountpoint()); st.State != agent.StateHealthy {
			t.Fatalf("b shown %s (%s) for a's full disk: %+v", st.State, st.LastError, st)
		}
		if st := status(t, mon, a.Mountpoint()); st.SharedProof != nil {
			t.Fatalf("a failing on a shared proof: %+v", st.SharedProof)
		}
		time.Sleep(interval)
	}
	a.Clear()
	testutil.WaitFor(t, "both healthy again", func() bool { return mon.Summary().Ready() })

	// b's server stops answering what only it can answer (statfs, which
	// no cache answers): b is hung, found by its own transport check, and
	// a is not.
	b.Set(faultfs.OpStatfs, faultfs.Fault{Hang: true})
	testutil.WaitFor(t, "b hung in statfs", func() bool {
		st := status(t, mon, b.Mountpoint())
		return st.State == agent.StateHung && st.FailedOp == probes.OpStatfs
	})
	checks := status(t, mon, a.Mountpoint()).Checks
	testutil.WaitFor(t, "a checked three more times", func() bool {
		st := status(t, mon, a.Mountpoint())
		if st.State != agent.StateHealthy {
			t.Fatalf("a shown %s (%s) for b's hang", st.State, st.LastError)
		}
		return st.Checks >= checks+3
	})
	b.Clear()
	testutil.WaitFor(t, "both healthy again", func() bool { return mon.Summary().Ready() })
}

// TestGroupedTmpfsPair: two tmpfs mounts have two superblocks and no
// attribution, so they are not grouped: every check of each is full.
func TestGroupedTmpfsPair(t *testing.T) {
	testutil.RequireFUSE(t) // root, to mount tmpfs
	p1, p2 := testutil.TmpfsDir(t), testutil.TmpfsDir(t)
	mon, k := newGrouped(t, 100*time.Millisecond, 100*time.Millisecond)
	for _, p := range []string{p1, p2} {
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "5 checks of each", func() bool {
		return status(t, mon, p1).Checks >= 5 && status(t, mon, p2).Checks >= 5
	})
	full, tpt := k.counts()
	if sum(tpt) != 0 || full[p1] < 5 || full[p2] < 5 {
		t.Fatalf("full %v, transport %v: two superblocks must not be grouped", full, tpt)
	}
	for _, p := range []string{p1, p2} {
		if st := status(t, mon, p); st.SharedProof != nil {
			t.Errorf("%s on a shared proof %+v", p, st.SharedProof)
		}
	}
}
