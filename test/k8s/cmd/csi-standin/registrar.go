package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/csiconn"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/csistandin/registrar"
)

// registrarFlags are node-driver-registrar's flags (main.go, v2.17.0)
// that the DaemonSet passes or that matter to it, with upstream's
// defaults.
type registrarFlags struct {
	csiAddress, kubeletRegistrationPath, pluginRegistrationPath string
	timeout                                                     time.Duration
	v                                                           int
}

func parseRegistrarFlags(args []string, stderr io.Writer) (registrarFlags, error) {
	var f registrarFlags
	fs := flag.NewFlagSet("csi-node-driver-registrar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.csiAddress, "csi-address", "/run/csi/socket", "path of the CSI driver socket the registrar connects to")
	fs.StringVar(&f.kubeletRegistrationPath, "kubelet-registration-path", "", "path of the CSI driver socket on the host (required)")
	fs.StringVar(&f.pluginRegistrationPath, "plugin-registration-path", "/registration", "kubelet's plugin registration directory, as mounted in the container")
	fs.DurationVar(&f.timeout, "timeout", time.Second, "timeout of each call to the CSI driver")
	fs.IntVar(&f.v, "v", 0, "log verbosity; 4 and above log debug records")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case fs.NArg() > 0:
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	case f.kubeletRegistrationPath == "":
		return f, fmt.Errorf("kubelet-registration-path is a required parameter")
	case f.timeout <= 0:
		return f, fmt.Errorf("timeout %v: must be positive", f.timeout)
	}
	return f, nil
}

func runRegistrar(args []string, stderr io.Writer) int {
	f, err := parseRegistrarFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := newLogger(stderr, f.v, "csi-driver-registrar")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	conn, err := csiconn.Dial(f.csiAddress)
	if err != nil {
		fmt.Fprintf(stderr, "csi-address: %v\n", err)
		return 2
	}
	name, err := csiconn.DriverName(ctx, conn, f.timeout, log)
	_ = conn.Close()
	if err != nil {
		log.Error("discover the driver's name", "err", err)
		return 1
	}
	srv, err := registrar.New(registrar.Config{DriverName: name, KubeletRegistrationPath: f.kubeletRegistrationPath,
		PluginRegistrationPath: f.pluginRegistrationPath, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := srv.Serve(ctx); err != nil {
		log.Error("registration", "err", err)
		return 1
	}
	return 0
}
