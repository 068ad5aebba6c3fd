package tmpfs

import (
	"fmt"

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
