// Package nfsstats reads the kernel's NFS client statistics: per mount,
// the RPC counts, retransmissions, major timeouts and cumulative round-trip
// and execution times of the NFS operations listed in Operations, and the
// transport backlog. They rise before checks start failing.
//
// It reads /proc/self/mountstats, parsed by github.com/prometheus/procfs.
// Reading it involves no RPC, so a hung mount cannot block it. A Cache
// reads it in the background (Run) and hands the latest Snapshot to its
// readers from memory, so that a scrape never touches /proc. The exporters
// package turns a Snapshot into the efs_nfs_* metrics.
package nfsstats
