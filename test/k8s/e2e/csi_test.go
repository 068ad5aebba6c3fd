//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/e2e/node"
)

// EnvCSIImages is the directory holding the stand-in driver's three OCI
// archives (make k8s-e2e builds them from test/k8s/cmd/csi-standin), one
// per image of upstream's DaemonSet: <name>.oci.tar for each name of
// standinImages.
const EnvCSIImages = "K8S_E2E_CSI_IMAGES"

// standinImages replaces each image of upstream's node DaemonSet (v3.4.1)
// by the stand-in's, and is the only change made to its containers:
// upstream's images cannot be pulled here (no registry is reachable), so
// one binary built from the project's CSI node plugin
// (test/k8s/cmd/csi-standin) plays each container under its image's
// entrypoint name, with upstream's container names, arguments, ports and
// probes as the DaemonSet sets them.
var standinImages = map[string]string{
	"public.ecr.aws/efs-csi-driver/amazon/aws-efs-csi-driver:v3.4.1":             "k8s-e2e.local/aws-efs-csi-driver:v3.4.1-standin",
	"public.ecr.aws/csi-components/csi-node-driver-registrar:v2.17.0-eksbuild.3": "k8s-e2e.local/csi-node-driver-registrar:v2.17.0-standin",
	"public.ecr.aws/csi-components/livenessprobe:v2.19.0-eksbuild.3":             "k8s-e2e.local/livenessprobe:v2.19.0-standin",
}

// hostDirs moves the two efs-utils configuration directories of the
// DaemonSet (hostPath DirectoryOrCreate) under kubelet's directory: on
// this node /var/lib is the run's own directory, while /var/amazon and
// /etc/amazon would be created on the machine running the test. On an
// EKS node they are efs-utils' own; the stand-in does not read them.
var hostDirs = map[string]string{
	"/var/amazon/efs": "/var/lib/efs-e2e-host/var-amazon-efs",
	"/etc/amazon/efs": "/var/lib/efs-e2e-host/etc-amazon-efs",
}

const (
	driverNS       = "kube-system"
	driverDS       = "efs-csi-node"
	driverSelector = "app=efs-csi-node"
	driverName     = "efs.csi.aws.com"
	// sourceRoot is where the stand-in driver finds a volume's source,
	// <sourceRoot>/<file system id> (driver.DefaultSourceRoot in
	// test/k8s/csistandin/driver).
	sourceRoot = "/var/lib/kubelet/efs-csi-standin"
)

// driverContainers are upstream's containers of the node DaemonSet.
var driverContainers = []string{"efs-plugin", "csi-driver-registrar", "liveness-probe"}

var csiImportOnce struct {
	sync.Once
	err error
}

