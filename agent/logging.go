package agent

import (
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// logTransition logs a mount's change of state or mode (not every check).
func (mon *Monitor) logTransition(old, st *MountStatus) {
	if old.State == st.State && old.Mode == st.Mode {
		return
	}
	l := mon.log.With("mount", st.Path, "from", string(old.State), "to", string(st.State))
	switch st.State {
	case StateHealthy:
		if old.State == StatePending {
			l.Info("mount healthy", "mode", string(st.Mode), "response_time", st.ResponseTime)
		} else if old.State != StateHealthy {
			l.Info("mount recovered", "mode", string(st.Mode), "response_time", st.ResponseTime)
		} else if !ownLine(st.Mode) && !ownLine(old.Mode) {
			// A change into or out of write-denied or dir-refused has
			// a line of its own (logCheckLocked).
			l.Info("mount mode changed", "mode", string(st.Mode), "previous_mode", string(old.Mode))
		}
	case StateUnhealthy:
		if old.State != StateHung {
			l.Warn("mount unhealthy", "reason", string(st.Reason), "op", string(st.FailedOp), "err", st.LastError)
		}
	case StateHung:
		l.Error("mount hung", "op", string(st.FailedOp), "err", st.LastError)
	}
}

// logCheckLocked says what a returned check found that its state does
// not: once per agent process, that a tunnel could not be reached from
// this network namespace while the mount worked; and once per mount each
// time the check falls back to write-denied, or leaves it.
func (mon *Monitor) logCheckLocked(spec *Mount, old, next *MountStatus, res *probes.Result) {
	if res.Err == nil && res.TunnelErr != nil && mon.tunnelWarned.CompareAndSwap(false, true) {
		mon.log.Warn("tunnel checks cannot be made from this network namespace",
			"mount", spec.Path, "tunnel_addr", spec.TunnelAddr, "err", res.TunnelErr,
			"detail", "the mount's I/O works while its tunnel does not accept connections here (an agent outside the host network beside efs-proxy); tunnel_down then only explains a failing or hung check")
	}
	switch {
	case next.Mode == old.Mode:
	case next.Mode == probes.ModeWriteDenied:
		mon.log.Warn("probe file creation denied: checking the mount read-only",
			"mount", spec.Path, "err", res.WriteDenied,
			"detail", "the agent may not create files in the mount root (root squash, an EFS file-system policy without ClientRootAccess, or a root owned by another user); set HEALTH_REQUIRE_WRITE_CHECK=true to count that as a failure")
	case next.Mode == probes.ModeDirRefused:
		mon.log.Warn("probe directory refused: checking the mount read-only",
			"mount", spec.Path, "err", res.DirRefused,
			"detail", "the agent makes its probe files in "+probes.DirName+" under the mount root, which must be a directory (not a symlink) of the user the agent's files get, not writable by group or others; remove or fix it, or set HEALTH_PROBE_LOCATION=root")
	case old.Mode == probes.ModeWriteDenied:
		mon.log.Info("probe file creation allowed again: write check resumed", "mount", spec.Path, "mode", string(next.Mode))
	case old.Mode == probes.ModeDirRefused:
		mon.log.Info("probe directory accepted again: write check resumed", "mount", spec.Path, "mode", string(next.Mode))
	}
}

// ownLine reports whether a change into or out of mode is logged by
// logCheckLocked rather than as a change of mode.
func ownLine(mode probes.Mode) bool {
	return mode == probes.ModeWriteDenied || mode == probes.ModeDirRefused
}
