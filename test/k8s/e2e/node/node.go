//go:build linux

package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// PodsDir is kubelet's pods directory, where volumes are mounted; the
// chart's kubeletPath is /var/lib/kubelet.
const PodsDir = "/var/lib/kubelet/pods"

// StartTimeout bounds the start of the whole node on a loaded machine.
const StartTimeout = 5 * time.Minute

// Node is a running one-node cluster.
type Node struct {
	// Name is the node's name; IP its address (hostNetwork pods' too).
	Name, IP string
	// Dir is the run's temporary directory: Dir/logs has every
	// component's log.
	Dir string
	// Kubeconfig is an administrator's kubeconfig (system:masters).
	Kubeconfig string
	// Config, Client and Dynamic talk to the apiserver as Kubeconfig's user.
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// CgroupRoot is kubelet's cgroupRoot: pods' cgroups are under
	// <hierarchy><CgroupRoot>/kubepods.
	CgroupRoot string
	// StartTime is how long Start took.
	StartTime time.Duration

	pki   *pki
	procs []*proc
}

// proc is one component of the node.
type proc struct {
	name     string
	cmd      *exec.Cmd
	log      string
	done     chan struct{}
	err      error
	stopping bool
}

var shared struct {
	once sync.Once
	node *Node
	err  error
}

// Shared returns the node of this test binary, starting it on first use.
// The node lives until the tests end (the namespaces end with them). Where
// no node can run it skips the test, or fails it in CI.
func Shared(t testing.TB) *Node {
	t.Helper()
	testutil.Require(t, unavailable)
	if os.Getenv(envStage) != "test" {
		t.Fatal("node.Shared: call node.Main from TestMain")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
		defer cancel()
		shared.node, shared.err = Start(ctx, os.Getenv(envDir), os.Getenv(envID))
	})
	if shared.err != nil {
		t.Fatalf("start the node: %v", shared.err)
	}
	if err := shared.node.Failed(); err != nil {
		t.Fatal(err)
	}
	return shared.node
}

// Start starts the node in dir (inside the namespaces Main made), its
// cgroups under the root named id, and waits until it is Ready.
func Start(ctx context.Context, dir, id string) (_ *Node, err error) {
	begin := time.Now()
	n := &Node{Name: NodeName, IP: nodeIP, Dir: dir, CgroupRoot: cgroupRoot(id)}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (logs in %s)", err, filepath.Join(dir, "logs"))
			n.Stop()
		}
	}()
	for _, d := range []string{"logs", "kine", "cni/net.d", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if n.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	p := n.pki
	for _, c := range []struct {
		name, cn string
		orgs     []string
		hosts    []string
	}{
		{"apiserver", "kube-apiserver", nil, []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "127.0.0.1", nodeIP, serviceIP}},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil},
		{"admin", "kubernetes-admin", []string{"system:masters"}, nil},
		{"controller-manager", "system:kube-controller-manager", nil, nil},
		{"scheduler", "system:kube-scheduler", nil, nil},
		{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}, nil},
		{"kubelet-serving", NodeName, nil, []string{NodeName, nodeIP}},
	} {
		if err := p.issue(c.name, c.cn, c.orgs, c.hosts...); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", c.name, err)
		}
	}
	for _, user := range []string{"admin", "controller-manager", "scheduler", "kubelet"} {
		if err := os.WriteFile(filepath.Join(dir, user+".kubeconfig"), []byte(kubeconfig(p, user)), 0o600); err != nil {
			return nil, err
		}
	}
	n.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if n.Config, err = clientcmd.BuildConfigFromFlags("", n.Kubeconfig); err != nil {
		return nil, err
	}
	n.Config.QPS, n.Config.Burst = 50, 100
	if n.Client, err = kubernetes.NewForConfig(n.Config); err != nil {
		return nil, err
	}
	if n.Dynamic, err = dynamic.NewForConfig(n.Config); err != nil {
		return nil, err
	}
	kubenode := os.Getenv(EnvKubenode)

	// The control plane.
	if err := n.start("kine", kubenode, "kine", "--listen-address=127.0.0.1:2379",
		"--endpoint=sqlite://"+filepath.Join(dir, "kine", "state.db")+"?_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate&cache=shared"); err != nil {
		return nil, err
	}
	if err := n.waitFor(ctx, "kine to listen", func() error { return dial("127.0.0.1:2379") }); err != nil {
		return nil, err
	}
	if err := n.start("kube-apiserver", kubenode, "kube-apiserver",
		"--etcd-servers=http://127.0.0.1:2379",
		"--advertise-address="+nodeIP, "--secure-port=6443",
		"--service-cluster-ip-range="+serviceNet,
		"--tls-cert-file="+p.path("apiserver.crt"), "--tls-private-key-file="+p.path("apiserver.key"),
		"--client-ca-file="+p.path("ca.crt"),
		"--service-account-key-file="+p.path("sa.pub"), "--service-account-signing-key-file="+p.path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--kubelet-client-certificate="+p.path("apiserver-kubelet-client.crt"), "--kubelet-client-key="+p.path("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true", "--profiling=false",
		"--cert-dir="+filepath.Join(dir, "pki", "apiserver-generated")); err != nil {
		return nil, err
	}
	if err := n.waitFor(ctx, "the apiserver to be ready", func() error {
		return n.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	}); err != nil {
		return nil, err
	}
	if err := n.start("kube-controller-manager", kubenode, "kube-controller-manager",
		"--kubeconfig="+filepath.Join(dir, "controller-manager.kubeconfig"),
		"--secure-port=0", "--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+p.path("sa.key"),
		"--root-ca-file="+p.path("ca.crt"),
		// Its default, /usr/libexec/kubernetes/..., would be created on the host.
		"--flex-volume-plugin-dir="+filepath.Join(dir, "volume-plugins"),
		"--cluster-signing-cert-file="+p.path("ca.crt"), "--cluster-signing-key-file="+p.path("ca.key"),
		"--profiling=false"); err != nil {
		return nil, err
	}
	if err := n.start("kube-scheduler", kubenode, "kube-scheduler",
		"--kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--authentication-kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--authorization-kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"); err != nil {
		return nil, err
	}

	// The node: containerd, the pause image, kubelet.
	for name, content := range map[string]string{
		"containerd.toml":               containerdConfig(dir),
		"cni/net.d/10-k8s-e2e.conflist": cniConfig(dir),
		"kubelet.yaml":                  kubeletConfig(dir, id, p),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	if err := n.start("containerd", "containerd", "--config", filepath.Join(dir, "containerd.toml")); err != nil {
		return nil, err
	}
	// After a hard kill containerd leaves its socket behind: wait for an
	// answer, not for the file.
	if err := n.waitFor(ctx, "containerd to answer", func() error { _, err := n.Ctr(ctx, "version"); return err }); err != nil {
		return nil, err
	}
	if err := n.ImportImage(ctx, os.Getenv(EnvPauseImage)); err != nil {
		return nil, err
	}
	if err := n.start("kubelet", kubenode, "kubelet",
		"--config="+filepath.Join(dir, "kubelet.yaml"),
		"--kubeconfig="+filepath.Join(dir, "kubelet.kubeconfig"),
		"--node-ip="+nodeIP, "--hostname-override="+NodeName,
		"--root-dir=/var/lib/kubelet", "--cert-dir="+filepath.Join(dir, "pki", "kubelet-generated"),
		"--v=2"); err != nil {
		return nil, err
	}
	if err := n.waitFor(ctx, "the node to be Ready", func() error {
		node, err := n.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status != corev1.ConditionTrue {
					return fmt.Errorf("node condition Ready %s: %s", c.Status, c.Message)
				}
				return nil
			}
		}
		return errors.New("no Ready condition")
	}); err != nil {
		return nil, err
	}
	// The controllers run: the default ServiceAccount exists.
	if err := n.waitFor(ctx, "the controllers to create the default ServiceAccount", func() error {
		_, err := n.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, err
	}
	n.StartTime = time.Since(begin)
	return n, nil
}

