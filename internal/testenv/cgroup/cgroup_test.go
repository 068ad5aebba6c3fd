package cgroup_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/cgroup"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// TestCommandRunsInGroup: a command started with Command is in the group
// from its first instruction, and the group is removed afterwards.
func TestCommandRunsInGroup(t *testing.T) {
	g, err := cgroup.New("cgroup-test", 64<<20)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run it: %v", err)
		}
		t.Skip(err)
	}
	out, err := g.Command("/bin/cat", "/proc/self/cgroup").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "/"+filepath.Base(g.Dir)+"\n") {
		t.Errorf("/proc/self/cgroup of the command does not name %s:\n%s", g.Dir, out)
	}
	if g.OOMKills() != 0 {
		t.Errorf("OOM kills = %d, want 0", g.OOMKills())
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", g.Dir, err)
	}
}

// TestLimitCPU: a busy loop started with Command in a group limited to
// 10m of CPU is throttled, and the group is removed afterwards.
func TestLimitCPU(t *testing.T) {
	g, err := cgroup.New("cgroup-cpu-test", 64<<20)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run it: %v", err)
		}
		t.Skip(err)
	}
	t.Cleanup(func() { _ = g.Remove() })
	if g.Throttled() != -1 {
		t.Errorf("Throttled() = %d with no CPU limit, want -1", g.Throttled())
	}
	if err := g.LimitCPU(10); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run it: %v", err)
		}
		t.Skip(err)
	}
	cmd := g.Command("/bin/sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testutil.WaitFor(t, "the busy loop to be throttled", func() bool { return g.Throttled() > 0 })
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
}