// upstreamDriver is the driver as upstream's kustomize base installs its
// node side: the ServiceAccount, RBAC and CSIDriver
// (testdata/efs-csi-driver-v3.4.1.yaml) and the node DaemonSet, the
// repository's fixture deploy/testdata/efs-csi-node-v3.4.1.yaml in
// namespace kube-system, with the stand-in's images and hostDirs.
func upstreamDriver(t *testing.T) []byte {
	t.Helper()
	base, err := os.ReadFile("testdata/efs-csi-driver-v3.4.1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/testdata/efs-csi-node-v3.4.1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := node.Objects(raw)
	if err != nil || len(objs) != 1 || objs[0].GetKind() != "DaemonSet" {
		t.Fatalf("the v3.4.1 node DaemonSet fixture: %d objects, %v", len(objs), err)
	}
	ds := objs[0]
	ds.SetNamespace(driverNS)
	spec := ds.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	replaced := 0
	for _, c := range spec["containers"].([]any) {
		c := c.(map[string]any)
		img, ok := standinImages[c["image"].(string)]
		if !ok {
			t.Fatalf("container %s: image %s has no stand-in", c["name"], c["image"])
		}
		c["image"] = img
		replaced++
	}
	for _, v := range spec["volumes"].([]any) {
		hp, ok := v.(map[string]any)["hostPath"].(map[string]any)
		if !ok {
			continue
		}
		if p, ok := hostDirs[strings.TrimSuffix(hp["path"].(string), "/")]; ok {
			hp["path"] = p
		}
	}
	if replaced != len(standinImages) {
		t.Fatalf("replaced %d images, want %d", replaced, len(standinImages))
	}
	out, err := yaml.Marshal(ds.Object)
	if err != nil {
		t.Fatal(err)
	}
	return append(append(base, "\n---\n"...), out...)
}

// installDriver imports the stand-in's images (once), installs the
// driver and waits until its pod is Ready and kubelet has registered the
// driver through the registrar (the CSINode object names it, with the
// node id from NodeGetInfo). The test's end removes it.
func installDriver(t *testing.T, n *node.Node) *corev1.Pod {
	t.Helper()
	dir := os.Getenv(EnvCSIImages)
	if dir == "" {
		t.Fatalf("needs %s, the stand-in driver's OCI archives (run make k8s-e2e)", EnvCSIImages)
	}
	ctx := context.Background()
	csiImportOnce.Do(func() {
		for _, ref := range standinImages {
			name := strings.TrimPrefix(ref[:strings.LastIndex(ref, ":")], "k8s-e2e.local/")
			if err := n.ImportImage(ctx, filepath.Join(dir, name+".oci.tar")); err != nil {
				csiImportOnce.err = err
				return
			}
		}
	})
	if csiImportOnce.err != nil {
		t.Fatal(csiImportOnce.err)
	}
	manifests := upstreamDriver(t)
	n.Apply(t, manifests)
	t.Cleanup(func() { n.Delete(t, manifests) })
	pod := n.WaitPod(t, driverNS, driverSelector, "Ready", node.PodReady)
	n.Wait(t, "kubelet to register "+driverName, func(ctx context.Context) error {
		cn, err := n.Client.StorageV1().CSINodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, d := range cn.Spec.Drivers {
			if d.Name == driverName {
				if d.NodeID != n.Name {
					return fmt.Errorf("node id %q, want %q", d.NodeID, n.Name)
				}
				return nil
			}
		}
		return fmt.Errorf("CSINode drivers %v", cn.Spec.Drivers)
	})
	return pod
}

// containerState is one container's restart count and last termination
// reason.
func containerState(p *corev1.Pod, name string) (restarts int32, reason string, ok bool) {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			if s.LastTerminationState.Terminated != nil {
				reason = s.LastTerminationState.Terminated.Reason
			}
			return s.RestartCount, reason, true
		}
	}
	return 0, "", false
}

// containerPID is the first process of a container (its init), from its
// cgroup.
func containerPID(t *testing.T, n *node.Node, p *corev1.Pod, name string) (pid int, cgroup string) {
	t.Helper()
	var id string
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			_, id, _ = strings.Cut(s.ContainerID, "://")
		}
	}
	if id == "" {
		t.Fatalf("no container %s in pod %s", name, p.Name)
	}
	for _, h := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		var found string
		_ = filepath.WalkDir(filepath.Join(h, n.CgroupRoot), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && d.Name() == id {
				found = path
				return filepath.SkipAll
			}
			return nil
		})
		if found == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(found, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		pid, err := strconv.Atoi(first)
		if err != nil {
			t.Fatalf("cgroup.procs of %s: %q", name, b)
		}
		return pid, found
	}
	t.Fatalf("no cgroup of container %s (%s)", name, id)
	return 0, ""
}

// importAgentImage imports make image's archive, as install does.
func importAgentImage(t *testing.T, n *node.Node) {
	t.Helper()
	archive := os.Getenv(EnvAgentImage)
	if archive == "" {
		t.Fatalf("needs %s, the agent's OCI archive (run make k8s-e2e)", EnvAgentImage)
	}
	importOnce.Do(func() { importOnce.err = n.ImportImage(context.Background(), archive) })
	if importOnce.err != nil {
		t.Fatal(importOnce.err)
	}
}

