package tmpfs

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// Mount mounts a tmpfs with the given options (e.g. "size=64m") on dir and
// returns the function that detaches it.
func Mount(dir, options string) (unmount func(), err error) {
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, options); err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return func() { _ = unix.Unmount(dir, unix.MNT_DETACH) }, nil
}

// Dir returns a temporary directory with a tmpfs mounted on it, unmounted
// when the test or benchmark ends. Without the privilege to mount it logs
// why and returns a plain temporary directory.
func Dir(tb testing.TB) string {
	tb.Helper()
	d := tb.TempDir()
	unmount, err := Mount(d, "size=64m")
	if err != nil {
		tb.Logf("no tmpfs (%v): using %s, where fsync reaches the disk", err, d)
		return d
	}
	tb.Cleanup(unmount)
	return d
}
