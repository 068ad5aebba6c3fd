package testutil

import (
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/tmpfs"
)

// TmpfsDir returns a temporary directory with a tmpfs mounted on it, unmounted
// when the test or benchmark ends. Without the privilege to mount it logs
// why and returns a plain temporary directory.
func TmpfsDir(tb testing.TB) string {
	tb.Helper()
	d := tb.TempDir()
	unmount, err := tmpfs.Mount(d, "size=64m")
	if err != nil {
		tb.Logf("no tmpfs (%v): using %s, where fsync reaches the disk", err, d)
		return d
	}
	tb.Cleanup(unmount)
	return d
}
