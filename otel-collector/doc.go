// Package otelcollector holds the OpenTelemetry Collector configuration for
// efs-health-agent (config.yaml, config-cloudwatch.yaml, the builder
// manifest and the end-to-end script) and the tests that parse it. It has
// no Go code to import.
package otelcollector
