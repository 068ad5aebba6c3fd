package probes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Op names one timed operation of a check.
type Op string

// Operations of the read-write and read-only checks.
const (
	OpWrite   Op = "write"
	OpRead    Op = "read"
	OpDelete  Op = "delete"
	OpStatfs  Op = "statfs"
	OpStat    Op = "stat"
	OpReaddir Op = "readdir"
	OpOpen    Op = "open"
	// OpMountTable is the lookup of the path in the mount table that
	// precedes the I/O of a mount registered with its filesystem type.
	OpMountTable Op = "mounttable"
	// OpTunnel is the TCP connect to a mount's local TLS tunnel.
	OpTunnel Op = "tunnel"
)

// Mode says which kind of check ran against a mount.
type Mode string

// Check modes.
const (
	ModeReadWrite Mode = "read-write"
	ModeReadOnly  Mode = "read-only"
)

// FilePrefix starts the name of every probe file. The full name also says
// which node and which agent instance wrote it (see Owner), so a leftover
// can be attributed to the instance that left it.
const FilePrefix = ".efs-health-probe-"

// PayloadSize is the number of random bytes written and read back.
const PayloadSize = 1024

// ErrNotMounted reports that the path is no longer the mount it was
// registered as, according to the mount table.
var ErrNotMounted = errors.New("not the registered mount")

// ErrTunnelDown reports that the local TLS tunnel of a mount refused a
// connection.
var ErrTunnelDown = errors.New("TLS tunnel not accepting connections")

// ErrDataMismatch reports that the bytes read back differ from those written.
var ErrDataMismatch = errors.New("data read back differs from data written")

// Observer receives the start and end of every operation of a check. Calls
// for one check come from one goroutine, in order. Implementations must not
// block.
type Observer interface {
	OpStart(op Op)
	OpEnd(op Op, d time.Duration, err error)
}

// OpResult is the outcome of one operation.
type OpResult struct {
	Op       Op
	Duration time.Duration
	Err      error
}

// Result is the outcome of one check.
type Result struct {
	Mode Mode
	Ops  []OpResult
	// Err is the first failure, wrapped with the operation that failed.
	Err error
	// FailedOp is the operation Err came from, "" on success.
	FailedOp Op
	// Retried is set when the first probe file vanished under the check
	// (removed by something else) and the check ran again with a fresh
	// name; the Ops are the second attempt's.
	Retried bool
	// Leftovers name the probe files this check created whose unlink
	// failed; they are this instance's, no longer in use, and may be
	// removed by name later.
	Leftovers []string
}

// Duration is the sum of the operation times.
func (r Result) Duration() time.Duration {
	var d time.Duration
	for _, o := range r.Ops {
		d += o.Duration
	}
	return d
}

// OpError is an operation's failure. It unwraps to the syscall error so
// callers can classify it with errors.Is (syscall.EIO, syscall.ESTALE, ...).
type OpError struct {
	Op  Op
	Err error
}

func (e *OpError) Error() string { return fmt.Sprintf("%s: %v", e.Op, e.Err) }

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// Options configures a check.
type Options struct {
	// Owner names the probe files. When it is the zero Owner, a fresh one
	// is made for Hostname.
	Owner Owner
	// Hostname goes into probe file names when Owner is not set.
	Hostname string
	// ReaddirLimit bounds the entries read by the read-only check (default 64).
	ReaddirLimit int
	// Observer, if set, sees every operation start and end.
	Observer Observer
	// Now is the clock used to time operations (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.ReaddirLimit <= 0 {
		o.ReaddirLimit = 64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// timer runs one operation, timing it and telling the observer.
type timer struct {
	opts *Options
	res  *Result
}

func (t timer) run(op Op, f func() error) error {
	if t.opts.Observer != nil {
		t.opts.Observer.OpStart(op)
	}
	start := t.opts.Now()
	err := f()
	d := t.opts.Now().Sub(start)
	if err != nil {
		err = &OpError{Op: op, Err: err}
	}
	t.res.Ops = append(t.res.Ops, OpResult{Op: op, Duration: d, Err: err})
	if t.opts.Observer != nil {
		t.opts.Observer.OpEnd(op, d, err)
	}
	if err != nil && t.res.Err == nil {
		t.res.Err = err
		t.res.FailedOp = op
	}
	return err
}

// Check runs one check of the mount at root: read-write unless the mount is
// read-only (its statfs flags say so, or file creation fails with EROFS), in
// which case it runs the read-only check. It blocks for as long as the
// filesystem does; ctx is only consulted between operations.
func Check(ctx context.Context, root string, opts Options) Result {
	opts.defaults()
	res := Result{Mode: ModeReadWrite}
	t := timer{opts: &opts, res: &res}

	dirfd, err := t.openRoot(root)
	if err != nil {
		return res
	}
	defer unix.Close(dirfd)

	var st unix.Statfs_t
	if err := t.run(OpStatfs, func() error { return fstatfs(dirfd, &st) }); err != nil {
		return res
	}
	keep := len(res.Ops) // open and statfs stay when falling back to read-only
	if st.Flags&stRDONLY != 0 {
		res.Mode = ModeReadOnly
		readOnly(ctx, dirfd, t)
		return res
	}
	ro := readWrite(ctx, dirfd, t)
	if !ro && errors.Is(res.Err, ErrProbeFileLost) && ctx.Err() == nil {
		// Something else removed the probe file mid-check. That is not an
		// outage of the mount: try once more at once with a fresh name,
		// and report it only if it happens again.
		res.Ops, res.Err, res.FailedOp, res.Retried = res.Ops[:keep], nil, "", true
		ro = readWrite(ctx, dirfd, t)
	}
	if ro {
		// Creation failed with EROFS: the mount is read-only. Check it as such.
		res.Mode = ModeReadOnly
		res.Ops, res.Err, res.FailedOp = res.Ops[:keep], nil, ""
		readOnly(ctx, dirfd, t)
	}
	return res
}

// openRoot opens the mount root as a timed operation: on a hung mount the
// open itself can block (the client revalidates the root), and the deadline
// must then name it.
func (t timer) openRoot(root string) (int, error) {
	var fd int
	err := t.run(OpOpen, func() error {
		var err error
		fd, err = openRoot(root)
		return err
	})
	return fd, err
}

// CheckReadOnly runs only the read-only check (statfs, stat, bounded readdir).
func CheckReadOnly(ctx context.Context, root string, opts Options) Result {
	opts.defaults()
	res := Result{Mode: ModeReadOnly}
	t := timer{opts: &opts, res: &res}
	dirfd, err := t.openRoot(root)
	if err != nil {
		return res
	}
	defer unix.Close(dirfd)
	var st unix.Statfs_t
	if err := t.run(OpStatfs, func() error { return fstatfs(dirfd, &st) }); err != nil {
		return res
	}
	readOnly(ctx, dirfd, t)
	return res
}

// record notes an operation that failed before it could be timed.
func (t timer) record(op Op, err error) {
	_ = t.run(op, func() error { return err })
}