// specOf is a container of p by name, withoutToken.
func specOf(p *corev1.Pod, name string) (corev1.Container, bool) {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return withoutToken(c), true
		}
	}
	return corev1.Container{}, false
}

// withoutToken is c without the ServiceAccount token's volume mount,
// whose name differs in every pod (kube-api-access-<random>).
func withoutToken(c corev1.Container) corev1.Container {
	var mounts []corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(m.Name, "kube-api-access-") {
			mounts = append(mounts, m)
		}
	}
	c.VolumeMounts = mounts
	return c
}

// sidecarPatch is the chart's sidecar patch, applied as deploy/README.md
// tells operators: kubectl -n kube-system patch daemonset efs-csi-node
// --type strategic --patch-file
// deploy/kustomize/components/csi-sidecar/sidecar-patch.yaml (kubectl
// sends the file as a strategic merge patch, in JSON). Its image is the
// chart's default, the one make image built.
func sidecarPatch(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/kustomize/components/csi-sidecar/sidecar-patch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestSidecar is scenario 4: upstream's node DaemonSet, installed first
// as upstream installs it, patched with the chart's sidecar patch. The
// driver's pod runs the agent beside efs-plugin; killing the agent and
// OOM-killing it restart the agent's container only: the driver's
// containers keep 0 restarts, in the same pod.
func TestSidecar(t *testing.T) {
	n := node.Shared(t)
	importAgentImage(t, n) // the chart's own DaemonSet stays off: it would take the sidecar's port
	before := installDriver(t, n)
	ctx := context.Background()
	if _, err := n.Client.AppsV1().DaemonSets(driverNS).Patch(ctx, driverDS, types.StrategicMergePatchType, sidecarPatch(t),
		metav1.PatchOptions{FieldManager: "kubectl-patch"}); err != nil {
		t.Fatalf("kubectl patch: %v", err)
	}
	pod := n.WaitPod(t, driverNS, driverSelector, "Ready with the agent", func(p *corev1.Pod) bool {
		_, _, ok := containerState(p, container)
		return ok && p.UID != before.UID && node.PodReady(p)
	})
	for _, c := range before.Spec.Containers {
		got, ok := specOf(pod, c.Name)
		if !ok || !equality.Semantic.DeepEqual(got, withoutToken(c)) {
			t.Fatalf("the patch changed the driver's container %s:\n%+v\nwas\n%+v", c.Name, got, withoutToken(c))
		}
	}
	t.Logf("PASS: the patched pod %s runs %d containers, the driver's unchanged", pod.Name, len(pod.Spec.Containers))

	driverKept := func(p *corev1.Pod) error {
		for _, c := range driverContainers {
			if r, reason, _ := containerState(p, c); r != 0 {
				return fmt.Errorf("the driver's container %s restarted %d times (%s)", c, r, reason)
			}
		}
		return nil
	}
	waitAgent := func(what string, restarts int32, reason string) *corev1.Pod {
		t.Helper()
		var p *corev1.Pod
		n.Wait(t, what, func(ctx context.Context) error {
			got, err := n.Client.CoreV1().Pods(driverNS).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if err := driverKept(got); err != nil {
				t.Fatal(err)
			}
			r, why, _ := containerState(got, container)
			if r < restarts || (reason != "" && why != reason) || !node.PodReady(got) {
				return fmt.Errorf("agent restarts %d (%s), pod ready %v", r, why, node.PodReady(got))
			}
			p = got
			return nil
		})
		return p
	}

	// A crash: the agent's process is killed.
	pid, _ := containerPID(t, n, pod, container)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitAgent("the agent to be restarted after a crash", 1, "Error")
	t.Log("PASS: agent killed, restarted; efs-plugin, csi-driver-registrar and liveness-probe 0 restarts")

	// An OOM kill: its memory cgroup runs out. A process that only
	// allocates joins the agent's cgroup; the agent is made the OOM
	// killer's choice (oom_score_adj 1000, which needs no privilege), so
	// the kernel kills the agent for its container's limit.
	cur := waitAgent("the agent Ready again", 1, "")
	pid, cg := containerPID(t, n, cur, container)
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte("1000"), 0o644); err != nil {
		t.Fatal(err)
	}
	hog := exec.Command("sh", "-c", "read go; exec tail /dev/zero")
	stdin, err := hog.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hog.Process.Kill(); _ = hog.Wait() }()
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(hog.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	after := waitAgent("the agent to be OOMKilled and restarted", 2, "OOMKilled")
	if after.UID != pod.UID {
		t.Fatalf("the pod was replaced")
	}
	t.Log("PASS: agent OOMKilled, restarted; the driver's containers 0 restarts, same pod")
}

