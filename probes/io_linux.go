package probes

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const stRDONLY = unix.ST_RDONLY

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

// readWrite runs write, read and delete. It reports true, without recording
// a failure, when the file could not be created because the filesystem is
// read-only.
func readWrite(ctx context.Context, dirfd int, t timer) (readOnly bool) {
	owner := t.opts.Owner
	if !owner.valid() {
		var err error
		if owner, err = NewOwner(t.opts.Hostname); err != nil {
			t.record(OpWrite, err)
			return false
		}
	}
	name, err := owner.NewFileName()
	if err != nil {
		t.record(OpWrite, err)
		return false
	}
	bufs, err := getBuffers()
	if err != nil {
		t.record(OpWrite, err)
		return false
	}
	// Back to the pool only here: a check stuck in the kernel keeps its
	// buffers until the call returns.
	defer bufPool.Put(bufs)
	payload := bufs.payload[:]
	_, _ = bufs.rng.Read(payload) // ChaCha8 never fails

	created := false
	err = t.run(OpWrite, func() error {
		fd, err := createFile(dirfd, name, &created)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if err := writeAll(fd, payload); err != nil {
			unix.Close(fd)
			return fmt.Errorf("write(2): %w", lost(err))
		}
		if err := retryEINTR(func() error { return unix.Fsync(fd) }); err != nil {
			unix.Close(fd)
			return fmt.Errorf("fsync: %w", lost(err))
		}
		// The descriptor is released even when close reports EINTR (a
		// signal during the filesystem's flush); the data is already
		// fsynced, so only a real error counts.
		if err := unix.Close(fd); err != nil && err != unix.EINTR {
			return fmt.Errorf("close: %w", lost(err))
		}
		return nil
	})
	if err != nil && !created && errors.Is(err, unix.EROFS) {
		return true
	}
	if !created {
		return false
	}
	if err == nil && ctx.Err() == nil {
		_ = t.run(OpRead, func() error { return readBack(dirfd, name, payload, bufs.aligned()) })
	}
	// Always remove what was created, by name, even after a failure or a
	// timeout (this goroutine gets here once a stuck call returns), so no
	// probe file is left behind and no directory listing is needed.
	_ = t.run(OpDelete, func() error {
		if err := unlinkOwn(dirfd, name); err != nil {
			// Even after ENOENT: a later look by name costs one stat.
			t.res.Leftovers = append(t.res.Leftovers, name)
			return fmt.Errorf("unlink: %w", lost(err))
		}
		return nil
	})
	return false
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

// createFile creates the probe file name in dirfd, exclusively and
// without following a symlink. A create interrupted by a signal (EINTR,
// which a FUSE or NFS mount returns when a Go runtime preemption signal
// arrives during the request) is retried; as the interrupted call may
// have created the file on the server, EEXIST after an EINTR means the
// file is ours (its name is random) and it is opened without O_CREAT.
// *created is set as soon as the file may exist, so the caller removes it.
func createFile(dirfd int, name string, created *bool) (int, error) {
	const flags = unix.O_NOFOLLOW | unix.O_WRONLY | unix.O_CLOEXEC
	interrupted := false
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_CREAT|unix.O_EXCL|flags, 0o600)
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

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO
		}
		b = b[n:]
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
	if !bytes.Equal(got, want) {
		return fmt.Errorf("read %d bytes: %w", len(got), ErrDataMismatch)
	}
	return nil
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

// readOnly runs stat and a bounded readdir of the root.
func readOnly(ctx context.Context, dirfd int, t timer) {
	var st unix.Stat_t
	if err := t.run(OpStat, func() error { return retryEINTR(func() error { return unix.Fstat(dirfd, &st) }) }); err != nil {
		return
	}
	if ctx.Err() != nil {
		return
	}
	_ = t.run(OpReaddir, func() error { return readdirBounded(dirfd, t.opts.ReaddirLimit) })
}

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
