package probes

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// dirMode is the mode the probe directory is made with, and
// dirForbidden the bits it must not have: a directory that others may
// write is one where they could remove or replace the agent's files.
const (
	dirMode      = 0o700
	dirForbidden = 0o022
)

// dirTries bounds the look-ups of the probe directory in one check: a
// look, a mkdir, and a look after a mkdir another agent won (EEXIST).
const dirTries = 3

// refusedBy notes a refused create (of the probe directory or file):
// EROFS is a read-only mount, EACCES/EPERM a mount the agent may not
// write (unless Options.RequireWriteCheck).
func (r *run) refusedBy(err error) {
	r.refused = errors.Is(err, unix.EROFS)
	r.denied = !r.opts.RequireWriteCheck && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM))
}

// refuseDir refuses the probe directory for why: the check runs the
// read-only steps in ModeDirRefused, or fails with ErrProbeDirRefused
// under Options.RequireWriteCheck.
func (r *run) refuseDir(why string) error {
	r.dirRefused = !r.opts.RequireWriteCheck
	return fmt.Errorf("%s/%s %s: %w", r.root, DirName, why, ErrProbeDirRefused)
}

// probeDir opens the directory the probe file is made in: the root under
// Options.InRoot, else DirName, made if missing. It sets r.refused or
// r.denied when the mkdir is refused, and refuses (refuseDir) a DirName
// that is not a directory (a file, a symlink, which is never followed) or
// that group or others may write. Its owner is checked once the probe
// file exists (ownDir).
func (r *run) probeDir() error {
	s := &r.sys
	s.closeDir()
	if r.opts.InRoot {
		s.pfd, s.dir = s.dirfd, ""
		return nil
	}
	s.dir = DirName
	if s.relook || (r.res.Retried && !s.relooked) {
		// Also on any retry: a probe file lost mid-check may have gone
		// with its directory, which the client may still have cached.
		// The directory vanished under an earlier attempt: make the
		// client ask the server about the root, and so find that it
		// changed and look its entries up again (a stat that must sync
		// and asks for more than the file type, which the Linux client
		// answers from its cache: fs/nfs/inode.c nfs_getattr, 6.1),
		// then about the directory (an ESTALE makes the kernel look
		// the name up again, fs/namei.c retry_estale). The root's
		// error is the check's; the directory's is the open's below.
		s.relook, s.relooked = false, true
		const mask = unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_CTIME
		var stx unix.Statx_t
		if err := retryEINTR(func() error {
			return unix.Statx(s.dirfd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_FORCE_SYNC, mask, &stx)
		}); err != nil {
			return fmt.Errorf("mount root: %w", err)
		}
		_ = retryEINTR(func() error {
			return unix.Statx(s.dirfd, DirName, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_FORCE_SYNC, mask, &stx)
		})
	}
	for try := 0; ; try++ {
		var fd int
		err := retryEINTR(func() (err error) {
			fd, err = unix.Openat(s.dirfd, DirName, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			return err
		})
		switch {
		case err == nil:
			s.pfd, s.pfdOpen = fd, true
			return r.checkDir()
		case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
			return r.refuseDir(r.notDir())
		case !errors.Is(err, unix.ENOENT):
			r.refusedBy(err)
			return fmt.Errorf("open %s: %w", DirName, err)
		case try+1 >= dirTries:
			// Made, and gone again at once: something removes it.
			return fmt.Errorf("open %s: %w", DirName, lost(err))
		}
		err = retryEINTR(func() error { return unix.Mkdirat(s.dirfd, DirName, dirMode) })
		if err != nil && !errors.Is(err, unix.EEXIST) {
			// EEXIST: another agent made it first; it is looked at as
			// any directory found.
			r.refusedBy(err)
			return fmt.Errorf("mkdir %s: %w", DirName, err)
		}
	}
}

// notDir says what DirName is, when it is not a directory.
func (r *run) notDir() string {
	var stx unix.Statx_t
	err := unix.Statx(r.sys.dirfd, DirName, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &stx)
	switch {
	case err != nil:
		return "is not a directory"
	case stx.Mode&unix.S_IFMT == unix.S_IFLNK:
		return "is a symlink, not followed"
	}
	return fmt.Sprintf("is not a directory (file type %#o)", stx.Mode&unix.S_IFMT)
}

// checkDir refuses an open probe directory that group or others may
// write. Its attributes come from the client's cache: no round trip.
func (r *run) checkDir() error {
	stx, err := statxCached(r.sys.pfd)
	if err != nil {
		return fmt.Errorf("stat %s: %w", DirName, err)
	}
	if stx.Mode&dirForbidden != 0 {
		return r.refuseDir(fmt.Sprintf("has mode %#o, writable by group or others", stx.Mode&0o7777))
	}
	return nil
}

// ownDir refuses the probe directory when it belongs to someone else: its
// owner must be the identity the agent's files get on this mount, which
// is the agent's own user, or the probe file's owner (an EFS access
// point's POSIX user, a squashed root's anonymous user). fd is the probe
// file; its attributes came with the create.
func (r *run) ownDir(fd int) error {
	dir, err := statxCached(r.sys.pfd)
	if err != nil {
		return fmt.Errorf("stat %s: %w", DirName, err)
	}
	if dir.Uid == uint32(unix.Geteuid()) {
		return nil
	}
	file, err := statxCached(fd)
	if err != nil {
		return fmt.Errorf("stat the probe file: %w", err)
	}
	if dir.Uid != file.Uid {
		return r.refuseDir(fmt.Sprintf("belongs to uid %d, not to uid %d that the agent's files get", dir.Uid, file.Uid))
	}
	return nil
}

// statxCached reads fd's type, mode and owner from the client's cache
// (AT_STATX_DONT_SYNC: no round trip on NFS).
func statxCached(fd int) (unix.Statx_t, error) {
	var stx unix.Statx_t
	err := retryEINTR(func() error {
		return unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE|unix.STATX_MODE|unix.STATX_UID, &stx)
	})
	return stx, err
}
