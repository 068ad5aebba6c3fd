package deploy_test

import (
	"encoding/json"
	"fmt"
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
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(fs, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var docs [][]byte
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, y)
	}
	return docs
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
	np := objs["NetworkPolicy/efs-health-agent"].(*networkingv1.NetworkPolicy)
	if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, ds.Spec.Selector.MatchLabels) || len(np.Spec.Ingress) != 1 ||
		np.Spec.Ingress[0].Ports[0].Port.IntValue() != 9910 || len(np.Spec.Ingress[0].From) == 0 {
		t.Errorf("NetworkPolicy does not admit only port 9910 of the agent's pods from a named source: %+v", np.Spec)
	}
	cm := objs["ConfigMap/efs-health-agent-dashboard"].(*corev1.ConfigMap)
	if cm.Labels["grafana_dashboard"] != "1" || !json.Valid([]byte(cm.Data["efs-health-agent.json"])) {
		t.Error("dashboard ConfigMap missing its label or valid JSON")
	}
}

func TestCSISidecarOverlay(t *testing.T) {
	objs := build(t, "kustomize/overlays/csi-sidecar")
	ds := objs["DaemonSet/efs-csi-node"].(*appsv1.DaemonSet)
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "liveness-probe" {
			t.Fatal("the old livenessprobe sidecar is still there")
		}
	}
	plugin := container(t, ds, "efs-plugin")
	probe(t, "efs-plugin liveness", plugin.LivenessProbe, "/healthz/live", -1, 0, 0, 5)
	probe(t, "efs-plugin readiness", plugin.ReadinessProbe, "/healthz/live", -1, 0, 0, 3)
	for _, c := range ds.Spec.Template.Spec.Containers {
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil && (p.HTTPGet.Port.IntValue() == 9909 || p.HTTPGet.Port.String() == "healthz") {
				t.Errorf("%s still probes the old livenessprobe port", c.Name)
			}
		}
	}
	agent := container(t, ds, "efs-health-agent")
	probe(t, "agent liveness", agent.LivenessProbe, "/healthz/live", 10, 3, 10, 5)
	probe(t, "agent readiness", agent.ReadinessProbe, "/healthz/live", 5, 3, 5, 3)
	leastPrivilege(t, agent)
	// Host network: the agent listens on the node IP only.
	env := map[string]corev1.EnvVar{}
	for _, e := range agent.Env {
		env[e.Name] = e
	}
	if !ds.Spec.Template.Spec.HostNetwork || env["HEALTH_BIND_ADDRESS"].Value != "$(NODE_IP)" ||
		env["NODE_IP"].ValueFrom == nil || env["NODE_IP"].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("sidecar on the host network does not bind to the node IP: %+v", agent.Env)
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
			t.Fatal("promtool not installed; .ci/run installs the Debian package prometheus")
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
