package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

const attributedPath = "/var/lib/kubelet/pods/7f3c/volumes/kubernetes.io~csi/pv-shared/mount"

func attributedSource() *fakeSource {
	return &fakeSource{live: true, sum: agent.Summary{Mounts: 2},
		sts: []*agent.MountStatus{
			{Mount: &agent.Mount{Path: "/mnt/plain"}, State: agent.StateHealthy, LastCheck: now},
			{Mount: &agent.Mount{Path: attributedPath, Attribution: agent.Attribution{FileSystemID: "fs-0123456789abcdef0",
				AccessPoint: "fsap-0fedcba9876543210", Service: agent.ServiceS3Files, PodUID: "7f3c", Volume: "<b>pv-shared</b>"}}, State: agent.StateHealthy, LastCheck: now},
		}}
}

// TestMountsAttribution: /healthz/mounts names the file system, access
// point, pod and volume of a mount, and omits each one that is unknown.
func TestMountsAttribution(t *testing.T) {
	t.Parallel()
	h := httpapi.NewRouter(attributedSource(), httpapi.Options{Now: func() time.Time { return now }})
	code, body, _ := get(t, h, http.MethodGet, "/healthz/mounts")
	if code != http.StatusOK {
		t.Fatalf("GET /healthz/mounts = %d", code)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	a := got[attributedPath]
	for k, want := range map[string]string{"filesystemId": "fs-0123456789abcdef0", "accessPoint": "fsap-0fedcba9876543210",
		"podUid": "7f3c", "volume": "<b>pv-shared</b>", "service": "s3files"} {
		if a[k] != want {
			t.Errorf("%s = %v, want %q", k, a[k], want)
		}
	}
	for _, k := range []string{"filesystemId", "accessPoint", "podUid", "volume", "service"} {
		if _, ok := got["/mnt/plain"][k]; ok {
			t.Errorf("unknown %s present: %v", k, got["/mnt/plain"])
		}
	}
}

// TestStatusPageAttribution: the status page shows the same, escaped.
func TestStatusPageAttribution(t *testing.T) {
	t.Parallel()
	h := httpapi.NewRouter(attributedSource(), httpapi.Options{Now: func() time.Time { return now }})
	_, body, _ := get(t, h, http.MethodGet, "/")
	for _, want := range []string{`<span class="fs">fs-0123456789abcdef0</span>`, `<span class="ap">fsap-0fedcba9876543210</span>`,
		`pod <span class="pod">7f3c</span>`, `volume <span class="vol">&lt;b&gt;pv-shared&lt;/b&gt;</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Count(body, `class="attr"`) != 1 {
		t.Errorf("attribution shown for a mount with none:\n%s", body)
	}
}
