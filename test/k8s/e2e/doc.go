// Package e2e is make k8s-e2e: the agent installed as an operator installs
// it (the image of make image, the chart rendered with helm template and
// applied unmodified) on a Kubernetes node made of real components
// (package node), with its faults made by tmpfs and the FUSE fault
// filesystem. It has tests only; docs/kubernetes-node.md describes the
// node and the scenarios.
package e2e
