package exporters_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Benchmarks of the telemetry hot paths, for benchstat:
//
//	go test -run '^$' -bench . -count 10 ./exporters > new.txt

// BenchmarkObserveCheck is the telemetry of one healthy, fast check: the
// latency histogram, the check counter and the /debug/checks record, and
// the span tree (the check span and one span per operation, sent to a
// batch processor with a discarding exporter) when the check is sampled:
// "sampled" keeps every check's spans (OTEL_TRACES_SAMPLER=always_on),
// "default" the default share of healthy checks.
func BenchmarkObserveCheck(b *testing.B) {
	for _, bc := range []struct {
		name   string
		getenv func(string) string
	}{{"default", noEnv}, {"sampled", traceAll}} {
		b.Run(bc.name, func(b *testing.B) {
			tel := newTel(b, &source{}, exporters.Options{Getenv: bc.getenv,
				SpanProcessor: sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter())})
			obs := tel.Observer()
			m := agent.Mount{Path: "/mnt/efs"}
			ops := map[probes.Op]time.Duration{probes.OpStatfs: 5 * time.Microsecond, probes.OpWrite: 200 * time.Microsecond,
				probes.OpRead: 100 * time.Microsecond, probes.OpDelete: 50 * time.Microsecond}
			st := &agent.MountStatus{State: agent.StateHealthy}
			start := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				runCheck(obs, m, start, ops, st)
			}
		})
	}
}

// BenchmarkScrape renders /metrics with 1,000 and 10,000 mounts in the
// text format Prometheus asks for, uncompressed (the router's shared
// renderer compresses; httpapi's benchmarks include it).
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var paths []string
			for i := 0; i < n; i++ {
				paths = append(paths, fmt.Sprintf("/var/lib/kubelet/pods/%08d/volumes/kubernetes.io~csi/pv/mount", i))
			}
			src := &source{}
			src.set(live(paths...))
			tel := newTel(b, src, exporters.Options{})
			h := tel.MetricsHandler()
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("scrape: %d", rec.Code)
				}
			}
		})
	}
}
