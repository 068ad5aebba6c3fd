package probes

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrProbeFileLost reports that the check's own probe file vanished
// between two operations (ENOENT or ESTALE on the file, not on the mount
// root): something else removed it.
var ErrProbeFileLost = errors.New("probe file vanished")

// lost wraps err with ErrProbeFileLost when it says the file is gone.
func lost(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESTALE) {
		return fmt.Errorf("%w: %w", ErrProbeFileLost, err)
	}
	return err
}

// MinLeftoverAge is the floor of the age a probe file of another instance
// must reach before it is removed as a leftover.
const MinLeftoverAge = 30 * time.Second

// LeftoverAge is the age after which a probe file of another instance of
// this node is provably not in flight: a check holds its file for at most
// its timeout before it is counted as failed, so twice the timeout, with
// MinLeftoverAge as the floor for instances running with a longer timeout.
func LeftoverAge(timeout time.Duration) time.Duration {
	if timeout > math.MaxInt64/2 {
		return timeout // twice would overflow
	}
	return max(2*timeout, MinLeftoverAge)
}

// ServerTime relates the file server's clock to the local monotonic clock:
// Server is a time the server had already reached when Local was read.
// Ages of files are measured on the server's clock, so clock skew between
// node and server cannot make a file look older than it is.
type ServerTime struct {
	Server time.Time
	Local  time.Time
}

// now is a lower bound of the server's time at local time t.
func (s ServerTime) now(t time.Time) time.Time {
	if s.Server.IsZero() {
		return time.Time{}
	}
	return s.Server.Add(t.Sub(s.Local))
}

// SweepOptions bounds a sweep.
type SweepOptions struct {
	// MinAge is the age a file of another instance must reach before it is
	// removed (LeftoverAge of the timeout).
	MinAge time.Duration
	// MaxEntries bounds the names read from the directory.
	MaxEntries int
	// Budget bounds the time spent reading names (checked between batches:
	// a single blocked read cannot be cut short).
	Budget time.Duration
	// MaxYoung bounds the names returned in SweepResult.Young.
	MaxYoung int
	// Ref is the server time learnt by an earlier sweep of the same root.
	Ref ServerTime
	// Seen, when set, is a local time (with a monotonic reading) by which
	// the names looked at by RemoveLeftovers were known to exist: a file
	// is then at least now - Seen old, whatever its times say. A clock
	// stepped back on the server, or a writer whose clock runs ahead,
	// gives a file times in the future; watching it for MinAge proves its
	// age all the same.
	Seen time.Time
	// Now is the local clock (default time.Now); it must carry a
	// monotonic reading.
	Now func() time.Time
	// Gate, when set, is passed before every call the sweep makes on the
	// root (each getdents batch of the listing, each look at a name), so
	// that the caller can keep those calls apart from its checks of the
	// same root.
	Gate Gate
	// Dir is the directory SweepLeftovers lists, relative to the root:
	// "" for the root itself (where earlier versions made their probe
	// files, and where Options.InRoot makes them), or DirName.
	Dir string
}

// Gate keeps a sweep's calls on a mount root apart from other work on
// that root. The kernel serialises a create or unlink in a directory with
// a getdents call on it in progress; a sweep that enters its gate before
// each call, and leaves it when the call returns, lets the caller make
// sure that no check of the root waits behind the sweep.
type Gate interface {
	// Enter waits until the sweep may make its next call on the root.
	// False stops the sweep there.
	Enter() bool
	// Leave reports that the call has returned.
	Leave()
}

// openGate is the Gate of a sweep without one.
type openGate struct{}

func (openGate) Enter() bool { return true }
func (openGate) Leave()      {}

// sweepBatch is the size of the buffer of one getdents call of a
// listing: small, so that each call (each time the root's lock is held
// for the sweep) is short.
const sweepBatch = 4096

// SweepResult is what a sweep did.
type SweepResult struct {
	// Listed is the number of names read from the directory.
	Listed int
	// Truncated is set when the entry or time bound stopped the listing.
	Truncated bool
	// Removed are the files removed.
	Removed []string
	// Young are leftovers of another instance not yet old enough to be
	// provably not in flight: look at them again by name after Wait.
	Young []string
	// Wait is how long until the youngest of Young is old enough by its
	// times (see SweepOptions.Seen for another proof of age).
	Wait time.Duration
	// Ref is the server time learnt, for a later RemoveLeftovers.
	Ref ServerTime
}

