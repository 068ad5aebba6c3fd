// Package exporters builds the agent's OpenTelemetry pipeline: a
// MeterProvider whose views fix the documented Prometheus metric names, a
// Prometheus exporter on a private registry for /metrics, optional OTLP
// push configured by the standard OTEL_* environment, a TracerProvider
// with a span per check and per operation, and the /debug/checks view of
// recent and slowest checks by trace id.
//
// The per-mount series come from asynchronous instruments whose callback
// reads the monitor's published statuses, so a mount that is unregistered
// disappears at the next collection and memory does not grow with the
// number of mounts ever seen. The synchronous instruments (operation
// latency, checks by outcome) carry no mount label, so their cardinality
// is fixed.
package exporters
