package exporters

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Standard OpenTelemetry environment variables read through Options.Getenv.
const (
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envServiceName     = "OTEL_SERVICE_NAME"
	envResourceAttrs   = "OTEL_RESOURCE_ATTRIBUTES"
	signalMetrics      = "METRICS"
	signalTraces       = "TRACES"
	exporterNone       = "none"
	exporterPrometheus = "prometheus"
)

// pushDecision says whether a signal is pushed and why not.
type pushDecision struct {
	push bool
	// note explains a setting that was ignored; "" if none.
	note string
}

// pushEnabled decides from the environment whether signal ("METRICS" or
// "TRACES") is pushed: OTEL_<signal>_EXPORTER names an exporter other than
// "none", or, with that unset, OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_<signal>_ENDPOINT is set. Nothing set means no
// exporter at all, hence no background retries. (The exporter on its own
// would default to OTLP towards localhost.)
//
// OTEL_METRICS_EXPORTER=prometheus is not a push: the Prometheus exporter
// already serves /metrics, and a second one would bind a second port.
func pushEnabled(getenv func(string) string, signal string) pushDecision {
	name := strings.TrimSpace(getenv("OTEL_" + signal + "_EXPORTER"))
	switch {
	case name == exporterNone:
		return pushDecision{}
	case name == exporterPrometheus && signal == signalMetrics:
		return pushDecision{note: "OTEL_METRICS_EXPORTER=prometheus: metrics are served at /metrics; no second Prometheus exporter is started"}
	case name != "":
		return pushDecision{push: true}
	}
	return pushDecision{push: getenv(envEndpoint) != "" || getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""}
}

// newResource describes this process: service.name (OTEL_SERVICE_NAME,
// else service.name in OTEL_RESOURCE_ATTRIBUTES, else serviceName),
// service.instance.id (from OTEL_RESOURCE_ATTRIBUTES, else instanceID when
// not empty), service.version, the attributes of OTEL_RESOURCE_ATTRIBUTES, the host
// name and the SDK. It reads the environment through getenv, unlike
// resource.Default and resource.WithFromEnv, which read the process
// environment. A malformed OTEL_RESOURCE_ATTRIBUTES entry is skipped and
// reported in the returned error next to a usable resource.
func newResource(ctx context.Context, getenv func(string) string, serviceName, instanceID, version string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName(serviceName)}
	if instanceID != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(instanceID))
	}
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	fromEnv, envErr := parseResourceAttrs(getenv(envResourceAttrs))
	attrs = append(attrs, fromEnv...)
	if s := strings.TrimSpace(getenv(envServiceName)); s != "" {
		attrs = append(attrs, semconv.ServiceName(s))
	}
	// Later attributes win over earlier ones with the same key.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
	)
	if err != nil && res == nil {
		return nil, err
	}
	return res, errors.Join(envErr, err)
}

// parseResourceAttrs parses OTEL_RESOURCE_ATTRIBUTES: comma-separated
// key=value pairs, values percent-encoded, as the SDK does.
func parseResourceAttrs(s string) ([]attribute.KeyValue, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var attrs []attribute.KeyValue
	var bad []string
	for _, p := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			bad = append(bad, p)
			continue
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			bad = append(bad, p)
			continue
		}
		attrs = append(attrs, attribute.String(k, val))
	}
	if len(bad) > 0 {
		return attrs, fmt.Errorf("%s: skipped malformed entries %q (want key=value, value percent-encoded)", envResourceAttrs, bad)
	}
	return attrs, nil
}
