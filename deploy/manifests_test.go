package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

// build runs kustomize on dir and decodes every object strictly (unknown
// fields are errors) into its typed Kubernetes struct.
func build(t *testing.T, dir string) map[string]any {
	t.Helper()
	return decodeAll(t, dir, kustomize(t, filesys.MakeFsOnDisk(), dir))
}

// kustomize runs kustomize on dir of fs and returns the objects as YAML
// documents.
func kustomize(t *testing.T, fs filesys.FileSystem, dir string) [][]byte {
	t.Helper()
	docs, err := kustomizeErr(fs, dir)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func kustomizeErr(fs filesys.FileSystem, dir string) ([][]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(fs, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var docs [][]byte
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
		}
		docs = append(docs, y)
	}
	return docs, nil
}

// decodeAll decodes YAML documents strictly into their typed Kubernetes
// structs, keyed Kind/name.
func decodeAll(t *testing.T, what string, docs [][]byte) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, y := range docs {
		var meta struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal(y, &meta); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if meta.Kind == "" {
			continue // an empty document
		}
		var obj any
		switch meta.Kind {
		case "DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "Service":
			obj = &corev1.Service{}
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		case "PodMonitor":
			obj = &monitoringv1.PodMonitor{}
		case "PrometheusRule":
			obj = &monitoringv1.PrometheusRule{}
		default:
			t.Fatalf("%s: unexpected kind %s", what, meta.Kind)
		}
		if err := yaml.UnmarshalStrict(y, obj); err != nil {
			t.Fatalf("%s %s/%s does not decode strictly: %v", what, meta.Kind, meta.Metadata.Name, err)
		}
		out[meta.Kind+"/"+meta.Metadata.Name] = obj
	}
	return out
}

func container(t *testing.T, ds *appsv1.DaemonSet, name string) corev1.Container {
	t.Helper()
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q in %s", name, ds.Name)
	return corev1.Container{}
}

// probe asserts a probe against the design document's values.
func probe(t *testing.T, what string, p *corev1.Probe, path string, delay, timeout, period, failures int32) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("%s: no HTTP probe", what)
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.IntValue() != 9910 {
		t.Errorf("%s: %s on %s, want %s on 9910", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
	if delay >= 0 && (p.InitialDelaySeconds != delay || p.TimeoutSeconds != timeout || p.PeriodSeconds != period) {
		t.Errorf("%s: timings %d/%d/%d, want %d/%d/%d", what, p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, delay, timeout, period)
	}
	if p.FailureThreshold != failures {
		t.Errorf("%s: failureThreshold %d, want %d", what, p.FailureThreshold, failures)
	}
	routes := httpapi.Routes(httpapi.Options{})
	found := false
	for _, r := range routes {
		found = found || r == path
	}
	if !found {
		t.Errorf("%s: %s is not a route the agent serves (%v)", what, path, routes)
	}
}

func leastPrivilege(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil {
		t.Fatalf("%s: not least privilege: %+v", c.Name, sc)
	}
	if !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !reflect.DeepEqual(sc.Capabilities.Add, []corev1.Capability{"DAC_OVERRIDE"}) {
		t.Errorf("%s: capabilities %+v, want drop ALL, add only DAC_OVERRIDE", c.Name, sc.Capabilities)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources not set", c.Name)
	}
	var port bool
	for _, p := range c.Ports {
		port = port || p.ContainerPort == 9910
	}
	if !port {
		t.Errorf("%s: no container port 9910", c.Name)
	}
}

// hostNetwork asserts that the agent runs in the host's network namespace,
// where efs-proxy listens on the host's loopback (127.0.0.1:<port>: every
// mount.efs mount since efs-utils v2, mount_with_proxy in
// src/efs_utils_common/mount_utils.py, v3.2.0), so the tunnel step can
// reach it; that it listens on the node IP only; that it still resolves
// cluster names (an OTLP collector Service); and that its port is clear of
// the EFS CSI driver's on the same host network (aws-efs-csi-driver
// v3.4.1: node livenessprobe 9809, controller 9909, efs-proxy ports from
// 20049 up to PORT_RANGE_UPPER_BOUND 21049). In the driver's pod (sidecar)
// the DNS policy is the driver's, ClusterFirst, and left alone.
func hostNetwork(t *testing.T, ds *appsv1.DaemonSet, c corev1.Container, dns corev1.DNSPolicy) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.DNSPolicy != dns {
		t.Errorf("%s: hostNetwork %v, dnsPolicy %q; want the host network with %s", ds.Name, spec.HostNetwork, spec.DNSPolicy, dns)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["HEALTH_BIND_ADDRESS"].Value != "$(NODE_IP)" || env["NODE_IP"].ValueFrom == nil || env["NODE_IP"].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("%s on the host network does not bind to the node IP: %+v", c.Name, c.Env)
	}
	for _, p := range c.Ports {
		if p.ContainerPort == 9809 || p.ContainerPort == 9909 || (p.ContainerPort >= 20049 && p.ContainerPort <= 21049) {
			t.Errorf("%s: port %d collides with the EFS CSI driver's", c.Name, p.ContainerPort)
		}
	}
}

