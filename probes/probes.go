package probes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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

// FilePrefix starts the name of every probe file. The full name is
// FilePrefix + hostname + "-" + 16 random hex digits + ".tmp", so a stale
// file can be attributed to the host that left it.
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
	// Hostname goes into probe file names; required.
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

// ProbeFileName returns a fresh, unpredictable probe file name for host.
func ProbeFileName(host string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random probe name: %w", err)
	}
	return HostPrefix(host) + hex.EncodeToString(b[:]) + ".tmp", nil
}

// HostPrefix is the name prefix of the probe files written by host. Host
// names are sanitised so that they cannot add path separators.
func HostPrefix(host string) string {
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '_'
	}, host)
	if host == "" {
		host = "unknown"
	}
	return FilePrefix + host + "-"
}

// IsProbeFile reports whether name is a probe file written by host.
func IsProbeFile(name, host string) bool {
	p := HostPrefix(host)
	if !strings.HasPrefix(name, p) || !strings.HasSuffix(name, ".tmp") {
		return false
	}
	mid := name[len(p) : len(name)-len(".tmp")]
	if len(mid) != 16 {
		return false
	}
	_, err := hex.DecodeString(mid)
	return err == nil
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
	if readWrite(ctx, dirfd, t) {
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
