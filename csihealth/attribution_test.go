package csihealth_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
)

// TestPublishVolumeAttribution: the volume id names the file system and
// access point, the kubelet target path the pod and volume; what the
// caller sets wins, and a volume id of another form only loses the
// file system.
func TestPublishVolumeAttribution(t *testing.T) {
	t.Parallel()
	const target = "/var/lib/kubelet/pods/7f3c2a9e-1b4d-4e8a-9c61-2d5f0e8b7a13/volumes/kubernetes.io~csi/pv-shared/mount"
	for _, tc := range []struct {
		name, volumeID string
		m              agent.Mount
		want           agent.Attribution
	}{
		{"access point", "fs-0123456789abcdef0::fsap-0fedcba9876543210", agent.Mount{Path: target},
			agent.Attribution{FileSystemID: "fs-0123456789abcdef0", AccessPoint: "fsap-0fedcba9876543210", Service: agent.ServiceEFS,
				PodUID: "7f3c2a9e-1b4d-4e8a-9c61-2d5f0e8b7a13", Volume: "pv-shared"}},
		{"subpath", "fs-0123456789abcdef0:/data:fsap-0fedcba9876543210", agent.Mount{Path: "/mnt/x"},
			agent.Attribution{FileSystemID: "fs-0123456789abcdef0", AccessPoint: "fsap-0fedcba9876543210", Service: agent.ServiceEFS}},
		{"caller wins", "fs-0123456789abcdef0", agent.Mount{Path: target, Attribution: agent.Attribution{Volume: "named"}},
			agent.Attribution{FileSystemID: "fs-0123456789abcdef0", Service: agent.ServiceEFS, PodUID: "7f3c2a9e-1b4d-4e8a-9c61-2d5f0e8b7a13", Volume: "named"}},
		{"not an EFS volume id", "vol-1", agent.Mount{Path: target},
			agent.Attribution{PodUID: "7f3c2a9e-1b4d-4e8a-9c61-2d5f0e8b7a13", Volume: "pv-shared"}},
		{"source names the file system", "vol-1", agent.Mount{Path: "/mnt/y", Source: "fs-0aaaabbbbccccdddd.efs.eu-west-1.amazonaws.com:/"},
			agent.Attribution{FileSystemID: "fs-0aaaabbbbccccdddd", Service: agent.ServiceEFS}},
		{"s3files volume id", "s3files:fs-0aaaabbbbccccdddd::fsap-0fedcba9876543210", agent.Mount{Path: "/mnt/z"},
			agent.Attribution{FileSystemID: "fs-0aaaabbbbccccdddd", AccessPoint: "fsap-0fedcba9876543210", Service: agent.ServiceS3Files}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := agent.DefaultConfig()
			cfg.Hostname = "n"
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			mon, err := agent.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := csihealth.New(mon).PublishVolume(tc.volumeID, tc.m); err != nil {
				t.Fatal(err)
			}
			st, ok := mon.Status(tc.m.Path)
			if !ok || st.Attribution != tc.want {
				t.Fatalf("registered %+v, want %+v", st.Attribution, tc.want)
			}
		})
	}
}
