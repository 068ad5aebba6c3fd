//go:build linux

package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment of the stages of one run. The host stage sets the stage and
// the directory; make k8s-e2e sets the inputs.
const (
	envStage = "K8S_E2E_STAGE" // "", init or test
	envDir   = "K8S_E2E_DIR"   // the run's temporary directory
	envID    = "K8S_E2E_ID"    // the run's name, unique on the host
	// EnvKubenode is the path of the kubenode binary.
	EnvKubenode = "K8S_E2E_KUBENODE"
	// EnvPauseImage is the OCI archive of the sandbox image (cmd/pause).
	EnvPauseImage = "K8S_E2E_PAUSE_IMAGE"
	// EnvKeep, when set, keeps the run's temporary directory (the
	// components' logs, kubelet's and containerd's state).
	EnvKeep = "K8S_E2E_KEEP"
)

// unavailable is why no node can run here; set by Main on the host when
// the tests run without the namespaces, and reported by Shared.
var unavailable error

// Main runs the tests of a package that uses the node; call it from
// TestMain. On the host it checks what the node needs, records the host's
// state, runs the tests in fresh namespaces and checks that nothing is
// left behind. It does not return.
func Main(m *testing.M) {
	switch os.Getenv(envStage) {
	case "init":
		os.Exit(runInit())
	case "test":
		os.Exit(m.Run())
	default:
		os.Exit(runHost(m))
	}
}

// prerequisites says why no node can run here, or nil.
func prerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to run a Kubernetes node (namespaces, mounts, cgroups)")
	}
	var missing []string
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, p := range []string{filepath.Join(cniBinDir, "bridge"), filepath.Join(cniBinDir, "host-local"), filepath.Join(cniBinDir, "loopback"), "/dev/fuse"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("needs %s (apt-get install containerd runc containernetworking-plugins iproute2 fuse3)", strings.Join(missing, ", "))
	}
	for _, env := range []string{EnvKubenode, EnvPauseImage} {
		p := os.Getenv(env)
		if p == "" {
			return fmt.Errorf("needs %s (run make k8s-e2e)", env)
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w", env, err)
		}
	}
	return nil
}

// runHost is the host stage: everything else runs in a child in fresh
// namespaces, and what it leaves on the host is checked after it is gone.
func runHost(m *testing.M) int {
	if err := prerequisites(); err != nil {
		unavailable = err
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "k8s-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-e2e:", err)
		return 1
	}
	id := filepath.Base(dir)
	before, err := snapshotHost(id)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-e2e: host state:", err)
		return 1
	}
	if err := makeCgroupRoot(id); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-e2e:", err)
		return 1
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), envStage+"=init", envDir+"="+dir, envID+"="+id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
	}
	code := 0
	// An interrupt reaches the whole process group; the child ends the
	// tests and the namespaces with them, and the check below still runs.
	signal.Ignore(syscall.SIGINT)
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "k8s-e2e: run in namespaces:", err)
			return 1
		}
		code = max(ee.ExitCode(), 1)
	}
	start := time.Now()
	if err := removeCgroupRoot(id); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-e2e: clean-up:", err)
		code = 1
	}
	after, err := snapshotHost(id)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-e2e: host state:", err)
		return 1
	}
	if left := before.diff(after, dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "--- FAIL: clean-up: the node left %d things on the host:\n", len(left))
		for _, l := range left {
			fmt.Fprintln(os.Stderr, "    "+l)
		}
		code = 1
	} else {
		fmt.Printf("--- PASS: clean-up: nothing left on the host (%s; checked in %v)\n", before.summary(), time.Since(start).Round(time.Millisecond))
	}
	if os.Getenv(EnvKeep) != "" {
		fmt.Printf("k8s-e2e: kept %s\n", dir)
	} else if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-e2e: remove temporary directory:", err)
		code = 1
	}
	return code
}

// runInit is the first process of the namespaces: it prepares them, runs
// the tests in a child, reaps every orphan (containerd's shims end up
// here) and exits with the tests' status, which ends the namespaces.
func runInit() int {
	dir, id := os.Getenv(envDir), os.Getenv(envID)
	if err := setupNamespaces(dir, id); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-e2e: prepare the namespaces:", err)
		return 1
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), envStage+"=test")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-e2e: start the tests:", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "k8s-e2e: wait:", err)
			return 1
		}
		if pid != cmd.Process.Pid {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			fmt.Fprintf(os.Stderr, "k8s-e2e: tests ended by %v\n", ws.Signal())
			return 1
		}
	}
}
