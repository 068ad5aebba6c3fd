//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/e2e/node"
)

// The chart as an operator installs it. The release is named after the
// chart, so every object is called efs-health-agent.
const (
	release   = "efs-health-agent"
	namespace = "efs-health"
	selector  = "app.kubernetes.io/name=efs-health-agent,app.kubernetes.io/instance=" + release
	container = "efs-health-agent"
	port      = 9910
	// volumesNS holds the pods whose volumes the tests mount.
	volumesNS = "efs-e2e-volumes"
)

// EnvAgentImage is the agent's OCI archive (make image), EnvHelm the helm
// binary.
const (
	EnvAgentImage = "K8S_E2E_AGENT_IMAGE"
	EnvHelm       = "K8S_E2E_HELM"
)

// chartSettings are the only values the tests set, each because this
// node differs from an EKS node (docs/kubernetes-node.md): it has no NFS
// client, so the volumes are tmpfs and FUSE, and discovery must look for
// those types instead of nfs4 and nfs.
var chartSettings = []string{"discoverFSTypes=tmpfs\\,fuse.faultfs"}

// repoRoot is the repository's root, from this package's directory.
const repoRoot = "../../.."

// render is helm template of the chart with its defaults and
// chartSettings plus extra (--set values).
func render(t *testing.T, extra ...string) []byte {
	t.Helper()
	helm := os.Getenv(EnvHelm)
	if helm == "" {
		helm = "helm"
	}
	args := []string{"template", release, filepath.Join(repoRoot, "deploy/helm/efs-health-agent"), "--namespace", namespace}
	for _, s := range append(append([]string{}, chartSettings...), extra...) {
		args = append(args, "--set", s)
	}
	out, err := exec.Command(helm, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("helm %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// agent is the chart installed on the node.
type agent struct {
	n         *node.Node
	manifests []byte
	base      string // http://<node IP>:9910
}

var importOnce struct {
	sync.Once
	err error
}

// install imports the agent's image (once), creates the namespace and
// the Prometheus Operator's kinds the chart uses, applies the chart and
// waits until its pod is Ready; the test's end uninstalls it.
func install(t *testing.T, n *node.Node, extra ...string) *agent {
	t.Helper()
	archive := os.Getenv(EnvAgentImage)
	if archive == "" {
		testutil.Require(t, fmt.Errorf("needs %s, the agent's OCI archive (run make k8s-e2e)", EnvAgentImage))
	}
	ctx := context.Background()
	importOnce.Do(func() { importOnce.err = n.ImportImage(ctx, archive) })
	if importOnce.err != nil {
		t.Fatal(importOnce.err)
	}
	a := &agent{n: n, manifests: render(t, extra...), base: fmt.Sprintf("http://%s:%d", n.IP, port)}
	// The image the chart asks for must be the one make image built, under
	// the name kubelet resolves the chart's reference to.
	ref := a.image(t)
	images, err := n.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(images, normalize(ref)) {
		t.Fatalf("the chart's image %q (%s) is not what make image built; containerd has %v", ref, normalize(ref), images)
	}
	crds, err := os.ReadFile("testdata/monitoring-crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n.Apply(t, crds)
	n.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+namespace+"\n"))
	n.Apply(t, a.manifests)
	t.Cleanup(func() { n.Delete(t, a.manifests) })
	return a
}

// image is the container image of the chart's DaemonSet.
func (a *agent) image(t *testing.T) string {
	objs, err := node.Objects(a.manifests)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" {
			continue
		}
		cs, _, _ := unstructuredSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range cs {
			if m, ok := c.(map[string]any); ok && m["name"] == container {
				return m["image"].(string)
			}
		}
	}
	t.Fatal("no DaemonSet with the agent's container in the chart's output")
	return ""
}

func unstructuredSlice(obj map[string]any, fields ...string) ([]any, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, nil
		}
		cur = m[f]
	}
	s, ok := cur.([]any)
	return s, ok, nil
}

// normalize is the reference as containerd and kubelet name it: a name
// without a registry is on docker.io, a one-part one under library/.
func normalize(ref string) string {
	name := ref
	if !strings.Contains(name, ":") && !strings.Contains(name, "@") {
		name += ":latest"
	}
	first, _, found := strings.Cut(name, "/")
	if !found {
		return "docker.io/library/" + name
	}
	if !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io/" + name
	}
	return name
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// pod waits for the agent's pod to be Ready and returns it.
func (a *agent) pod(t *testing.T, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	return a.n.WaitPod(t, namespace, selector, what, func(p *corev1.Pod) bool {
		return node.PodReady(p) && (cond == nil || cond(p))
	})
}

// restarts is the agent container's restart count, and its last
// termination's reason.
func restarts(p *corev1.Pod) (int32, string) {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == container {
			reason := ""
			if s.LastTerminationState.Terminated != nil {
				reason = s.LastTerminationState.Terminated.Reason
			}
			return s.RestartCount, reason
		}
	}
	return -1, ""
}

