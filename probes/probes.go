package probes

import (
	"errors"
	"fmt"
	"time"
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
	// OpTunnel is the TCP connect to a mount's local tunnel (efs-proxy or
	// stunnel). It is advisory: see Result.TunnelErr.
	OpTunnel Op = "tunnel"
)

// Mode says which kind of check ran against a mount.
type Mode string

// Check modes.
const (
	// ModeReadWrite: the probe file was created, written, read back and
	// removed.
	ModeReadWrite Mode = "read-write"
	// ModeReadOnly: the mount is read-only (creating the probe file was
	// refused with EROFS, or CheckReadOnly ran): statfs, stat and a
	// bounded readdir of the root.
	ModeReadOnly Mode = "read-only"
	// ModeWriteDenied: the mount is writable, but creating the probe file
	// was refused with EACCES/EPERM on a root that opened (a root-squashed
	// export, an EFS file-system policy without ClientRootAccess, an
	// access point or directory owned by another user), so the read-only
	// steps ran instead. Options.RequireWriteCheck makes that refusal a
	// permission_denied failure instead.
	ModeWriteDenied Mode = "write-denied"
	// ModeReadWriteRoot: as ModeReadWrite, with the probe file in the
	// mount root instead of DirName (Options.InRoot).
	ModeReadWriteRoot Mode = "read-write-root"
	// ModeDirRefused: DirName exists but was refused (not a directory,
	// a symlink, writable by group or others, or owned by another user
	// than the one the agent's files get), so the read-only steps ran
	// instead, as in ModeWriteDenied. Options.RequireWriteCheck makes
	// that refusal a permission_denied failure instead.
	ModeDirRefused Mode = "dir-refused"
)

// Modes lists every check mode, for documentation and label values.
var Modes = []Mode{ModeReadWrite, ModeReadOnly, ModeWriteDenied, ModeReadWriteRoot, ModeDirRefused}

// DirName is the probe directory: a directory of the agent's own under
// the mount root, where the probe files are made (unless Options.InRoot),
// so that a check changes that directory only and never the root, which
// every client of the volume has cached; a change of the root makes each
// of them revalidate it. It is made (mode 0700) by the first check that
// finds it missing, and shared by every agent that checks the volume.
// Each check looks it up relative to the root's descriptor, without
// following a symlink: while the client's cache of the root is valid
// that costs no round trip. Its attributes are read from that cache too.
// A DirName that is not a directory, is a symlink, may be written by
// group or others, or belongs to another user than the one the agent's
// files get on the mount, is refused (ModeDirRefused).
const DirName = ".efs-health"

// ErrProbeDirRefused reports that DirName exists but may not be used
// (see ModeDirRefused).
var ErrProbeDirRefused = errors.New("probe directory refused")

// FilePrefix starts the name of every probe file. The full name also says
// which node and which agent instance wrote it (see Owner), so a leftover
// can be attributed to the instance that left it.
const FilePrefix = ".efs-health-probe-"

// PayloadSize is the number of random bytes written and read back.
const PayloadSize = 1024

// ErrNotMounted reports that the path is no longer the mount it was
// registered as, according to the mount table.
var ErrNotMounted = errors.New("not the registered mount")

// ErrNotMountPoint reports that the mount table has no mount at the path:
// it was unmounted, or (a path that had to be one, Options.MountPoint)
// was never mounted. It is an ErrNotMounted (errors.Is).
var ErrNotMountPoint error = notMountPoint{}

type notMountPoint struct{}

func (notMountPoint) Error() string        { return "not a mount point" }
func (notMountPoint) Is(target error) bool { return target == ErrNotMounted }

// ErrTunnelDown reports that the local tunnel of a mount (efs-proxy or
// stunnel) refused a connection.
var ErrTunnelDown = errors.New("TLS tunnel not accepting connections")

// ErrUnsupported reports that the checks need Linux: they rely on
// O_PATH, O_DIRECT and the Linux statfs flags. The package builds
// elsewhere (every step on the mount then fails with this error) so that
// its users can be vetted and tested there.
var ErrUnsupported = errors.New("mount checks are supported on Linux only")

// ErrDataMismatch reports that the bytes read back differ from those written.
var ErrDataMismatch = errors.New("data read back differs from data written")

