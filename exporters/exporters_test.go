package exporters_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden")

// source is a Source whose statuses the test sets.
type source struct {
	mu  sync.Mutex
	sts []*agent.MountStatus
	sum agent.Summary
}

func (s *source) Statuses() []*agent.MountStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*agent.MountStatus(nil), s.sts...)
}

func (s *source) Summary() *agent.Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := s.sum
	return &sum
}

func (s *source) set(sts []*agent.MountStatus, sum agent.Summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sts, s.sum = sts, sum
}

var t0 = time.Date(2025, 1, 11, 15, 30, 45, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTel(t *testing.T, src exporters.Source, opts exporters.Options) *exporters.Telemetry {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if opts.Version == "" {
		opts.Version = "v1.2.3"
	}
	tel, err := exporters.New(context.Background(), src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

func scrape(t *testing.T, tel *exporters.Telemetry, accept string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

// runCheck drives the Observer the way the agent does for one check.
func runCheck(obs agent.Observer, m agent.Mount, start time.Time, ops map[probes.Op]time.Duration, st *agent.MountStatus) {
	rec := obs.CheckStart(m, start)
	at := start
	for _, op := range []probes.Op{probes.OpStatfs, probes.OpWrite, probes.OpRead, probes.OpDelete} {
		d, ok := ops[op]
		if !ok {
			continue
		}
		rec.OpStart(op, at)
		var err error
		if st.FailedOp == op {
			err = &probes.OpError{Op: op, Err: errors.New(st.LastError)}
		}
		rec.OpEnd(op, d, err)
		at = at.Add(d)
	}
	rec.End(st, at)
}

func fixture() ([]*agent.MountStatus, agent.Summary) {
	return []*agent.MountStatus{
		{Mount: agent.Mount{Path: "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"}, State: agent.StateHealthy,
			LastCheck: t0, ResponseTime: 15 * time.Millisecond, Checks: 3},
		{Mount: agent.Mount{Path: "/mnt/hung"}, State: agent.StateHung, LastCheck: t0, ResponseTime: 5 * time.Second,
			ErrorCount: 4, ConsecutiveErrors: 2, Reason: probes.ReasonTimeout},
		{Mount: agent.Mount{Path: "/mnt/pending"}, State: agent.StatePending},
	}, agent.Summary{Mounts: 3, Pending: 1, Unhealthy: 1, Hung: 1, InFlight: 1}
}

// TestGoldenScrape pins every exported name, type, HELP text and label.
func TestGoldenScrape(t *testing.T) {
	t.Parallel()
	src := &source{}
	src.set(fixture())
	tel := newTel(t, src, exporters.Options{})
	runCheck(tel.Observer(), agent.Mount{Path: "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"}, t0,
		map[probes.Op]time.Duration{probes.OpStatfs: 100 * time.Microsecond, probes.OpWrite: 9 * time.Millisecond, probes.OpRead: 4 * time.Millisecond, probes.OpDelete: 2 * time.Millisecond},
		&agent.MountStatus{State: agent.StateHealthy})
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/io"}, t0,
		map[probes.Op]time.Duration{probes.OpStatfs: 100 * time.Microsecond, probes.OpWrite: 30 * time.Millisecond, probes.OpDelete: 2 * time.Millisecond},
		&agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonIOError, FailedOp: probes.OpWrite, LastError: "write: input/output error"})
	tel.Observer().CheckSkipped(agent.Mount{Path: "/mnt/hung"}, t0)

	got := scrape(t, tel, "")
	got = strings.ReplaceAll(got, runtime.Version(), "GOVERSION")
	const golden = "testdata/metrics.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("scrape differs from %s (run go test ./exporters -update to accept):\n%s", golden, got)
	}
	// The four documented series, exactly as the design document writes them.
	for _, line := range []string{
		"# HELP efs_mount_health_status Health status of EFS mounts (1=healthy, 0=unhealthy)\n# TYPE efs_mount_health_status gauge\n",
		`efs_mount_health_status{mount_path="/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"} 1` + "\n",
		"# HELP efs_mount_response_time_ms Response time for mount health checks in milliseconds\n# TYPE efs_mount_response_time_ms gauge\n",
		`efs_mount_response_time_ms{mount_path="/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"} 15` + "\n",
		"# HELP efs_mount_error_total Total number of errors for mount health checks\n# TYPE efs_mount_error_total counter\n",
		`efs_mount_error_total{mount_path="/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"} 0` + "\n",
		"# HELP efs_csi_driver_healthy Overall health status of the CSI driver (1=healthy, 0=unhealthy)\n# TYPE efs_csi_driver_healthy gauge\nefs_csi_driver_healthy 0\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("scrape lacks %q", line)
		}
	}
	if strings.Contains(got, "otel_scope") || strings.Contains(got, "target_info") {
		t.Error("scope labels or target_info leaked into the scrape")
	}
}

