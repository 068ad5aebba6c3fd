package deploy_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// patchFile is what deploy/README.md tells operators to apply to their
// driver's DaemonSet in sidecar mode.
const patchFile = sidecarComponent + "/sidecar-patch.yaml"

// kubectlPatch applies a strategic-merge patch to a DaemonSet as the API
// server does for `kubectl patch --type strategic` (a PATCH with
// application/strategic-merge-patch+json): k8s.io/apimachinery's
// strategicpatch.StrategicMergePatch with the DaemonSet's patch strategies
// (containers merge by name), apiserver
// pkg/endpoints/handlers/patch.go, smpPatcher.
func kubectlPatch(t *testing.T, ds *appsv1.DaemonSet, patchYAML []byte) *appsv1.DaemonSet {
	t.Helper()
	orig, err := json.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := yaml.YAMLToJSON(patchYAML)
	if err != nil {
		t.Fatalf("%s: %v", patchFile, err)
	}
	out, err := strategicpatch.StrategicMergePatch(orig, patch, appsv1.DaemonSet{})
	if err != nil {
		t.Fatalf("strategic merge of %s: %v", patchFile, err)
	}
	var patched appsv1.DaemonSet
	if err := json.Unmarshal(out, &patched); err != nil {
		t.Fatal(err)
	}
	return &patched
}

// TestSidecarPatchKeepsTheDriver: the sidecar patch, applied the way
// deploy/README.md says, adds the agent's container to the driver the
// operator has and changes nothing else: not the selector (immutable; a
// replaced DaemonSet with another one fails), not the driver's version, not
// its containers or probes. Both the driver as upstream's kustomize base
// installs it (the fixture) and as upstream's Helm chart installs it
// (another instance label, here an older driver image) are patched.
func TestSidecarPatchKeepsTheDriver(t *testing.T) {
	patchYAML, err := os.ReadFile(patchFile)
	if err != nil {
		t.Fatal(err)
	}
	viaComponent := decodeAll(t, "sidecar component", withSidecarComponent(t))["DaemonSet/efs-csi-node"].(*appsv1.DaemonSet)
	agent := container(t, viaComponent, "efs-health-agent")

	kustomized := standIn(t)
	helmed := standIn(t).DeepCopy()
	for _, labels := range []map[string]string{helmed.Spec.Selector.MatchLabels, helmed.Spec.Template.Labels} {
		labels["app.kubernetes.io/instance"] = "aws-efs-csi-driver"
	}
	helmed.Labels["helm.sh/chart"] = "aws-efs-csi-driver-3.1.0"
	for i, c := range helmed.Spec.Template.Spec.Containers {
		if c.Name == "efs-plugin" {
			helmed.Spec.Template.Spec.Containers[i].Image = "public.ecr.aws/efs-csi-driver/amazon/aws-efs-csi-driver:v2.1.0"
		}
	}
	for name, driver := range map[string]*appsv1.DaemonSet{"upstream kustomize": kustomized, "upstream helm": helmed} {
		t.Run(name, func(t *testing.T) {
			patched := kubectlPatch(t, driver, patchYAML)
			driverUntouched(t, driver, patched)
			if !reflect.DeepEqual(patched.Spec.Selector, driver.Spec.Selector) || !reflect.DeepEqual(patched.ObjectMeta, driver.ObjectMeta) ||
				!reflect.DeepEqual(patched.Spec.Template.ObjectMeta, driver.Spec.Template.ObjectMeta) {
				t.Errorf("the patch changed the driver's selector or labels: %+v %+v", patched.Spec.Selector, patched.ObjectMeta)
			}
			if got := container(t, patched, "efs-health-agent"); !reflect.DeepEqual(got, agent) {
				t.Errorf("kubectl patch adds another agent container than the kustomize component:\n%+v\n%+v", got, agent)
			}
		})
	}
	// kubectl patch gives what the component gives.
	if p := kubectlPatch(t, kustomized, patchYAML); !reflect.DeepEqual(p.Spec, viaComponent.Spec) {
		t.Error("kubectl patch with the patch file and the kustomize component give different DaemonSets")
	}
}

// TestSidecarInstructionsPatch: the sidecar component cannot be applied on
// its own (it is a Component, with no resources: `kubectl apply -k` of it
// fails instead of replacing the driver), and deploy/README.md tells
// operators to patch, naming the patch file, never to apply a copy of the
// driver's DaemonSet.
func TestSidecarInstructionsPatch(t *testing.T) {
	b, err := os.ReadFile(sidecarComponent + "/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Kind      string
		Resources []string
	}
	if err := yaml.Unmarshal(b, &k); err != nil || k.Kind != "Component" || len(k.Resources) != 0 {
		t.Errorf("%s: kind %q with resources %v (%v), want a Component with none", sidecarComponent, k.Kind, k.Resources, err)
	}
	if _, err := krustyRun(sidecarComponent); err == nil {
		t.Errorf("kustomize build %s succeeds: kubectl apply -k could apply it on its own", sidecarComponent)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmd := regexp.MustCompile(`kubectl -n kube-system patch daemonset efs-csi-node --type strategic\s*\\?\s*--patch-file deploy/` + regexp.QuoteMeta(patchFile))
	if !cmd.Match(readme) {
		t.Errorf("deploy/README.md does not tell operators to run kubectl patch with --patch-file deploy/%s", patchFile)
	}
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.Contains(l, "kubectl apply") && (strings.Contains(l, "csi-sidecar") || strings.Contains(l, "testdata")) {
			t.Errorf("deploy/README.md applies sidecar files: %s", l)
		}
	}
}

// krustyRun builds a kustomization from disk and returns the error.
func krustyRun(dir string) ([][]byte, error) {
	return kustomizeErr(filesys.MakeFsOnDisk(), dir)
}
