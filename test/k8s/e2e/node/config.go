//go:build linux

package node

import (
	"fmt"
	"path/filepath"
	"strings"
)

// The node's configuration files. Every path is the run's directory or a
// standard path bound to it in the namespaces (namespaces.go).

// sandboxImage is the name of the pause image (cmd/pause): nothing can be
// pulled, so containerd's default (registry.k8s.io/pause) is replaced.
const sandboxImage = "k8s-e2e.local/pause:static"

const containerdSocket = "/run/containerd/containerd.sock"

// containerdConfig is containerd 1.6's configuration (version 2).
//   - restrict_oom_score_adj: without CAP_SYS_RESOURCE (a VM's container
//     here) runc cannot lower a container's oom_score_adj below the
//     shim's, and fails with "can't get final child's PID from pipe: EOF".
//   - the opt plugin would create /opt/containerd on the host.
func containerdConfig(dir string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(dir, "containerd"), containerdSocket, sandboxImage, cniBinDir, filepath.Join(dir, "cni", "net.d"))
}

// cniConfig is the pod network: a bridge with host-local addresses, the
// simplest network that gives non-hostNetwork pods an address and makes
// the node Ready (EKS runs the VPC CNI instead).
func cniConfig(dir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "k8s-e2e",
  "plugins": [{
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": %q}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": %q
    }
  }]
}
`, podCIDR, filepath.Join(dir, "cni", "ipam"))
}

// kubeletConfig is kubelet's configuration file.
//   - cgroupDriver cgroupfs: there is no systemd in the namespaces.
//   - cgroupRoot: the run's own, so the node's cgroups are found and
//     removed afterwards, and two runs never share one.
//   - failSwapOn, failCgroupV1 false: the CI machines may swap and run
//     cgroup v1.
//   - volumePluginDir: by default kubelet creates /usr/libexec/kubernetes.
//   - evictionHard and image GC: the thresholds of a shared CI disk must
//     not evict the test's pods or delete its images, which cannot be
//     pulled again.
//   - featureGates: CSIVolumeHealth, for kubelet's own volume health
//     checks through CSI (NodeGetVolumeStats).
func kubeletConfig(dir, id string, p *pki) string {
	gates := []string{"CSIVolumeHealth: true"}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
tlsCertFile: %s
tlsPrivateKeyFile: %s
cgroupDriver: cgroupfs
cgroupRoot: %s
containerRuntimeEndpoint: unix://%s
failSwapOn: false
failCgroupV1: false
volumePluginDir: %s
podCIDR: %s
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
featureGates:
  %s
`, nodeIP, p.path("ca.crt"), p.path("kubelet-serving.crt"), p.path("kubelet-serving.key"),
		cgroupRoot(id), containerdSocket, filepath.Join(dir, "volume-plugins"), podCIDR,
		strings.Join(gates, "\n  "))
}

// kubeconfig is a client configuration for user with its certificate.
func kubeconfig(p *pki, user string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8s-e2e
  cluster:
    server: https://%s:6443
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: k8s-e2e
  context:
    cluster: k8s-e2e
    user: %s
current-context: k8s-e2e
`, nodeIP, p.path("ca.crt"), user, p.path(user+".crt"), p.path(user+".key"), user)
}
