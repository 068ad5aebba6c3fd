package probes

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openRoot opens the mount root as a directory without following a symlink
// in its last component, so a symlink planted in place of the mount root is
// never followed. It opens with O_PATH: the fd only anchors the *at calls,
// fstat and fstatfs, and opening it is not a directory open for listing.
func openRoot(root string) (int, error) {
	for {
		fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("mount root %q: %w", root, err)
		}
		return fd, nil
	}
}

// openProbeDir opens DirName under rootfd for a look at its files,
// without following a symlink in its place.
func openProbeDir(rootfd int) (int, error) {
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = unix.Openat(rootfd, DirName, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

func fstatfs(fd int, st *unix.Statfs_t) error {
	return retryEINTR(func() error { return unix.Fstatfs(fd, st) })
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

// sysState is what the steps of one check share on Linux: the mount
// root's descriptor, the probe directory's and the probe file.
type sysState struct {
	dirfd  int
	opened bool
	// pfd is the directory the probe file is made in: the probe
	// directory (open while pfdOpen) or the root (dirfd). dir is its
	// name relative to the root ("" for the root).
	pfd     int
	pfdOpen bool
	dir     string
	// relook is set when the probe directory vanished under the check:
	// the next look at it makes the client ask the server again;
	// relooked once it has.
	relook, relooked bool
	name             string
	bufs             *buffers
	// fd is the probe file, open from its create to the end of the read
	// step while fdOpen; direct is set when fd accepts O_DIRECT, directOn
	// while it is set.
	fd       int
	fdOpen   bool
	direct   bool
	directOn bool
}

// close releases the root's descriptor (and the probe file's, if a
// check ended without its read and delete steps).
func (s *sysState) close() {
	s.closeFile()
	s.closeDir()
	if s.opened {
		unix.Close(s.dirfd)
		s.opened = false
	}
}

// closeDir closes the probe directory's descriptor, if open.
func (s *sysState) closeDir() {
	if s.pfdOpen {
		unix.Close(s.pfd)
		s.pfdOpen = false
	}
}

// closeFile closes the probe file's descriptor if it is open. The
// descriptor is released even when close reports EINTR (a signal during
// the filesystem's flush): only a real error is returned.
func (s *sysState) closeFile() error {
	if !s.fdOpen {
		return nil
	}
	s.fdOpen = false
	if err := unix.Close(s.fd); err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

// release puts the buffers back into the pool.
func (s *sysState) release() {
	if s.bufs != nil {
		bufPool.Put(s.bufs)
		s.bufs = nil
	}
}

// open is the open step: the mount root as a directory fd. On a hung
// mount the open itself can block (the client revalidates the root), and
// the deadline must then name it.
func (r *run) open() error {
	fd, err := openRoot(r.root)
	if err != nil {
		return err
	}
	r.sys.dirfd, r.sys.opened = fd, true
	if r.opts.Superblock {
		// The device number only, from the client's cache: with
		// AT_STATX_DONT_SYNC and an empty mask neither the NFS client
		// (nfs_getattr) nor FUSE (fuse_update_get_attr) asks the server.
		var stx unix.Statx_t
		if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, 0, &stx); err == nil {
			r.res.Dev, r.res.DevKnown = unix.Mkdev(stx.Dev_major, stx.Dev_minor), true
		}
	}
	return nil
}

// statfs is the statfs step of the read-only check: a round trip to the
// server on NFS (the client never caches it, fs/nfs/super.c nfs_statfs).
func (r *run) statfs() error {
	var st unix.Statfs_t
	return fstatfs(r.sys.dirfd, &st)
}

// write is the write step: create a fresh probe file, write and fsync a
// random payload. It sets r.refused, without any file created, when the
// filesystem is read-only (EROFS), and r.denied when the create was
// refused with EACCES/EPERM and Options.RequireWriteCheck is off.
//
// The file stays open for the read step, with O_DIRECT where the
// filesystem accepts it (set with fcntl after the create, so the create
// itself never fails for it): on the Linux NFS client a direct write of
// one small buffer is a single WRITE sent FILE_SYNC, or followed by a
// COMMIT before write(2) returns when the server answers UNSTABLE, and a
// direct read always goes to the server (see the read step). Where
// O_DIRECT is refused the write is buffered and the fsync sends it, and
// the read step reopens the file as before.
func (r *run) write() error {
	r.created, r.refused, r.denied, r.dirRefused = false, false, false, false
	owner := r.opts.Owner
	if !owner.valid() {
		var err error
		if owner, err = NewOwner(r.opts.Hostname); err != nil {
			return err
		}
	}
	name, err := owner.NewFileName()
	if err != nil {
		return err
	}
	if r.sys.bufs == nil {
		if r.sys.bufs, err = getBuffers(); err != nil {
			return err
		}
	}
	r.sys.name = name
	payload := r.sys.bufs.payload[:]
	_, _ = r.sys.bufs.rng.Read(payload) // ChaCha8 never fails

	if err := r.probeDir(); err != nil {
		return err
	}
	s := &r.sys
	fd, err := createFile(s.pfd, name, !s.pfdOpen, &r.created)
	if err != nil {
		if !r.created {
			r.refusedBy(err)
			if s.pfdOpen && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESTALE)) {
				// The probe directory was removed since it was looked
				// up (by a user, or by another client): look again
				// on the retry, which first asks the server about the
				// root, so that a root that is gone is still found.
				// After that look, ESTALE is the mount's.
				if !s.relooked {
					s.relook = true
					return fmt.Errorf("create in %s: %w", DirName, lost(err))
				}
				if errors.Is(err, unix.ENOENT) {
					return fmt.Errorf("create in %s: %w", DirName, lost(err))
				}
			}
		}
		return fmt.Errorf("create: %w", err)
	}
	s.fd, s.fdOpen = fd, true
	if s.pfdOpen {
		if err := r.ownDir(fd); err != nil {
			return err
		}
	}
	s.direct = setDirect(fd, true) == nil
	s.directOn = s.direct
	// The payload goes out of an aligned buffer, as O_DIRECT on a block
	// device wants it.
	buf := r.sys.bufs.aligned()[:PayloadSize]
	copy(buf, payload)
	err = pwriteAll(fd, buf)
	if s.direct && errors.Is(err, unix.EINVAL) {
		// O_DIRECT accepted, but not for this write (a block device with
		// sectors larger than the payload): write it buffered; the read
		// still bypasses the cache.
		if err = setDirect(fd, false); err == nil {
			s.directOn = false
			err = pwriteAll(fd, buf)
		}
	}
	if err != nil {
		s.closeFile()
		return fmt.Errorf("write(2): %w", lost(err))
	}
	if err := retryEINTR(func() error { return unix.Fsync(fd) }); err != nil {
		s.closeFile()
		return fmt.Errorf("fsync: %w", lost(err))
	}
	if !s.direct {
		// Buffered all the way: close now, and the read step reopens the
		// file (close-to-open revalidates it on NFS).
		if err := s.closeFile(); err != nil {
			return fmt.Errorf("close: %w", lost(err))
		}
	}
	return nil
}

// setDirect sets or clears O_DIRECT on fd, a probe file opened without
// any other flag that F_SETFL changes (O_APPEND, O_NONBLOCK, O_NOATIME),
// so no F_GETFL is needed. It fails with EINVAL where the filesystem does
// not do direct I/O (fcntl(2); Linux fs/fcntl.c setfl).
func setDirect(fd int, on bool) error {
	fl := 0
	if on {
		fl = unix.O_DIRECT
	}
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl)
	return err
}