// get is a GET of one of the agent's paths: its status and body.
func (a *agent) get(path string) (int, []byte, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(a.base + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// mountStatus is an entry of /healthz/mounts.
type mountStatus struct {
	MountPath string `json:"mountPath"`
	IsHealthy bool   `json:"isHealthy"`
	State     string `json:"state"`
	Reason    string `json:"reason"`
	FSType    string `json:"fsType"`
	PodUID    string `json:"podUid"`
	Volume    string `json:"volume"`
}

func (a *agent) mounts() (map[string]mountStatus, error) {
	code, body, err := a.get("/healthz/mounts")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/healthz/mounts: %d", code)
	}
	var ms map[string]mountStatus
	return ms, json.Unmarshal(body, &ms)
}

// waitMount waits until the agent reports path in state.
func (a *agent) waitMount(t *testing.T, path, state string) mountStatus {
	t.Helper()
	var got mountStatus
	a.n.Wait(t, fmt.Sprintf("the agent to report %s %s", path, state), func(context.Context) error {
		ms, err := a.mounts()
		if err != nil {
			return err
		}
		m, ok := ms[path]
		if !ok {
			return fmt.Errorf("not reported (%d mounts)", len(ms))
		}
		if m.State != state {
			return fmt.Errorf("state %s", m.State)
		}
		got = m
		return nil
	})
	return got
}

// volumeOwner is a pod whose directory under kubelet's pods directory
// holds the tests' volumes, as a pod using an EFS volume would: the
// sandbox image only, on the pod network.
func volumeOwner(t *testing.T, n *node.Node, name string) *corev1.Pod {
	t.Helper()
	n.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+volumesNS+"\n"))
	n.Apply(t, fmt.Appendf(nil, `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels:
    app: %s
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: k8s-e2e.local/pause:static
    imagePullPolicy: Never
`, name, volumesNS, name))
	p := n.WaitPod(t, volumesNS, "app="+name, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	t.Cleanup(func() {
		ctx := context.Background()
		_ = n.Client.CoreV1().Pods(volumesNS).Delete(ctx, name, metav1.DeleteOptions{})
	})
	return p
}

// volumeDir is where a CSI volume named vol of pod is mounted.
func volumeDir(pod *corev1.Pod, vol string) string {
	return filepath.Join(node.PodsDir, string(pod.UID), "volumes", "kubernetes.io~csi", vol, "mount")
}

// mountTmpfs mounts a tmpfs volume vol for pod, unmounted at the end.
func mountTmpfs(t *testing.T, pod *corev1.Pod, vol string) string {
	t.Helper()
	d := volumeDir(pod, vol)
	if err := os.MkdirAll(d, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", d, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", d, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(d, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", d, err)
		}
	})
	return d
}

// mountFaultFS mounts a fault filesystem volume vol for pod over a fresh
// backing directory in the run's directory; it is unmounted at the end.
func mountFaultFS(t *testing.T, n *node.Node, pod *corev1.Pod, vol string) (*faultfs.FS, string) {
	t.Helper()
	d := volumeDir(pod, vol)
	if err := os.MkdirAll(d, 0o750); err != nil {
		t.Fatal(err)
	}
	backing, err := os.MkdirTemp(n.Dir, "faultfs-")
	if err != nil {
		t.Fatal(err)
	}
	f, err := faultfs.Mount(d, backing, faultfs.Options{Source: "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", d, err)
		}
	})
	return f, backing
}

// noProbeFiles waits until no probe file is left in dirs: a check that
// was hung removes its file once its call returns.
func noProbeFiles(t *testing.T, n *node.Node, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		n.Wait(t, "no probe file left in "+d, func(context.Context) error {
			if left := probeFiles(t, d); len(left) > 0 {
				return fmt.Errorf("left: %v", left)
			}
			return nil
		})
	}
}

// probeFiles lists the agent's probe files left in dir.
func probeFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".efs-health-probe-") {
			left = append(left, e.Name())
		}
	}
	return left
}

// probeCounts reads kubelet's own prober_probe_total for the agent's pod:
// by probe type and result.
func probeCounts(t *testing.T, n *node.Node, pod string) map[string]float64 {
	t.Helper()
	body, err := n.KubeletGet(context.Background(), "/metrics/probes")
	if err != nil {
		t.Fatalf("kubelet /metrics/probes: %v", err)
	}
	counts := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "prober_probe_total{") || !strings.Contains(line, `pod="`+pod+`"`) {
			continue
		}
		labels, value, _ := strings.Cut(line[len("prober_probe_total{"):], "} ")
		var typ, result string
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "probe_type":
				typ = v
			case "result":
				result = v
			}
		}
		var f float64
		fmt.Sscan(value, &f)
		counts[typ+"/"+result] += f
	}
	return counts
}

// containerCgroup is the memory cgroup directory of the agent's container
// under kubelet's cgroup root (cgroup v1's memory hierarchy, or v2).
func containerCgroup(t *testing.T, n *node.Node, p *corev1.Pod) string {
	t.Helper()
	var id string
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == container {
			_, id, _ = strings.Cut(s.ContainerID, "://")
		}
	}
	if id == "" {
		t.Fatal("no container ID")
	}
	for _, h := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		var found string
		_ = filepath.WalkDir(filepath.Join(h, n.CgroupRoot), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && d.Name() == id && strings.Contains(path, "pod"+string(p.UID)) {
				found = path
				return filepath.SkipAll
			}
			return nil
		})
		if found != "" {
			return found
		}
	}
	t.Fatalf("no memory cgroup of container %s", id)
	return ""
}

func readInt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v int64
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}