// start starts a component with its output in Dir/logs/name.log.
func (n *Node) start(name, bin string, args ...string) error {
	log := filepath.Join(n.Dir, "logs", name+".log")
	f, err := os.Create(log)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = n.Dir
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	n.procs = append(n.procs, p)
	return nil
}

// Failed reports a component that exited while the node runs, with the
// end of its log.
func (n *Node) Failed() error {
	for _, p := range n.procs {
		select {
		case <-p.done:
			if !p.stopping {
				return fmt.Errorf("%s exited: %v; its log ends:\n%s", p.name, p.err, tail(p.log, 20))
			}
		default:
		}
	}
	return nil
}

// Log is the path of a component's log (kine, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd, kubelet).
func (n *Node) Log(component string) string {
	return filepath.Join(n.Dir, "logs", component+".log")
}

// Stop stops the components, the last started first: SIGTERM, then
// SIGKILL after 10 s. Containers keep running until the namespaces end.
func (n *Node) Stop() {
	for i := len(n.procs) - 1; i >= 0; i-- {
		p := n.procs[i]
		p.stopping = true
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// waitFor polls check until it returns nil, a component fails or ctx
// ends; the error names what it waited for and the last answer.
func (n *Node) waitFor(ctx context.Context, what string, check func() error) error {
	pause := 10 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return nil
		}
		if ferr := n.Failed(); ferr != nil {
			return fmt.Errorf("waiting for %s: %w", what, ferr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(pause):
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// Ctr runs containerd's ctr in kubelet's namespace (k8s.io).
func (n *Node) Ctr(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", containerdSocket, "--namespace", "k8s.io"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

// ImportImage loads an OCI archive into containerd, for the node's
// platform only, as an operator's registry would serve it: images are
// never pulled here (imagePullPolicy IfNotPresent finds them).
func (n *Node) ImportImage(ctx context.Context, archive string) error {
	_, err := n.Ctr(ctx, "images", "import", "--platform", "linux/"+goarch(), archive)
	return err
}

// Images lists the names of the images containerd holds for kubelet.
func (n *Node) Images(ctx context.Context) ([]string, error) {
	out, err := n.Ctr(ctx, "images", "list", "--quiet")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

// ignoreNotFound is nil for a NotFound error.
func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
