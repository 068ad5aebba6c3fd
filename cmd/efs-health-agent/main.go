package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/nfsstats"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// The process exits within shutdownBound of SIGTERM whatever its clients
// do (stalled readers, slow bodies, scrapes in progress) and even when
// checks are stuck in the kernel: the HTTP server has httpShutdownGrace to
// finish the requests in progress, then its connections are closed, while
// the checks in flight have agent.ShutdownDrain; then telemetry has
// telemetryFlushGrace to flush. That is 3 s by the timers; the bound
// leaves the rest for a loaded node. The manifests' comments and
// terminationGracePeriodSeconds state the same bound.
const (
	httpShutdownGrace   = 2 * time.Second
	telemetryFlushGrace = time.Second
	shutdownBound       = 5 * time.Second
)

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
	if len(args) == 1 && args[0] == "version" {
		fmt.Fprintf(stdout, "efs-health-agent %s\n", version)
		return 0
	}
	cfg, rest, err := parseConfig("efs-health-agent", args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errVersion) {
		fmt.Fprintf(stdout, "efs-health-agent %s\n", version)
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
	if err := exporters.ValidateEnv(getenv); err != nil {
		fmt.Fprintf(stderr, "efs-health-agent: %v\n", err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.listenAddr())
	if err != nil {
		fmt.Fprintf(stderr, "efs-health-agent: %s\n", listenError(cfg, err))
		return 2
	}
	// The mount table is read once before anything is logged, with the
	// bounds of every later read: a FIFO, a device or a file that does not
	// answer is a bad setting, reported in one line.
	if err := discovery.CheckTable(context.Background(), cfg.MountInfo); err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "efs-health-agent: %s\n", pathesc.Display(fmt.Sprintf("invalid %s=%q: %v", cfg.origin["mountinfo"], cfg.MountInfo, err)))
		return 2
	}
	log := newLogger(cfg, stderr)
	warnNothingMonitored(cfg, log)
	setMemoryLimit(log, getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, getenv, ln, log); err != nil {
		var se *settingError
		if errors.As(err, &se) {
			fmt.Fprintf(stderr, "efs-health-agent: %s\n", pathesc.Display(se.Error()))
			return 2
		}
		log.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

// listenError says why the agent cannot listen on its address. A port
// already in use is no invalid value: the message names the address and
// who to ask, with the settings that choose another one.
func listenError(cfg *config, err error) string {
	addr := cfg.listenAddr()
	if cfg.BindAddress == "" {
		addr += " (all interfaces)"
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Sprintf("cannot listen on %s: the port is already in use by another process (another agent?); stop it, or choose another port with %s",
			addr, settingNames(cfg, "port"))
	}
	return fmt.Sprintf("cannot listen on %s: %v; check %s and %s", addr, err, settingNames(cfg, "port"), settingNames(cfg, "bind-address"))
}

// settingNames names a setting for a message: where its value came from,
// or, for a default, its flag and variable.
func settingNames(cfg *config, flag string) string {
	if from := cfg.origin[flag]; from != "default" && from != "" {
		return from
	}
	for _, s := range settings {
		if s.flag == flag {
			return "--" + s.flag + " or " + s.env
		}
	}
	return "--" + flag
}

// memoryLimitRatio is the share of the container's memory limit given to
// the Go runtime as its soft limit; the rest is headroom for memory the
// runtime does not count (thread stacks, page tables, the binary).
const memoryLimitRatio = 0.9

// setMemoryLimit sets the Go runtime's soft memory limit to
// memoryLimitRatio of the cgroup's memory limit (v1 or v2), so that the
// garbage collector works harder before the kernel OOM-kills the agent,
// unless GOMEMLIMIT is set (the runtime has read it already) or
// AUTOMEMLIMIT=off. It logs the limit in force and where it came from.
func setMemoryLimit(log *slog.Logger, getenv func(string) string) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		logMemoryLimit(log, "GOMEMLIMIT", debug.SetMemoryLimit(-1))
		return
	}
	// The library reads AUTOMEMLIMIT (off, or a ratio) from the process
	// environment itself.
	limit, err := memlimit.Set(memlimit.WithRatio(memoryLimitRatio), memlimit.WithProvider(memlimit.FromCgroup))
	source := "cgroup"
	switch {
	case strings.EqualFold(getenv("AUTOMEMLIMIT"), "off"):
		source = "AUTOMEMLIMIT=off"
	case err != nil:
		source = "none"
		log.Warn("cannot read the cgroup memory limit; the Go runtime has no soft memory limit", "err", err)
	case limit == math.MaxInt64:
		source = "none (no cgroup memory limit)"
	}
	logMemoryLimit(log, source, limit)
}

