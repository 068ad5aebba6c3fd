//go:build !linux

package tmpfs

import "errors"

// Mount fails: tmpfs mounts are made on Linux only.
func Mount(dir, options string) (unmount func(), err error) {
	return nil, errors.New("tmpfs: mounting needs Linux")
}