// OpResult is the outcome of one operation.
type OpResult struct {
	Op Op
	// Start is when the operation started, on Options.Now's clock.
	Start    time.Time
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
	// TunnelErr is the tunnel step's failure (it wraps ErrTunnelDown), nil
	// when the tunnel accepted the connection or there is none. The
	// tunnel step never fails a check on its own: a tunnel that cannot be
	// reached from the agent's network namespace says nothing about the
	// mount, whose I/O goes through the kernel's connection. When the
	// check then fails, Err wraps TunnelErr too and the reason is
	// tunnel_down; when it works, the check is healthy and TunnelErr only
	// says that the tunnel could not be checked from here. (A caller that
	// abandons a check at its deadline learns of the failed dial from the
	// tunnel step's failure in Options.Log, and reports tunnel_down likewise.)
	TunnelErr error
	// WriteDenied is the refusal (EACCES/EPERM) of the probe file's create
	// that made this a ModeWriteDenied check; nil otherwise.
	WriteDenied error
	// DirRefused is why DirName was refused in a ModeDirRefused check
	// (it wraps ErrProbeDirRefused); nil otherwise.
	DirRefused error
	// Transport is set for a CheckTransport check: its Mode is empty,
	// as it proves nothing about writing.
	Transport bool
	// Dev is the device number (the superblock) of the mount root,
	// read at open when Options.Superblock is set; DevKnown says it was.
	Dev      uint64
	DevKnown bool
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
	// Log, if set, receives every operation as it starts and ends; see
	// OpLog. Unlike Result.Ops it holds the preflight steps and both
	// attempts of a retried check: everything the check did.
	Log *OpLog
	// BeforeOp, if set, is called before each operation starts (before
	// its start time is taken); it may block, to hold an operation back.
	BeforeOp func(Op)
	// Now is the clock used to time operations (default time.Now).
	Now func() time.Time

	// MountTable, if set, is consulted before any I/O when FSType is
	// set: a path that is no longer the mount it was registered as fails
	// the check in the mounttable step with ErrNotMounted, untouched.
	MountTable MountTable
	// FSType and Source are what the path was registered as (Source is
	// compared only when set).
	FSType, Source string
	// MountPoint, with a MountTable, requires the path to be a mount
	// point even when FSType is not known: a path the table has no mount
	// at fails the mounttable step with ErrNotMounted, untouched, rather
	// than being checked as the plain directory it is.
	MountPoint bool
	// TunnelAddr, if set, is the address of the mount's local TLS
	// tunnel; the tunnel step connects to it before any I/O.
	TunnelAddr string
	// Tunnel checks the tunnel (default TCPTunnel).
	Tunnel TunnelDialer
	// TunnelTimeout bounds the tunnel step (default 1s).
	TunnelTimeout time.Duration
	// RequireWriteCheck makes a create of the probe file refused with
	// EACCES/EPERM a failure (reason permission_denied) instead of a
	// ModeWriteDenied check, and a refused DirName one too instead of a
	// ModeDirRefused check.
	RequireWriteCheck bool
	// InRoot makes the probe file in the mount root, as earlier versions
	// did, instead of in DirName (ModeReadWriteRoot).
	InRoot bool
	// Superblock makes the open step read the root's device number
	// (Result.Dev) from the client's cache: statx with
	// AT_STATX_DONT_SYNC, which sends nothing to the server.
	Superblock bool
}

func (o *Options) defaults() {
	if o.ReaddirLimit <= 0 {
		o.ReaddirLimit = 64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tunnel == nil {
		o.Tunnel = TCPTunnel{}
	}
	if o.TunnelTimeout <= 0 {
		o.TunnelTimeout = time.Second
	}
}

// ModeKnown reports whether the check got far enough to tell its mode:
// it succeeded, or it failed at or after the create of the probe file (a
// check that failed in the preflight or opening the root says
// ModeReadWrite without knowing).
func (r Result) ModeKnown() bool {
	if r.Transport {
		return false
	}
	if r.Err == nil || (r.Mode != ModeReadWrite && r.Mode != ModeReadWriteRoot) {
		return true
	}
	i := StepIndex(r.FailedOp)
	return i >= 0 && steps[i].Stage >= StageReadWrite
}
