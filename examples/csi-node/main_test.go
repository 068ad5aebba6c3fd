package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// kubeletVolumeStats plays kubelet's part in NodeGetVolumeStats
// (csiDriverClient.NodeGetVolumeStats in kubelet's
// pkg/volume/csi/csi_client.go, read at kubernetes/kubernetes commit
// 3e4a7900d755): a response without usage is an error, "failed to get usage
// from response. usage is nil", returned before anything else of the
// response is read; in releases with the CSIVolumeHealth feature gate
// (alpha since v1.21, off by default) the volume condition is read after
// that check, and only with the gate on.
func kubeletVolumeStats(ctx context.Context, node csi.NodeClient, volID, target string) (*csi.VolumeCondition, error) {
	resp, err := node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volID, VolumePath: target})
	if err != nil {
		return nil, err
	}
	if resp.GetUsage() == nil {
		return nil, errors.New("failed to get usage from response. usage is nil")
	}
	return resp.GetVolumeCondition(), nil
}

// TestNodeServerOverGRPC drives the example plugin as kubelet would, over
// a unix socket: publish, stats (healthy), the volume breaks, stats
// (abnormal with a message), unpublish, stats (NotFound).
func TestNodeServerOverGRPC(t *testing.T) {
	const volumeID = "fs-0123456789abcdef0::fsap-0fedcba9876543210"
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Interval, cfg.Timeout, cfg.MinRetry = 200*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = mon.Run(ctx) }()

	sock := filepath.Join(t.TempDir(), "csi.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	csi.RegisterNodeServer(srv, &NodeServer{NodeID: "node-1", Health: csihealth.New(mon)})
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	node := csi.NewNodeClient(conn)

	caps, err := node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	if err != nil || !strings.Contains(caps.String(), "VOLUME_CONDITION") {
		t.Fatalf("capabilities %v %v", caps, err)
	}
	target := filepath.Join(t.TempDir(), "pods", "uid", "volumes", "kubernetes.io~csi", "efs-pv", "mount")
	// As kubelet sends it for an EFS CSI volume: the capability carries
	// the driver's fstype, the volume context only keys the driver knows.
	pub := &csi.NodePublishVolumeRequest{VolumeId: volumeID, TargetPath: target,
		VolumeCapability: &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "efs"}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}},
		VolumeContext: map[string]string{"encryptInTransit": "true"}}
	if _, err := node.NodePublishVolume(ctx, pub); err != nil {
		t.Fatal(err)
	}
	if st, _ := mon.Status(target); st.Attribution != (agent.Attribution{FileSystemID: "fs-0123456789abcdef0",
		AccessPoint: "fsap-0fedcba9876543210", Service: agent.ServiceEFS, PodUID: "uid", Volume: "efs-pv"}) || st.FSType != "nfs4" {
		t.Errorf("published volume attributed %+v, fstype %q", st.Attribution, st.FSType)
	}
	cond := func() *csi.VolumeCondition {
		t.Helper()
		c, err := kubeletVolumeStats(ctx, node, volumeID, target)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	testutil.WaitFor(t, "a healthy volume condition", func() bool { return strings.HasPrefix(cond().Message, "healthy") })
	if c := cond(); c.Abnormal {
		t.Fatalf("healthy volume abnormal: %v", c)
	}
	if err := os.RemoveAll(target); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "an abnormal volume condition", func() bool { return cond().Abnormal })
	if c := cond(); !strings.Contains(c.Message, "not_mounted") {
		t.Fatalf("abnormal condition message %q", c.Message)
	}
	start := time.Now()
	if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volumeID, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > testutil.Promptly {
		t.Fatalf("unpublish took %v", d)
	}
	_, err = node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volumeID, VolumePath: target})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("stats after unpublish: %v", err)
	}
	if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: volumeID, TargetPath: "relative"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("relative target: %v", err)
	}
}
