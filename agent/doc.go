// Package agent keeps the registry of monitored mounts, schedules their
// checks and publishes their health as immutable snapshots.
//
// The scheduler is built around one rule: a syscall on a hung network
// filesystem cannot be cancelled. So every check runs on its own goroutine
// with a deadline timer; at the deadline the check is recorded as failed
// (naming the operation it is stuck in) and the mount is shown as hung, but
// no second check is ever started on that mount until the stuck call
// returns. A hung mount therefore costs exactly one blocked goroutine and
// never delays another mount: concurrency is bounded by a semaphore whose
// slot is given back at the deadline, not when the kernel lets go.
//
// Probe files left behind by earlier instances on this node are removed by
// one background sweeper goroutine (sweep.go), never inside a check: it
// lists a mount root once per registration, after the mount's first
// successful check, and otherwise only looks at files by name.
//
// Readers (HTTP handlers, metric callbacks) never block on checks: each
// mount's status is an immutable value swapped atomically, and the summary
// the health endpoints need is maintained incrementally, so it is O(1).
package agent
