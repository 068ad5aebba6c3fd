package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/discovery"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// shutdownGrace bounds the graceful shutdown so the process exits within
// two seconds of SIGTERM even when checks are stuck in the kernel.
const shutdownGrace = 1500 * time.Millisecond

func main() {
	// OTLP push uses the OpenTelemetry default protocol, http/protobuf (port
	// 4318), unless OTEL_EXPORTER_OTLP_PROTOCOL chooses grpc: the design
	// document names none, and every collector receives both.
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status: 0 on success, 1
// when a one-shot check finds a problem or the agent fails at run time, 2
// for bad configuration.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "check" {
		return runCheck(args[1:], getenv, stdout, stderr)
	}
	cfg, rest, err := parseConfig("efs-health-agent", args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "efs-health-agent: %v\n", err)
		return 2
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "efs-health-agent: unexpected argument %q (use --mount PATH, or the check subcommand)\n", rest[0])
		return 2
	}
	ln, err := net.Listen("tcp", cfg.listenAddr())
	if err != nil {
		fmt.Fprintf(stderr, "efs-health-agent: invalid %s=%d: cannot listen on %s: %v\n", cfg.origin["port"], cfg.Port, cfg.listenAddr(), err)
		return 2
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, getenv, ln, log); err != nil {
		log.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the agent until ctx is cancelled, then shuts down within
// shutdownGrace without waiting for checks stuck in the kernel.
func serve(ctx context.Context, cfg *config, getenv func(string) string, ln net.Listener, log *slog.Logger) error {
	// The monitor is built with the telemetry's Observer, and the metric
	// callbacks read the monitor: the source is set once it exists. New
	// also routes the OTel SDK's export errors to log, at most once a
	// minute.
	tel, err := exporters.New(ctx, nil, exporters.Options{Version: version, InstanceID: cfg.NodeName, Logger: log, Getenv: getenv, MountStats: exporters.SelfMountStats})
	if err != nil {
		ln.Close()
		return fmt.Errorf("telemetry: %w", err)
	}
	// The mount table is followed from the start: checks use it to tell
	// an unmounted path (now local disk) from the registered mount.
	watcher, err := discovery.New(discovery.Config{MountInfo: cfg.MountInfo, FSTypes: cfg.DiscoverFSTypes,
		Prefix: cfg.DiscoverPrefix, Interval: cfg.DiscoveryInterval, Logger: log})
	if err != nil {
		ln.Close()
		return fmt.Errorf("discovery: %w", err)
	}
	if _, err := watcher.Refresh(); err != nil {
		ln.Close()
		return fmt.Errorf("%s=%q: %w", cfg.origin["mountinfo"], cfg.MountInfo, err)
	}
	ac := cfg.agentConfig()
	ac.Logger = log
	ac.Observer = tel.Observer()
	ac.MountTable = watcher
	mon, err := agent.New(ac)
	if err != nil {
		ln.Close()
		return fmt.Errorf("create monitor: %w", err)
	}
	tel.SetSource(mon)
	for _, p := range cfg.Mounts {
		if err := mon.Register(agent.Mount{Path: p}); err != nil {
			ln.Close()
			return fmt.Errorf("register %q: %w", p, err)
		}
	}
	extra := map[string]http.Handler{exporters.PathDebugChecks: tel.DebugChecksHandler()}
	if cfg.EnableDebug {
		extra["/debug/pprof/*"] = http.HandlerFunc(pprofIndex)
	}
	router := httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler(), Extra: extra, Logger: log})
	srv := httpapi.NewServer(ln.Addr().String(), router, log)

	monDone := make(chan error, 1)
	go func() { monDone <- mon.Run(ctx) }()
	// NFS client statistics are read in the background, never on a scrape.
	go tel.RunNFSStats(ctx, 15*time.Second)
	go func() {
		if err := watcher.Run(ctx, mon, cfg.Mounts); err != nil {
			log.Error("mount table watcher stopped", "err", err)
		}
	}()
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	pushM, pushT := tel.Pushing()
	log.Info("agent started", "addr", ln.Addr().String(), "version", version, "otlp_metrics", pushM, "otlp_traces", pushT,
		"interval", cfg.Interval, "timeout", cfg.Timeout, "mounts", len(cfg.Mounts), "node", cfg.NodeName,
		"discover_fstypes", strings.Join(cfg.DiscoverFSTypes, ","), "discover_prefix", cfg.DiscoverPrefix)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-srvDone:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-monDone:
		runErr = fmt.Errorf("monitor stopped: %w", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := tel.Shutdown(sctx); err != nil {
		log.Warn("telemetry flush", "err", err)
	}
	return runErr
}

func pprofIndex(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/debug/pprof/cmdline":
		pprof.Cmdline(w, r)
	case "/debug/pprof/profile":
		pprof.Profile(w, r)
	case "/debug/pprof/symbol":
		pprof.Symbol(w, r)
	case "/debug/pprof/trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
}
