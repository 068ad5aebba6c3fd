package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/efs-health-agent"

// Pinned tool versions; make test installs exactly these (make deploy-tools).
const (
	// kubectlValidateK8s is the newest Kubernetes version whose schemas
	// kubectl-validate v0.0.4 carries built in (no network needed).
	kubectlValidateK8s = "1.30"
	// promOperatorModule ships the Prometheus Operator CRDs in
	// example/prometheus-operator-crd; the Go module proxy serves it.
	promOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
)

// tool finds a deployment tool: skipped without it outside CI, a failure
// in CI. make test puts the pinned builds on PATH (make deploy-tools).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not on PATH; make test builds it into .cache/tools and puts it there", name)
		}
		t.Skipf("%s not on PATH (make test builds it into .cache/tools and puts it there)", name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s\n%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func envOf(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// helmTemplate renders the chart as release efs-health-agent in kube-system
// with the given --set values.
func helmTemplate(t *testing.T, helm string, set ...string) []byte {
	t.Helper()
	args := []string{"template", "efs-health-agent", chartDir, "--namespace", "kube-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return run(t, helm, args...)
}

func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSep.Split(string(b), -1) {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// TestHelmChart lints the chart in both modes and checks that its defaults
// are the kustomize base's (daemonset) and sidecar component's (sidecar).
func TestHelmChart(t *testing.T) {
	helm := tool(t, "helm")
	for _, mode := range []string{"daemonset", "sidecar"} {
		run(t, helm, "lint", "--strict", chartDir, "--set", "mode="+mode)
	}
	if out, err := exec.Command(helm, "template", "x", chartDir, "--set", "mode=both").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), `mode must be daemonset or sidecar, not "both"`) {
		t.Errorf("a bad mode is not refused by name: %v\n%s", err, out)
	}

	base := build(t, "kustomize/base")
	chart := decodeAll(t, "helm daemonset", splitDocs(helmTemplate(t, helm)))
	for _, k := range []string{"DaemonSet/efs-health-agent", "Service/efs-health-agent", "ServiceAccount/efs-health-agent",
		"PodMonitor/efs-health-agent", "PrometheusRule/efs-health-agent", "ConfigMap/efs-health-agent-dashboard"} {
		if chart[k] == nil || base[k] == nil {
			t.Fatalf("%s missing: chart %v, kustomize %v", k, chart[k] != nil, base[k] != nil)
		}
	}
	// The pod is the kustomize base's but for the chart's extra labels.
	hds, kds := chart["DaemonSet/efs-health-agent"].(*appsv1.DaemonSet), base["DaemonSet/efs-health-agent"].(*appsv1.DaemonSet)
	linuxOnly(t, "chart", hds)
	if !reflect.DeepEqual(hds.Spec.Template.Spec, kds.Spec.Template.Spec) {
		t.Errorf("chart pod spec differs from the kustomize base:\nhelm:      %+v\nkustomize: %+v", hds.Spec.Template.Spec, kds.Spec.Template.Spec)
	}
	if !reflect.DeepEqual(hds.Spec.UpdateStrategy, kds.Spec.UpdateStrategy) {
		t.Errorf("update strategy %+v, kustomize %+v", hds.Spec.UpdateStrategy, kds.Spec.UpdateStrategy)
	}
	hpm, kpm := chart["PodMonitor/efs-health-agent"].(*monitoringv1.PodMonitor), base["PodMonitor/efs-health-agent"].(*monitoringv1.PodMonitor)
	if !reflect.DeepEqual(hpm.Spec.PodMetricsEndpoints, kpm.Spec.PodMetricsEndpoints) || hpm.Labels["release"] != kpm.Labels["release"] {
		t.Errorf("chart PodMonitor differs from the kustomize base: %+v %v", hpm.Spec.PodMetricsEndpoints, hpm.Labels)
	}
	hpr, kpr := chart["PrometheusRule/efs-health-agent"].(*monitoringv1.PrometheusRule), base["PrometheusRule/efs-health-agent"].(*monitoringv1.PrometheusRule)
	if !reflect.DeepEqual(hpr.Spec, kpr.Spec) || hpr.Labels["release"] != kpr.Labels["release"] {
		t.Error("chart PrometheusRule differs from deploy/prometheus/rules.yaml (make deploy-sync)")
	}
	for k := range chart {
		if strings.HasPrefix(k, "NetworkPolicy/") {
			t.Errorf("%s rendered: NetworkPolicy does not cover the agent's host-network pods", k)
		}
	}
	// The retired values are refused by name, not silently ignored.
	for set, want := range map[string]string{"sidecar.migrateProbes=true": "sidecar.migrateProbes is gone", "sidecar.bindNodeIP=true": "sidecar.bindNodeIP is gone",
		"networkPolicy.enabled=true": "networkPolicy is gone"} {
		if out, err := exec.Command(helm, "template", "x", chartDir, "--set", set).CombinedOutput(); err == nil || !strings.Contains(string(out), want) {
			t.Errorf("--set %s not refused with %q: %v\n%s", set, want, err, out)
		}
	}
	// Another kubelet root (the driver's node.kubeletPath): the agent
	// follows it in both modes; without the state directory mounted, no
	// volume of /var/run/efs at all.
	const kubelet = "/var/lib/k0s/kubelet"
	moved := decodeAll(t, "helm kubeletPath", splitDocs(helmTemplate(t, helm, "kubeletPath="+kubelet, "daemonset.mountEFSState=false")))["DaemonSet/efs-health-agent"].(*appsv1.DaemonSet)
	mc := container(t, moved, "efs-health-agent")
	if v := moved.Spec.Template.Spec.Volumes; len(v) != 1 || v[0].HostPath.Path != kubelet+"/pods" || len(mc.VolumeMounts) != 1 || mc.VolumeMounts[0].MountPath != kubelet+"/pods" {
		t.Errorf("kubeletPath=%s, mountEFSState=false: volumes %+v, mounts %+v", kubelet, v, mc.VolumeMounts)
	}
	if env := envOf(mc); env["HEALTH_DISCOVER_PREFIX"] != kubelet+"/pods" {
		t.Errorf("kubeletPath=%s: discovery prefix %q", kubelet, env["HEALTH_DISCOVER_PREFIX"])
	}
	movedPatch := decodeAll(t, "helm sidecar kubeletPath", splitDocs(helmTemplate(t, helm, "mode=sidecar", "kubeletPath="+kubelet)))["ConfigMap/efs-health-agent-csi-node-patch"].(*corev1.ConfigMap).Data["patch.yaml"]
	if !strings.Contains(movedPatch, "mountPath: "+kubelet+"\n") || !strings.Contains(movedPatch, `value: "`+kubelet+`/pods"`) {
		t.Errorf("sidecar patch with kubeletPath=%s:\n%s", kubelet, movedPatch)
	}
	hcm, kcm := chart["ConfigMap/efs-health-agent-dashboard"].(*corev1.ConfigMap), base["ConfigMap/efs-health-agent-dashboard"].(*corev1.ConfigMap)
	if hcm.Data["efs-health-agent.json"] != strings.TrimRight(kcm.Data["efs-health-agent.json"], "\n") || hcm.Labels["grafana_dashboard"] != "1" {
		t.Error("chart dashboard differs from deploy/kustomize/base/grafana/efs-health-agent.json (make deploy-sync)")
	}

	// Toggles.
	off := decodeAll(t, "helm toggles", splitDocs(helmTemplate(t, helm, "podMonitor.enabled=false", "prometheusRule.enabled=false",
		"dashboard.enabled=false", "podMonitor.labels.release=prom")))
	for k := range off {
		if strings.HasPrefix(k, "PodMonitor/") || strings.HasPrefix(k, "PrometheusRule/") || strings.HasPrefix(k, "NetworkPolicy/") || k == "ConfigMap/efs-health-agent-dashboard" {
			t.Errorf("%s rendered although disabled", k)
		}
	}

	// Sidecar mode: the patch ConfigMap applied to the driver's DaemonSet
	// gives exactly what the sidecar patch file (the kustomize component) gives.
	side := decodeAll(t, "helm sidecar", splitDocs(helmTemplate(t, helm, "mode=sidecar")))
	for k := range side {
		if strings.HasPrefix(k, "DaemonSet/") || strings.HasPrefix(k, "NetworkPolicy/") || strings.HasPrefix(k, "Service/") {
			t.Errorf("sidecar mode renders %s", k)
		}
	}
	spm := side["PodMonitor/efs-health-agent"].(*monitoringv1.PodMonitor)
	if !reflect.DeepEqual(spm.Spec.Selector.MatchLabels, map[string]string{"app": "efs-csi-node"}) {
		t.Errorf("sidecar PodMonitor selects %v, want the CSI node pods", spm.Spec.Selector.MatchLabels)
	}
	patch := side["ConfigMap/efs-health-agent-csi-node-patch"].(*corev1.ConfigMap).Data["patch.yaml"]
	node, err := os.ReadFile(standInFile)
	if err != nil {
		t.Fatal(err)
	}
	fs := filesys.MakeFsInMemory()
	for name, content := range map[string]string{
		"/k/kustomization.yaml": "namespace: kube-system\nresources:\n- efs-csi-node.yaml\npatches:\n- path: patch.yaml\n",
		"/k/efs-csi-node.yaml":  string(node),
		"/k/patch.yaml":         "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: efs-csi-node\n" + patch,
	} {
		if err := fs.WriteFile(name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	patched := decodeAll(t, "helm sidecar patch", kustomize(t, fs, "/k"))["DaemonSet/efs-csi-node"].(*appsv1.DaemonSet)
	component := decodeAll(t, "sidecar component", withSidecarComponent(t))["DaemonSet/efs-csi-node"].(*appsv1.DaemonSet)
	// The driver's containers (liveness-probe, efs-plugin and its probes)
	// come out of the chart's patch as they went in.
	driverUntouched(t, standIn(t), patched)
	if !reflect.DeepEqual(patched, component) {
		a, _ := json.MarshalIndent(patched.Spec.Template.Spec.Containers, "", " ")
		b, _ := json.MarshalIndent(component.Spec.Template.Spec.Containers, "", " ")
		t.Errorf("chart sidecar patch differs from the kustomize component:\nhelm:\n%s\nkustomize:\n%s", a, b)
	}
}

// TestSchemaValidation validates every object the chart (both modes) and
// the kustomizations render against the Kubernetes OpenAPI schemas and the
// Prometheus Operator CRDs, offline, with kubectl-validate.
func TestSchemaValidation(t *testing.T) {
	helm := tool(t, "helm")
	kv := tool(t, "kubectl-validate")
	dir := t.TempDir()
	write := func(name string, docs [][]byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Join(docs, []byte("\n---\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("helm-daemonset.yaml", splitDocs(helmTemplate(t, helm)))
	write("helm-sidecar.yaml", splitDocs(helmTemplate(t, helm, "mode=sidecar")))
	write("kustomize-base.yaml", kustomize(t, filesys.MakeFsOnDisk(), "kustomize/base"))
	write("kustomize-csi-sidecar.yaml", withSidecarComponent(t))

	// The CRDs come from the Prometheus Operator module in the module cache
	// (downloaded through the module proxy), not from the repository.
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(run(t, "go", "mod", "download", "-json", promOperatorModule), &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %v %s", promOperatorModule, err, mod.Error)
	}
	crds := filepath.Join(t.TempDir(), "crds")
	if err := os.Mkdir(crds, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		b, err := os.ReadFile(filepath.Join(mod.Dir, "example", "prometheus-operator-crd", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crds, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(kv, "--version", kubectlValidateK8s, "--local-crds", crds, "--output", "json", dir)
	// Offline: no cluster to ask.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "no-kubeconfig"))
	out, err := cmd.Output()
	var res map[string][]struct {
		Status, Message string
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("kubectl-validate: %v, output %s: %v", err, out, jerr)
	}
	n := 0
	for file, objs := range res {
		for i, o := range objs {
			n++
			if o.Status != "Success" {
				t.Errorf("%s object %d: %s", file, i, o.Message)
			}
		}
	}
	if len(res) != 4 || n < 15 {
		t.Errorf("validated %d objects in %d files, want every object of the 4 renderings: %s", n, len(res), out)
	}
	if err != nil && !t.Failed() {
		t.Errorf("kubectl-validate: %v\n%s", err, out)
	}
	t.Logf("kubectl-validate (Kubernetes %s, %s CRDs): %d objects in %d renderings valid", kubectlValidateK8s, promOperatorModule, n, len(res))
}

// TestChartFilesInSync: the chart carries copies of the rules and the
// dashboard (a chart cannot read outside its directory); make deploy-sync
// refreshes them.
func TestChartFilesInSync(t *testing.T) {
	for src, dst := range map[string]string{
		"prometheus/rules.yaml":                        chartDir + "/files/rules.yaml",
		"kustomize/base/grafana/efs-health-agent.json": chartDir + "/files/efs-health-agent.json",
	} {
		a, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run make deploy-sync", dst, src)
		}
	}
}

// TestMakeHelpListsEveryTarget: every target of the Makefile has a ## line
// that `make help` prints.
func TestMakeHelpListsEveryTarget(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	targets := regexp.MustCompile(`(?m)^([a-zA-Z0-9_-]+):`).FindAllStringSubmatch(string(mk), -1)
	if len(targets) < 10 {
		t.Fatalf("found only %d targets", len(targets))
	}
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not installed")
	}
	cmd := exec.Command(makeBin, "-s", "help")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make help: %v", err)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			listed[f[0]] = true
		}
	}
	for _, m := range targets {
		if !listed[m[1]] {
			t.Errorf("make help does not list %s", m[1])
		}
	}
}

// TestImageBuild: the image context leaves out the repository history, build
// output and the collector build, and `make image` stamps the version.
func TestImageBuild(t *testing.T) {
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(ignore), "\n") {
		have[strings.TrimSuffix(strings.TrimSpace(l), "/")] = true
	}
	for _, p := range []string{".git", "bin", "otel-collector/_build"} {
		if !have[p] {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "ARG VERSION") || !strings.Contains(string(df), "-X main.version=${VERSION}") ||
		!regexp.MustCompile(`docker build -f deploy/Dockerfile --build-arg VERSION=\$\(VERSION\)`).Match(mk) {
		t.Error("the image build does not pass VERSION through to -X main.version")
	}
}

// containerdName is the name containerd and kubelet give an image
// reference: no registry means docker.io, a one-part name there is under
// library/, no tag means latest (github.com/distribution/reference
// normalize.go, ParseNormalizedNamed and TagNameOnly).
func containerdName(ref string) string {
	name, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	first, rest, found := strings.Cut(name, "/")
	switch {
	case !found:
		name = "docker.io/library/" + name
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		name = "docker.io/" + name
	case first == "docker.io" && !strings.Contains(rest, "/"):
		name = "docker.io/library/" + rest
	}
	return name + ":" + tag
}

// makeImageName is the name `make image` gives the image it builds, with
// the Makefile's defaults (a calling make's variables and IMAGE* from the
// environment dropped).
func makeImageName(t *testing.T) string {
	t.Helper()
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not installed")
	}
	cmd := exec.Command(makeBin, "-s", "--no-print-directory", "image-name")
	cmd.Dir = ".."
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && !strings.HasPrefix(k, "IMAGE") && k != "APP_VERSION" {
			cmd.Env = append(cmd.Env, e)
		}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make image-name: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestChartImageIsMakeImage: with their defaults, the chart (both modes),
// the kustomize base and the sidecar patch file run the image `make image`
// builds, as containerd resolves the names, and its tag is the chart's
// appVersion: an operator who builds and loads it gets no ImagePullBackOff.
func TestChartImageIsMakeImage(t *testing.T) {
	helm := tool(t, "helm")
	want := containerdName(makeImageName(t))
	var chart struct{ AppVersion string }
	b, err := os.ReadFile(chartDir + "/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &chart); err != nil {
		t.Fatal(err)
	}
	if chart.AppVersion == "" || chart.AppVersion == "latest" || !strings.HasSuffix(want, ":"+chart.AppVersion) {
		t.Errorf("make image names %s; chart appVersion %q: want a release version, the image's tag", want, chart.AppVersion)
	}

	images := map[string]string{}
	ds := decodeAll(t, "helm daemonset", splitDocs(helmTemplate(t, helm)))["DaemonSet/efs-health-agent"].(*appsv1.DaemonSet)
	images["chart (daemonset)"] = container(t, ds, "efs-health-agent").Image
	if v := ds.Spec.Template.Labels["app.kubernetes.io/version"]; v != chart.AppVersion {
		t.Errorf("chart pod label app.kubernetes.io/version %q, want %q", v, chart.AppVersion)
	}
	images["kustomize base"] = container(t, build(t, "kustomize/base")["DaemonSet/efs-health-agent"].(*appsv1.DaemonSet), "efs-health-agent").Image
	patch := decodeAll(t, "helm sidecar", splitDocs(helmTemplate(t, helm, "mode=sidecar")))["ConfigMap/efs-health-agent-csi-node-patch"].(*corev1.ConfigMap).Data["patch.yaml"]
	var sidecar appsv1.DaemonSet
	if err := yaml.UnmarshalStrict([]byte(patch), &sidecar); err != nil || len(sidecar.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("chart sidecar patch: %v\n%s", err, patch)
	}
	images["chart (sidecar patch)"] = sidecar.Spec.Template.Spec.Containers[0].Image
	b, err = os.ReadFile(patchFile)
	if err != nil {
		t.Fatal(err)
	}
	var file appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &file); err != nil || len(file.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: %v", patchFile, err)
	}
	images[patchFile] = file.Spec.Template.Spec.Containers[0].Image
	images["kustomize sidecar component"] = container(t, decodeAll(t, "sidecar component", withSidecarComponent(t))["DaemonSet/efs-csi-node"].(*appsv1.DaemonSet), "efs-health-agent").Image
	for what, img := range images {
		if containerdName(img) != want {
			t.Errorf("%s runs image %q (%s), make image builds %s", what, img, containerdName(img), want)
		}
	}

	// image.tag and image.repository still choose another image.
	other := decodeAll(t, "helm image", splitDocs(helmTemplate(t, helm, "image.repository=registry.example/efs-health-agent", "image.tag=1.2.3")))["DaemonSet/efs-health-agent"].(*appsv1.DaemonSet)
	if img := container(t, other, "efs-health-agent").Image; img != "registry.example/efs-health-agent:1.2.3" {
		t.Errorf("image.repository and image.tag set: image %q", img)
	}
}
