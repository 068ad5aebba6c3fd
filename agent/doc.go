// Package agent keeps the registry of monitored mounts, schedules their
// checks and publishes their health as immutable snapshots.
//
// The scheduler is built around one rule: a syscall on a hung network
// filesystem cannot be cancelled. So every check runs on its own goroutine
// with a deadline; at the deadline the check is recorded as failed (naming
// the operation it is stuck in) and the mount is shown as hung, but no
// second check is ever started on that mount until the stuck call returns.
// A hung mount therefore costs exactly one blocked goroutine and never
// delays another mount: concurrency is bounded by a semaphore whose slot is
// given back at the deadline, not when the kernel lets go.
//
// One scheduler loop with one re-armed timer starts the checks (a wake for
// a due check also starts those due within a short coalescing window) and
// enforces every deadline from a heap; checks run on reused worker
// goroutines. What happens to a mount's status is decided by pure
// transition functions (transition.go).
//
// # The path of one check
//
// One check produces one record, a CheckRecord, and everything shown
// about it is made from that record, in three packages (agent, exporters
// and httpapi, with probes doing the I/O):
//
//  1. agent, scheduler.go: dispatch takes a due mount from the due heap
//     and launches its check (lifecycle.go: newCheck, runCheck) on a
//     worker goroutine, its deadline in the deadline heap.
//  2. probes: Check runs the steps (probes/pipeline.go), logging each
//     operation as it starts and ends, with its duration and error, in
//     the check's probes.OpLog, so that at a deadline the operation stuck
//     in the kernel is known.
//  3. agent, lifecycle.go: when the check returns (complete, judgeLocked)
//     or its deadline passes first (expire; atDeadline, shared with
//     CheckOnce), the log and the verdict of the transition functions
//     become the CheckRecord: the mount, start and end, the Outcome and
//     the operations. The same transition yields the mount's next
//     MountStatus, published atomically (setStatusLocked), and the
//     summary counters (counters.go).
//  4. The Observer receives the record once (CheckDone). exporters'
//     Observer (exporters/observer.go) counts it
//     (efs_mount_checks_total), records each operation's latency
//     (efs_mount_operation_duration_seconds), makes its span tree when
//     the check keeps one, and files it in the checklog.Log that
//     /debug/checks reads.
//  5. Readers take the published MountStatus values: exporters' metric
//     callbacks make the per-mount gauges of /metrics from them
//     (exporters/gatherer.go), and httpapi renders /healthz/mounts and the
//     status page from them (httpapi/httpapi.go: ToJSON, mounts).
//
// The Observer never calls back into the monitor, and no reader waits
// for a check.
//
// What a check is (its steps, from the mount-table and tunnel preflight to
// the probe file's removal) is the probes package's list; this package
// only runs it, with a deadline. CheckOnce runs one check the same way,
// for the check subcommand.
//
// Probe files left behind by earlier instances on this node are removed by
// one background sweeper goroutine (sweep.go), never inside a check: it
// lists a mount's probe directory (probes.DirName) and its root (where
// earlier versions made probe files) twice per registration, after the mount's first
// successful check and once more a leftover age later, and otherwise only
// looks at files by name. Each of its calls on a root is kept apart from
// the checks of that root (sweepGate), so the agent's own housekeeping
// never fails a check; nor does a deadline the agent itself missed
// (selfdelay.go).
//
// Readers (HTTP handlers, metric callbacks) never block on checks: each
// mount's status is an immutable value swapped atomically, and the summary
// the health endpoints need is maintained incrementally, so it is O(1).
package agent
