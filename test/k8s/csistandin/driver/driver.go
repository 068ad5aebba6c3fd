package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/internal/attribution"
)

// Name is the driver's name, upstream's driverName (pkg/driver/driver.go,
// aws-efs-csi-driver v3.4.1): what GetPluginInfo returns, the registrar
// registers with kubelet and a PersistentVolume's spec.csi.driver names.
const Name = "efs.csi.aws.com"

// DefaultSourceRoot is where the stand-in finds the source of a volume
// by default: <DefaultSourceRoot>/<file system id>. It lies under the
// kubelet directory because that is the one host directory the driver's
// DaemonSet mounts into efs-plugin with Bidirectional propagation, so a
// filesystem the test mounts there on the host after the pod started is
// seen inside the container, and the bind mount made from it inside the
// container is seen by kubelet and by the pod.
const DefaultSourceRoot = "/var/lib/kubelet/efs-csi-standin"

// Config configures the stand-in's CSI services.
type Config struct {
	// NodeID is what NodeGetInfo returns (upstream: the EC2 instance id;
	// here the node name from CSI_NODE_NAME). Required.
	NodeID string
	// Version is GetPluginInfo's vendor version.
	Version string
	// SourceRoot holds one directory per file system id (default
	// DefaultSourceRoot).
	SourceRoot string
	// Health is the agent the published volumes are registered with.
	// Required; the caller runs its Monitor.
	Health *csihealth.Health
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server is the stand-in's Identity and Node services.
type Server struct {
	cfg Config
	log *slog.Logger
	// mu serialises publish and unpublish; neither waits on a volume
	// (the mount table is read, never the path).
	mu sync.Mutex
}

// New checks cfg and returns the services.
func New(cfg Config) (*Server, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("node id is empty: set CSI_NODE_NAME (the DaemonSet sets it from spec.nodeName)")
	}
	if cfg.Health == nil {
		return nil, errors.New("driver config: Health is nil")
	}
	if cfg.SourceRoot == "" {
		cfg.SourceRoot = DefaultSourceRoot
	}
	if !filepath.IsAbs(cfg.SourceRoot) {
		return nil, fmt.Errorf("source root %q: must be an absolute path", cfg.SourceRoot)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg, log: log}, nil
}

// Register adds the Identity and Node services to g.
func (s *Server) Register(g *grpc.Server) {
	csi.RegisterIdentityServer(g, identity{Server: s})
	csi.RegisterNodeServer(g, node{Server: s})
}

// identity and node are the Server seen as each service; the RPCs the
// stand-in does not offer (staging, expansion) answer Unimplemented.
type identity struct {
	csi.UnimplementedIdentityServer
	*Server
}

type node struct {
	csi.UnimplementedNodeServer
	*Server
}

// GetPluginInfo names the driver as upstream does.
func (s identity) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: Name, VendorVersion: s.cfg.Version}, nil
}

// GetPluginCapabilities lists none: upstream lists CONTROLLER_SERVICE and
// VOLUME_ACCESSIBILITY_CONSTRAINTS for its controller, which the stand-in
// does not have (statically provisioned volumes need none; kubelet does
// not ask).
func (identity) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

// Probe answers as upstream's does, an empty response (ready: "if not
// present, the caller SHALL assume that the plugin is in a ready state",
// the CSI spec, as livenessprobe reads it), from memory only.
func (identity) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// SourceDir is the directory that backs volumeID under root: the file
// system id's directory, and the subpath below it, which cannot leave it.
// volumeID takes the forms upstream's parseVolumeId accepts.
func SourceDir(root, volumeID string) (string, error) {
	a, err := attribution.FromVolumeID(volumeID)
	if err != nil {
		return "", err
	}
	rest, _ := strings.CutPrefix(volumeID, a.Service+":")
	var sub string
	if tokens := strings.Split(rest, ":"); len(tokens) > 1 {
		sub = tokens[1]
	}
	return filepath.Join(root, a.FileSystemID, filepath.Clean("/"+sub)), nil
}

