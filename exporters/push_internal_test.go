package exporters

import (
	"strings"
	"testing"
)

// TestPushTarget: the exporter and OTLP protocol a pushed signal uses, as
// the OpenTelemetry variables choose them, and a clear error naming the
// variable and its value otherwise.
func TestPushTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name               string
		env                map[string]string
		signal             string
		exporter, protocol string
		err                string
	}{
		{"default", nil, signalTraces, exporterOTLP, protocolHTTP, ""},
		{"grpc for all", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, signalMetrics, exporterOTLP, protocolGRPC, ""},
		{"signal protocol wins", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, signalTraces, exporterOTLP, protocolHTTP, ""},
		{"console", map[string]string{"OTEL_METRICS_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "bogus"}, signalMetrics, exporterConsole, "", ""},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, signalTraces, "", "", `OTEL_TRACES_EXPORTER="zipkin"`},
		{"unknown protocol", map[string]string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json"}, signalMetrics, "", "", `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="http/json"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, p, err := pushTarget(func(k string) string { return tc.env[k] }, tc.signal)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil || e != tc.exporter || p != tc.protocol {
				t.Fatalf("got %q %q %v, want %q %q", e, p, err, tc.exporter, tc.protocol)
			}
		})
	}
}