// SweepLeftovers lists opts.Dir of the mount root (the root itself, or
// DirName) once and removes the probe files other instances of o's node
// left there that are older than opts.MinAge by their own modification
// and change times. It never touches this instance's files (a check may
// be using them), other nodes' files, symlinks or anything that is not a
// regular file, and never follows a symlink in place of DirName. The
// names it reports (Removed, Young) are relative to the root.
func SweepLeftovers(root string, o Owner, opts SweepOptions) (SweepResult, error) {
	if opts.Dir != "" && opts.Dir != DirName {
		return SweepResult{}, fmt.Errorf("sweep %q: not a probe directory: %q", root, opts.Dir)
	}
	rootfd, res, err := openLeftovers(root, &opts)
	if err != nil {
		return res, err
	}
	defer unix.Close(rootfd)
	dirfd := rootfd
	if opts.Dir != "" {
		if dirfd, err = openProbeDir(rootfd); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return res, nil // no probe directory: nothing left in it
			}
			return res, fmt.Errorf("open %q: %w", filepath.Join(root, opts.Dir), err)
		}
		defer unix.Close(dirfd)
		res.Ref = serverTime(dirfd, res.Ref, opts.Now)
	}
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return res, fmt.Errorf("open %q: %w", filepath.Join(root, opts.Dir), err)
	}
	defer unix.Close(fd)
	deadline := opts.Now().Add(opts.Budget)
	buf := make([]byte, sweepBatch)
	var names []string
	var errs []error
	for {
		if res.Listed >= opts.MaxEntries || (opts.Budget > 0 && opts.Now().After(deadline)) {
			res.Truncated = true
			break
		}
		if !opts.Gate.Enter() {
			res.Truncated = true
			break
		}
		var n int
		err := retryEINTR(func() (err error) { n, err = unix.ReadDirent(fd, buf); return err })
		opts.Gate.Leave()
		if err != nil {
			errs = append(errs, fmt.Errorf("list %q: %w", root, err))
			break
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], opts.MaxEntries-res.Listed, names[:0])
		res.Listed += len(names)
		for _, name := range names {
			if o.Classify(name) != EarlierInstance {
				continue
			}
			if !opts.Gate.Enter() {
				res.Truncated = true
				return res, errors.Join(errs...)
			}
			errs = append(errs, consider(dirfd, opts.Dir, name, opts, &res))
			opts.Gate.Leave()
		}
	}
	return res, errors.Join(errs...)
}

// RemoveLeftovers looks again, by name and without listing a directory,
// at files of o's node: names are relative to the mount root, in the root
// itself or in DirName (as Result.Leftovers and SweepResult.Young give
// them); any other name is ignored. This instance's own files (whose
// check has returned) are removed, files of other instances only once
// older than opts.MinAge. The same files are never touched as in
// SweepLeftovers.
func RemoveLeftovers(root string, o Owner, names []string, opts SweepOptions) (SweepResult, error) {
	rootfd, res, err := openLeftovers(root, &opts)
	if err != nil {
		return res, err
	}
	defer unix.Close(rootfd)
	pdir := -1
	defer func() {
		if pdir >= 0 {
			unix.Close(pdir)
		}
	}()
	var errs []error
	for _, n := range names {
		dir, base := splitLeftover(n)
		look := opts
		switch o.Classify(base) {
		case ThisInstance:
			look.MinAge = 0
		case EarlierInstance:
		default:
			continue
		}
		dirfd := rootfd
		switch {
		case dir == "":
		case dir != DirName:
			continue
		case pdir < 0:
			fd, err := openProbeDir(rootfd)
			if err != nil {
				if !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("open %q: %w", filepath.Join(root, DirName), err))
				}
				continue
			}
			pdir, dirfd = fd, fd
		default:
			dirfd = pdir
		}
		if !opts.Gate.Enter() {
			return res, errors.Join(errs...)
		}
		errs = append(errs, consider(dirfd, dir, base, look, &res))
		opts.Gate.Leave()
	}
	return res, errors.Join(errs...)
}

// splitLeftover splits a leftover's name relative to the root into its
// directory ("" for the root) and its base name.
func splitLeftover(name string) (dir, base string) {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "", name
}

// openLeftovers opens the mount root for a look at leftovers and learns
// the server's time there (SweepResult.Ref); it defaults opts.Now.
func openLeftovers(root string, opts *SweepOptions) (int, SweepResult, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Gate == nil {
		opts.Gate = openGate{}
	}
	var res SweepResult
	dirfd, err := openRoot(root)
	if err != nil {
		return -1, res, err
	}
	res.Ref = serverTime(dirfd, opts.Ref, opts.Now)
	return dirfd, res, nil
}

// serverTime learns a lower bound of the server's clock: the root
// directory's change time (a check of this agent has just created and
// removed a file there), or what an earlier sweep learnt, whichever is
// later.
func serverTime(dirfd int, prev ServerTime, now func() time.Time) ServerTime {
	local := now()
	ref := ServerTime{Server: prev.now(local), Local: local}
	var st unix.Stat_t
	if err := retryEINTR(func() error { return unix.Fstat(dirfd, &st) }); err == nil {
		if t := changed(&st); t.After(ref.Server) {
			ref.Server = t
		}
	}
	return ref
}

// changed is the later of a file's modification and change times.
func changed(st *unix.Stat_t) time.Time {
	m := time.Unix(st.Mtim.Unix())
	c := time.Unix(st.Ctim.Unix())
	if c.After(m) {
		return c
	}
	return m
}

// consider removes the regular file name in dirfd (dir relative to the
// root) if it is older than opts.MinAge, or notes it in res.Young.
func consider(dirfd int, dir, name string, opts SweepOptions, res *SweepResult) error {
	rel := name
	if dir != "" {
		rel = dir + "/" + name
	}
	var st unix.Stat_t
	if err := retryEINTR(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return nil // gone already, or not ours to explain
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	if opts.MinAge > 0 {
		// The server's time from below, and never later than the local
		// clock: a file is never taken for older than it is.
		now := opts.Now()
		ref := res.Ref.now(now)
		if ref.IsZero() || now.Before(ref) {
			ref = now
		}
		age := ref.Sub(changed(&st))
		if !opts.Seen.IsZero() {
			age = max(age, now.Sub(opts.Seen))
		}
		if age < opts.MinAge {
			if len(res.Young) < opts.MaxYoung {
				res.Young = append(res.Young, rel)
				res.Wait = max(res.Wait, opts.MinAge-age)
			}
			return nil
		}
	}
	if err := retryEINTR(func() error { return unix.Unlinkat(dirfd, name, 0) }); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove leftover probe file %q: %w", rel, err)
	}
	res.Removed = append(res.Removed, rel)
	return nil
}
