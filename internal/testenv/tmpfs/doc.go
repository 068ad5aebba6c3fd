// Package tmpfs mounts fresh tmpfs directories for benchmarks, make bench
// and make soak, so that they measure the agent's CPU cost rather than the
// disk's fsync latency.
package tmpfs
