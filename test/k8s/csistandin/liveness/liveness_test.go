package liveness_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/csiconn"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/driver"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/liveness"
)

// probeDriver answers Probe as told: not ready, or not at all until the
// caller gives up.
type probeDriver struct {
	csi.UnimplementedIdentityServer
	notReady, block bool
}

func (d probeDriver) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if d.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(!d.notReady)}, nil
}

func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return sock
}

func standIn(t *testing.T) func(*grpc.Server) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mon, err := agent.New(agent.Config{Interval: time.Second, Timeout: time.Second, MinRetry: time.Second, MaxConcurrent: 1, Hostname: "n", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := driver.New(driver.Config{NodeID: "n", SourceRoot: t.TempDir(), Health: csihealth.New(mon), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return srv.Register
}

// TestHealthz: /healthz is the driver's Probe, as kubelet sees it through
// efs-plugin's liveness probe on the health port.
func TestHealthz(t *testing.T) {
	for _, tc := range []struct {
		name   string
		driver func(*grpc.Server)
		code   int
		body   string
	}{
		{"the stand-in driver", standIn(t), http.StatusOK, "ok"},
		{"not ready", func(g *grpc.Server) { csi.RegisterIdentityServer(g, probeDriver{notReady: true}) }, http.StatusInternalServerError, "driver responded but is not ready"},
		// The probe's own deadline answers 500, well before kubelet's
		// timeoutSeconds (3 in the DaemonSet) would fail the probe.
		{"stuck", func(g *grpc.Server) { csi.RegisterIdentityServer(g, probeDriver{block: true}) }, http.StatusInternalServerError, "DeadlineExceeded"},
		{"no driver", nil, http.StatusInternalServerError, "DeadlineExceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "absent.sock")
			if tc.driver != nil {
				sock = serve(t, tc.driver)
			}
			conn, err := csiconn.Dial(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			h, err := liveness.NewHandler(conn, 300*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h.Routes())
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.body) {
				t.Fatalf("/healthz = %d %q, want %d %q", resp.StatusCode, b, tc.code, tc.body)
			}
			resp, err = http.Get(srv.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("/metrics = %d, want 404 (upstream serves it only with --http-endpoint)", resp.StatusCode)
			}
		})
	}
}

func TestNewHandlerRejectsTimeout(t *testing.T) {
	if _, err := liveness.NewHandler(nil, 0, nil); err == nil || !strings.Contains(err.Error(), "probe-timeout 0s") {
		t.Fatalf("NewHandler with no timeout: %v", err)
	}
}
