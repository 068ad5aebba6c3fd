package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// upstreamDaemonSet is the EFS CSI driver's node DaemonSet, v3.4.1
// (deploy/kubernetes/base/node-daemonset.yaml), the repository's test
// fixture.
func upstreamDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "deploy", "testdata", "efs-csi-node-v3.4.1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatal(err)
	}
	return &ds
}

// expand substitutes $(VAR) from the container's literal env, as kubelet
// does for args.
func expand(c corev1.Container) []string {
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		for _, e := range c.Env {
			a = strings.ReplaceAll(a, "$("+e.Name+")", e.Value)
		}
		args[i] = a
	}
	return args
}

// TestUpstreamArgs: each role takes the arguments upstream's DaemonSet
// gives the container it stands in for, and reads the ones that matter
// as upstream does.
func TestUpstreamArgs(t *testing.T) {
	containers := map[string]corev1.Container{}
	for _, c := range upstreamDaemonSet(t).Spec.Template.Spec.Containers {
		containers[c.Name] = c
	}
	if len(containers) != 3 {
		t.Fatalf("containers %v: want efs-plugin, csi-driver-registrar and liveness-probe", containers)
	}

	d, err := parseDriverFlags(expand(containers["efs-plugin"]), io.Discard)
	if err != nil {
		t.Fatalf("efs-plugin's args: %v", err)
	}
	if d.endpoint != "unix:/csi/csi.sock" || d.v != 2 {
		t.Fatalf("efs-plugin: %+v", d)
	}

	r, err := parseRegistrarFlags(expand(containers["csi-driver-registrar"]), io.Discard)
	if err != nil {
		t.Fatalf("csi-driver-registrar's args: %v", err)
	}
	if r.csiAddress != "/csi/csi.sock" || r.kubeletRegistrationPath != "/var/lib/kubelet/plugins/efs.csi.aws.com/csi.sock" ||
		r.pluginRegistrationPath != "/registration" {
		t.Fatalf("csi-driver-registrar: %+v", r)
	}

	l, err := parseLivenessFlags(expand(containers["liveness-probe"]), io.Discard)
	if err != nil {
		t.Fatalf("liveness-probe's args: %v", err)
	}
	// efs-plugin's liveness probe names the port healthz, 9809: the
	// liveness-probe container serves it (the pod shares one network).
	probe := containers["efs-plugin"].LivenessProbe.HTTPGet
	if l.csiAddress != "/csi/csi.sock" || l.healthPort != 9809 || probe.Path != "/healthz" || probe.Port.String() != "healthz" ||
		containers["efs-plugin"].Ports[0].ContainerPort != int32(l.healthPort) {
		t.Fatalf("liveness-probe %+v; efs-plugin's probe %+v, ports %+v", l, probe, containers["efs-plugin"].Ports)
	}
}

func TestBadArgs(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"csi-standin", "nfs-plugin"}, `unknown role "nfs-plugin"`},
		{[]string{"/bin/aws-efs-csi-driver", "--mount-everything"}, "flag provided but not defined: -mount-everything"},
		{[]string{"/bin/aws-efs-csi-driver", "--vol-metrics-refresh-period=soon"}, "vol-metrics-refresh-period"},
		{[]string{"/bin/aws-efs-csi-driver", "--endpoint=tcp://127.0.0.1:1"}, `CSI address "tcp://127.0.0.1:1"`},
		{[]string{"/csi-node-driver-registrar", "--csi-address=/csi/csi.sock"}, "kubelet-registration-path is a required parameter"},
		{[]string{"/csi-node-driver-registrar", "--kubelet-registration-path=/x", "--timeout=0s"}, "timeout 0s"},
		{[]string{"/livenessprobe", "--health-port=99999"}, "health-port 99999"},
		{[]string{"/livenessprobe", "--probe-timeout=-1s"}, "probe-timeout -1s"},
		{[]string{"csi-standin", "livenessprobe", "extra"}, `unexpected arguments ["extra"]`},
	} {
		var stderr strings.Builder
		if code := dispatch(tc.argv, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.argv, code, stderr.String(), tc.want)
		}
	}
}
