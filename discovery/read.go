package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
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
	progress atomic.Int64 // bytes read so far
	done     chan struct{}

	mu        sync.Mutex
	file      *os.File
	abandoned bool

	table map[string]Entry
	fd    int
	err   error
}

// abandon marks the read abandoned and closes its file, so that a reader
// still making progress stops at its next read call.
func (a *attempt) abandon() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.abandoned = true
	if a.file != nil {
		a.file.Close()
	}
}

// setFile records the opened file; false when the read was abandoned
// meanwhile (the caller then closes it).
func (a *attempt) setFile(f *os.File) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.file = f
	return !a.abandoned
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
		a.mu.Lock()
		if a.abandoned && fd >= 0 {
			unix.Close(fd)
			fd = -1
		}
		a.table, a.fd, a.err = t, fd, err
		a.mu.Unlock()
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
			a.abandon()
			return nil, -1, fmt.Errorf("read %s: %w", r.path, ctx.Err())
		case <-tick.C:
			if n := a.progress.Load(); n != last {
				last, lastAt = n, r.now()
			} else if r.now().Sub(lastAt) >= r.stall {
				a.abandon()
				return nil, -1, fmt.Errorf("read %s: %w for %v (after %d bytes)", r.path, ErrReadStalled, r.stall, n)
			}
		}
	}
}

// readFile is the body of a read, on its own goroutine.
func (r *tableReader) readFile(a *attempt, keep func(mountpoint, fstype string) bool, wantFD bool) (map[string]Entry, int, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer.
	f, err := os.OpenFile(r.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	if !a.setFile(f) {
		return nil, -1, fmt.Errorf("read %s: abandoned", r.path)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, -1, fmt.Errorf("read mount table: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, -1, fmt.Errorf("%s is %s: %w", r.path, kind(fi.Mode()), ErrNotRegular)
	}
	t, err := Parse(&countingReader{r: f, n: &a.progress, limit: r.limit}, keep)
	if err != nil {
		return nil, -1, fmt.Errorf("%s: %w", r.path, err)
	}
	fd := -1
	if wantFD {
		// Control keeps the descriptor's mode, unlike Fd.
		var derr error
		if cerr := func() error {
			rc, err := f.SyscallConn()
			if err != nil {
				return err
			}
			return rc.Control(func(d uintptr) { fd, derr = unix.FcntlInt(d, unix.F_DUPFD_CLOEXEC, 0) })
		}(); cerr != nil || derr != nil {
			// The table was read; only the change notification is lost,
			// and the periodic re-read remains.
			fd = -1
		}
	}
	return t, fd, nil
}

// kind names a file mode that is not a regular file.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	default:
		return "of mode " + m.String()
	}
}

// countingReader counts the bytes read into n and refuses to go past
// limit.
type countingReader struct {
	r     io.Reader
	n     *atomic.Int64
	total int64
	limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.total >= c.limit {
		return 0, fmt.Errorf("%w of %d bytes", ErrTableTooLarge, c.limit)
	}
	if rest := c.limit - c.total; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.total += int64(n)
	c.n.Add(int64(n))
	return n, err
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
