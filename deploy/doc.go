// Package deploy holds the Kubernetes manifests (kustomize and a Helm
// chart), Prometheus rules and Grafana dashboard of efs-health-agent, and
// the tests that build them with kustomize and helm, decode them strictly
// into Kubernetes API types, validate them offline against the Kubernetes
// schemas and the Prometheus Operator CRDs with kubectl-validate, and run
// promtool on the rules and every dashboard query. It has no Go code to
// import.
package deploy
