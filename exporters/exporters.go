package exporters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/efs-health-agent/efs-health-agent/agent"
)

// Source is what the metric callbacks and /debug/checks read.
// *agent.Monitor implements it.
type Source interface {
	Statuses() []*agent.MountStatus
	Summary() *agent.Summary
}

// Options configures the pipeline.
type Options struct {
	// ServiceName defaults to "efs-health-agent"; OTEL_SERVICE_NAME wins.
	ServiceName string
	// Version is reported in build info and as service.version.
	Version string
	Logger  *slog.Logger
	// Getenv reads the OTEL_* variables that decide whether to push
	// (default os.Getenv). The OTLP exporters themselves read the process
	// environment.
	Getenv func(string) string
	// DebugChecks is how many recent and how many slowest checks
	// /debug/checks keeps per mount (default 10).
	DebugChecks int
	// SpanExporter, if set, receives every span (tests, or a custom
	// backend), in addition to any OTLP exporter.
	SpanExporter sdktrace.SpanExporter
	// MetricReader, if set, is added to the MeterProvider (tests).
	MetricReader sdkmetric.Reader
}

// Telemetry is the running pipeline.
type Telemetry struct {
	log      *slog.Logger
	src      Source
	mp       *sdkmetric.MeterProvider
	tp       *sdktrace.TracerProvider
	tracer   trace.Tracer
	registry *prometheus.Registry
	debug    *debugStore

	opDuration metric.Float64Histogram
	checks     metric.Int64Counter

	pushMetrics, pushTraces bool
}

// MountPathKey is the metric attribute (and Prometheus label) of a mount.
const MountPathKey = attribute.Key("mount_path")

// Span attribute keys.
const (
	SpanMountPath     = attribute.Key("efs.mount.path")
	SpanFSType        = attribute.Key("efs.mount.fstype")
	SpanOperation     = attribute.Key("efs.mount.operation")
	SpanBytes         = attribute.Key("efs.mount.bytes")
	SpanFailureReason = attribute.Key("efs.mount.failure_reason")
	SpanState         = attribute.Key("efs.mount.state")
)

// pushEnabled reports whether the OTEL_* environment asks for a push of
// signal ("METRICS" or "TRACES"): an exporter named explicitly (other than
// "none"), or an OTLP endpoint configured. Nothing set means no push and no
// background retries.
func pushEnabled(getenv func(string) string, signal string) bool {
	if v := strings.TrimSpace(getenv("OTEL_" + signal + "_EXPORTER")); v != "" {
		return v != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// New builds the pipeline. src may be nil at first and set with SetSource
// before the first collection (the monitor needs the Observer to be built,
// and the callbacks need the monitor).
func New(ctx context.Context, src Source, opts Options) (*Telemetry, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.ServiceName == "" {
		opts.ServiceName = "efs-health-agent"
	}
	if opts.DebugChecks <= 0 {
		opts.DebugChecks = 10
	}
	t := &Telemetry{log: opts.Logger, src: src, registry: prometheus.NewRegistry(), debug: newDebugStore(opts.DebugChecks)}

	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(opts.ServiceName), semconv.ServiceVersion(opts.Version)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the defaults.
	if envRes, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, envRes); err == nil {
			res = merged
		}
	}

	promExp, err := otelprom.New(
		otelprom.WithRegisterer(t.registry),
		// Names exactly as the view layer sets them: no unit or type
		// suffixes, no scope labels, no target_info.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp), sdkmetric.WithView(views()...)}
	if opts.MetricReader != nil {
		mopts = append(mopts, sdkmetric.WithReader(opts.MetricReader))
	}
	if pushEnabled(opts.Getenv, "METRICS") {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP metric exporter (OTEL_METRICS_EXPORTER / OTEL_EXPORTER_OTLP_*): %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(r))
		t.pushMetrics = true
	}
	t.mp = sdkmetric.NewMeterProvider(mopts...)

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample())}
	if opts.SpanExporter != nil {
		topts = append(topts, sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(opts.SpanExporter)))
	}
	if pushEnabled(opts.Getenv, "TRACES") {
		e, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			_ = t.mp.Shutdown(ctx)
			return nil, fmt.Errorf("OTLP span exporter (OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*): %w", err)
		}
		// Batching keeps an unreachable collector off the check path.
		topts = append(topts, sdktrace.WithBatcher(e))
		t.pushTraces = true
	}
	t.tp = sdktrace.NewTracerProvider(topts...)
	t.tracer = t.tp.Tracer("github.com/efs-health-agent/efs-health-agent")

	if err := t.instruments(opts.Version); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	return t, nil
}

