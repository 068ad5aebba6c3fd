package faultfs

import (
	"os"
	"testing"
)

// MountT mounts a fault filesystem over a fresh backing directory at a fresh
// mountpoint and unmounts it when the test ends. Where root or /dev/fuse is
// missing it skips the test with the reason, but fails it when the CI
// environment variable is set: CI must run these tests.
func MountT(t testing.TB) *FS {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("fault filesystem unavailable in CI: %v", err)
		}
		t.Skipf("fault filesystem unavailable: %v", err)
	}
	f, err := Mount(t.TempDir(), t.TempDir(), Options{})
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
