package csihealth

import (
	"fmt"
	"net/http"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/attribution"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Health connects a CSI node plugin to a running agent.Monitor.
type Health struct {
	mon *agent.Monitor
	now func() time.Time
}

// New returns a Health over mon. The caller runs mon.Run.
func New(mon *agent.Monitor) *Health { return &Health{mon: mon, now: time.Now} }

// Publish starts monitoring a published volume's mount (call it at the end
// of a successful NodePublishVolume). m.Path is the target path; FSType,
// Source and TunnelAddr, when known, sharpen diagnosis. The pod UID and
// volume name not set in m.Attribution are taken from the target path when
// it follows the kubelet's layout, and the file system id from an EFS
// Source. It is idempotent.
//
// FSType is the type the kernel's mount table shows, which the mounttable
// step compares: "efs" and "s3files", the fstype the EFS CSI driver passes
// to mount (NodePublishVolume, pkg/driver/node.go, aws-efs-csi-driver
// v3.4.1), are mapped to "nfs4", what mount.efs and mount.s3files mount and
// the kernel lists; any other type is taken as given. Source, when set,
// must equal the table's source too: through efs-proxy (every mount.efs
// mount since efs-utils v2) that is "127.0.0.1:<subpath>", not the name
// the driver passed to mount, so leave Source empty unless it was read
// from the table.
func (h *Health) Publish(m agent.Mount) error {
	m.FSType = KernelFSType(m.FSType)
	m.Attribution = m.Attribution.Or(attribution.FromSource(m.Source)).Or(attribution.FromPath(m.Path))
	if err := h.mon.Register(m); err != nil {
		return fmt.Errorf("monitor volume at %q: %w", m.Path, err)
	}
	return nil
}

// KernelFSType is the filesystem type the kernel shows for a mount made
// with fstype: "nfs4" for the EFS CSI driver's "efs" and "s3files"
// (mount.efs and mount.s3files, efs-utils v3.2.0, mount NFS 4.1), fstype
// itself otherwise.
func KernelFSType(fstype string) string {
	switch fstype {
	case "efs", "s3files":
		return "nfs4"
	}
	return fstype
}

// PublishVolume is Publish for an EFS CSI volume: the file system and
// access point not set in m.Attribution come from the volume id, in the
// forms the EFS CSI driver accepts ("fs-…", "fs-…::fsap-…",
// "fs-…:/subpath:fsap-…", optionally prefixed "efs:" or "s3files:"). A volume id of
// another form adds nothing; the volume is monitored all the same.
func (h *Health) PublishVolume(volumeID string, m agent.Mount) error {
	if a, err := attribution.FromVolumeID(volumeID); err == nil {
		m.Attribution = m.Attribution.Or(a)
	}
	return h.Publish(m)
}

// Unpublish stops monitoring the target path (call it in
// NodeUnpublishVolume, before or after unmounting). It never blocks, even
// while the mount's check is stuck in the kernel, and reports whether the
// path was monitored.
func (h *Health) Unpublish(targetPath string) bool { return h.mon.Unregister(targetPath) }

// VolumeCondition describes the volume at targetPath for
// NodeGetVolumeStats, from the last published check only. ok is false when
// the path is not monitored.
func (h *Health) VolumeCondition(targetPath string) (cond *csi.VolumeCondition, ok bool) {
	st, ok := h.mon.Status(targetPath)
	if !ok {
		return nil, false
	}
	return Condition(st, h.now()), true
}

// Condition maps a mount status to a CSI VolumeCondition.
func Condition(st *agent.MountStatus, now time.Time) *csi.VolumeCondition {
	switch st.State {
	case agent.StatePending:
		return &csi.VolumeCondition{Abnormal: false, Message: "health check pending: no check has completed yet"}
	case agent.StateHealthy:
		return &csi.VolumeCondition{Abnormal: false, Message: fmt.Sprintf("healthy (%s): last check took %v, %v ago",
			st.Mode, st.ResponseTime.Round(time.Microsecond), now.Sub(st.LastCheck).Round(time.Second))}
	case agent.StateHung:
		return &csi.VolumeCondition{Abnormal: true, Message: fmt.Sprintf("hung: a check has been stuck in %s for %v (%s); %s",
			st.FailedOp, now.Sub(st.HungSince).Round(time.Second), st.LastError, probes.Advice(probes.ReasonHung))}
	default:
		checks := "checks"
		if st.ConsecutiveErrors == 1 {
			checks = "check"
		}
		return &csi.VolumeCondition{Abnormal: true, Message: fmt.Sprintf("unhealthy (%s) after %d consecutive failed %s: %s; %s",
			st.Reason, st.ConsecutiveErrors, checks, st.LastError, probes.Advice(st.Reason))}
	}
}

// Handler serves the agent's health routes (/healthz, /healthz/ready,
// /healthz/live, /healthz/mounts, /) for mounting on the plugin's server;
// pass opts.Metrics to add /metrics.
func (h *Health) Handler(opts httpapi.Options) http.Handler { return httpapi.NewRouter(h.mon, opts) }
