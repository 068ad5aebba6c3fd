package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// SupportedVersions is what GetInfo offers, node-driver-registrar's
// supportedVersions (main.go, v2.17.0). kubelet takes the highest 1.x
// (RegistrationHandler.validateVersions, pkg/volume/csi/csi_plugin.go,
// kubernetes v1.34.2).
var SupportedVersions = []string{"1.0.0"}

// Config configures a Server.
type Config struct {
	// DriverName is the CSI driver's name, from its GetPluginInfo.
	DriverName string
	// KubeletRegistrationPath is the path of the driver's CSI socket on
	// the host, where kubelet dials it (--kubelet-registration-path).
	KubeletRegistrationPath string
	// PluginRegistrationPath is the directory the registration socket is
	// created in (--plugin-registration-path, default /registration: the
	// host's /var/lib/kubelet/plugins_registry mounted in the container).
	PluginRegistrationPath string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server answers kubelet's plugin registration calls.
type Server struct {
	registerapi.UnimplementedRegistrationServer
	cfg        Config
	log        *slog.Logger
	registered atomic.Bool
	// failed receives kubelet's error when it reports a failed
	// registration; one is enough to end Serve.
	failed chan error
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.DriverName == "":
		return nil, errors.New("registrar: the driver name is empty")
	case cfg.KubeletRegistrationPath == "":
		return nil, errors.New("kubelet-registration-path is a required parameter")
	case !filepath.IsAbs(cfg.KubeletRegistrationPath):
		return nil, fmt.Errorf("kubelet-registration-path %q: must be an absolute path", cfg.KubeletRegistrationPath)
	case cfg.PluginRegistrationPath == "":
		return nil, errors.New("plugin-registration-path is empty")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg, log: log.With("driver", cfg.DriverName), failed: make(chan error, 1)}, nil
}

// SocketPath is the registration socket, buildSocketPath's
// <plugin-registration-path>/<driver>-reg.sock (node_register.go).
func (s *Server) SocketPath() string {
	return filepath.Join(s.cfg.PluginRegistrationPath, s.cfg.DriverName+"-reg.sock")
}

// Registered reports whether kubelet has reported a successful
// registration.
func (s *Server) Registered() bool { return s.registered.Load() }

// GetInfo tells kubelet what the plugin is and where its CSI socket is.
func (s *Server) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	s.log.Debug("GetInfo")
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              s.cfg.DriverName,
		Endpoint:          s.cfg.KubeletRegistrationPath,
		SupportedVersions: SupportedVersions,
	}, nil
}

// NotifyRegistrationStatus records kubelet's verdict; a failure ends
// Serve with kubelet's error.
func (s *Server) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if !st.PluginRegistered {
		s.log.Error("kubelet failed to register the driver", "err", st.Error)
		select {
		case s.failed <- fmt.Errorf("kubelet failed to register driver %s: %s", s.cfg.DriverName, st.Error):
		default:
		}
		return &registerapi.RegistrationStatusResponse{}, nil
	}
	if !s.registered.Swap(true) {
		s.log.Info("registered with kubelet", "endpoint", s.cfg.KubeletRegistrationPath)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Serve creates the registration socket (replacing a stale one), serves
// kubelet on it, and removes it when ctx ends (the registrar's SIGTERM),
// returning nil, or when kubelet reports a failed registration, returning
// that error.
func (s *Server) Serve(ctx context.Context) error {
	sock := s.SocketPath()
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale registration socket: %w", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("registration socket: %w", err)
	}
	// Only root (kubelet) may connect, as upstream's umask 0077 gives.
	if err := os.Chmod(sock, 0o600); err != nil {
		_ = ln.Close()
		return fmt.Errorf("registration socket: %w", err)
	}
	g := grpc.NewServer()
	registerapi.RegisterRegistrationServer(g, s)
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	s.log.Info("registration server started", "socket", sock)
	var result error
	select {
	case <-ctx.Done():
	case result = <-s.failed:
	case err := <-served:
		result = fmt.Errorf("registration server: %w", err)
	}
	// The socket goes first: its removal is what tells kubelet the driver
	// left (its plugin watcher then deregisters it).
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) && result == nil {
		result = fmt.Errorf("remove registration socket: %w", err)
	}
	g.Stop()
	return result
}
