//go:build linux

package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// TestAttributionThroughBinary: a FUSE volume mounted with an EFS source
// under the kubelet layout is discovered by the agent, and efs_mount_info
// and /healthz/mounts say which file system, pod and volume it is.
func TestAttributionThroughBinary(t *testing.T) {
	testutil.RequireFUSE(t)
	const (
		fsID   = "fs-0123456789abcdef0"
		source = fsID + ".efs.us-east-1.amazonaws.com:/"
		uid    = "5d0c6a43-2f3e-4b1a-9d8e-7c6b5a4f3e2d"
		pv     = "pvc-1a2b3c4d"
	)
	prefix := filepath.Join(t.TempDir(), "pods")
	vol := filepath.Join(prefix, uid, "volumes", "kubernetes.io~csi", pv, "mount")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	fs, err := faultfs.Mount(vol, t.TempDir(), faultfs.Options{Source: source})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Unmount() })
	agent := startAgent(t, []string{"HEALTH_DISCOVER_FSTYPES=fuse.faultfs", "HEALTH_DISCOVER_PREFIX=" + prefix,
		"HEALTH_DISCOVERY_INTERVAL=1m", "HEALTH_EFS_STATE_DIR=" + t.TempDir()},
		"--check-interval", "1s", "--check-timeout", "500ms")

	testutil.WaitForWithin(t, 10*time.Second, "discovered and healthy", func() bool { return state(t, agent.base, vol) == "healthy" })
	m := mounts(t, agent.base)[vol]
	for k, want := range map[string]string{"filesystemId": fsID, "service": "efs", "podUid": uid, "volume": pv} {
		if m[k] != want {
			t.Errorf("/healthz/mounts %s = %v, want %q", k, m[k], want)
		}
	}
	if _, ok := m["accessPoint"]; ok {
		t.Errorf("unknown access point present: %v", m)
	}

	resp, err := http.Get(agent.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := `efs_mount_info{filesystem_id="` + fsID + `",mount_path="` + vol + `",pod_uid="` + uid + `",service="efs",volume="` + pv + `"} 1`
	if !strings.Contains(string(body), want) {
		t.Fatalf("scrape lacks %s:\n%s", want, body)
	}
	// The documented series keep their one label.
	if !strings.Contains(string(body), `efs_mount_health_status{mount_path="`+vol+`"} 1`) {
		t.Fatalf("efs_mount_health_status changed its labels:\n%s", body)
	}
}
