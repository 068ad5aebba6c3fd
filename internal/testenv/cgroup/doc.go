// Package cgroup runs test and soak processes inside a memory cgroup, the
// way the shipped manifests limit the agent: a child group with a memory
// limit under the caller's own cgroup, on cgroup v2 or the v1 memory
// controller, whichever the machine has. It needs root; nothing ships it.
package cgroup
