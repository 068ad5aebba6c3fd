package exporters_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestSpanAttribution: a check span carries what is known of the mount,
// and nothing for what is not.
func TestSpanAttribution(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a    agent.Attribution
		want map[attribute.Key]string
	}{
		{"full", agent.Attribution{FileSystemID: "fs-0123456789abcdef0", AccessPoint: "fsap-0fedcba9876543210", PodUID: "uid-1", Volume: "pv-1"},
			map[attribute.Key]string{exporters.SpanFileSystemID: "fs-0123456789abcdef0", exporters.SpanAccessPoint: "fsap-0fedcba9876543210",
				exporters.SpanPodUID: "uid-1", exporters.SpanVolume: "pv-1"}},
		{"file system only", agent.Attribution{FileSystemID: "fs-0123456789abcdef0"},
			map[attribute.Key]string{exporters.SpanFileSystemID: "fs-0123456789abcdef0"}},
		{"nothing known", agent.Attribution{}, map[attribute.Key]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spans := tracetest.NewSpanRecorder()
			tel := newTel(t, &source{}, exporters.Options{SpanProcessor: spans, Getenv: traceAll})
			m := agent.Mount{Path: "/mnt/a", Attribution: tc.a}
			runCheck(tel.Observer(), m, t0, map[probes.Op]time.Duration{probes.OpStatfs: time.Millisecond},
				&agent.MountStatus{State: agent.StateHealthy})
			var check []attribute.KeyValue
			for _, s := range spans.Ended() {
				if s.Name() == "efs.mount.check" {
					check = s.Attributes()
				}
			}
			got := map[attribute.Key]string{}
			for _, kv := range check {
				switch kv.Key {
				case exporters.SpanFileSystemID, exporters.SpanAccessPoint, exporters.SpanPodUID, exporters.SpanVolume:
					got[kv.Key] = kv.Value.AsString()
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("span attributes %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("span attributes %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestInfoOpenMetrics: the info series reads as a gauge in the
// OpenMetrics scrape too, with the documented labels only.
func TestInfoOpenMetrics(t *testing.T) {
	t.Parallel()
	src := &source{}
	src.set([]*agent.MountStatus{{Mount: &agent.Mount{Path: "/mnt/a", Attribution: agent.Attribution{FileSystemID: "fs-0123456789abcdef0", Volume: "pv\xff"}}, State: agent.StatePending}},
		agent.Summary{Mounts: 1, Pending: 1})
	tel := newTel(t, src, exporters.Options{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil).WithContext(context.Background())
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, req)
	want := `efs_mount_info{filesystem_id="fs-0123456789abcdef0",mount_path="/mnt/a",volume="pv\\xff"} 1` // the escaped label value
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("%d, want %s in\n%s", rec.Code, want, rec.Body.String())
	}
}
