//go:build linux

package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The node's network, private to its network namespace.
const (
	// NodeName is the name the node registers under (and the namespaces'
	// hostname).
	NodeName = "k8s-e2e-node"
	// nodeIP is the node's address, on one end of a veth pair whose other
	// end stands for the VPC; hostNetwork pods (the agent) listen on it.
	nodeIP     = "10.213.0.2"
	nodeGW     = "10.213.0.1"
	nodeIface  = "eth0"
	podCIDR    = "10.214.0.0/24"
	serviceIP  = "10.215.0.1" // the kubernetes Service
	serviceNet = "10.215.0.0/24"
	cniBinDir  = "/usr/lib/cni" // Debian's containernetworking-plugins
)

// kubeletSysctls are the global sysctls kubelet sets at start when they
// differ (setupKernelTunables in pkg/kubelet/cm/container_manager_linux.go,
// k8s.io/kubernetes v1.34.2; the values from
// k8s.io/component-helpers/node/util/sysctl v0.34.2). In the namespaces a
// file holding each value is bound over its /proc/sys entry, so kubelet
// finds what it wants and the host's settings never change.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// setupNamespaces prepares the fresh mount, network and UTS namespaces of
// the init stage for the node: nothing mounted here reaches the host.
func setupNamespaces(dir, id string) error {
	// Cut propagation to the host first: the clone copied the host's
	// mounts with their shared peer groups.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// The PID namespace's own /proc.
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// kubelet's and containerd's standard paths, in the run's directory.
	for target, src := range map[string]string{"/var/lib": "var-lib", "/var/log": "var-log"} {
		src = filepath.Join(dir, src)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(src, target, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over %s: %w", src, target, err)
		}
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=755,size=256m"); err != nil {
		return fmt.Errorf("mount /run: %w", err)
	}
	// efs-utils' state directory, which the chart mounts with hostPath
	// type Directory: on a real node the EFS CSI driver creates it.
	if err := os.Mkdir("/run/efs", 0o750); err != nil {
		return err
	}
	sysctlDir := filepath.Join(dir, "sysctl")
	if err := os.MkdirAll(sysctlDir, 0o755); err != nil {
		return err
	}
	for name, value := range kubeletSysctls {
		f := filepath.Join(sysctlDir, strings.ReplaceAll(name, "/", "."))
		if err := os.WriteFile(f, []byte(value+"\n"), 0o644); err != nil {
			return err
		}
		if err := syscall.Mount(f, "/proc/sys/"+name, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over /proc/sys/%s: %w", f, name, err)
		}
	}
	// Shared again, as on a systemd host, but in peer groups of this
	// namespace only.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make / shared: %w", err)
	}
	if err := syscall.Sethostname([]byte(NodeName)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", nodeIface, "type", "veth", "peer", "name", "vpc0"},
		{"addr", "add", nodeIP + "/24", "dev", nodeIface},
		{"link", "set", nodeIface, "up"},
		{"link", "set", "vpc0", "up"},
		{"route", "add", "default", "via", nodeGW, "dev", nodeIface},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return os.WriteFile(filepath.Join(dir, "init.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}
