// Package driver is the node side of the stand-in EFS CSI driver that
// make k8s-e2e runs in the efs-plugin container of the EFS CSI driver's
// node DaemonSet (deploy/kubernetes/base/node-daemonset.yaml,
// aws-efs-csi-driver v3.4.1), where upstream's image cannot be pulled.
//
// It is the project's CSI node plugin (examples/csi-node: the agent
// embedded through package csihealth) with real mounts, so that kubelet is
// its CSI client as on a cluster:
//
//   - Identity: GetPluginInfo names the driver efs.csi.aws.com, as
//     upstream's pkg/driver/identity.go does; Probe answers ready from
//     memory, so a hung volume never fails the driver's liveness probe.
//   - NodePublishVolume bind-mounts the volume's source directory onto the
//     target path and registers the target with the agent. An EFS volume
//     id ("fs-…", "fs-…:<subpath>", "fs-…:<subpath>:fsap-…", as
//     upstream's parseVolumeId accepts it) names the source
//     <SourceRoot>/<file system id>/<subpath>, where the test mounts a
//     FUSE fault filesystem or a tmpfs, so the PersistentVolume is the one
//     an operator writes for EFS. The mount is what the kernel lists, a
//     bind mount of the source (its type is the source's, not nfs4).
//   - NodeUnpublishVolume stops monitoring first (never blocks), then
//     unmounts (lazily when the mount is busy, as it is while a check is
//     stuck in it) and removes the target directory.
//   - NodeGetVolumeStats answers with the volume's condition from the
//     agent's last published status: memory only, so it answers at once
//     while the volume hangs, far inside kubelet's deadline (csiTimeout,
//     2 minutes, pkg/volume/csi/csi_plugin.go, kubernetes v1.34.2).
//   - NodeGetCapabilities advertises GET_VOLUME_STATS and VOLUME_CONDITION;
//     NodeGetInfo returns the node id.
//
// Whether a path is mounted is read from the mount table
// (/proc/self/mountinfo), never by a stat of the path, so no call blocks
// on a hung volume.
package driver
