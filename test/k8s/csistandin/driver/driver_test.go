package driver_test

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
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/tmpfs"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/driver"
)

const fsID = "fs-0123456789abcdef0"

// plugin is the stand-in served over a real unix socket, with the agent
// checking fast.
type plugin struct {
	mon      *agent.Monitor
	node     csi.NodeClient
	identity csi.IdentityClient
	root     string
}

func startPlugin(t *testing.T) *plugin {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Interval, cfg.Timeout, cfg.MinRetry = 200*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mon.Run(ctx)
	}()
	root := t.TempDir()
	srv, err := driver.New(driver.Config{NodeID: "node-1", SourceRoot: root, Health: csihealth.New(mon), Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "csi.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(ln) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		g.Stop()
		cancel()
		<-done
	})
	return &plugin{mon: mon, node: csi.NewNodeClient(conn), identity: csi.NewIdentityClient(conn), root: root}
}

// publishRequest is what kubelet sends for a PersistentVolume of the
// driver (csiMountMgr.SetUpAt, pkg/volume/csi/csi_mounter.go, kubernetes
// v1.34.2): the target under the pod's volume directory, a mount
// capability with the PV's fsType.
func publishRequest(volumeID, target string, readonly bool) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{VolumeId: volumeID, TargetPath: target, Readonly: readonly,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}
}

func podTarget(t *testing.T, pv string) string {
	return filepath.Join(t.TempDir(), "pods", "0c8a3f6e-uid", "volumes", "kubernetes.io~csi", pv, "mount")
}

// mounts counts the mount table's entries at path.
func mounts(t *testing.T, path string) []*mountinfo.Info {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// callTimeout bounds every call of the tests: generous for a loaded
// machine, and still a deadline that a call stuck in a hung volume (the
// hang has no end of its own) can never meet. kubelet's own deadline is
// csiTimeout, 2 minutes (pkg/volume/csi/csi_plugin.go, kubernetes v1.34.2).
const callTimeout = 10 * time.Second

func condition(t *testing.T, ctx context.Context, p *plugin, volumeID, target string) *csi.VolumeCondition {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := p.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volumeID, VolumePath: target})
	if err != nil {
		t.Fatalf("NodeGetVolumeStats: %v", err)
	}
	if resp.GetUsage() == nil {
		t.Fatal("NodeGetVolumeStats without usage: kubelet without CSIVolumeHealth rejects it")
	}
	return resp.GetVolumeCondition()
}

