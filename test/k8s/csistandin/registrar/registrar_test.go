package registrar_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/sets"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/tools/record"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/csiconn"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/driver"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/registrar"
)

// csiHandler is kubelet's CSI plugin handler (RegistrationHandler,
// pkg/volume/csi/csi_plugin.go, kubernetes v1.34.2) without the API
// objects: ValidatePlugin and RegisterPlugin take the highest supported
// version as kubelet does (utilversion.HighestSupportedVersion), and
// RegisterPlugin dials the endpoint and asks NodeGetInfo, as kubelet does
// before it writes the node id into the CSINode object.
type csiHandler struct {
	fail error // RegisterPlugin's error, when set

	mu     sync.Mutex
	events []string
}

func (h *csiHandler) record(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *csiHandler) saw(e string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.events, e)
}

func (h *csiHandler) ValidatePlugin(name, endpoint string, versions []string) error {
	if _, err := utilversion.HighestSupportedVersion(versions); err != nil {
		return err
	}
	h.record("validate " + name + " " + endpoint)
	return nil
}

func (h *csiHandler) RegisterPlugin(name, endpoint string, versions []string, _ *time.Duration) error {
	if h.fail != nil {
		return h.fail
	}
	conn, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := csi.NewNodeClient(conn).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		return fmt.Errorf("NodeGetInfo: %w", err)
	}
	h.record(fmt.Sprintf("register %s %s %v node %s", name, endpoint, versions, info.GetNodeId()))
	return nil
}

func (h *csiHandler) DeRegisterPlugin(name, endpoint string) {
	h.record("deregister " + name + " " + endpoint)
}

// startDriver serves the stand-in driver's CSI services on a socket.
func startDriver(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mon, err := agent.New(agent.Config{Interval: time.Second, Timeout: time.Second, MinRetry: time.Second, MaxConcurrent: 1,
		Hostname: "node-1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := driver.New(driver.Config{NodeID: "node-1", SourceRoot: t.TempDir(), Health: csihealth.New(mon), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "csi.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return sock
}

// startKubelet runs kubelet's own plugin manager (its plugin watcher on
// the registration directory, its reconciler and operation generator,
// pkg/kubelet/pluginmanager, kubernetes v1.34.2) with h as the handler of
// CSI plugins, as kubelet adds its CSI handler.
func startKubelet(t *testing.T, dir string, h *csiHandler) {
	t.Helper()
	pm := pluginmanager.NewPluginManager(dir, &record.FakeRecorder{})
	pm.AddHandler(registerapi.CSIPlugin, h)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		pm.Run(config.NewSourcesReady(func(sets.Set[string]) bool { return true }), stop)
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
}

// startRegistrar discovers the driver's name over its socket, as the
// registrar's main does, and serves the registration socket in dir.
func startRegistrar(t *testing.T, ctx context.Context, csiSock, dir string) (*registrar.Server, <-chan error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn, err := csiconn.Dial(csiSock)
	if err != nil {
		t.Fatal(err)
	}
	name, err := csiconn.DriverName(ctx, conn, time.Second, log)
	_ = conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registrar.New(registrar.Config{DriverName: name, KubeletRegistrationPath: csiSock, PluginRegistrationPath: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	return srv, served
}

func wait(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(testutil.WaitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// TestKubeletRegistersTheDriver: kubelet's plugin watcher finds the
// registration socket, GetInfo gives it the driver's name, endpoint and
// versions, it reaches the driver there (NodeGetInfo), and reports
// success; when the registrar stops (SIGTERM) its socket goes and kubelet
// deregisters the driver.
func TestKubeletRegistersTheDriver(t *testing.T) {
	csiSock := startDriver(t)
	dir := filepath.Join(t.TempDir(), "plugins_registry")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	h := &csiHandler{}
	startKubelet(t, dir, h)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	srv, served := startRegistrar(t, ctx, csiSock, dir)

	want := fmt.Sprintf("register efs.csi.aws.com %s [1.0.0] node node-1", csiSock)
	testutil.WaitFor(t, "kubelet to register the driver", func() bool { return h.saw(want) })
	testutil.WaitFor(t, "the registrar to hear of it", srv.Registered)
	sock := filepath.Join(dir, "efs.csi.aws.com-reg.sock")
	if srv.SocketPath() != sock {
		t.Fatalf("registration socket %s, want %s (node-driver-registrar's buildSocketPath)", srv.SocketPath(), sock)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("registration socket %v, %v: want a socket only root may use", fi, err)
	}

	stop()
	if err := wait(t, "the registrar to stop", served); err != nil {
		t.Fatalf("Serve after SIGTERM: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("registration socket left behind: %v", err)
	}
	testutil.WaitFor(t, "kubelet to deregister the driver", func() bool { return h.saw("deregister efs.csi.aws.com " + csiSock) })
}

// TestFailedRegistrationEndsTheRegistrar: when kubelet cannot register
// the driver it says so (NotifyRegistrationStatus), and the registrar
// ends with kubelet's reason, as node-driver-registrar exits 1 so that
// its container restarts.
func TestFailedRegistrationEndsTheRegistrar(t *testing.T) {
	csiSock := startDriver(t)
	dir := t.TempDir()
	startKubelet(t, dir, &csiHandler{fail: errors.New("driver refused")})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	srv, served := startRegistrar(t, ctx, csiSock, dir)
	err := wait(t, "the registrar to end", served)
	if err == nil || !strings.Contains(err.Error(), "driver refused") {
		t.Fatalf("Serve = %v, want kubelet's reason", err)
	}
	if srv.Registered() {
		t.Fatal("registered after a failed registration")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  registrar.Config
		want string
	}{
		{registrar.Config{KubeletRegistrationPath: "/x", PluginRegistrationPath: "/r"}, "driver name"},
		{registrar.Config{DriverName: "d", PluginRegistrationPath: "/r"}, "kubelet-registration-path is a required parameter"},
		{registrar.Config{DriverName: "d", KubeletRegistrationPath: "csi.sock", PluginRegistrationPath: "/r"}, `kubelet-registration-path "csi.sock"`},
		{registrar.Config{DriverName: "d", KubeletRegistrationPath: "/x"}, "plugin-registration-path"},
	} {
		if _, err := registrar.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
}