// kubeletMetric is the value of a sample of kubelet's /metrics whose line
// starts with name{ and carries every label of labels; ok is false when
// there is none.
func kubeletMetric(ctx context.Context, n *node.Node, name string, labels ...string) (float64, bool, error) {
	body, err := n.KubeletGet(ctx, "/metrics")
	if err != nil {
		return 0, false, err
	}
next:
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		var v float64
		_, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
		return v, err == nil, err
	}
	return 0, false, nil
}

// TestKubeletCSIClient is scenario 5: kubelet is the plugin's CSI client.
// A PersistentVolume of the driver, a claim bound to it and a pod using
// the claim: kubelet publishes the volume (the stand-in bind-mounts the
// FUSE fault filesystem at the pod's target), and with CSIVolumeHealth on
// it calls NodeGetVolumeStats by itself and reports the condition:
//   - its gauge kubelet_volume_stats_health_status_abnormal, by claim
//     (volumeStatsCollector, pkg/kubelet/metrics/collectors/volume_stats.go,
//     kubernetes v1.34.2), from the condition NodeGetVolumeStats returned
//     (csiDriverClient.NodeGetVolumeStats, pkg/volume/csi/csi_client.go);
//   - the pod event VolumeConditionAbnormal, "Volume <name>: <message>"
//     (volumeStatCalculator.calcAndStoreStats,
//     pkg/kubelet/server/stats/volume_stat_calculator.go).
//
// When the volume hangs, kubelet reports it abnormal, and every
// NodeGetVolumeStats kubelet made succeeded within a second by kubelet's
// own csi_operations_seconds (pkg/volume/util/metrics.go), far inside its
// deadline, csiTimeout, 2 minutes (pkg/volume/csi/csi_plugin.go).
func TestKubeletCSIClient(t *testing.T) {
	n := node.Shared(t)
	installDriver(t, n)
	const (
		fsID  = "fs-0123456789abcdef0"
		ns    = "efs-e2e-csi"
		pv    = "efs-pv"
		claim = "efs-claim"
	)
	source := filepath.Join(sourceRoot, fsID)
	if err := os.MkdirAll(source, 0o750); err != nil {
		t.Fatal(err)
	}
	backing, err := os.MkdirTemp(n.Dir, "efs-source-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(backing, "hello"), []byte("from EFS"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := faultfs.Mount(source, backing, faultfs.Options{Source: fsID + ".efs.us-east-1.amazonaws.com:/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fs.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", source, err)
		}
	})

	manifests := fmt.Appendf(nil, `apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: %[2]s
spec:
  capacity:
    storage: 5Gi
  volumeMode: Filesystem
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  csi:
    driver: %[4]s
    volumeHandle: %[5]s
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: %[3]s
  namespace: %[1]s
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: %[2]s
  resources:
    requests:
      storage: 5Gi
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: %[1]s
  labels:
    app: efs-app
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: k8s-e2e.local/pause:static
    imagePullPolicy: Never
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: %[3]s
`, ns, pv, claim, driverName, fsID)
	n.Apply(t, manifests)
	t.Cleanup(func() {
		fs.Clear() // lets kubelet's unpublish and the checks go
		n.Delete(t, manifests)
	})
	app := n.WaitPod(t, ns, "app=efs-app", "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	target := filepath.Join(node.PodsDir, string(app.UID), "volumes", "kubernetes.io~csi", pv, "mount")
	b, err := os.ReadFile(filepath.Join(target, "hello"))
	if err != nil || string(b) != "from EFS" {
		t.Fatalf("kubelet's NodePublishVolume: the target %s shows %q, %v", target, b, err)
	}
	t.Logf("PASS: kubelet published %s at %s (the claim's pod Running)", fsID, target)

	pvcLabels := []string{`namespace="` + ns + `"`, `persistentvolumeclaim="` + claim + `"`}
	abnormal := func(want float64) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			v, ok, err := kubeletMetric(ctx, n, "kubelet_volume_stats_health_status_abnormal", pvcLabels...)
			switch {
			case err != nil:
				return err
			case !ok:
				return fmt.Errorf("no kubelet_volume_stats_health_status_abnormal for the claim yet")
			case v != want:
				return fmt.Errorf("kubelet_volume_stats_health_status_abnormal %v", v)
			}
			return nil
		}
	}
	// kubelet computes volume stats every volumeStatsAggPeriod (1 minute).
	n.WaitWithin(t, 2*node.WaitTimeout, "kubelet to report the volume healthy", abnormal(0))
	t.Log("PASS: kubelet_volume_stats_health_status_abnormal 0 for the claim")

	fs.Set(faultfs.OpAll, faultfs.Fault{Hang: true})
	n.WaitWithin(t, 2*node.WaitTimeout, "kubelet to report the hung volume abnormal", abnormal(1))
	t.Log("PASS: the volume hung: kubelet_volume_stats_health_status_abnormal 1")
	var event string
	n.Wait(t, "the pod event VolumeConditionAbnormal", func(ctx context.Context) error {
		evs, err := n.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=app,reason=VolumeConditionAbnormal"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "hung") {
				event = e.Message
				return nil
			}
		}
		return fmt.Errorf("%d events", len(evs.Items))
	})
	t.Logf("PASS: event VolumeConditionAbnormal: %s", event)

	// Every NodeGetVolumeStats kubelet made (while the volume hung too)
	// answered OK within 1 s, by kubelet's own histogram.
	method := `method_name="/csi.v1.Node/NodeGetVolumeStats"`
	ctx := context.Background()
	total, ok, err := kubeletMetric(ctx, n, "csi_operations_seconds_count", `driver_name="`+driverName+`"`, method, `grpc_status_code="OK"`)
	if err != nil || !ok || total < 2 {
		t.Fatalf("kubelet's NodeGetVolumeStats calls: %v %v %v", total, ok, err)
	}
	within, _, err := kubeletMetric(ctx, n, "csi_operations_seconds_bucket", `driver_name="`+driverName+`"`, method, `grpc_status_code="OK"`, `le="1"`)
	if err != nil || within != total {
		t.Fatalf("kubelet's NodeGetVolumeStats calls: %v of %v within 1 s (%v)", within, total, err)
	}
	failed, _, err := kubeletMetric(ctx, n, "csi_operations_seconds_count", `driver_name="`+driverName+`"`, method, `grpc_status_code="DeadlineExceeded"`)
	if err != nil || failed != 0 {
		t.Fatalf("kubelet's NodeGetVolumeStats calls past the deadline: %v (%v)", failed, err)
	}
	t.Logf("PASS: kubelet's %v NodeGetVolumeStats calls all answered OK within 1 s (its deadline: 2 min)", total)
}