func TestSourceDir(t *testing.T) {
	for _, tc := range []struct{ id, want, err string }{
		{id: fsID, want: "/src/" + fsID},
		{id: fsID + "::fsap-0fedcba9876543210", want: "/src/" + fsID},
		{id: fsID + ":/data/a:fsap-0fedcba9876543210", want: "/src/" + fsID + "/data/a"},
		{id: "efs:" + fsID + ":/data", want: "/src/" + fsID + "/data"},
		{id: fsID + ":/../../etc", want: "/src/" + fsID + "/etc"},
		{id: "fs-nothex", err: "not fs- followed by"},
		{id: "pvc-1234", err: "not fs- followed by"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			got, err := driver.SourceDir("/src", tc.id)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("SourceDir(%q) = %q, %v; want error %q", tc.id, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("SourceDir(%q) = %q, %v; want %q", tc.id, got, err, tc.want)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	mon, err := agent.New(agent.Config{Interval: time.Second, Timeout: time.Second, MinRetry: time.Second, MaxConcurrent: 1, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	h := csihealth.New(mon)
	for _, tc := range []struct {
		cfg  driver.Config
		want string
	}{
		{driver.Config{Health: h}, "CSI_NODE_NAME"},
		{driver.Config{NodeID: "n"}, "Health is nil"},
		{driver.Config{NodeID: "n", Health: h, SourceRoot: "relative"}, `source root "relative"`},
	} {
		if _, err := driver.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
}

// TestIdentityAndCapabilities: what the registrar, livenessprobe and
// kubelet ask before any volume.
func TestIdentityAndCapabilities(t *testing.T) {
	p := startPlugin(t)
	ctx := context.Background()
	info, err := p.identity.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || info.GetName() != "efs.csi.aws.com" {
		t.Fatalf("GetPluginInfo = %v, %v", info, err)
	}
	probe, err := p.identity.Probe(ctx, &csi.ProbeRequest{})
	if err != nil || (probe.GetReady() != nil && !probe.GetReady().GetValue()) {
		t.Fatalf("Probe = %v, %v; want ready", probe, err)
	}
	caps, err := p.node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[csi.NodeServiceCapability_RPC_Type]bool{}
	for _, c := range caps.GetCapabilities() {
		got[c.GetRpc().GetType()] = true
	}
	if !got[csi.NodeServiceCapability_RPC_GET_VOLUME_STATS] || !got[csi.NodeServiceCapability_RPC_VOLUME_CONDITION] || len(got) != 2 {
		t.Fatalf("capabilities %v: want GET_VOLUME_STATS and VOLUME_CONDITION", caps)
	}
	ni, err := p.node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil || ni.GetNodeId() != "node-1" {
		t.Fatalf("NodeGetInfo = %v, %v", ni, err)
	}
	if _, err := p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("NodeStageVolume: %v, want Unimplemented", err)
	}
}

func TestPublishRejectsBadRequests(t *testing.T) {
	p := startPlugin(t)
	target := podTarget(t, "pv-1")
	block := publishRequest(fsID, target, false)
	block.VolumeCapability.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	noCap := publishRequest(fsID, target, false)
	noCap.VolumeCapability = nil
	for name, req := range map[string]*csi.NodePublishVolumeRequest{
		"no volume id":    publishRequest("", target, false),
		"relative target": publishRequest(fsID, "pods/x/mount", false),
		"no capability":   noCap,
		"block":           block,
		"not an EFS id":   publishRequest("pvc-1234", target, false),
	} {
		if _, err := p.node.NodePublishVolume(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if len(mounts(t, target)) != 0 {
		t.Fatal("a rejected publish mounted the target")
	}
}

// TestPublishUnpublish publishes a tmpfs-backed volume as kubelet does:
// the source is bind-mounted at the target, monitored, reported healthy,
// then unmounted.
func TestPublishUnpublish(t *testing.T) {
	testutil.RequireRoot(t, "bind mounts")
	p := startPlugin(t)
	ctx := context.Background()
	source := filepath.Join(p.root, fsID)
	if err := os.Mkdir(source, 0o755); err != nil {
		t.Fatal(err)
	}
	unmountSource, err := tmpfs.Mount(source, "size=1m")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unmountSource)
	if err := os.WriteFile(filepath.Join(source, "hello"), []byte("from the source"), 0o644); err != nil {
		t.Fatal(err)
	}

	volumeID := fsID + "::fsap-0fedcba9876543210"
	target := podTarget(t, "pv-1")
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	for range 2 { // the second publish finds the mount and adds none
		if _, err := p.node.NodePublishVolume(ctx, publishRequest(volumeID, target, false)); err != nil {
			t.Fatal(err)
		}
	}
	if ms := mounts(t, target); len(ms) != 1 || ms[0].FSType != "tmpfs" {
		t.Fatalf("mounts at the target %+v: want one tmpfs", ms)
	}
	if b, err := os.ReadFile(filepath.Join(target, "hello")); err != nil || string(b) != "from the source" {
		t.Fatalf("the target does not show the source: %q, %v", b, err)
	}
	st, ok := p.mon.Status(target)
	if !ok {
		t.Fatal("the published target is not monitored")
	}
	if want := (agent.Attribution{FileSystemID: fsID, AccessPoint: "fsap-0fedcba9876543210", Service: agent.ServiceEFS,
		PodUID: "0c8a3f6e-uid", Volume: "pv-1"}); st.Attribution != want || st.FSType != "tmpfs" {
		t.Fatalf("monitored as %+v fstype %q, want %+v tmpfs", st.Attribution, st.FSType, want)
	}
	testutil.WaitFor(t, "a healthy volume condition", func() bool {
		return strings.HasPrefix(condition(t, ctx, p, volumeID, target).GetMessage(), "healthy")
	})
	if c := condition(t, ctx, p, volumeID, target); c.GetAbnormal() {
		t.Fatalf("healthy volume reported abnormal: %v", c)
	}

	for range 2 { // unpublishing what is not mounted is success
		if _, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volumeID, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	if ms := mounts(t, target); len(ms) != 0 {
		t.Fatalf("still mounted after unpublish: %+v", ms)
	}
	if _, err := p.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volumeID, VolumePath: target}); status.Code(err) != codes.NotFound {
		t.Fatalf("stats after unpublish: %v, want NotFound", err)
	}
	if _, err := os.Stat(filepath.Join(source, "hello")); err != nil {
		t.Fatalf("unpublish touched the source: %v", err)
	}

	// Read-only, as kubelet asks for a PV claimed readOnly.
	ro := podTarget(t, "pv-ro")
	t.Cleanup(func() { _ = unix.Unmount(ro, unix.MNT_DETACH) })
	if _, err := p.node.NodePublishVolume(ctx, publishRequest(fsID, ro, true)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write on a read-only publish: %v, want EROFS", err)
	}
	if _, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: fsID, TargetPath: ro}); err != nil {
		t.Fatal(err)
	}

	// A file system with no source directory.
	_, err = p.node.NodePublishVolume(ctx, publishRequest("fs-00000000000000001", podTarget(t, "pv-2"), false))
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), filepath.Join(p.root, "fs-00000000000000001")) {
		t.Fatalf("publish without a source: %v, want NotFound naming the source", err)
	}
}

// TestHungVolume hangs every operation of a FUSE-backed volume, as a
// hard-mounted NFS server that stopped answering does: the condition
// turns abnormal, and NodeGetVolumeStats, Probe and NodeUnpublishVolume
// still answer, each within callTimeout.
func TestHungVolume(t *testing.T) {
	testutil.RequireFUSE(t)
	p := startPlugin(t)
	source := filepath.Join(p.root, fsID)
	if err := os.Mkdir(source, 0o755); err != nil {
		t.Fatal(err)
	}
	fs, err := faultfs.Mount(source, t.TempDir(), faultfs.Options{Source: fsID + ".efs.us-east-1.amazonaws.com:/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fs.Unmount(); err != nil {
			t.Errorf("unmount fault filesystem: %v", err)
		}
	})
	target := podTarget(t, "pv-hung")
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	ctx := context.Background()
	if _, err := p.node.NodePublishVolume(ctx, publishRequest(fsID, target, false)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a healthy volume condition", func() bool {
		return strings.HasPrefix(condition(t, ctx, p, fsID, target).GetMessage(), "healthy")
	})

	fs.Set(faultfs.OpAll, faultfs.Fault{Hang: true})
	t.Cleanup(fs.Clear) // lets the stuck check go before the unmounts
	testutil.WaitFor(t, "a hung volume condition", func() bool {
		return strings.HasPrefix(condition(t, ctx, p, fsID, target).GetMessage(), "hung")
	})
	if fs.Blocked() == 0 {
		t.Fatal("no operation is blocked in the fault filesystem: the volume is not hung")
	}
	within := func(what string, call func(ctx context.Context) error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if err := call(cctx); err != nil {
			t.Fatalf("%s while the volume hangs: %v", what, err)
		}
	}
	within("NodeGetVolumeStats", func(ctx context.Context) error {
		if c := condition(t, ctx, p, fsID, target); !c.GetAbnormal() {
			return errors.New("condition not abnormal")
		}
		return nil
	})
	within("Probe", func(ctx context.Context) error {
		_, err := p.identity.Probe(ctx, &csi.ProbeRequest{})
		return err
	})
	within("NodeUnpublishVolume", func(ctx context.Context) error {
		_, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: fsID, TargetPath: target})
		return err
	})
	if ms := mounts(t, target); len(ms) != 0 {
		t.Fatalf("still mounted after unpublish: %+v", ms)
	}
}
