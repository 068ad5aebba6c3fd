package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/csiconn"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/liveness"
)

// livenessFlags are livenessprobe's flags (cmd/livenessprobe/main.go,
// v2.19.0) that the DaemonSet passes or that matter to it, with
// upstream's defaults.
type livenessFlags struct {
	csiAddress   string
	healthPort   int
	probeTimeout time.Duration
	v            int
}

func parseLivenessFlags(args []string, stderr io.Writer) (livenessFlags, error) {
	var f livenessFlags
	fs := flag.NewFlagSet("livenessprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.csiAddress, "csi-address", "/run/csi/socket", "address of the CSI driver socket")
	fs.IntVar(&f.healthPort, "health-port", 9808, "TCP port of /healthz, on every address")
	fs.DurationVar(&f.probeTimeout, "probe-timeout", liveness.DefaultProbeTimeout, "timeout of one probe")
	fs.IntVar(&f.v, "v", 0, "log verbosity; 4 and above log debug records")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case fs.NArg() > 0:
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	case f.healthPort <= 0 || f.healthPort > 65535:
		return f, fmt.Errorf("health-port %d: must be a TCP port (1-65535)", f.healthPort)
	case f.probeTimeout <= 0:
		return f, fmt.Errorf("probe-timeout %v: must be positive", f.probeTimeout)
	}
	return f, nil
}

func runLiveness(args []string, stderr io.Writer) int {
	f, err := parseLivenessFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := newLogger(stderr, f.v, "liveness-probe")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	conn, err := csiconn.Dial(f.csiAddress)
	if err != nil {
		fmt.Fprintf(stderr, "csi-address: %v\n", err)
		return 2
	}
	defer conn.Close()
	// Upstream asks for the driver's name before it serves, waiting for
	// the driver to listen.
	name, err := csiconn.DriverName(ctx, conn, f.probeTimeout, log)
	if err != nil {
		log.Error("discover the driver's name", "err", err)
		return 1
	}
	h, err := liveness.NewHandler(conn, f.probeTimeout, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(f.healthPort))
	srv := &http.Server{Addr: addr, Handler: h.Routes(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Info("serving /healthz", "address", addr, "driver", name)
	select {
	case <-ctx.Done():
	case err := <-served:
		log.Error("health server", "err", err)
		return 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), f.probeTimeout+time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("shutdown", "err", err)
	}
	return 0
}
