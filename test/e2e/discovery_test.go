//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// TestDiscoveryThroughBinary: with HEALTH_DISCOVER_FSTYPES=tmpfs the agent
// picks up a tmpfs mounted under the prefix and drops it when unmounted.
func TestDiscoveryThroughBinary(t *testing.T) {
	testutil.RequireRoot(t, "mount filesystems")
	prefix := t.TempDir()
	vol := filepath.Join(prefix, "pod-1", "volumes", "efs")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t, []string{"HEALTH_DISCOVER_FSTYPES=tmpfs", "HEALTH_DISCOVER_PREFIX=" + prefix, "HEALTH_DISCOVERY_INTERVAL=1m"},
		"--check-interval", "1s", "--check-timeout", "500ms")
	if err := unix.Mount("tmpfs", vol, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(vol, unix.MNT_DETACH) })
	testutil.WaitForWithin(t, 10*time.Second, "discovered and healthy", func() bool { return state(t, agent.base, vol) == "healthy" })
	if err := unix.Unmount(vol, 0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForWithin(t, 10*time.Second, "dropped", func() bool { _, ok := mounts(t, agent.base)[vol]; return !ok })
}

// TestUnmountedWhileRegistered: the FUSE mount disappears under a
// registered path; the directory underneath is local disk where a write
// would succeed, so the agent must go by the mount table, report
// not_mounted, and write nothing there.
func TestUnmountedWhileRegistered(t *testing.T) {
	testutil.RequireFUSE(t)
	mnt := t.TempDir()
	fs, err := faultfs.Mount(mnt, t.TempDir(), faultfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Unmount() })
	agent := startAgent(t, nil, "--check-interval", "1s", "--check-timeout", "500ms", "--mount", mnt)
	testutil.WaitForWithin(t, 10*time.Second, "healthy", func() bool { return state(t, agent.base, mnt) == "healthy" })
	if err := fs.Unmount(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForWithin(t, 10*time.Second, "not_mounted", func() bool {
		m := mounts(t, agent.base)[mnt]
		return m["reason"] == "not_mounted" && strings.Contains(m["lastError"].(string), "mount table")
	})
	time.Sleep(1500 * time.Millisecond)
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Fatalf("the agent wrote into the directory under the vanished mount: %v", ents)
	}
	if m := mounts(t, agent.base)[mnt]; m["state"] != "unhealthy" {
		t.Fatalf("state %v", m["state"])
	}
}
