package attribution_test

import (
	"strings"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/attribution"
)

func TestFromSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ source, want string }{
		{"fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/", "fs-0123456789abcdef0"},
		{"fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/shared/data", "fs-0123456789abcdef0"},
		{"us-east-1a.fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/", "fs-0123456789abcdef0"},
		{"fs-deadbeef.efs.cn-north-1.amazonaws.com.cn:/", "fs-deadbeef"},
		{"FS-DEADBEEF.EFS.US-WEST-2.AMAZONAWS.COM:/", "fs-deadbeef"},
		{"fs-deadbeef:/", "fs-deadbeef"},
		{"127.0.0.1:/", ""},
		{"10.0.1.20:/", ""},
		{"[::1]:/", ""},
		{"nfs.example.com:/export", ""},
		{"fs-deadbeef.efs.us-east-1.amazonaws.com", ""}, // no path: not an NFS source
		{"fs-xyz.efs.us-east-1.amazonaws.com:/", ""},
		{"tmpfs", ""},
		{"", ""},
		{":/", ""},
	} {
		if got := attribution.FromSource(tc.source).FileSystemID; got != tc.want {
			t.Errorf("FromSource(%q) = %q, want %q", tc.source, got, tc.want)
		}
	}
}

// TestFromSourceService: the label after the id names the service, EFS
// ({fs_id}.efs.…) or S3 Files ({az_id}.{fs_id}.s3files.{region}.on.aws,
// dist/s3files-utils.conf, efs-utils v3.2.0).
func TestFromSourceService(t *testing.T) {
	t.Parallel()
	for src, want := range map[string]agent.Attribution{
		"fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/":           {FileSystemID: "fs-0123456789abcdef0", Service: agent.ServiceEFS},
		"use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:/data": {FileSystemID: "fs-0123456789abcdef0", Service: agent.ServiceS3Files},
		"fs-deadbeef:/": {FileSystemID: "fs-deadbeef"},
	} {
		if got := attribution.FromSource(src); got != want {
			t.Errorf("FromSource(%q) = %+v, want %+v", src, got, want)
		}
	}
}

func TestFromPath(t *testing.T) {
	t.Parallel()
	const uid = "7f3c2a9e-1b4d-4e8a-9c61-2d5f0e8b7a13"
	for _, tc := range []struct{ path, pod, vol string }{
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~csi/pv-shared/mount", uid, "pv-shared"},
		{"/host/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~csi/pv-shared/mount/", uid, "pv-shared"},
		{"/tmp/x/pods/abc/volumes/kubernetes.io~csi/efs tls/mount", "abc", "efs tls"},
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~nfs/legacy", uid, "legacy"},
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~csi/mount/mount", uid, "mount"},
		// The CSI volume directory itself (holds vol_data.json), not the mount.
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~csi/pv-shared", "", ""},
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~csi/pv-shared/mount/sub", "", ""},
		{"/var/lib/kubelet/pods/" + uid + "/volume-subpaths/pv-shared/app/0", "", ""},
		{"/var/lib/kubelet/plugins/kubernetes.io/csi/efs.csi.aws.com/abc/globalmount", "", ""},
		{"/var/lib/kubelet/pods/" + uid + "/volumes/other/x", "", ""},
		{"/mnt/efs", "", ""},
		{"/", "", ""},
		{"", "", ""},
	} {
		a := attribution.FromPath(tc.path)
		if a.PodUID != tc.pod || a.Volume != tc.vol || a.FileSystemID != "" || a.AccessPoint != "" {
			t.Errorf("FromPath(%q) = %+v, want pod %q volume %q", tc.path, a, tc.pod, tc.vol)
		}
	}
}

func TestFromVolumeID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id, fs, ap, err string
	}{
		{"fs-0123456789abcdef0", "fs-0123456789abcdef0", "", ""},
		{"fs-0123456789abcdef0::fsap-0fedcba9876543210", "fs-0123456789abcdef0", "fsap-0fedcba9876543210", ""},
		{"fs-0123456789abcdef0:/shared/data:fsap-0fedcba9876543210", "fs-0123456789abcdef0", "fsap-0fedcba9876543210", ""},
		{"fs-0123456789abcdef0:/shared", "fs-0123456789abcdef0", "", ""},
		{"fs-abcd1234::", "fs-abcd1234", "", ""},
		{"fs-abcd1234:", "fs-abcd1234", "", ""},
		{"efs:fs-abcd1234:::", "", "", "volume id"}, // five fields after the type: the driver refuses it too
		{"efs:fs-abcd1234::fsap-abcd1234", "fs-abcd1234", "fsap-abcd1234", ""},
		{"efs:fs-abcd1234", "fs-abcd1234", "", ""},
		{"s3files:fs-abcd1234:/path:fsap-abcd1234", "fs-abcd1234", "fsap-abcd1234", ""},
		{"fs-1", "", "", `file system id "fs-1"`},
		{"vol-0123456789abcdef0", "", "", `volume id "vol-0123456789abcdef0"`},
		{"fs-abcd1234::ap-abcd1234", "", "", `access point id "ap-abcd1234"`},
		{"fs-abcd1234:a:b:c", "", "", "want"},
		{"", "", "", `volume id ""`},
	} {
		a, err := attribution.FromVolumeID(tc.id)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("FromVolumeID(%q) = %+v, %v; want error containing %q", tc.id, a, err, tc.err)
			}
			continue
		}
		if err != nil || a.FileSystemID != tc.fs || a.AccessPoint != tc.ap {
			t.Errorf("FromVolumeID(%q) = %+v, %v; want %s %s", tc.id, a, err, tc.fs, tc.ap)
		}
		// The type prefix names the service; without it the driver takes
		// EFS (parseVolumeId, pkg/driver/node.go, aws-efs-csi-driver v3.4.1).
		if want := map[bool]string{true: agent.ServiceS3Files, false: agent.ServiceEFS}[strings.HasPrefix(tc.id, "s3files:")]; a.Service != want {
			t.Errorf("FromVolumeID(%q).Service = %q, want %q", tc.id, a.Service, want)
		}
	}
}

func TestOr(t *testing.T) {
	t.Parallel()
	a := agent.Attribution{FileSystemID: "fs-a", PodUID: "p"}
	b := agent.Attribution{FileSystemID: "fs-b", AccessPoint: "fsap-b", Volume: "v"}
	if got := a.Or(b); got != (agent.Attribution{FileSystemID: "fs-a", AccessPoint: "fsap-b", PodUID: "p", Volume: "v"}) {
		t.Fatalf("Or = %+v", got)
	}
	if !(agent.Attribution{}).IsZero() || a.IsZero() {
		t.Fatal("IsZero")
	}
}
