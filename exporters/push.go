package exporters

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The push exporters, chosen as the OpenTelemetry environment variables
// specify (and as go.opentelemetry.io/contrib/exporters/autoexport
// chooses them, without linking the log exporters and the registries that
// package also carries): OTEL_<signal>_EXPORTER names "otlp" (the
// default once pushEnabled says the signal is pushed) or "console";
// OTEL_EXPORTER_OTLP_<signal>_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL,
// chooses "grpc" or "http/protobuf" (the specification's default); both
// are read through Options.Getenv. Each exporter reads its endpoint,
// headers, TLS and timeout settings from the process environment itself.

// Exporter and protocol names of the OpenTelemetry environment variables.
const (
	exporterOTLP    = "otlp"
	exporterConsole = "console"
	protocolGRPC    = "grpc"
	protocolHTTP    = "http/protobuf"
	defaultProtocol = protocolHTTP
	envProtocol     = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envExporterFmt  = "OTEL_%s_EXPORTER"
	envProtocolFmt  = "OTEL_EXPORTER_OTLP_%s_PROTOCOL"
	pushedExporters = exporterOTLP + ", " + exporterConsole + ", " + exporterNone
	pushedProtocols = protocolGRPC + ", " + protocolHTTP
)

// pushTarget is the exporter and, for OTLP, the protocol a pushed signal
// uses.
func pushTarget(getenv func(string) string, signal string) (exporter, protocol string, err error) {
	key := fmt.Sprintf(envExporterFmt, signal)
	exporter = strings.TrimSpace(getenv(key))
	switch exporter {
	case "":
		exporter = exporterOTLP
	case exporterOTLP, exporterConsole:
	default:
		return "", "", fmt.Errorf("invalid %s=%q: want one of %s", key, exporter, pushedExporters)
	}
	if exporter != exporterOTLP {
		return exporter, "", nil
	}
	pkey := fmt.Sprintf(envProtocolFmt, signal)
	protocol = strings.TrimSpace(getenv(pkey))
	if protocol == "" {
		pkey = envProtocol
		protocol = strings.TrimSpace(getenv(pkey))
	}
	switch protocol {
	case "":
		protocol = defaultProtocol
	case protocolGRPC, protocolHTTP:
	default:
		return "", "", fmt.Errorf("invalid %s=%q: want one of %s", pkey, protocol, pushedProtocols)
	}
	return exporter, protocol, nil
}

// newPushMetricReader returns the periodic reader that pushes metrics
// (OTEL_METRIC_EXPORT_INTERVAL, default 60s; collection and export run on
// its own goroutine).
func newPushMetricReader(ctx context.Context, getenv func(string) string) (sdkmetric.Reader, error) {
	exporter, protocol, err := pushTarget(getenv, signalMetrics)
	if err != nil {
		return nil, err
	}
	var e sdkmetric.Exporter
	switch {
	case exporter == exporterConsole:
		e, err = stdoutmetric.New()
	case protocol == protocolGRPC:
		e, err = otlpmetricgrpc.New(ctx)
	default:
		e, err = otlpmetrichttp.New(ctx)
	}
	if err != nil {
		return nil, err
	}
	return sdkmetric.NewPeriodicReader(e), nil
}

// newPushSpanExporter returns the exporter that pushes spans.
func newPushSpanExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	exporter, protocol, err := pushTarget(getenv, signalTraces)
	if err != nil {
		return nil, err
	}
	switch {
	case exporter == exporterConsole:
		return stdouttrace.New()
	case protocol == protocolGRPC:
		return otlptracegrpc.New(ctx)
	default:
		return otlptracehttp.New(ctx)
	}
}
