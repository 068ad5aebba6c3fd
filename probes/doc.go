// Package probes holds the I/O checks the agent runs against a mount.
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
package probes
