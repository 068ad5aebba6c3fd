package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/csihealth"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/csiconn"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/driver"
)

// driverFlags are efs-plugin's arguments: those of upstream's flags
// (pkg/driver/options.go, aws-efs-csi-driver v3.4.1, and klog's) that its
// node DaemonSet passes, with their types, and the stand-in's
// --source-root.
type driverFlags struct {
	endpoint   string
	v          int
	sourceRoot string
}

func parseDriverFlags(args []string, stderr io.Writer) (driverFlags, error) {
	var f driverFlags
	fs := flag.NewFlagSet("aws-efs-csi-driver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.endpoint, "endpoint", "unix://tmp/csi.sock", "CSI endpoint (unix:/path)")
	fs.IntVar(&f.v, "v", 0, "log verbosity; 4 and above log debug records")
	fs.StringVar(&f.sourceRoot, "source-root", driver.DefaultSourceRoot, "stand-in: directory holding one source directory per file system id")
	// Accepted with upstream's types and ignored: they tune klog, the
	// driver's own volume metrics, mount limits, unmount timeouts and
	// CloudWatch logging, none of which the stand-in has.
	fs.Bool("logtostderr", true, "ignored (upstream's klog flag)")
	for _, name := range []string{"vol-metrics-opt-in", "max-inflight-mount-calls-opt-in", "volume-attach-limit-opt-in",
		"force-unmount-after-timeout", "debug-logs", "efs-cloudwatch-log-enabled", "s3files-cloudwatch-log-enabled",
		"s3files-cloudwatch-metrics-enabled"} {
		fs.Bool(name, false, "ignored (upstream's)")
	}
	fs.Float64("vol-metrics-refresh-period", 240, "ignored (upstream's)")
	fs.Int("vol-metrics-fs-rate-limit", 5, "ignored (upstream's)")
	fs.Int64("max-inflight-mount-calls", -1, "ignored (upstream's)")
	fs.Int64("volume-attach-limit", -1, "ignored (upstream's)")
	fs.Duration("unmount-timeout", 30*time.Second, "ignored (upstream's)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, nil
}

func runDriver(args []string, stderr io.Writer) int {
	f, err := parseDriverFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := newLogger(stderr, f.v, "efs-plugin")
	sock, err := csiconn.SocketPath(f.endpoint)
	if err != nil {
		fmt.Fprintf(stderr, "endpoint: %v\n", err)
		return 2
	}
	nodeName := os.Getenv("CSI_NODE_NAME")
	cfg := agent.DefaultConfig()
	cfg.Hostname, cfg.Logger = nodeName, log
	mon, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return 2
	}
	srv, err := driver.New(driver.Config{NodeID: nodeName, Version: "standin", SourceRoot: f.sourceRoot,
		Health: csihealth.New(mon), Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Upstream's ParseEndpoint removes a stale socket before listening.
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Error("remove stale socket", "socket", sock, "err", err)
		return 1
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		_ = mon.Run(ctx)
	}()
	g := grpc.NewServer()
	srv.Register(g)
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	log.Info("serving CSI", "socket", sock, "node_id", nodeName, "source_root", f.sourceRoot)
	code := 0
	select {
	case <-ctx.Done():
	case err := <-served:
		log.Error("CSI server stopped", "err", err)
		code = 1
	}
	stop()
	g.GracefulStop()
	<-monDone
	return code
}
