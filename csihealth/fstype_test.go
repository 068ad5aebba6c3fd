package csihealth_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// TestPublishVolumeKernelFSType: the EFS CSI driver mounts with fstype
// "efs" (or "s3files"; NodePublishVolume, pkg/driver/node.go,
// aws-efs-csi-driver v3.4.1) while the kernel's mount table shows the NFS
// 4.1 mount mount.efs made, "nfs4". A node plugin that passes the driver's
// fstype on must not fail every check as not_mounted.
func TestPublishVolumeKernelFSType(t *testing.T) {
	t.Parallel()
	for _, fstype := range []string{"efs", "s3files"} {
		t.Run(fstype, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			target := filepath.Join(dir, "pods", "7f3c", "volumes", "kubernetes.io~csi", "pv-"+fstype, "mount")
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			// The target as the kernel lists a mount through efs-proxy.
			mi := filepath.Join(dir, "mountinfo")
			line := fmt.Sprintf("101 22 0:51 / %s rw,relatime shared:61 - nfs4 127.0.0.1:/ rw,vers=4.1,rsize=1048576,wsize=1048576,namlen=255,hard,noresvport,proto=tcp,port=20127,timeo=600,retrans=2,sec=sys,clientaddr=127.0.0.1,local_lock=none,addr=127.0.0.1\n", target)
			if err := os.WriteFile(mi, []byte(line), 0o644); err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			w, err := discovery.New(discovery.Config{MountInfo: mi, Paths: []string{target}, Interval: time.Minute, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Refresh(); err != nil {
				t.Fatal(err)
			}
			cfg := agent.DefaultConfig()
			cfg.Hostname, cfg.Logger, cfg.MountTable = "n", log, w
			mon, err := agent.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = mon.Run(ctx) }()
			defer func() { cancel(); <-done }()
			h := csihealth.New(mon)
			if err := h.PublishVolume(fstype+":fs-0123456789abcdef0", agent.Mount{Path: target, FSType: fstype}); err != nil {
				t.Fatal(err)
			}
			var st *agent.MountStatus
			testutil.WaitFor(t, "the first check", func() bool {
				st, _ = mon.Status(target)
				return st != nil && st.Checks > 0
			})
			if !st.Healthy() || st.FSType != "nfs4" {
				t.Fatalf("FSType %q: state %s reason %s (%s), registered as %q; want healthy as nfs4", fstype, st.State, st.Reason, st.LastError, st.FSType)
			}
		})
	}
}