// efsStateNotCreated asserts that the agent's pod never creates the host's
// /var/run/efs: kubelet would make it 0755, while efs-utils creates it 0750
// and never changes one that exists (create_required_directory,
// src/efs_utils_common/file_utils.py, efs-utils v3.2.0).
func efsStateNotCreated(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	var found bool
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath == nil || path.Clean(v.HostPath.Path) != "/var/run/efs" {
			continue
		}
		found = true
		if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectory {
			t.Errorf("%s: volume %s of /var/run/efs has type %v, want Directory (never created)", ds.Name, v.Name, v.HostPath.Type)
		}
	}
	if !found {
		t.Errorf("%s: no volume of /var/run/efs", ds.Name)
	}
}

func TestBase(t *testing.T) {
	objs := build(t, "kustomize/base")
	ds := objs["DaemonSet/efs-health-agent"].(*appsv1.DaemonSet)
	c := container(t, ds, "efs-health-agent")
	probe(t, "liveness", c.LivenessProbe, "/healthz/live", 10, 3, 10, 5)
	// Readiness is liveness: a node with an unhealthy mount must not stall
	// a rollout of the agent.
	probe(t, "readiness", c.ReadinessProbe, "/healthz/live", 5, 3, 5, 3)
	leastPrivilege(t, c)
	if ds.Spec.Template.Spec.AutomountServiceAccountToken == nil || *ds.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Error("service account token mounted")
	}
	var prop bool
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/var/lib/kubelet/pods" && m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationHostToContainer {
			prop = true
		}
	}
	if !prop {
		t.Error("kubelet pods directory not mounted with HostToContainer propagation")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.Name == "NODE_NAME" && (e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName") {
			t.Error("NODE_NAME not from spec.nodeName")
		}
	}
	if env["HEALTH_DISCOVER_FSTYPES"] == "" || env["HEALTH_PORT"] != "9910" {
		t.Errorf("env %v", env)
	}
	svc := objs["Service/efs-health-agent"].(*corev1.Service)
	if svc.Spec.Ports[0].Port != 9910 || svc.Spec.Ports[0].Name != "metrics" {
		t.Errorf("service ports %+v", svc.Spec.Ports)
	}
	pm := objs["PodMonitor/efs-health-agent"].(*monitoringv1.PodMonitor)
	if pm.Spec.PodMetricsEndpoints[0].Path != httpapi.PathMetrics {
		t.Errorf("PodMonitor path %q", pm.Spec.PodMetricsEndpoints[0].Path)
	}
	pr := objs["PrometheusRule/efs-health-agent"].(*monitoringv1.PrometheusRule)
	if pm.Labels["release"] != "kube-prometheus-stack" || pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PodMonitor/PrometheusRule lack the kube-prometheus-stack selector label: %v, %v", pm.Labels, pr.Labels)
	}
	if _, ok := objs["NetworkPolicy/efs-health-agent"]; ok {
		t.Error("a NetworkPolicy for a host-network pod, which it does not cover")
	}
	hostNetwork(t, ds, c, corev1.DNSClusterFirstWithHostNet)
	efsStateNotCreated(t, ds)
	linuxOnly(t, "kustomize base", ds)
	cm := objs["ConfigMap/efs-health-agent-dashboard"].(*corev1.ConfigMap)
	if cm.Labels["grafana_dashboard"] != "1" || !json.Valid([]byte(cm.Data["efs-health-agent.json"])) {
		t.Error("dashboard ConfigMap missing its label or valid JSON")
	}
}

