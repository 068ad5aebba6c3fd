package agent_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// leftoverMonitor runs a monitor on the wall clock whose leftover age is
// 1s, so that young leftovers come of age within a test. Its checks run on
// a real disk with fsync, under the race detector, on a loaded machine:
// their timeout is generous, as the sweep, not the disk, is under test.
func leftoverMonitor(t *testing.T, obs agent.Observer) *agent.Monitor {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Logger = quietLogger()
	cfg.Observer = obs
	cfg.Interval, cfg.Timeout = 2*time.Second, 2*time.Second
	cfg.MinRetry = 50 * time.Millisecond
	cfg.Jitter = 0
	cfg.LeftoverAge = time.Second
	return startMonitor(t, cfg)
}

// plant writes a probe file of an earlier instance of node-a into dir.
func plant(t *testing.T, dir string) string {
	t.Helper()
	earlier, err := probes.NewOwner("node-a")
	if err != nil {
		t.Fatal(err)
	}
	name, err := earlier.NewFileName()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func gone(dir, name string) func() bool {
	return func() bool {
		_, err := os.Lstat(filepath.Join(dir, name))
		return os.IsNotExist(err)
	}
}

// TestLeftoverFromTheFutureRemoved: a leftover of an earlier instance
// whose modification time is an hour ahead (the server's clock was
// stepped back since it was written) is young by its times for an hour.
// Watched for the leftover age on the agent's own monotonic clock, it is
// provably that old, and is removed while the agent runs.
func TestLeftoverFromTheFutureRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := plant(t, dir)
	ahead := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, name), ahead, ahead); err != nil {
		t.Fatal(err)
	}
	mon := leftoverMonitor(t, nil)
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the leftover with times in the future removed", gone(dir, name))
}

// TestLeftoverAfterListingRemoved: a leftover of an earlier instance that
// appears after the root's first listing (that instance was still
// stopping, its last check finishing) is found by the second listing, a
// leftover age later, and removed.
func TestLeftoverAfterListingRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := plant(t, dir)
	obs := &recordingObserver{outcomes: map[string][]agent.Outcome{}, records: map[string][]agent.CheckRecord{}, skipped: map[string]int{}}
	mon := leftoverMonitor(t, obs)
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	// The first listing found the first leftover (young) and removed it
	// by name once old enough: that listing is over.
	testutil.WaitFor(t, "the leftover present at the start removed", gone(dir, first))
	late := plant(t, dir)
	testutil.WaitFor(t, "the leftover that appeared after the listing removed", gone(dir, late))
	// The sweeps removed files beside the checks, never a check's own: no
	// check failed for a reason of its own. A check that hit its deadline
	// met a slow disk, which is not the sweep's doing.
	outcomes := obs.get(dir)
	if len(outcomes) == 0 {
		t.Fatal("no check finished")
	}
	for i, o := range outcomes {
		if !o.Success() && !o.TimedOut {
			t.Errorf("check %d failed beside the sweeps: %+v", i, o)
		}
	}
}

// TestLeftoversInDirAndRoot: leftovers are found in the probe directory
// and in the mount root, where earlier versions made their probe files:
// old ones of an earlier instance of this node are removed from both; a
// young one of another agent of this node that is still running, and
// another node's, are never touched.
func TestLeftoversInDirAndRoot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pdir := filepath.Join(dir, probes.DirName)
	if err := os.Mkdir(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	age := func(p string) {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	inRoot, inDir := plant(t, dir), plant(t, pdir)
	age(filepath.Join(dir, inRoot))
	age(filepath.Join(pdir, inDir))
	// Another node's, old, in the directory every node shares.
	other, err := probes.NewOwner("node-b")
	if err != nil {
		t.Fatal(err)
	}
	othersName, err := other.NewFileName()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pdir, othersName), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	age(filepath.Join(pdir, othersName))
	mon := leftoverMonitor(t, nil)
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the leftover in the probe directory removed", gone(pdir, inDir))
	testutil.WaitFor(t, "the leftover in the root removed", gone(dir, inRoot))
	// A live agent of this node makes a file now: within the leftover
	// age (1 s here) it is never taken for a leftover.
	live := plant(t, pdir)
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if gone(pdir, live)() {
			t.Fatal("a live agent's young probe file was removed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if gone(pdir, othersName)() {
		t.Fatal("another node's probe file was removed")
	}
}
