package tmpfs

import (
	"testing"

	"golang.org/x/sys/unix"
)

// Dir returns a temporary directory with a tmpfs mounted on it, unmounted
// when the test or benchmark ends. Without the privilege to mount it logs
// why and returns a plain temporary directory.
func Dir(tb testing.TB) string {
	tb.Helper()
	d := tb.TempDir()
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size=64m"); err != nil {
		tb.Logf("no tmpfs (%v): using %s, where fsync reaches the disk", err, d)
		return d
	}
	tb.Cleanup(func() { _ = unix.Unmount(d, unix.MNT_DETACH) })
	return d
}
