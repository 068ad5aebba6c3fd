package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

// NodeServer is the example CSI node service.
type NodeServer struct {
	csi.UnimplementedNodeServer
	NodeID string
	Health *csihealth.Health
}

// NodePublishVolume creates the target directory (a real driver mounts
// the volume there) and starts monitoring it.
func (s *NodeServer) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if req.GetVolumeId() == "" || target == "" || !filepath.IsAbs(target) {
		return nil, status.Error(codes.InvalidArgument, "volume_id and an absolute target_path are required")
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, status.Errorf(codes.Internal, "create target: %v", err)
	}
	// The volume id names the EFS file system and access point; the
	// target path, the pod and the PersistentVolume. The filesystem type
	// is the volume capability's ("efs", "s3files" or empty, as the EFS
	// CSI driver accepts them; PublishVolume maps them to the kernel's
	// "nfs4"), never a volume context key: the driver rejects every key
	// it does not know (NodePublishVolume, pkg/driver/node.go,
	// aws-efs-csi-driver v3.4.1). TunnelAddr stays empty: the driver does
	// not know the efs-proxy port mount.efs picked, so the tunnel step is
	// off here (a driver may read it from the mount table after the
	// mount, the addr=127.0.0.1,port=<port> options, as discovery does).
	if err := s.Health.PublishVolume(req.GetVolumeId(), agent.Mount{Path: filepath.Clean(target), FSType: req.GetVolumeCapability().GetMount().GetFsType()}); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume stops monitoring first (never blocks), then would
// unmount.
func (s *NodeServer) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	s.Health.Unpublish(filepath.Clean(req.GetTargetPath()))
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats reports the volume condition from the last check,
// with a usage entry of unit UNKNOWN. kubelet rejects a response without
// usage ("failed to get usage from response. usage is nil") before it
// looks at the condition (NodeGetVolumeStats in kubelet's
// pkg/volume/csi/csi_client.go), and the EFS CSI driver answers UNKNOWN
// the same way while its own figures are not ready (computeVolumeMetrics,
// pkg/driver/vol_statter.go, aws-efs-csi-driver v3.4.1). No statfs here,
// nor an os.Stat of the path (upstream's first step, which blocks on a
// hung mount): the call reads memory only.
func (s *NodeServer) NodeGetVolumeStats(_ context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	cond, ok := s.Health.VolumeCondition(filepath.Clean(req.GetVolumePath()))
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume path %q is not published", req.GetVolumePath())
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_UNKNOWN}}, VolumeCondition: cond}, nil
}

// NodeGetCapabilities advertises volume condition and stats.
func (s *NodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	caps := []csi.NodeServiceCapability_RPC_Type{csi.NodeServiceCapability_RPC_GET_VOLUME_STATS, csi.NodeServiceCapability_RPC_VOLUME_CONDITION}
	out := &csi.NodeGetCapabilitiesResponse{}
	for _, c := range caps {
		out.Capabilities = append(out.Capabilities, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}}})
	}
	return out, nil
}

// NodeGetInfo returns the node id.
func (s *NodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: s.NodeID}, nil
}

func main() { os.Exit(run()) }

func run() int {
	endpoint := flag.String("endpoint", "/tmp/csi-node-example.sock", "unix socket for the CSI gRPC service")
	healthAddr := flag.String("health-address", "127.0.0.1:9910", "address of the health routes")
	flag.Parse()
	log := slog.Default()
	cfg := agent.DefaultConfig()
	cfg.Hostname, _ = os.Hostname()
	cfg.Logger = log
	mon, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { _ = mon.Run(ctx) }()
	health := csihealth.New(mon)
	_ = os.Remove(*endpoint)
	ln, err := net.Listen("unix", *endpoint)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := grpc.NewServer()
	csi.RegisterNodeServer(srv, &NodeServer{NodeID: cfg.Hostname, Health: health})
	go func() { _ = srv.Serve(ln) }()
	hs := httpapi.NewServer(*healthAddr, health.Handler(httpapi.Options{}), log)
	go func() {
		if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server", "err", err)
		}
	}()
	<-ctx.Done()
	srv.GracefulStop()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return 0
}
