// Command kubenode is the Kubernetes node of make k8s-e2e as one multi-call
// binary: kube-apiserver, kube-controller-manager, kube-scheduler and kubelet
// from k8s.io/kubernetes at the version pinned in test/k8s/go.mod, and kine
// (etcd's API on SQLite) for the apiserver's storage. One binary compiles the
// k8s.io packages the components share once. The component is the first
// argument, or the name the binary is invoked under; kine takes its own
// flags (--listen-address, --endpoint).
package main
