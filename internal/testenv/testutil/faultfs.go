package testutil

import (
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
)

// MountFaultFS mounts a fault filesystem over a fresh backing directory at a fresh
// mountpoint and unmounts it when the test ends. Where root or /dev/fuse is
// missing it skips the test with the reason, but fails it when the CI
// environment variable is set: CI must run these tests.
func MountFaultFS(t testing.TB) *faultfs.FS {
	t.Helper()
	RequireFUSE(t)
	f, err := faultfs.Mount(t.TempDir(), t.TempDir(), faultfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("unmount fault filesystem: %v", err)
		}
	})
	return f
}
