package csiconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// SocketPath is the unix socket an address names: an absolute path, or a
// unix URL ("unix:/csi/csi.sock", "unix:///csi/csi.sock"), read as
// upstream's ParseEndpoint reads the driver's --endpoint (pkg/util/util.go,
// aws-efs-csi-driver v3.4.1). Anything else is an error naming it.
func SocketPath(address string) (string, error) {
	if strings.HasPrefix(address, "/") {
		return path.Clean(address), nil
	}
	u, err := url.Parse(address)
	if err != nil {
		return "", fmt.Errorf("CSI address %q: %w", address, err)
	}
	if !strings.EqualFold(u.Scheme, "unix") {
		return "", fmt.Errorf("CSI address %q: want a unix socket (an absolute path or unix:/path)", address)
	}
	p := path.Join("/", u.Host, u.Path)
	if p == "/" {
		return "", fmt.Errorf("CSI address %q: no socket path", address)
	}
	return p, nil
}

// Dial returns a connection to the CSI socket at address. It connects
// lazily and reconnects by itself, so one connection serves a sidecar's
// whole life, across restarts of the driver.
func Dial(address string) (*grpc.ClientConn, error) {
	p, err := SocketPath(address)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+p, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CSI address %q: %w", address, err)
	}
	return conn, nil
}

// DriverName asks the driver for its name. Like csi-lib-utils'
// connection.Connect followed by rpc.GetDriverName, it waits for the
// driver to listen (each attempt bounded by timeout, logged when it
// fails), until ctx ends.
func DriverName(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration, log *slog.Logger) (string, error) {
	client := csi.NewIdentityClient(conn)
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := client.GetPluginInfo(actx, &csi.GetPluginInfoRequest{}, grpc.WaitForReady(true))
		cancel()
		switch {
		case err == nil && resp.GetName() == "":
			return "", errors.New("the CSI driver returned an empty name")
		case err == nil:
			return resp.GetName(), nil
		case ctx.Err() != nil:
			return "", fmt.Errorf("waiting for the CSI driver at %s: %w", conn.Target(), ctx.Err())
		case status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable:
			return "", fmt.Errorf("GetPluginInfo at %s: %w", conn.Target(), err)
		}
		log.Info("still waiting for the CSI driver", "address", conn.Target(), "err", err)
	}
}
