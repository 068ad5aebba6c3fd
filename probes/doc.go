// Package probes holds the I/O checks the agent runs against a mount.
//
// # The check is a list of steps
//
// A check is the ordered list of named steps in pipeline.go (Steps, and
// Ops for their operation names, which metrics and /debug/checks use):
//
//	preflight   mounttable  the path is still the registered mount (MountTable)
//	            tunnel      the mount's TLS tunnel accepts a connection (TunnelDialer)
//	root        open        the mount root, as a directory fd
//	            statfs      read-only mount? then the read-only steps instead
//	read-write  write       create the probe file, write and fsync a payload
//	            read        read it back (O_DIRECT where allowed) and compare
//	            delete      remove it by name (a cleanup step: runs after failures too)
//	read-only   stat        fstat of the root
//	            readdir     a bounded listing of the root
//
// Preflight steps touch nothing on the mount; a failure there fails the
// check before any I/O. Every step is timed and reported to the Observer
// (OpStart, OpEnd) in this order. The runner adds two rules: a create
// refused with EROFS falls back to the read-only steps, and a probe file
// that vanished mid-check (ErrProbeFileLost) is retried once with a fresh
// name.
//
// Adding a step is one edit in this package: a row in the steps table
//
//	{Op: OpChmod, Stage: StageReadWrite, do: (*run).chmod},
//
// placed where it runs, an Op constant, and the method that does it (in
// io_linux.go when it does I/O on the mount, with a stub in io_other.go).
// Metrics, /debug/checks and the check subcommand pick it up from Ops.
//
// A read-write check creates a uniquely named file in the mount root
// (relative to a directory fd, with O_CREAT|O_EXCL|O_NOFOLLOW and mode
// 0600), writes and fsyncs a small random payload, reads it back bypassing
// the page cache where the filesystem allows, compares it, and unlinks it.
// A read-only check runs statfs, stat and a bounded readdir of the root.
// A read-write check never lists the root.
//
// Probe file names say which agent instance wrote them (Owner, in
// ownership.go). SweepLeftovers and RemoveLeftovers remove the files other
// instances of the same node left behind once they are provably not in
// flight (older than LeftoverAge), and never anything else.
//
// Probes are plain blocking functions: a syscall on a hung NFS mount cannot
// be cancelled, so the timeout and the "at most one check in flight per
// mount" rule are enforced by the caller (package agent). Probes report each
// operation's start and end through an Observer so the caller can tell which
// operation a stuck check is blocked in.
//
// The checks need Linux; on other systems the package builds and every
// step on the mount fails with ErrUnsupported.
package probes
