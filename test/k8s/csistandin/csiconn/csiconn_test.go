package csiconn_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/csiconn"
)

func TestSocketPath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "/csi/csi.sock", want: "/csi/csi.sock"},
		{in: "unix:/csi/csi.sock", want: "/csi/csi.sock"}, // the DaemonSet's CSI_ENDPOINT
		{in: "unix:///csi/csi.sock", want: "/csi/csi.sock"},
		{in: "unix://tmp/csi.sock", want: "/tmp/csi.sock"}, // upstream's --endpoint default
		{in: "tcp://127.0.0.1:10000", err: "want a unix socket"},
		{in: "csi.sock", err: "want a unix socket"},
		{in: "unix://", err: "no socket path"},
	} {
		got, err := csiconn.SocketPath(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("SocketPath(%q) = %q, %v; want an error naming it, %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("SocketPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

type namedDriver struct {
	csi.UnimplementedIdentityServer
	name string
}

func (d namedDriver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name}, nil
}

func serve(t *testing.T, sock string, ids csi.IdentityServer) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	csi.RegisterIdentityServer(g, ids)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
}

// TestDriverNameWaitsForTheDriver: the sidecars start with the driver, in
// any order; the name is asked once the driver listens.
func TestDriverNameWaitsForTheDriver(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "csi.sock")
	conn, err := csiconn.Dial("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	type result struct {
		name string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		name, err := csiconn.DriverName(context.Background(), conn, 50*time.Millisecond, log)
		got <- result{name, err}
	}()
	select {
	case r := <-got:
		t.Fatalf("DriverName returned %+v before the driver listened", r)
	case <-time.After(200 * time.Millisecond):
	}
	serve(t, sock, namedDriver{name: "efs.csi.aws.com"})
	if r := <-got; r.err != nil || r.name != "efs.csi.aws.com" {
		t.Fatalf("DriverName = %+v", r)
	}
}

func TestDriverNameErrors(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	for name, ids := range map[string]csi.IdentityServer{
		"empty":         namedDriver{},
		"unimplemented": csi.UnimplementedIdentityServer{},
	} {
		sock := filepath.Join(dir, name+".sock")
		serve(t, sock, ids)
		conn, err := csiconn.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = csiconn.DriverName(ctx, conn, time.Second, log)
		waitedOut := ctx.Err()
		cancel()
		_ = conn.Close()
		if err == nil || waitedOut != nil {
			t.Errorf("%s: DriverName = %v (waited out the context: %v), want an error at once", name, err, waitedOut)
		}
	}
	// No driver ever: the caller's context ends the wait.
	conn, err := csiconn.Dial(filepath.Join(dir, "absent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := csiconn.DriverName(ctx, conn, 50*time.Millisecond, log); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DriverName without a driver: %v, want the context's deadline", err)
	}
}
