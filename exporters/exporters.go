package exporters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/checklog"
	"github.com/efs-health-agent/efs-health-agent/internal/lograte"
	"github.com/efs-health-agent/efs-health-agent/internal/nfsstats"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
)

// Source is what the metric callbacks read: the
// published mount statuses and the aggregate. *agent.Monitor implements it.
// Both methods must be cheap and must not block on the filesystem.
type Source interface {
	// Statuses returns every registered mount's status.
	Statuses() []*agent.MountStatus
	// Summary returns the aggregate health.
	Summary() *agent.Summary
}

// Options configures the pipeline. The zero value is usable.
type Options struct {
	// ServiceName is the default service.name (default
	// "efs-health-agent"); OTEL_SERVICE_NAME and a service.name in
	// OTEL_RESOURCE_ATTRIBUTES win over it.
	ServiceName string
	// InstanceID is the default service.instance.id, normally the node
	// name, so that the pushes of many agents stay distinct series in a
	// collector (its Prometheus exporter turns it into the instance
	// label). A service.instance.id in OTEL_RESOURCE_ATTRIBUTES wins.
	InstanceID string
	// Version is reported in efs_health_agent_build_info and as
	// service.version.
	Version string
	// Logger receives export errors (rate-limited) and configuration
	// notes (default slog.Default()).
	Logger *slog.Logger
	// Getenv reads the OTEL_* variables that decide whether each signal is
	// pushed and by which exporter and protocol (OTEL_*_EXPORTER,
	// OTEL_EXPORTER_OTLP_*PROTOCOL), and the resource (OTEL_SERVICE_NAME,
	// OTEL_RESOURCE_ATTRIBUTES); default os.Getenv. The exporters read
	// their own settings (endpoint, headers, TLS,
	// OTEL_METRIC_EXPORT_INTERVAL, OTEL_BSP_*) from the process
	// environment only, so Getenv should agree with it.
	Getenv func(string) string
	// Now is the clock of the error log rate limit (default time.Now).
	// Span and check times come from the agent's events.
	Now func() time.Time
	// TraceSlowThreshold: a check that takes at least this long always
	// keeps its span tree, like a failed or timed-out one (default
	// DefaultTraceSlowThreshold). Healthy checks faster than this keep
	// their spans only as the sampler chosen by OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG (read through Getenv) decides; see
	// DefaultHealthySampler.
	TraceSlowThreshold time.Duration
	// DebugRecent, DebugSlowest and DebugFailures size the check log of
	// /debug/checks, for all mounts together: the most recent checks, the
	// slowest since start, and how many mounts' last failed check are
	// kept (defaults checklog.DefaultRecent, DefaultSlowest,
	// DefaultFailures).
	DebugRecent, DebugSlowest, DebugFailures int
	// SpanProcessor, if set, also receives every span (tests use
	// tracetest.SpanRecorder; wrap an exporter with
	// sdktrace.NewSimpleSpanProcessor or NewBatchSpanProcessor).
	SpanProcessor sdktrace.SpanProcessor
	// MetricReader, if set, is added to the MeterProvider next to the
	// Prometheus exporter (tests use sdkmetric.NewManualReader).
	MetricReader sdkmetric.Reader
	// NFSStats returns the latest NFS client statistics by mount point,
	// from memory (the agent passes (*nfsstats.Cache).Snapshot, refreshed
	// in the background, so a scrape never reads /proc); nil exports none.
	NFSStats func() nfsstats.Snapshot
}

// Default option values.
const (
	// DefaultServiceName is the service.name when neither Options nor the
	// environment set one.
	DefaultServiceName = "efs-health-agent"
)

// instrumentationScope names the meter and the tracer.
const instrumentationScope = "github.com/efs-health-agent/efs-health-agent"

// Telemetry is the running pipeline: providers, the /metrics registry, the
// Observer's instruments and the /debug/checks store.
type Telemetry struct {
	log    *slog.Logger
	src    atomic.Pointer[sourceRef]
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	// slow and sampler decide which checks keep their spans; sampler is
	// nil when no healthy, fast check does.
	slow    time.Duration
	sampler sdktrace.Sampler

	registry *prometheus.Registry
	// runtime is a second private registry, holding the Prometheus
	// client's process and Go collectors (process_*, go_*).
	runtime *prometheus.Registry
	// gatherer serves /metrics: the registry and the observable rows.
	gatherer prometheus.Gatherer
	debug    *checklog.Log
	// errs logs the SDK's export errors, rate-limited (errors.go).
	errs *slog.Logger

	opDuration metric.Float64Histogram
	checks     metric.Int64Counter

	nfsStats func() nfsstats.Snapshot
	// version is reported in efs_health_agent_build_info.
	version string

	pushMetrics, pushTraces bool

	shutdownOnce sync.Once
	shutdownErr  error
}