// standInFile is the EFS CSI driver's node DaemonSet as upstream ships it,
// a test fixture.
const standInFile = "testdata/efs-csi-node-v3.4.1.yaml"

// standIn decodes the stand-in of the EFS CSI driver's node DaemonSet.
func standIn(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	b, err := os.ReadFile(standInFile)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, "stand-in", splitDocs(b))["DaemonSet/efs-csi-node"].(*appsv1.DaemonSet)
}

// sidecarComponent is the kustomize Component of sidecar mode.
const sidecarComponent = "kustomize/components/csi-sidecar"

// withSidecarComponent builds what an operator's kustomization gives that
// lists the driver's manifests (the stand-in) and the sidecar component.
func withSidecarComponent(t *testing.T) [][]byte {
	t.Helper()
	node, err := os.ReadFile(standInFile)
	if err != nil {
		t.Fatal(err)
	}
	fs := filesys.MakeFsInMemory()
	files := map[string]string{
		"/k/kustomization.yaml": "namespace: kube-system\nresources:\n- efs-csi-node.yaml\ncomponents:\n- csi-sidecar\n",
		"/k/efs-csi-node.yaml":  string(node),
	}
	for _, f := range []string{"kustomization.yaml", "sidecar-patch.yaml"} {
		b, err := os.ReadFile(filepath.Join(sidecarComponent, f))
		if err != nil {
			t.Fatal(err)
		}
		files["/k/csi-sidecar/"+f] = string(b)
	}
	for name, content := range files {
		if err := fs.WriteFile(name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	return kustomize(t, fs, "/k")
}

// linuxOnly: the agent's DaemonSet runs on Linux nodes only, as the EFS
// CSI node DaemonSet does (its nodeSelector kubernetes.io/os: linux), while
// it tolerates every taint: without the selector it would land on the
// Windows nodes of a mixed cluster, where it cannot run.
func linuxOnly(t *testing.T, what string, ds *appsv1.DaemonSet) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if !reflect.DeepEqual(spec.NodeSelector, map[string]string{"kubernetes.io/os": "linux"}) {
		t.Errorf("%s: nodeSelector %v, want kubernetes.io/os: linux", what, spec.NodeSelector)
	}
	if !reflect.DeepEqual(spec.Tolerations, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}) {
		t.Errorf("%s: tolerations %+v, want every taint tolerated", what, spec.Tolerations)
	}
}

