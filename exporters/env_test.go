package exporters

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
)

// TestResourceInstanceID: service.instance.id defaults to the node name
// the agent was given, and OTEL_RESOURCE_ATTRIBUTES overrides it.
func TestResourceInstanceID(t *testing.T) {
	t.Parallel()
	tests := []struct{ env, instance, want string }{
		{"", "node-a", "node-a"},
		{"k8s.node.name=node-a", "node-a", "node-a"},
		{"service.instance.id=pod-7", "node-a", "pod-7"},
		{"", "", ""},
	}
	for _, tc := range tests {
		getenv := func(k string) string {
			if k == envResourceAttrs {
				return tc.env
			}
			return ""
		}
		res, err := newResource(t.Context(), getenv, "svc", tc.instance, "v1")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := res.Set().Value(attribute.Key("service.instance.id"))
		if got.AsString() != tc.want {
			t.Errorf("env %q, instance %q: service.instance.id = %q, want %q", tc.env, tc.instance, got.AsString(), tc.want)
		}
	}
}

func TestPushEnabled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		env                  map[string]string
		wantMetrics, wantTrc bool
	}{
		{"nothing set", nil, false, false},
		{"protocol alone", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, true, true},
		{"metrics endpoint", map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, true, false},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, false, true},
		{"exporter named", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, false, true},
		{"console", map[string]string{"OTEL_METRICS_EXPORTER": "console"}, true, false},
		{"none wins over endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, true, false},
		{"prometheus is /metrics", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_METRICS_EXPORTER": "prometheus"}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			getenv := func(k string) string { return tc.env[k] }
			if got := pushEnabled(getenv, signalMetrics).push; got != tc.wantMetrics {
				t.Errorf("metrics push = %v, want %v", got, tc.wantMetrics)
			}
			if got := pushEnabled(getenv, signalTraces).push; got != tc.wantTrc {
				t.Errorf("traces push = %v, want %v", got, tc.wantTrc)
			}
		})
	}
}

func TestParseResourceAttrs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "", false},
		{"a=1", "a=1", false},
		{" a = 1 , b=x%2Cy ", "a=1 b=x,y", false},
		{"a=1,nokey,=v,b=%zz", "a=1", true},
	}
	for _, tc := range tests {
		kvs, err := parseResourceAttrs(tc.in)
		var got []string
		for _, kv := range kvs {
			got = append(got, string(kv.Key)+"="+kv.Value.AsString())
		}
		if strings.Join(got, " ") != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("parseResourceAttrs(%q) = %v, %v; want %q, error=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestExportErrorsRateLimited(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h := exportErrorLogger(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute, func() time.Time { return now })
	for i := 0; i < 100; i++ {
		logExportError(h, errors.New("connection refused"))
		now = now.Add(100 * time.Millisecond)
	}
	if n := strings.Count(buf.String(), "telemetry export error"); n != 1 {
		t.Fatalf("%d lines logged within a minute, want 1:\n%s", n, buf.String())
	}
	now = now.Add(time.Minute)
	logExportError(h, errors.New("connection refused"))
	if !strings.Contains(buf.String(), "suppressed_since_last=99") {
		t.Fatalf("second line does not count the suppressed errors:\n%s", buf.String())
	}
}

// TestErrorHandlerInstalled: errors the SDK reports through otel.Handle
// reach the logger of the live Telemetry, rate-limited, and stop once it
// is shut down. Not parallel: it observes the process-wide handler.
func TestErrorHandlerInstalled(t *testing.T) {
	var buf syncBuffer
	tel, err := New(t.Context(), nil, Options{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		otel.Handle(errors.New("export failed: connection refused"))
	}
	if n := strings.Count(buf.String(), "telemetry export error"); n != 1 {
		t.Fatalf("%d lines logged, want 1:\n%s", n, buf.String())
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	before := buf.String()
	otel.Handle(errors.New("after shutdown"))
	if buf.String() != before {
		t.Fatalf("a shut-down Telemetry still logs: %s", buf.String())
	}
}