// SetSource sets what the callbacks read; call it before serving /metrics.
func (t *Telemetry) SetSource(src Source) { t.src = src }

// Pushing reports whether metrics and traces are pushed over OTLP.
func (t *Telemetry) Pushing() (metrics, traces bool) { return t.pushMetrics, t.pushTraces }

// TracerProvider returns the provider of the check spans.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

func (t *Telemetry) instruments(version string) error {
	m := t.mp.Meter("github.com/efs-health-agent/efs-health-agent")
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	var err error
	t.opDuration, err = m.Float64Histogram("efs.mount.operation.duration", metric.WithUnit("s"))
	add(err)
	t.checks, err = m.Int64Counter("efs.mount.checks")
	add(err)

	health, err := m.Int64ObservableGauge("efs.mount.health.status")
	add(err)
	respTime, err := m.Float64ObservableGauge("efs.mount.response_time", metric.WithUnit("ms"))
	add(err)
	errTotal, err := m.Int64ObservableCounter("efs.mount.errors")
	add(err)
	driver, err := m.Int64ObservableGauge("efs.csi_driver.healthy")
	add(err)
	inFlight, err := m.Int64ObservableGauge("efs.mount.checks.in_flight")
	add(err)
	hungCount, err := m.Int64ObservableGauge("efs.mounts.hung")
	add(err)
	hung, err := m.Int64ObservableGauge("efs.mount.hung")
	add(err)
	consec, err := m.Int64ObservableGauge("efs.mount.consecutive_errors")
	add(err)
	lastCheck, err := m.Float64ObservableGauge("efs.mount.last_check.timestamp", metric.WithUnit("s"))
	add(err)
	build, err := m.Int64ObservableGauge("efs.health_agent.build_info")
	add(err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("create instruments: %w", err)
	}
	buildAttrs := metric.WithAttributes(attribute.String("version", version), attribute.String("goversion", runtime.Version()))

	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(build, 1, buildAttrs)
		if t.src == nil {
			return nil
		}
		sum := t.src.Summary()
		o.ObserveInt64(driver, b2i(sum.Healthy()))
		o.ObserveInt64(inFlight, int64(sum.InFlight))
		o.ObserveInt64(hungCount, int64(sum.Hung))
		for _, st := range t.src.Statuses() {
			attrs := metric.WithAttributeSet(attribute.NewSet(MountPathKey.String(st.Path)))
			o.ObserveInt64(errTotal, int64(st.ErrorCount), attrs)
			o.ObserveInt64(consec, int64(st.ConsecutiveErrors), attrs)
			if st.State == agent.StatePending {
				continue
			}
			o.ObserveInt64(health, b2i(st.Healthy()), attrs)
			o.ObserveFloat64(respTime, float64(st.ResponseTime.Microseconds())/1000, attrs)
			o.ObserveInt64(hung, b2i(st.State == agent.StateHung), attrs)
			o.ObserveFloat64(lastCheck, float64(st.LastCheck.UnixMilli())/1000, attrs)
		}
		return nil
	}, health, respTime, errTotal, driver, inFlight, hungCount, hung, consec, lastCheck, build)
	if err != nil {
		return fmt.Errorf("register metric callback: %w", err)
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// MetricsHandler serves the Prometheus scrape (text, or OpenMetrics with
// exemplars when the scraper asks for it) from the private registry.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(t.log.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Timeout:           10 * time.Second,
	})
}

// Shutdown flushes and stops the providers within ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.tp != nil {
		errs = append(errs, t.tp.Shutdown(ctx))
	}
	if t.mp != nil {
		errs = append(errs, t.mp.Shutdown(ctx))
	}
	return errors.Join(errs...)
}