// read is the read step: read the probe file back and compare. Through
// the write's own descriptor with O_DIRECT, one pread at offset 0 that
// the Linux NFS client always sends to the server as a READ
// (fs/nfs/direct.c nfs_file_direct_read), then the file's one close;
// otherwise, or when the direct read is refused with EINVAL, as before:
// reopen it, with O_DIRECT where the filesystem allows, else buffered.
func (r *run) read() error {
	s := &r.sys
	want := s.bufs.payload[:]
	buf := s.bufs.aligned()
	if s.fdOpen && s.direct {
		got, err := s.directRead(buf)
		if !errors.Is(err, unix.EINVAL) {
			cerr := s.closeFile()
			if err != nil {
				return lost(err)
			}
			if cerr != nil {
				return fmt.Errorf("close: %w", lost(cerr))
			}
			return compare(got, want)
		}
	}
	if err := s.closeFile(); err != nil {
		return fmt.Errorf("close: %w", lost(err))
	}
	return readBack(s.pfd, s.name, want, buf)
}

// directRead reads the probe file from offset 0 through the open
// descriptor with O_DIRECT (set again if the write had to clear it) into
// buf, which is cleared first so that only what read(2) put there is
// compared.
func (s *sysState) directRead(buf []byte) ([]byte, error) {
	if !s.directOn {
		if err := setDirect(s.fd, true); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		s.directOn = true
	}
	clear(buf)
	for {
		n, err := unix.Pread(s.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		return buf[:n], nil
	}
}

// compare checks the bytes read back against those written.
func compare(got, want []byte) error {
	if !bytes.Equal(got, want) {
		return fmt.Errorf("read %d bytes: %w", len(got), ErrDataMismatch)
	}
	return nil
}

// delete is the delete step. It runs whenever the probe file may exist,
// even after a failure or a timeout (the check's goroutine gets here once
// a stuck call returns), and removes the file by name, so no probe file
// is left behind and no directory listing is needed.
func (r *run) delete() error {
	// Closed first: on NFS, unlinking a file that is still open renames it
	// to .nfsXXXX instead ("silly rename"), removed only at the close.
	_ = r.sys.closeFile()
	if err := unlinkOwn(r.sys.pfd, r.sys.name); err != nil {
		// Even after ENOENT: a later look by name costs one stat.
		r.res.Leftovers = append(r.res.Leftovers, path.Join(r.sys.dir, r.sys.name))
		return fmt.Errorf("unlink: %w", lost(err))
	}
	r.created = false
	return nil
}

// unlinkOwn removes the probe file name. An unlink interrupted by a signal
// is retried; the interrupted call may have removed the file already, so
// ENOENT after an EINTR is success.
func unlinkOwn(dirfd int, name string) error {
	interrupted := false
	for {
		err := unix.Unlinkat(dirfd, name, 0)
		switch {
		case err == unix.EINTR:
			interrupted = true
			continue
		case err == unix.ENOENT && interrupted:
			return nil
		}
		return err
	}
}

// createFile creates the probe file name in dirfd without following a
// symlink, exclusively when excl is set. A create interrupted by a signal
// (EINTR, which a FUSE or NFS mount returns when a Go runtime preemption
// signal arrives during the request) is retried; as the interrupted call
// may have created the file on the server, EEXIST after an EINTR means
// the file is ours (its name is random) and it is opened without O_CREAT.
// *created is set as soon as the file may exist, so the caller removes it.
//
// In the mount root the create is exclusive (O_EXCL): the root is
// everyone's. In the probe directory, which only the agent's identity may
// write (see ownDir), it is not: the name is random and nothing else
// makes files there, and on NFSv4.1 an exclusive create costs a SETATTR
// after the OPEN (the server keeps the create verifier in the file's
// times, which the client then sets: fs/nfs/nfs4proc.c _nfs4_do_open,
// nfs4_exclusive_attrset, Linux 6.1), while an unchecked create sets the
// mode in the OPEN itself.
func createFile(dirfd int, name string, excl bool, created *bool) (int, error) {
	const flags = unix.O_NOFOLLOW | unix.O_RDWR | unix.O_CLOEXEC
	create := unix.O_CREAT
	if excl {
		create |= unix.O_EXCL
	}
	interrupted := false
	for {
		fd, err := unix.Openat(dirfd, name, create|flags, 0o600)
		switch {
		case err == nil:
			*created = true
			return fd, nil
		case err == unix.EINTR:
			interrupted = true
			*created = true // perhaps: the server may have done it
			continue
		case err == unix.EEXIST && interrupted:
			fd, err = unix.Openat(dirfd, name, flags, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return -1, err
			}
			return fd, nil
		}
		// Any other failure of a retry means no file of that name exists:
		// an earlier interrupted create that had made it gives EEXIST.
		*created = false
		return -1, err
	}
}

// pwriteAll writes b at offset 0 of fd.
func pwriteAll(fd int, b []byte) error {
	off := 0
	for off < len(b) {
		n, err := unix.Pwrite(fd, b[off:], int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO
		}
		off += n
	}
	return nil
}

// directAlign is the buffer alignment and size used for O_DIRECT reads.
const directAlign = 4096

// buffers are one check's payload and read buffer, pooled: allocating
// them for every check was most of a check's garbage.
type buffers struct {
	raw     [2 * directAlign]byte
	payload [PayloadSize]byte
	// rng fills the payload: ChaCha8, seeded from crypto/rand when the
	// buffers are made, so payloads stay unpredictable without a
	// getrandom call per check.
	rng *mrand.ChaCha8
}

var bufPool sync.Pool

func getBuffers() (*buffers, error) {
	if b, ok := bufPool.Get().(*buffers); ok {
		return b, nil
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("random payload: %w", err)
	}
	return &buffers{rng: mrand.NewChaCha8(seed)}, nil
}

// aligned returns a directAlign-sized, directAlign-aligned slice of raw
// (heap objects do not move).
func (b *buffers) aligned() []byte {
	off := int(uintptr(unsafe.Pointer(&b.raw[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	return b.raw[off : off+directAlign]
}

// readBack reads the probe file, with O_DIRECT where the filesystem accepts
// it so the data comes from the server rather than the client page cache,
// and compares it with want.
func readBack(dirfd int, name string, want, buf []byte) error {
	got, err := readFile(dirfd, name, true, buf)
	if errors.Is(err, unix.EINVAL) {
		// O_DIRECT refused at open or at read: fall back to buffered I/O.
		got, err = readFile(dirfd, name, false, buf)
	}
	if err != nil {
		return lost(err)
	}
	return compare(got, want)
}

// readFile reads up to PayloadSize bytes of the file into buf, which must
// be aligned for O_DIRECT and directAlign bytes long.
func readFile(dirfd int, name string, direct bool, buf []byte) ([]byte, error) {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if direct {
		flags |= unix.O_DIRECT
	}
	var fd int
	err := retryEINTR(func() (err error) { fd, err = unix.Openat(dirfd, name, flags, 0); return err })
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	total := 0
	for total < PayloadSize {
		n, err := unix.Read(fd, buf[total:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			break
		}
		total += n
		if direct {
			// A further O_DIRECT read would start at an unaligned offset.
			break
		}
	}
	return buf[:total], nil
}

// stat is the stat step of the read-only check.
func (r *run) stat() error {
	var st unix.Stat_t
	return retryEINTR(func() error { return unix.Fstat(r.sys.dirfd, &st) })
}

// readdir is the readdir step of the read-only check: a bounded listing.
func (r *run) readdir() error { return readdirBounded(r.sys.dirfd, r.opts.ReaddirLimit) }

func readdirBounded(dirfd int, limit int) error {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	if _, err := f.Readdirnames(limit); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("readdir: %w", err)
	}
	return nil
}