// TestExemplars: an OpenMetrics scrape links latency buckets to the trace
// of the check that filled them.
func TestExemplars(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewInMemoryExporter()
	tel := newTel(t, &source{}, exporters.Options{SpanExporter: spans})
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0, map[probes.Op]time.Duration{probes.OpWrite: 700 * time.Millisecond}, &agent.MountStatus{State: agent.StateHealthy})
	om := scrape(t, tel, "application/openmetrics-text; version=1.0.0")
	var traceID string
	for _, s := range spans.GetSpans() {
		if s.Name == "efs.mount.check" {
			traceID = s.SpanContext.TraceID().String()
		}
	}
	re := regexp.MustCompile(`efs_mount_operation_duration_seconds_bucket\{operation="write",le="1(\.0)?"\} 1 # \{[^}]*trace_id="([0-9a-f]{32})"`)
	m := re.FindStringSubmatch(om)
	if m == nil || m[2] != traceID {
		t.Fatalf("no exemplar with trace %s in:\n%s", traceID, om)
	}
}

// TestSpans: one check span with a child per operation; failures carry
// the error and reason; a hung operation's span ends at the deadline.
func TestSpans(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewInMemoryExporter()
	tel := newTel(t, &source{}, exporters.Options{SpanExporter: spans})
	obs := tel.Observer()
	runCheck(obs, agent.Mount{Path: "/mnt/a", FSType: "nfs4"}, t0,
		map[probes.Op]time.Duration{probes.OpStatfs: time.Millisecond, probes.OpWrite: 9 * time.Millisecond, probes.OpRead: 4 * time.Millisecond, probes.OpDelete: 2 * time.Millisecond},
		&agent.MountStatus{State: agent.StateHealthy})

	// A hung write, as the agent reports it at the deadline.
	r := obs.CheckStart(agent.Mount{Path: "/mnt/h"}, t0)
	r.OpStart(probes.OpWrite, t0)
	r.OpEnd(probes.OpWrite, 5*time.Second, fmt.Errorf("timeout after 5s in write: %w", agent.ErrTimeout))
	r.End(&agent.MountStatus{State: agent.StateHung, Reason: probes.ReasonTimeout, LastError: "timeout after 5s in write"}, t0.Add(5*time.Second))

	got := spans.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range got {
		byName[s.Name] = append(byName[s.Name], s)
	}
	if len(byName["efs.mount.check"]) != 2 || len(byName["efs.mount.write"]) != 2 || len(byName["efs.mount.read"]) != 1 || len(byName["efs.mount.delete"]) != 1 {
		t.Fatalf("spans: %v", names(got))
	}
	checks := byName["efs.mount.check"]
	ok, hung := checks[0], checks[1]
	for _, s := range got {
		if s.Name != "efs.mount.check" && s.Parent.SpanID() != ok.SpanContext.SpanID() && s.Parent.SpanID() != hung.SpanContext.SpanID() {
			t.Errorf("%s is not a child of a check span", s.Name)
		}
	}
	if attr(ok, "efs.mount.path") != "/mnt/a" || attr(ok, "efs.mount.fstype") != "nfs4" || ok.Status.Code == codes.Error {
		t.Errorf("healthy check span: %+v", ok.Attributes)
	}
	var hungWrite tracetest.SpanStub
	for _, s := range byName["efs.mount.write"] {
		if s.Parent.SpanID() == hung.SpanContext.SpanID() {
			hungWrite = s
		}
	}
	if hungWrite.Status.Code != codes.Error || attr(hungWrite, "efs.mount.failure_reason") != "timeout" || len(hungWrite.Events) == 0 {
		t.Errorf("hung write span: status %v attrs %v", hungWrite.Status, hungWrite.Attributes)
	}
	if d := hungWrite.EndTime.Sub(hungWrite.StartTime); d != 5*time.Second {
		t.Errorf("hung write span lasted %v, want the 5s deadline", d)
	}
	if attr(hungWrite, "efs.mount.bytes") != "1024" {
		t.Errorf("bytes attribute %q", attr(hungWrite, "efs.mount.bytes"))
	}
	if hung.Status.Code != codes.Error || attr(hung, "efs.mount.state") != "hung" {
		t.Errorf("hung check span: %v %v", hung.Status, hung.Attributes)
	}
}