// logMemoryLimit logs the Go runtime's soft memory limit and its source.
func logMemoryLimit(log *slog.Logger, source string, limit int64) {
	attrs := []any{"source", source, "go_memory_limit_bytes", limit}
	if limit != math.MaxInt64 {
		attrs = append(attrs, "go_memory_limit", fmt.Sprintf("%.1f MiB", float64(limit)/(1<<20)))
	}
	log.Info("memory limit", attrs...)
}

// settingError is a start-up failure caused by a setting, such as a mount
// table that cannot be read; its message names the setting and the
// program exits 2, as for any other bad setting.
type settingError struct{ err error }

func (e *settingError) Error() string { return e.err.Error() }
func (e *settingError) Unwrap() error { return e.err }

// warnNothingMonitored logs a warning when the agent starts with no mount
// to check and no discovery to find one: it would report healthy forever.
func warnNothingMonitored(cfg *config, log *slog.Logger) {
	if len(cfg.Mounts) == 0 && len(cfg.DiscoverFSTypes) == 0 {
		log.Warn("nothing is monitored: no mount is configured and discovery is off; set --mount (HEALTH_MOUNTS) or --discover-fstypes (HEALTH_DISCOVER_FSTYPES)")
	}
}

// warnPlainDirectories logs a warning for each configured mount that is no
// mount point when the agent starts: it is checked as the plain directory
// it is, with no mount-table step, so an EFS volume not mounted (yet) there
// would read healthy. (make run checks a plain directory on purpose.)
func warnPlainDirectories(cfg *config, table map[string]discovery.Entry, log *slog.Logger) {
	for _, p := range cfg.Mounts {
		if _, ok := table[p]; !ok {
			log.Warn("configured mount is not a mount point: checked as a plain directory, with no mount-table check", "mount", p)
		}
	}
}

// newLogger returns the agent's logger. Every string it writes (messages,
// values, errors) goes through pathesc.Display: a mount path or an error
// quoting one cannot put terminal control sequences or bidi overrides in
// the log, and invalid UTF-8 stays distinguishable instead of replaced.
func newLogger(cfg *config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: escapeAttr}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// escapeAttr is the loggers' ReplaceAttr: strings, errors and Stringers
// are escaped with pathesc.Display (messages too, which slog passes here
// under slog.MessageKey).
func escapeAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); pathesc.Display(s) != s {
			a.Value = slog.StringValue(pathesc.Display(s))
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			a.Value = slog.StringValue(errorText(v))
		case fmt.Stringer:
			a.Value = slog.StringValue(pathesc.Display(v.String()))
		case []string:
			esc := make([]string, len(v))
			for i, s := range v {
				esc[i] = pathesc.Display(s)
			}
			a.Value = slog.AnyValue(esc)
		}
	}
	return a
}

// errorText is an error as a log value, escaped with pathesc.Display. The
// parts of a joined error (errors.Join, as the telemetry's shutdown
// returns) are separated with "; " rather than the newline Join puts
// between them, which the escaping would show as a literal \x0a; so are
// the parts of a joined error that another one wraps with a prefix.
func errorText(err error) string {
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		var parts []string
		for _, p := range e.Unwrap() {
			if p != nil {
				parts = append(parts, errorText(p))
			}
		}
		return strings.Join(parts, "; ")
	case interface{ Unwrap() error }:
		msg := err.Error()
		if inner := e.Unwrap(); inner != nil && strings.Contains(inner.Error(), "\n") {
			if prefix, ok := strings.CutSuffix(msg, inner.Error()); ok {
				return pathesc.Display(prefix) + errorText(inner)
			}
		}
	}
	return pathesc.Display(err.Error())
}

// serve runs the agent until ctx is cancelled, then shuts down within
// agent.ShutdownDrain (checks in flight finish, alongside the HTTP
// server's httpShutdownGrace) plus telemetryFlushGrace, without waiting for
// checks stuck in the kernel.
func serve(ctx context.Context, cfg *config, getenv func(string) string, ln net.Listener, log *slog.Logger) error {
	a, err := build(ctx, cfg, getenv, ln, log)
	if err != nil {
		ln.Close()
		return err
	}
	monDone := make(chan error, 1)
	go func() { monDone <- a.mon.Run(ctx) }()
	// NFS client statistics are read in the background, never on a scrape.
	go a.nfs.Run(ctx, 15*time.Second)
	go func() {
		if err := a.watcher.Run(ctx, a.mon, cfg.Mounts); err != nil {
			log.Error("mount table watcher stopped", "err", err)
		}
	}()
	srvDone := make(chan error, 1)
	go func() { srvDone <- a.srv.Serve(ln) }()
	pushM, pushT := a.tel.Pushing()
	log.Info("agent started", "addr", ln.Addr().String(), "version", version, "otlp_metrics", pushM, "otlp_traces", pushT,
		"interval", cfg.Interval, "timeout", cfg.Timeout, "mounts", len(cfg.Mounts), "node", cfg.NodeName,
		"discover_fstypes", strings.Join(cfg.DiscoverFSTypes, ","), "discover_prefix", cfg.DiscoverPrefix)

	var runErr error
	monReturned := false
	select {
	case <-ctx.Done():
	case err := <-srvDone:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-monDone:
		runErr = fmt.Errorf("monitor stopped: %w", err)
		monReturned = true
	}
	log.Info("shutting down")
	if ctx.Err() != nil && !monReturned {
		a.shutdown(monDone, log)
	} else {
		a.shutdown(nil, log)
	}
	return runErr
}

