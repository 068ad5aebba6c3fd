//go:build !linux

package faultfs

import "golang.org/x/sys/unix"

// lazyUnmount forces the unmount of a mount that is still busy.
func lazyUnmount(mountpoint string) error { return unix.Unmount(mountpoint, unix.MNT_FORCE) }