// TestStandInIsUpstreamNodeDaemonSet: the stand-in is the node DaemonSet of
// aws-efs-csi-driver v3.4.1 (deploy/kubernetes/base/node-daemonset.yaml):
// its containers, labels, host network, ports (the node's livenessprobe on
// 9809; 9909 is the controller's) and the efs-state-dir hostPath.
func TestStandInIsUpstreamNodeDaemonSet(t *testing.T) {
	ds := standIn(t)
	var names []string
	for _, c := range ds.Spec.Template.Spec.Containers {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "efs-plugin,csi-driver-registrar,liveness-probe" {
		t.Errorf("containers %s", got)
	}
	want := map[string]string{"app": "efs-csi-node", "app.kubernetes.io/name": "aws-efs-csi-driver", "app.kubernetes.io/instance": "kustomize"}
	if !reflect.DeepEqual(ds.Spec.Selector.MatchLabels, want) || !reflect.DeepEqual(ds.Spec.Template.Labels, want) {
		t.Errorf("labels %v / %v, want %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels, want)
	}
	if !ds.Spec.Template.Spec.HostNetwork {
		t.Error("not on the host network")
	}
	plugin := container(t, ds, "efs-plugin")
	if len(plugin.Ports) != 1 || plugin.Ports[0].Name != "healthz" || plugin.Ports[0].ContainerPort != 9809 ||
		plugin.LivenessProbe == nil || plugin.LivenessProbe.HTTPGet.Port.String() != "healthz" || plugin.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("efs-plugin: ports %+v, liveness %+v; want healthz 9809 probed on /healthz", plugin.Ports, plugin.LivenessProbe)
	}
	if lp := container(t, ds, "liveness-probe"); !contains(lp.Args, "--health-port=9809") {
		t.Errorf("liveness-probe args %v, want --health-port=9809", lp.Args)
	}
	vols := map[string]string{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		vols[v.Name] = v.HostPath.Path + " " + string(*v.HostPath.Type)
	}
	if !reflect.DeepEqual(vols, map[string]string{
		"kubelet-dir": "/var/lib/kubelet Directory", "plugin-dir": "/var/lib/kubelet/plugins/efs.csi.aws.com/ DirectoryOrCreate",
		"registration-dir": "/var/lib/kubelet/plugins_registry/ Directory", "efs-state-dir": "/var/run/efs DirectoryOrCreate",
		"efs-utils-config": "/var/amazon/efs DirectoryOrCreate", "efs-utils-config-legacy": "/etc/amazon/efs DirectoryOrCreate",
	}) {
		t.Errorf("volumes %v", vols)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCSISidecarComponent: the component adds the agent as a container of
// its own and changes nothing of the driver. The liveness-probe sidecar and
// efs-plugin (its liveness probe on the sidecar's 9809 included) are
// exactly as in the driver's DaemonSet: were efs-plugin's probes on the
// agent, kubelet would restart efs-plugin, and every efs-proxy of the node
// with it, whenever the agent failed, and a driver whose CSI socket is
// stuck would no longer be restarted.
func TestCSISidecarComponent(t *testing.T) {
	objs := decodeAll(t, "sidecar component", withSidecarComponent(t))
	ds := objs["DaemonSet/efs-csi-node"].(*appsv1.DaemonSet)
	driverUntouched(t, standIn(t), ds)
	agent := container(t, ds, "efs-health-agent")
	probe(t, "agent liveness", agent.LivenessProbe, "/healthz/live", 10, 3, 10, 5)
	probe(t, "agent readiness", agent.ReadinessProbe, "/healthz/live", 5, 3, 5, 3)
	leastPrivilege(t, agent)
	hostNetwork(t, ds, agent, corev1.DNSClusterFirst)
	// The agent sees the volumes where the driver mounts them.
	plugin := container(t, ds, "efs-plugin")
	mounts := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, vm := range c.VolumeMounts {
			m[vm.Name] = vm.MountPath
		}
		return m
	}
	if a, p := mounts(agent), mounts(plugin); a["kubelet-dir"] != p["kubelet-dir"] || a["efs-state-dir"] != p["efs-state-dir"] {
		t.Errorf("agent mounts %v, efs-plugin %v", a, p)
	}
}

// driverUntouched asserts that patched is orig plus one container, the
// agent's: every other container (liveness-probe and efs-plugin with its
// probes), the volumes and the rest of the pod exactly as they were.
func driverUntouched(t *testing.T, orig, patched *appsv1.DaemonSet) {
	t.Helper()
	var others []corev1.Container
	for _, c := range patched.Spec.Template.Spec.Containers {
		if c.Name != "efs-health-agent" {
			others = append(others, c)
		}
	}
	if len(others) != len(orig.Spec.Template.Spec.Containers) || len(patched.Spec.Template.Spec.Containers) != len(others)+1 {
		t.Fatalf("containers: %d of the driver's kept of %d, %d in all; want the driver's and the agent's", len(others), len(orig.Spec.Template.Spec.Containers), len(patched.Spec.Template.Spec.Containers))
	}
	for i, c := range orig.Spec.Template.Spec.Containers {
		if !reflect.DeepEqual(c, others[i]) {
			a, _ := json.MarshalIndent(c, "", " ")
			b, _ := json.MarshalIndent(others[i], "", " ")
			t.Errorf("the driver's container %s changed:\nwas:\n%s\nnow:\n%s", c.Name, a, b)
		}
	}
	podA, podB := orig.Spec.Template.Spec, patched.Spec.Template.Spec
	podA.Containers, podB.Containers = nil, nil
	if !reflect.DeepEqual(podA, podB) {
		t.Errorf("the driver's pod spec changed beyond the added container:\nwas %+v\nnow %+v", podA, podB)
	}
}

// TestPrometheusRuleMatchesRulesFile: the Operator's PrometheusRule and the
// plain rules file carry the same groups.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	objs := build(t, "kustomize/base")
	pr := objs["PrometheusRule/efs-health-agent"].(*monitoringv1.PrometheusRule)
	b, err := os.ReadFile("prometheus/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var plain monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(b, &plain); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plain, pr.Spec) {
		t.Fatal("deploy/prometheus/rules.yaml and the PrometheusRule differ")
	}
	var names []string
	for _, r := range plain.Groups[0].Rules {
		names = append(names, r.Alert)
	}
	if got := strings.Join(names, ","); got != "EFSMountUnhealthy,EFSMountHighLatency,EFSMountErrors,EFSMountHung,EFSFileSystemUnhealthy,EFSHealthAgentDown" {
		t.Fatalf("alerts %s", got)
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed; make test installs the Debian package prometheus as root")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	return p
}

func TestPromtoolRules(t *testing.T) {
	pt := promtool(t)
	for _, args := range [][]string{{"check", "rules", "prometheus/rules.yaml"}, {"test", "rules", "prometheus/rules_test.yaml"}} {
		out, err := exec.Command(pt, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestDashboardQueriesParse feeds every PromQL expression of the dashboard
// to promtool as recording rules, which makes it parse them.
func TestDashboardQueriesParse(t *testing.T) {
	pt := promtool(t)
	b, err := os.ReadFile("kustomize/base/grafana/efs-health-agent.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Templating struct {
			List []struct{ Name, Definition string }
		}
		Panels []struct {
			Title   string
			Targets []struct {
				Expr     string
				Exemplar bool
			}
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	// The per-file-system view picks file systems from the info metric.
	var fsVar bool
	for _, v := range dash.Templating.List {
		fsVar = fsVar || (v.Name == "filesystem_id" && v.Definition == "label_values(efs_mount_info, filesystem_id)")
	}
	if !fsVar {
		t.Error("dashboard has no filesystem_id variable from efs_mount_info")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	vars := regexp.MustCompile(`\$[a-z_]+`)
	n := 0
	want := map[string]bool{"efs_mount_health_status": false, "avg(efs_mount_response_time_ms": false, "rate(efs_mount_error_total[5m])": false,
		"efs_mount_operation_duration_seconds_bucket": false, "efs_mounts_hung": false,
		`efs_mount_info{filesystem_id=~"$filesystem_id"}`: false}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			n++
			// Latency histograms show exemplars: the link to the check's trace.
			if strings.Contains(tg.Expr, "_seconds_bucket") && !tg.Exemplar {
				t.Errorf("panel %q: latency query without exemplars", p.Title)
			}
			expr := vars.ReplaceAllString(tg.Expr, ".*")
			bare := strings.ReplaceAll(tg.Expr, `{instance=~"$instance"}`, "")
			for k := range want {
				if strings.Contains(bare, k) {
					want[k] = true
				}
			}
			fmt.Fprintf(&rules, "  - record: dashboard:q%d\n    expr: %q\n", n, expr)
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("dashboard lacks the documented query %s", k)
		}
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "check", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("dashboard queries do not parse: %v\n%s", err, out)
	}
}