// running is the agent's components, wired.
type running struct {
	tel     *exporters.Telemetry
	nfs     *nfsstats.Cache
	watcher *discovery.Watcher
	mon     *agent.Monitor
	srv     *httpapi.Server
}

// build wires the agent: telemetry, the mount-table watcher, the monitor
// with the configured mounts, and the HTTP server for ln.
func build(ctx context.Context, cfg *config, getenv func(string) string, ln net.Listener, log *slog.Logger) (*running, error) {
	// The monitor is built with the telemetry's Observer, and the metric
	// callbacks read the monitor: the source is set once it exists. New
	// also routes the OTel SDK's export errors to log, at most once a
	// minute.
	a := &running{nfs: nfsstats.NewCache(nfsstats.Self, log)}
	var err error
	a.tel, err = exporters.New(ctx, nil, exporters.Options{Version: version, InstanceID: cfg.NodeName, Logger: log, Getenv: getenv,
		NFSStats: a.nfs.Snapshot, TraceSlowThreshold: cfg.TraceSlowThreshold})
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	// The mount table is followed from the start: checks use it to tell
	// an unmounted path (now local disk) from the registered mount.
	a.watcher, err = discovery.New(discovery.Config{MountInfo: cfg.MountInfo, FSTypes: cfg.DiscoverFSTypes,
		Prefix: cfg.DiscoverPrefix, Paths: cfg.Mounts, Interval: cfg.DiscoveryInterval, StateDir: cfg.EFSStateDir, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	table, err := a.watcher.Refresh()
	if err != nil {
		return nil, &settingError{fmt.Errorf("invalid %s=%q: %w", cfg.origin["mountinfo"], cfg.MountInfo, err)}
	}
	warnPlainDirectories(cfg, table, log)
	ac := cfg.agentConfig()
	ac.Logger = log
	ac.Observer = a.tel.Observer()
	ac.MountTable = a.watcher
	if a.mon, err = agent.New(ac); err != nil {
		return nil, fmt.Errorf("create monitor: %w", err)
	}
	a.tel.SetSource(a.mon)
	for _, p := range cfg.Mounts {
		if err := a.mon.Register(agent.Mount{Path: p}); err != nil {
			return nil, fmt.Errorf("register %q: %w", p, err)
		}
	}
	router := httpapi.NewRouter(a.mon, httpapi.Options{Metrics: a.tel.MetricsHandler(), DebugChecks: httpapi.DebugChecks(a.tel.CheckLog()),
		Pprof: cfg.EnableDebug, Logger: log, NodeName: cfg.NodeName, Version: version})
	a.srv = httpapi.NewServer(ln.Addr().String(), router, log)
	a.srv.MaxConnections = cfg.MaxConnections
	return a, nil
}

// shutdown stops the HTTP server, waits for monDone unless it is nil
// (checks in flight and not stuck finish and remove their probe files:
// Run returns within agent.ShutdownDrain), then flushes the telemetry.
func (a *running) shutdown(monDone <-chan error, log *slog.Logger) {
	drained := make(chan struct{})
	go func() {
		if monDone != nil {
			<-monDone
		}
		close(drained)
	}()
	hctx, hcancel := context.WithTimeout(context.Background(), httpShutdownGrace)
	defer hcancel()
	if err := a.srv.Shutdown(hctx); err != nil {
		// Requests still being written (to a client that does not
		// read, say) are cut off.
		log.Warn("http shutdown: closing the connections still open", "err", err)
		_ = a.srv.Close()
	}
	<-drained
	tctx, tcancel := context.WithTimeout(context.Background(), telemetryFlushGrace)
	defer tcancel()
	if err := a.tel.Shutdown(tctx); err != nil {
		log.Warn("telemetry flush", "err", err)
	}
}
