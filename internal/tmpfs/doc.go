// Package tmpfs gives benchmarks a directory on a fresh tmpfs, so that they
// measure the agent's CPU cost rather than the disk's fsync latency.
package tmpfs