type sourceRef struct{ Source }

// MountPathKey is the metric attribute (and Prometheus label) of a mount.
const MountPathKey = attribute.Key("mount_path")

// pathValue is a mount path (or a message that may quote one) as an
// attribute value. A mount point may hold any byte, but Prometheus label
// values and OTLP (protobuf) strings must be UTF-8: an invalid one would
// make the scrape drop the mount's series and the OTLP push fail as a
// whole. pathesc.Escape writes invalid bytes as \xNN and a backslash as
// \\, reversibly, so two paths that differ only in invalid bytes stay two
// series; a valid UTF-8 path without a backslash is unchanged.
func pathValue(p string) string { return pathesc.Escape(p) }

// Span attribute keys.
const (
	// SpanMountPath is the mount point of a check span.
	SpanMountPath = attribute.Key("efs.mount.path")
	// SpanFSType is the filesystem type of a check span, when known.
	SpanFSType = attribute.Key("efs.mount.fstype")
	// SpanOperation is the operation of an operation span.
	SpanOperation = attribute.Key("efs.mount.operation")
	// SpanBytes is the payload size of a write or read span.
	SpanBytes = attribute.Key("efs.mount.bytes")
	// SpanFailureReason is the probes.Reason of a failed check or operation.
	SpanFailureReason = attribute.Key("efs.mount.failure_reason")
	// SpanState is the agent.State a check span ended with.
	SpanState = attribute.Key("efs.mount.state")
	// SpanFileSystemID is the EFS file system of a check span, when known.
	SpanFileSystemID = attribute.Key("efs.mount.filesystem_id")
	// SpanAccessPoint is the EFS access point of a check span, when known.
	SpanAccessPoint = attribute.Key("efs.mount.access_point")
	// SpanService is the service of a check span's file system, "efs" or
	// "s3files", when known.
	SpanService = attribute.Key("efs.mount.service")
	// SpanPodUID is the UID of the pod whose volume the mount is, when known.
	SpanPodUID = attribute.Key("k8s.pod.uid")
	// SpanVolume is the kubelet's name of the volume (the PersistentVolume
	// of a CSI volume), when known.
	SpanVolume = attribute.Key("k8s.volume.name")
)

