// Package node is a one-node Kubernetes cluster made of real components,
// for the end-to-end tests of make k8s-e2e: kine (etcd's API on SQLite),
// kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from
// the multi-call binary test/k8s/cmd/kubenode, with containerd, runc and
// the CNI bridge plugin of the host. docs/kubernetes-node.md says how it
// is made and how it differs from an EKS node.
//
// Everything runs in fresh mount, PID, network, UTS and IPC namespaces.
// The test binary's TestMain calls Main, which re-executes the binary as
// the first process of those namespaces; that process prepares them and
// runs the tests in a child, and when it exits the kernel kills every
// process left in them and their mounts vanish. Back on the host, Main
// removes the node's cgroups and fails the run when anything is left:
// a mount, a cgroup, a sysctl changed, a network link, a path kubelet or
// containerd would create on a real node.
//
// Use:
//
//	func TestMain(m *testing.M) { node.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		n := node.Shared(t) // started once per test binary
//		n.Apply(t, manifests)
//		pod := n.WaitPod(t, "ns", "app=x", "Ready", node.PodReady)
//		...
//	}
//
// Inside the namespaces the standard paths are the node's own: kubelet's
// root directory is /var/lib/kubelet (a directory of the run's temporary
// directory bound over /var/lib), its logs are under /var/log (bound the
// same way), /run is a tmpfs, and the node's address is Node.IP on a veth
// pair. A test mounts volumes under PodsDir as a CSI driver would, and
// they reach containers through kubelet's mount propagation.
//
// Main needs root, containerd, runc and the CNI plugins; the binaries and
// images come from the environment (K8S_E2E_KUBENODE, K8S_E2E_PAUSE_IMAGE,
// see make k8s-e2e). Without them the tests skip, and fail when the CI
// environment variable is set.
package node