func names(s tracetest.SpanStubs) []string {
	var out []string
	for _, x := range s {
		out = append(out, x.Name)
	}
	return out
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// TestDebugChecks: a slow check can be found by its trace id.
func TestDebugChecks(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewInMemoryExporter()
	src := &source{}
	src.set([]*agent.MountStatus{{Mount: agent.Mount{Path: "/mnt/a"}, State: agent.StateHealthy}}, agent.Summary{Mounts: 1})
	tel := newTel(t, src, exporters.Options{SpanExporter: spans, DebugChecks: 3})
	for i := 0; i < 10; i++ {
		d := time.Duration(i+1) * time.Millisecond
		if i == 4 {
			d = 900 * time.Millisecond
		}
		runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0.Add(time.Duration(i)*time.Second), map[probes.Op]time.Duration{probes.OpWrite: d}, &agent.MountStatus{State: agent.StateHealthy})
	}
	var slowTrace string
	for _, s := range spans.GetSpans() {
		if s.Name == "efs.mount.write" && s.EndTime.Sub(s.StartTime) == 900*time.Millisecond {
			slowTrace = s.SpanContext.TraceID().String()
		}
	}
	get := func(q string) string {
		rec := httptest.NewRecorder()
		tel.DebugChecksHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/checks"+q, nil))
		return rec.Body.String()
	}
	all := get("")
	if strings.Count(all, `"traceId"`) != 6 {
		t.Fatalf("want 3 recent + 3 slowest checks:\n%s", all)
	}
	one := get("?trace=" + slowTrace)
	if !strings.Contains(one, `"ms": 900`) || !strings.Contains(one, slowTrace) || strings.Count(one, `"traceId"`) != 1 {
		t.Fatalf("slow check by trace id:\n%s", one)
	}
	// An unregistered mount's history is not served.
	src.set(nil, agent.Summary{})
	if s := get(""); strings.Contains(s, "/mnt/a") {
		t.Fatalf("unregistered mount still listed:\n%s", s)
	}
}

func TestNoPushWhenNothingSet(t *testing.T) {
	t.Parallel()
	tel := newTel(t, &source{}, exporters.Options{})
	if m, tr := tel.Pushing(); m || tr {
		t.Fatalf("pushing with no OTEL_* set: metrics=%v traces=%v", m, tr)
	}
	tel2 := newTel(t, &source{}, exporters.Options{Getenv: func(k string) string {
		return map[string]string{"OTEL_METRICS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}[k]
	}})
	if m, tr := tel2.Pushing(); m || tr {
		t.Fatal("pushing although the exporters are set to none")
	}
}