// NodePublishVolume bind-mounts the volume's source onto the target path
// (read-only when asked) and starts monitoring it. Publishing a target
// that is already mounted only makes sure it is monitored.
func (s node) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	target := req.GetTargetPath()
	switch {
	case req.GetVolumeId() == "":
		return nil, status.Error(codes.InvalidArgument, "volume id not provided")
	case target == "" || !filepath.IsAbs(target):
		return nil, status.Errorf(codes.InvalidArgument, "target path %q: must be an absolute path", target)
	case req.GetVolumeCapability() == nil:
		return nil, status.Error(codes.InvalidArgument, "volume capability not provided")
	case req.GetVolumeCapability().GetMount() == nil:
		return nil, status.Error(codes.InvalidArgument, "volume capability access type must be mount")
	}
	target = filepath.Clean(target)
	source, err := SourceDir(s.cfg.SourceRoot, req.GetVolumeId())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fstype, mounted, err := mountAt(target)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read the mount table: %v", err)
	}
	if !mounted {
		if err := os.MkdirAll(target, 0o750); err != nil {
			return nil, status.Errorf(codes.Internal, "create target %q: %v", target, err)
		}
		if err := bindMount(source, target, req.GetReadonly()); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, status.Errorf(codes.NotFound, "volume %s: %v (mount the file system's stand-in there)", req.GetVolumeId(), err)
			}
			return nil, status.Errorf(codes.Internal, "volume %s: %v", req.GetVolumeId(), err)
		}
		if fstype, _, err = mountAt(target); err != nil {
			return nil, status.Errorf(codes.Internal, "read the mount table: %v", err)
		}
		s.log.Info("published", "volume_id", req.GetVolumeId(), "source", source, "target", target, "fstype", fstype, "readonly", req.GetReadonly())
	}
	// The type is the one the mount table shows for the bind mount (its
	// source's): the agent's diagnosis names it. An EFS mount would be
	// nfs4, which csihealth maps the driver's "efs" to.
	if err := s.cfg.Health.PublishVolume(req.GetVolumeId(), agent.Mount{Path: target, FSType: fstype}); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume stops monitoring the target, then unmounts it. A
// target that is not mounted is success, as the CSI spec requires.
func (s node) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if req.GetVolumeId() == "" || target == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and target path are required")
	}
	target = filepath.Clean(target)
	s.cfg.Health.Unpublish(target)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, mounted, err := mountAt(target); err != nil {
		return nil, status.Errorf(codes.Internal, "read the mount table: %v", err)
	} else if !mounted {
		return &csi.NodeUnpublishVolumeResponse{}, nil
	}
	if err := unmount(target); err != nil {
		return nil, status.Errorf(codes.Internal, "unmount %q: %v", target, err)
	}
	s.log.Info("unpublished", "volume_id", req.GetVolumeId(), "target", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats reports the volume condition from the agent's last
// check, with a usage entry of unit UNKNOWN, as examples/csi-node does
// (kubelet without CSIVolumeHealth rejects a response without usage). It
// reads memory only.
func (s node) NodeGetVolumeStats(_ context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if req.GetVolumeId() == "" || req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and volume path are required")
	}
	cond, ok := s.cfg.Health.VolumeCondition(filepath.Clean(req.GetVolumePath()))
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume path %q is not published", req.GetVolumePath())
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_UNKNOWN}}, VolumeCondition: cond}, nil
}

// NodeCapabilities is what NodeGetCapabilities advertises. kubelet calls
// NodeGetVolumeStats only with GET_VOLUME_STATS (metricsCsi.GetMetrics,
// pkg/volume/csi/csi_metrics.go) and reads the condition only with
// VOLUME_CONDITION and its CSIVolumeHealth gate on
// (csiDriverClient.NodeGetVolumeStats, pkg/volume/csi/csi_client.go,
// kubernetes v1.34.2). Upstream advertises GET_VOLUME_STATS only with
// --vol-metrics-opt-in (its stats walk the file system); the stand-in's
// come from memory, so it advertises both whatever that flag says.
var NodeCapabilities = []csi.NodeServiceCapability_RPC_Type{
	csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	csi.NodeServiceCapability_RPC_VOLUME_CONDITION,
}

// NodeGetCapabilities advertises NodeCapabilities.
func (node) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	out := &csi.NodeGetCapabilitiesResponse{}
	for _, c := range NodeCapabilities {
		out.Capabilities = append(out.Capabilities, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}}})
	}
	return out, nil
}

// NodeGetInfo returns the node id; kubelet stores it in the CSINode object
// when it registers the driver.
func (s node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: s.cfg.NodeID}, nil
}

// mountAt reads the mount table (not the path) for the mount at path.
func mountAt(path string) (fstype string, mounted bool, err error) {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
	if err != nil || len(ms) == 0 {
		return "", false, err
	}
	return ms[len(ms)-1].FSType, true, nil
}

// bindMount mounts source on target, then makes it read-only if asked (a
// bind mount takes MS_RDONLY only on a remount).
func bindMount(source, target string, readonly bool) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", source, target, err)
	}
	if !readonly {
		return nil
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// unmount unmounts target, lazily when it is busy: a check stuck in a
// hung volume holds it, and kubelet must be able to tear the pod down
// all the same.
func unmount(target string) error {
	err := unix.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	return err
}
