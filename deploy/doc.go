// Package deploy holds the Kubernetes manifests, Prometheus rules and
// Grafana dashboard of efs-health-agent, and the tests that build them
// with kustomize, decode them strictly into Kubernetes API types and run
// promtool on the rules and every dashboard query. It has no Go code to
// import.
package deploy
