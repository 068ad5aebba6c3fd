package faultfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// lazyUnmount detaches a mount that is still busy.
func lazyUnmount(mountpoint string) error { return syscall.Unmount(mountpoint, syscall.MNT_DETACH) }

// Statx injects the getattr fault into statx(2) (Linux only).
func (n *node) Statx(ctx context.Context, fh fs.FileHandle, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	if e := n.f.inject(ctx, OpGetattr); e != 0 {
		return e
	}
	return n.LoopbackNode.Statx(ctx, unwrap(fh), flags, mask, out)
}
