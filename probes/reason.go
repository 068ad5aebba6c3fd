package probes

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Reason is the stable, machine-readable cause of a failed check. Values
// never change once released: dashboards and alerts key on them.
type Reason string

// Failure reasons.
const (
	ReasonNone             Reason = ""
	ReasonTimeout          Reason = "timeout"
	ReasonHung             Reason = "hung"
	ReasonIOError          Reason = "io_error"
	ReasonStaleFileHandle  Reason = "stale_file_handle"
	ReasonPermissionDenied Reason = "permission_denied"
	ReasonReadOnly         Reason = "read_only"
	ReasonNoSpace          Reason = "no_space"
	ReasonNotMounted       Reason = "not_mounted"
	ReasonDataMismatch     Reason = "data_mismatch"
	ReasonTunnelDown       Reason = "tunnel_down"
	ReasonProbeFileLost    Reason = "probe_file_lost"
)

// Reasons lists every failure reason, for documentation and label
// pre-declaration.
var Reasons = []Reason{
	ReasonTimeout, ReasonHung, ReasonIOError, ReasonStaleFileHandle, ReasonPermissionDenied,
	ReasonReadOnly, ReasonNoSpace, ReasonNotMounted, ReasonDataMismatch, ReasonTunnelDown,
	ReasonProbeFileLost,
}

// Classify maps a check error to its Reason. Unknown errors are io_error.
func Classify(err error) Reason {
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, ErrDataMismatch):
		return ReasonDataMismatch
	case errors.Is(err, ErrTunnelDown):
		return ReasonTunnelDown
	case errors.Is(err, ErrNotMounted):
		return ReasonNotMounted
	case errors.Is(err, ErrProbeFileLost):
		return ReasonProbeFileLost
	case errors.Is(err, ErrProbeDirRefused):
		return ReasonPermissionDenied
	case errors.Is(err, unix.ESTALE):
		return ReasonStaleFileHandle
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return ReasonPermissionDenied
	case errors.Is(err, unix.EROFS):
		return ReasonReadOnly
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return ReasonNoSpace
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ENOTCONN), errors.Is(err, unix.ELOOP):
		return ReasonNotMounted
	case errors.Is(err, unix.ETIMEDOUT):
		return ReasonTimeout
	}
	return ReasonIOError
}

// Advice is what an operator should do about a failure reason.
func Advice(r Reason) string {
	switch r {
	case ReasonTimeout:
		return "the filesystem answered too slowly: check EFS throughput/burst credits and network latency to the mount target; raise HEALTH_CHECK_TIMEOUT only if the latency is expected"
	case ReasonHung:
		return "a call is blocked in the kernel: check the NFS server/mount target reachability (security groups, DNS, the TLS tunnel); pods using this mount will hang until it answers"
	case ReasonIOError:
		return "the filesystem returned an I/O error: check dmesg for NFS errors and the EFS file system state"
	case ReasonStaleFileHandle:
		return "the file handle is stale (the export or access point was deleted or replaced): remount the volume (restart the pods using it)"
	case ReasonPermissionDenied:
		return "the agent may not write here: check the access point's POSIX user, directory permissions and the agent's capabilities"
	case ReasonReadOnly:
		return "the filesystem refuses writes: check whether it was remounted read-only or the access point/IAM policy denies writes"
	case ReasonNoSpace:
		return "no space or quota left: check the file system's size limits and quotas"
	case ReasonNotMounted:
		return "the path is not the mount it should be (not a mount point, or another filesystem): check whether the volume was unmounted or never mounted (kubelet, CSI node plugin logs)"
	case ReasonDataMismatch:
		return "data read back differed from data written: check for caching proxies or a misbehaving server; treat the volume as unsafe"
	case ReasonProbeFileLost:
		return "the agent's own probe file vanished twice in a row between its operations: something else removes files in the mount root (a cleanup job, another tool); find it and exclude .efs-health-probe-* files"
	case ReasonTunnelDown:
		return "the check failed and the mount's efs-proxy (127.0.0.1:<port>, through which every mount.efs mount goes) did not accept a connection: the efs-utils watchdog restarts a dead efs-proxy within about a second, so look at its logs (mount-watchdog.log, mount.log in /var/log/amazon/efs of the EFS CSI node pod); do not restart the CSI node plugin, which would kill every efs-proxy of the node"
	}
	return "no action needed"
}