// New builds the pipeline: the Prometheus exporter on a private registry,
// OTLP push when the environment asks for it, and the tracer provider.
//
// src may be nil and set later with SetSource: the monitor needs the
// Observer when it is built, and the callbacks need the monitor. Until a
// source is set, /metrics shows only the build info.
func New(ctx context.Context, src Source, opts Options) (*Telemetry, error) {
	opts = opts.withDefaults()
	sampler, err := healthySampler(opts.Getenv)
	if err != nil {
		return nil, err
	}
	if sampler.Description() == sdktrace.NeverSample().Description() {
		sampler = nil
	}
	t := &Telemetry{
		nfsStats: opts.NFSStats,
		log:      opts.Logger,
		registry: prometheus.NewRegistry(),
		runtime:  prometheus.NewRegistry(),
		debug:    checklog.New(opts.DebugRecent, opts.DebugSlowest, opts.DebugFailures),
		errs:     exportErrorLogger(opts.Logger, errorLogInterval, opts.Now),
		slow:     opts.TraceSlowThreshold,
		sampler:  sampler,
	}
	t.SetSource(src)
	// The agent's own CPU, memory, file descriptors and Go runtime, under
	// the names every Prometheus exporter uses. The Go collector keeps
	// its default set (the memstats and GC series), not every
	// runtime/metrics series.
	if err := errors.Join(t.runtime.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
		t.runtime.Register(collectors.NewGoCollector())); err != nil {
		return nil, fmt.Errorf("process and Go runtime metrics: %w", err)
	}
	installErrorHandler(t.errs)

	res, err := newResource(ctx, opts.Getenv, opts.ServiceName, opts.InstanceID, opts.Version)
	if res == nil {
		uninstallErrorHandler(t.errs)
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	if err != nil {
		t.log.Warn("telemetry resource", "err", err)
	}
	pm, pt := pushEnabled(opts.Getenv, signalMetrics), pushEnabled(opts.Getenv, signalTraces)
	for _, d := range []pushDecision{pm, pt} {
		if d.note != "" {
			t.log.Info(d.note)
		}
	}
	if t.mp, err = t.newMeterProvider(ctx, res, opts, pm.push); err != nil {
		uninstallErrorHandler(t.errs)
		return nil, err
	}
	if t.tp, err = t.newTracerProvider(ctx, res, opts, pt.push); err != nil {
		_ = t.mp.Shutdown(ctx)
		uninstallErrorHandler(t.errs)
		return nil, err
	}
	t.tracer = t.tp.Tracer(instrumentationScope)

	if err := t.instruments(opts.Version); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	return t, nil
}

// withDefaults fills in the options left zero.
func (opts Options) withDefaults() Options {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ServiceName == "" {
		opts.ServiceName = DefaultServiceName
	}
	if opts.DebugRecent <= 0 {
		opts.DebugRecent = checklog.DefaultRecent
	}
	if opts.DebugSlowest <= 0 {
		opts.DebugSlowest = checklog.DefaultSlowest
	}
	if opts.DebugFailures <= 0 {
		opts.DebugFailures = checklog.DefaultFailures
	}
	if opts.TraceSlowThreshold <= 0 {
		opts.TraceSlowThreshold = DefaultTraceSlowThreshold
	}
	return opts
}

// newMeterProvider builds the meter provider: the Prometheus exporter on
// t's private registry, opts.MetricReader, and OTLP push when push is set.
func (t *Telemetry) newMeterProvider(ctx context.Context, res *resource.Resource, opts Options, push bool) (*sdkmetric.MeterProvider, error) {
	promExp, err := otelprom.New(
		otelprom.WithRegisterer(t.registry),
		// The view layer (names.go) sets the exact Prometheus names, so the
		// exporter must not add unit or type suffixes (_milliseconds,
		// _ratio, _total), nor otel_scope_* labels, nor target_info: the
		// documented scrape has exactly the documented series.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
		// The observable instruments are served by stateGatherer, in
		// one pass over the mounts (gatherer.go).
		otelprom.WithAggregationSelector(promAggregation),
	)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(promExp),
		sdkmetric.WithView(views()...),
		// Exemplars only from sampled spans (the SDK default, pinned so
		// OTEL_METRICS_EXEMPLAR_FILTER cannot turn them off unnoticed).
		sdkmetric.WithExemplarFilter(exemplar.TraceBasedFilter),
		// No cardinality limit: the SDK's default (2,000 series per
		// instrument) would fold the series of every mount beyond the
		// 2,000th into one otel_metric_overflow series. The per-mount
		// series are bounded by the registered mounts, the others are
		// fixed.
		sdkmetric.WithCardinalityLimit(0),
	}
	if opts.MetricReader != nil {
		mopts = append(mopts, sdkmetric.WithReader(opts.MetricReader))
	}
	if push {
		r, err := newPushMetricReader(ctx, opts.Getenv)
		if err != nil {
			return nil, fmt.Errorf("OTLP metric exporter (OTEL_METRICS_EXPORTER / OTEL_EXPORTER_OTLP_*): %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(r))
		t.pushMetrics = true
	}
	return sdkmetric.NewMeterProvider(mopts...), nil
}

// newTracerProvider builds the tracer provider, with opts.SpanProcessor
// and OTLP push when push is set.
func (t *Telemetry) newTracerProvider(ctx context.Context, res *resource.Resource, opts Options, push bool) (*sdktrace.TracerProvider, error) {
	// The sampling decision is taken when a check ends (sampling.go):
	// every span the observer creates is kept, under the trace id the
	// decision was made with.
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(idGenerator{})}
	if opts.SpanProcessor != nil {
		topts = append(topts, sdktrace.WithSpanProcessor(opts.SpanProcessor))
	}
	if push {
		e, err := newPushSpanExporter(ctx, opts.Getenv)
		if err != nil {
			return nil, fmt.Errorf("OTLP span exporter (OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*): %w", err)
		}
		// The batch processor queues ended spans and drops them when the
		// queue is full, so an unreachable collector never blocks a check.
		topts = append(topts, sdktrace.WithBatcher(e))
		t.pushTraces = true
	}
	return sdktrace.NewTracerProvider(topts...), nil
}

// SetSource sets what the metric callbacks read. It is
// safe to call at any time; a nil src reads as no mounts.
func (t *Telemetry) SetSource(src Source) {
	if src == nil {
		t.src.Store(nil)
		return
	}
	t.src.Store(&sourceRef{src})
}

func (t *Telemetry) source() Source {
	if r := t.src.Load(); r != nil {
		return r.Source
	}
	return nil
}

// Pushing reports whether metrics and traces are pushed (OTLP or another
// exporter named by OTEL_*_EXPORTER).
func (t *Telemetry) Pushing() (metrics, traces bool) { return t.pushMetrics, t.pushTraces }

// CheckLog is the log of recent, slowest and failed checks the Observer
// files every check in, for /debug/checks (httpapi.DebugChecks).
func (t *Telemetry) CheckLog() *checklog.Log { return t.debug }

// TracerProvider returns the provider of the check spans.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// instruments creates every instrument from the names table, registers
// the callback of the observable ones and builds the gatherer that serves
// them on /metrics.
func (t *Telemetry) instruments(version string) error {
	m := t.mp.Meter(instrumentationScope)
	in, err := newInstruments(m)
	if err != nil {
		return err
	}
	t.opDuration, t.checks = in.histogram(mOpDuration), in.counter(mChecks)

	return t.observeInstruments(m, in, version)
}

// infoLabels are the label names (in lInfo's order) and values of a
// mount's efs_mount_info series: the mount path and each attribution that
// is known, escaped like mount paths.
func infoLabels(path string, a agent.Attribution) (names, values []string) {
	all := [...]string{a.AccessPoint, a.FileSystemID, path, a.PodUID, a.Service, a.Volume} // lInfo's order
	names, values = make([]string, 0, len(all)), make([]string, 0, len(all))
	for i, v := range all {
		if v != "" || lInfo[i] == string(MountPathKey) {
			names, values = append(names, lInfo[i]), append(values, pathValue(v))
		}
	}
	return names, values
}

// spanAttribution appends the known attribution of m to a check span's
// attributes.
func spanAttribution(attrs []attribute.KeyValue, m agent.Mount) []attribute.KeyValue {
	a := m.Attribution
	for _, kv := range [...]struct {
		k attribute.Key
		v string
	}{{SpanFileSystemID, a.FileSystemID}, {SpanAccessPoint, a.AccessPoint}, {SpanService, a.Service}, {SpanPodUID, a.PodUID}, {SpanVolume, a.Volume}} {
		if kv.v != "" {
			attrs = append(attrs, kv.k.String(pathValue(kv.v)))
		}
	}
	return attrs
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// MetricsHandler renders the Prometheus scrape (text, or OpenMetrics with
// exemplars when the scraper asks for it) from the private registry and
// the state, uncompressed, as it is encoded. The router serves it through
// its shared renderer (httpapi), which renders one scrape for concurrent
// scrapers, compresses it once and bounds the memory it holds. Its error
// log is rate-limited: at most one line per cause per
// lograte.DefaultInterval.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.gatherer, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          lograte.StdLogger(t.log, lograte.New(lograte.DefaultInterval, nil), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		// httpapi compresses (once, at gzip.BestSpeed, for every
		// scraper of the same rendering).
		DisableCompression: true,
	})
}

// Shutdown flushes pending spans and metrics and stops the providers,
// within ctx: an unreachable collector costs at most the time left in ctx.
// The two providers shut down concurrently, so a slow span flush does not
// eat the final metric push's time. Later calls return the first call's
// result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var tErr, mErr error
		var wg sync.WaitGroup
		if t.tp != nil {
			wg.Go(func() { tErr = t.tp.Shutdown(ctx) })
		}
		if t.mp != nil {
			wg.Go(func() { mErr = t.mp.Shutdown(ctx) })
		}
		wg.Wait()
		uninstallErrorHandler(t.errs)
		if tErr != nil {
			tErr = fmt.Errorf("traces: %w", tErr)
		}
		if mErr != nil {
			mErr = fmt.Errorf("metrics: %w", mErr)
		}
		t.shutdownErr = errors.Join(tErr, mErr)
	})
	return t.shutdownErr
}
