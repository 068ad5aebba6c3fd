package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of one read of the mount table. The kernel's mountinfo answers
// at once; these only matter when HEALTH_MOUNTINFO names something else:
// a FIFO (refused before it is read, since it is opened with O_NONBLOCK
// and checked with fstat), a file on a FUSE or network filesystem that
// does not answer, or a file far larger than any mount table.
const (
	// ReadStall is how long a read of the table may make no progress (its
	// open, its fstat, or one read call) before it is abandoned. The read
	// goes on in the background, if the kernel does not return, and no
	// further read starts until it returns: at most one reader is stuck.
	ReadStall = 5 * time.Second
	// MaxTableBytes is the most a read takes from the table: about a
	// million lines, far more than any node mounts.
	MaxTableBytes = 256 << 20
	// ConfirmDelay is the pause before the second, independent read that
	// confirms a departure: an entry that the last published table had and
	// a read lacks is dropped only when a read this much later lacks it
	// too. A table read half-written, or the kernel's mountinfo read while
	// it changes (it can skip entries that move during a multi-read), is
	// not taken at its word.
	ConfirmDelay = 250 * time.Millisecond
)

// Errors of a read of the mount table, for errors.Is.
var (
	// ErrNotRegular: the table is not a regular file (a FIFO, a device, a
	// socket or a directory). /proc/self/mountinfo is a regular file of
	// size 0, so the mode is checked, not the size.
	ErrNotRegular = errors.New("not a regular file")
	// ErrReadStalled: the read made no progress for ReadStall.
	ErrReadStalled = errors.New("read made no progress")
	// ErrReadStuck: an earlier read, abandoned, has still not returned
	// from the kernel, so no new one is started.
	ErrReadStuck = errors.New("an earlier read has not returned")
	// ErrTableTooLarge: the table is larger than MaxTableBytes.
	ErrTableTooLarge = errors.New("larger than the bound")
)

// tableReader reads the mount table with the bounds above. Reads happen
// on a goroutine of their own, so that a read blocked in the kernel cannot
// hold up its caller past the stall bound, and at most one such goroutine
// exists at a time.
type tableReader struct {
	path  string
	stall time.Duration
	limit int64
	// busy is set while a read goroutine runs; since is when it started.
	busy  atomic.Bool
	since atomic.Int64
	now   func() time.Time
}

func newTableReader(path string) *tableReader {
	return &tableReader{path: path, stall: ReadStall, limit: MaxTableBytes, now: time.Now}
}

// attempt is one read in progress, shared by the reader goroutine and the
// caller that waits for it.
type attempt struct {
	progress  atomic.Int64 // bytes read so far
	abandoned atomic.Bool  // the caller gave up: stop at the next read call
	done      chan struct{}

	table map[string]Entry
	fd    int
	err   error
}

// read reads and parses the table, keeping the entries keep accepts. With
// wantFD it also returns a duplicate of the descriptor it read from (for
// poll), which the caller closes. It returns within ReadStall of the read's
// last progress, or when ctx is done.
func (r *tableReader) read(ctx context.Context, keep func(mountpoint, fstype string) bool, wantFD bool) (map[string]Entry, int, error) {
	if !r.busy.CompareAndSwap(false, true) {
		return nil, -1, fmt.Errorf("read %s: %w (blocked for %v)", r.path, ErrReadStuck,
			r.now().Sub(time.Unix(0, r.since.Load())).Round(time.Second))
	}
	start := r.now()
	r.since.Store(start.UnixNano())
	a := &attempt{done: make(chan struct{}), fd: -1}
	go func() {
		t, fd, err := r.readFile(a, keep, wantFD)
		if a.abandoned.Load() && fd >= 0 {
			unix.Close(fd)
			fd = -1
		}
		a.table, a.fd, a.err = t, fd, err
		r.busy.Store(false)
		close(a.done)
	}()
	tick := time.NewTicker(max(r.stall/8, time.Millisecond))
	defer tick.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-a.done:
			return a.table, a.fd, a.err
		case <-ctx.Done():
			a.abandoned.Store(true)
			return nil, -1, fmt.Errorf("read %s: %w", r.path, ctx.Err())
		case <-tick.C:
			if n := a.progress.Load(); n != last {
				last, lastAt = n, r.now()
			} else if r.now().Sub(lastAt) >= r.stall {
				a.abandoned.Store(true)
				return nil, -1, fmt.Errorf("read %s: %w for %v (after %d bytes)", r.path, ErrReadStalled, r.stall, n)
			}
		}
	}
}

// readFile is the body of a read, on its own goroutine. It uses the
// descriptor directly: it alone closes it, once no call on it is in
// progress, so an abandoned read cannot have its descriptor reused under
// it.
func (r *tableReader) readFile(a *attempt, keep func(mountpoint, fstype string) bool, wantFD bool) (map[string]Entry, int, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer.
	fd, err := unix.Open(r.path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("read mount table: %w", &fs.PathError{Op: "open", Path: r.path, Err: err})
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, -1, fmt.Errorf("read mount table: %w", &fs.PathError{Op: "fstat", Path: r.path, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, -1, fmt.Errorf("%s is %s: %w", r.path, kind(uint32(st.Mode)), ErrNotRegular)
	}
	cr := &countingReader{fd: fd, a: a, limit: r.limit}
	t, err := Parse(cr, keep)
	if cr.total >= cr.limit {
		// The parser reports the cut line rather than the reader's error.
		return nil, -1, fmt.Errorf("read %s: %w of %d bytes", r.path, ErrTableTooLarge, r.limit)
	}
	if err != nil {
		return nil, -1, fmt.Errorf("%s: %w", r.path, err)
	}
	if !wantFD {
		return t, -1, nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		// The table was read; only the change notification is lost,
		// and the periodic re-read remains.
		dup = -1
	}
	return t, dup, nil
}

// kind names the type of a file that is not a regular file.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a named pipe (FIFO)"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	default:
		return fmt.Sprintf("of type %#o", mode&unix.S_IFMT)
	}
}

// countingReader reads the descriptor, counts the bytes into the
// attempt's progress, stops once the attempt is abandoned, and refuses to
// go past limit.
type countingReader struct {
	fd    int
	a     *attempt
	total int64
	limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.a.abandoned.Load() {
		return 0, errors.New("read abandoned")
	}
	if c.total >= c.limit {
		return 0, fmt.Errorf("%w of %d bytes", ErrTableTooLarge, c.limit)
	}
	if rest := c.limit - c.total; int64(len(p)) > rest {
		p = p[:rest]
	}
	for {
		n, err := unix.Read(c.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			// O_NONBLOCK on a file that honours it with nothing to
			// read yet: not a mount table.
			return 0, fmt.Errorf("read: %w", err)
		}
		if n < 0 {
			n = 0
		}
		c.total += int64(n)
		c.a.progress.Add(int64(n))
		if err != nil {
			return n, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// CheckTable reads the mount table at path once, with the bounds of
// discovery's reads, and reports why it cannot be followed: it is not a
// regular file, cannot be opened, stalls, or does not parse. The agent
// calls it before it logs anything, so that a bad HEALTH_MOUNTINFO is
// reported in one line.
func CheckTable(ctx context.Context, path string) error {
	_, _, err := newTableReader(path).read(ctx, func(string, string) bool { return false }, false)
	return err
}
