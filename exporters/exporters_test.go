package exporters_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
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

// live lists paths as healthy mounts.
func live(paths ...string) ([]*agent.MountStatus, agent.Summary) {
	var sts []*agent.MountStatus
	for _, p := range paths {
		sts = append(sts, &agent.MountStatus{Mount: &agent.Mount{Path: p}, State: agent.StateHealthy, LastCheck: t0})
	}
	return sts, agent.Summary{Mounts: len(paths)}
}

var t0 = time.Date(2025, 1, 11, 15, 30, 45, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// noEnv is a Getenv with nothing set.
func noEnv(string) string { return "" }

// traceAll is a Getenv that keeps the spans of every check.
func traceAll(k string) string {
	if k == "OTEL_TRACES_SAMPLER" {
		return "always_on"
	}
	return ""
}

func newTel(t testing.TB, src exporters.Source, opts exporters.Options) *exporters.Telemetry {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	if opts.Getenv == nil {
		opts.Getenv = noEnv
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

func scrape(t testing.TB, tel *exporters.Telemetry, accept string) string {
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

// runCheck hands the Observer the record of one completed check, as the
// agent does: the operations in ops that the check ran, in the order of
// the steps, one after the other from start, and the outcome of a check
// that ended in st (st.FailedOp fails with st.LastError).
func runCheck(obs agent.Observer, m agent.Mount, start time.Time, ops map[probes.Op]time.Duration, st *agent.MountStatus) {
	var steps []step
	for _, op := range []probes.Op{probes.OpStatfs, probes.OpWrite, probes.OpRead, probes.OpDelete} {
		d, ok := ops[op]
		if !ok {
			continue
		}
		var err error
		if st.FailedOp == op {
			err = &probes.OpError{Op: op, Err: errors.New(st.LastError)}
		}
		steps = append(steps, step{op, d, err})
	}
	r := record(m, start, steps)
	r.Outcome = outcomeOf(st, r.End.Sub(start))
	obs.CheckDone(r)
}

// step is one operation of a check.
type step struct {
	op  probes.Op
	d   time.Duration
	err error
}

// record is the CheckRecord of a check of m that ran steps one after the
// other from start, ending with the last.
func record(m agent.Mount, start time.Time, steps []step) *agent.CheckRecord {
	r := &agent.CheckRecord{Mount: &m, Start: start, End: start}
	for _, s := range steps {
		r.Ops = append(r.Ops, probes.OpResult{Op: s.op, Start: r.End, Duration: s.d, Err: s.err})
		r.End = r.End.Add(s.d)
	}
	return r
}

// outcomeOf is the Outcome of a check that ended in st and took d.
func outcomeOf(st *agent.MountStatus, d time.Duration) agent.Outcome {
	o := agent.Outcome{State: st.State, Mode: st.Mode, Reason: st.Reason, FailedOp: st.FailedOp,
		Duration: d, TimedOut: st.State == agent.StateHung}
	if st.LastError != "" {
		o.Err = errors.New(st.LastError)
	}
	return o
}

func fixture() ([]*agent.MountStatus, agent.Summary) {
	return []*agent.MountStatus{
		{Mount: &agent.Mount{Path: "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount", Attribution: agent.Attribution{
			FileSystemID: "fs-0123456789abcdef0", AccessPoint: "fsap-0fedcba9876543210", Service: agent.ServiceEFS, PodUID: "abc123", Volume: "efs-pv"}}, State: agent.StateHealthy,
			Mode: probes.ModeReadWrite, LastCheck: t0, ResponseTime: 15 * time.Millisecond, Checks: 3},
		{Mount: &agent.Mount{Path: "/mnt/hung", Attribution: agent.Attribution{FileSystemID: "fs-0aaaabbbbccccdddd", Service: agent.ServiceS3Files}}, State: agent.StateHung, Mode: probes.ModeWriteDenied, LastCheck: t0, ResponseTime: 5 * time.Second,
			ErrorCount: 4, ConsecutiveErrors: 2, Reason: probes.ReasonTimeout},
		{Mount: &agent.Mount{Path: "/mnt/pending"}, State: agent.StatePending},
	}, agent.Summary{Mounts: 3, Pending: 1, Unhealthy: 1, Hung: 1, InFlight: 1, SelfDelays: [agent.NumSelfDelayCauses]uint64{agent.SelfDelayScheduling: 3}}
}

// runtimeValue matches a sample line of the process and Go collectors: its
// name and labels ($1), then its value.
var runtimeValue = regexp.MustCompile(`(?m)^((?:go|process)_[a-z_]+(?:\{[^}]*\})?) \S+$`)

// TestGoldenScrape pins every exported name, type, HELP text and label of
// the Prometheus text scrape (go test ./exporters -update rewrites it).
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
	tel.Observer().CheckSkipped(&agent.Mount{Path: "/mnt/hung"}, t0)

	got := scrape(t, tel, "")
	got = strings.ReplaceAll(got, runtime.Version(), "GOVERSION")
	// The process and Go collectors' series are pinned by name, type,
	// HELP and labels; their values are the test process's own.
	got = runtimeValue.ReplaceAllString(got, "$1 VALUE")
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
	// The four documented series, exactly as the design document writes
	// them, so that -update cannot silently accept a renamed one.
	for _, line := range []string{
		"# HELP efs_mount_health_status Health status of EFS mounts (1=healthy, 0=unhealthy)\n# TYPE efs_mount_health_status gauge\n",
		`efs_mount_health_status{mount_path="/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"} 1` + "\n",
		"# HELP efs_mount_response_time_ms Response time for mount health checks in milliseconds\n# TYPE efs_mount_response_time_ms gauge\n",
		`efs_mount_response_time_ms{mount_path="/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"} 15` + "\n",
		"# HELP efs_mount_error_total Total number of errors for mount health checks\n# TYPE efs_mount_error_total counter\n",
		`efs_mount_error_total{mount_path="/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"} 0` + "\n",
		"# HELP efs_csi_driver_healthy Overall health status of the CSI driver (1=healthy, 0=unhealthy)\n# TYPE efs_csi_driver_healthy gauge\nefs_csi_driver_healthy 0\n",
		// Attribution goes through the info series only; unknown labels are omitted.
		`efs_mount_info{access_point="fsap-0fedcba9876543210",filesystem_id="fs-0123456789abcdef0",mount_path="/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount",pod_uid="abc123",service="efs",volume="efs-pv"} 1` + "\n",
		// An Amazon S3 Files mount is labelled as one, not as EFS.
		`efs_mount_info{filesystem_id="fs-0aaaabbbbccccdddd",mount_path="/mnt/hung",service="s3files"} 1` + "\n",
		`efs_mount_info{mount_path="/mnt/pending"} 1` + "\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("scrape lacks %q", line)
		}
	}
	for _, bad := range []string{"otel_scope", "target_info", "_milliseconds", "_ratio", "_total_total", `mount_path="/mnt/pending"} 0` + "\n# HELP efs_mount_hung"} {
		if strings.Contains(got, bad) {
			t.Errorf("scrape contains %q", bad)
		}
	}
	// A pending mount has error counters but no health series yet.
	if strings.Contains(got, `efs_mount_health_status{mount_path="/mnt/pending"}`) {
		t.Error("pending mount has a health series")
	}
}

// TestOpenMetricsScrape: the OpenMetrics scrape names the same families
// and links latency buckets to the trace of the check that filled them.
func TestOpenMetricsScrape(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	src := &source{}
	src.set(fixture())
	tel := newTel(t, src, exporters.Options{SpanProcessor: spans})
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0, map[probes.Op]time.Duration{probes.OpWrite: 700 * time.Millisecond}, &agent.MountStatus{State: agent.StateHealthy})
	om := scrape(t, tel, "application/openmetrics-text; version=1.0.0")
	if !strings.HasSuffix(om, "# EOF\n") {
		t.Fatalf("not an OpenMetrics exposition:\n%s", om)
	}
	traceID, writeSpan := checkAndWriteIDs(spans)
	re := regexp.MustCompile(`efs_mount_operation_duration_seconds_bucket\{operation="write",le="1(\.0)?"\} 1 # \{([^}]*)\} 0\.7`)
	m := re.FindStringSubmatch(om)
	if m == nil || !strings.Contains(m[2], `trace_id="`+traceID+`"`) || !strings.Contains(m[2], `span_id="`+writeSpan+`"`) {
		t.Fatalf("no exemplar with trace %s span %s in:\n%s", traceID, writeSpan, om)
	}
	for _, line := range []string{
		"# TYPE efs_mount_health_status gauge\n",
		"# TYPE efs_mount_error counter\n",
		`efs_mount_error_total{mount_path="/mnt/hung"} 4.0` + "\n",
		"# TYPE efs_mount_checks counter\n",
	} {
		if !strings.Contains(om, line) {
			t.Errorf("OpenMetrics scrape lacks %q", line)
		}
	}
}

// debugChecks fetches /debug/checks with query q.
func debugChecks(t *testing.T, tel *exporters.Telemetry, q string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	httpapi.DebugChecks(tel.CheckLog()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/checks"+q, nil))
	if rec.Code != 200 {
		t.Fatalf("/debug/checks%s: %d", q, rec.Code)
	}
	return rec.Body.String()
}

type debugCheck struct {
	MountPath  string    `json:"mountPath"`
	TraceID    string    `json:"traceId"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	Outcome    string    `json:"outcome"`
	State      string    `json:"state"`
	Reason     string    `json:"reason"`
	Error      string    `json:"error"`
	Ops        []struct {
		Op    string  `json:"op"`
		Ms    float64 `json:"ms"`
		Error string  `json:"error"`
	} `json:"operations"`
}

type debugResponse struct {
	ChecksRecorded    uint64       `json:"checksRecorded"`
	Limit             int          `json:"limit"`
	RecentTotal       int          `json:"recentTotal"`
	Recent            []debugCheck `json:"recent"`
	SlowestTotal      int          `json:"slowestTotal"`
	Slowest           []debugCheck `json:"slowest"`
	LastFailuresTotal int          `json:"lastFailuresTotal"`
	LastFailures      []debugCheck `json:"lastFailures"`
}

func debugJSON(t *testing.T, tel *exporters.Telemetry, q string) debugResponse {
	t.Helper()
	var r debugResponse
	body := debugChecks(t, tel, q)
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("/debug/checks%s: %v\n%s", q, err, body)
	}
	return r
}

// TestDebugChecks: the last checks of all mounts and the slowest, with
// their mounts and trace ids, so a slow check can be found by trace id;
// each mount's last failure; a mount filter and a limit with the totals.
func TestDebugChecks(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	src := &source{}
	src.set(live("/mnt/a", "/mnt/b"))
	tel := newTel(t, src, exporters.Options{SpanProcessor: spans, DebugRecent: 4, DebugSlowest: 3})
	// Write times 1..10ms, except the 5th check: 900ms.
	for i := 0; i < 10; i++ {
		d := time.Duration(i+1) * time.Millisecond
		if i == 4 {
			d = 900 * time.Millisecond
		}
		st := &agent.MountStatus{State: agent.StateHealthy}
		if i == 7 {
			st = &agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonIOError, FailedOp: probes.OpWrite, LastError: "write: input/output error"}
		}
		runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0.Add(time.Duration(i)*time.Second), map[probes.Op]time.Duration{probes.OpWrite: d}, st)
	}
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/b"}, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond}, &agent.MountStatus{State: agent.StateHealthy})
	var slowTrace string
	for _, s := range spans.Ended() {
		if s.Name() == "efs.mount.write" && s.EndTime().Sub(s.StartTime()) == 900*time.Millisecond {
			slowTrace = s.SpanContext().TraceID().String()
		}
	}

	all := debugJSON(t, tel, "")
	durations := func(cs []debugCheck) (out []float64) {
		for _, c := range cs {
			out = append(out, c.DurationMs)
		}
		return out
	}
	if all.ChecksRecorded != 11 || all.Limit != httpapi.DefaultDebugLimit || all.RecentTotal != 4 || all.SlowestTotal != 3 || all.LastFailuresTotal != 1 {
		t.Errorf("counts: %+v", all)
	}
	if got := durations(all.Recent); !slices.Equal(got, []float64{8, 9, 10, 1}) || all.Recent[3].MountPath != "/mnt/b" {
		t.Errorf("recent = %v, want the last four (8, 9, 10 ms of /mnt/a, 1 ms of /mnt/b), oldest first", got)
	}
	if got := durations(all.Slowest); !slices.Equal(got, []float64{900, 10, 9}) {
		t.Errorf("slowest = %v, want 900, 10, 9 ms", got)
	}
	if c := all.Recent[0]; c.MountPath != "/mnt/a" || c.Outcome != "failure" || c.State != "unhealthy" || c.Reason != "io_error" || c.Error == "" || c.Ops[0].Op != "write" || c.Ops[0].Error == "" {
		t.Errorf("failed check: %+v", c)
	}
	if len(all.LastFailures) != 1 || all.LastFailures[0].DurationMs != 8 || all.LastFailures[0].MountPath != "/mnt/a" {
		t.Errorf("last failures: %+v", all.LastFailures)
	}
	if c := all.Slowest[0]; c.TraceID != slowTrace || !c.Start.Equal(t0.Add(4*time.Second)) || c.Ops[0].Ms != 900 {
		t.Errorf("slowest check %+v, want trace %s", c, slowTrace)
	}

	one := debugJSON(t, tel, "?trace="+slowTrace)
	if one.RecentTotal != 0 || one.SlowestTotal != 1 || len(one.Slowest) != 1 || one.Slowest[0].TraceID != slowTrace {
		t.Errorf("?trace=%s: %+v", slowTrace, one)
	}
	b := debugJSON(t, tel, "?mount=/mnt/b")
	if b.RecentTotal != 1 || len(b.Recent) != 1 || b.Recent[0].MountPath != "/mnt/b" || b.SlowestTotal != 0 || b.LastFailuresTotal != 0 {
		t.Errorf("?mount=/mnt/b: %+v", b)
	}
	lim := debugJSON(t, tel, "?mount=/mnt/a&limit=1")
	if lim.Limit != 1 || lim.RecentTotal != 3 || len(lim.Recent) != 1 || lim.Recent[0].DurationMs != 10 || lim.SlowestTotal != 3 || len(lim.Slowest) != 1 || lim.Slowest[0].DurationMs != 900 {
		t.Errorf("?mount=/mnt/a&limit=1: %+v", lim)
	}
	text := debugChecks(t, tel, "?format=text&mount=/mnt/a")
	if !strings.Contains(text, "trace="+slowTrace) || !strings.Contains(text, "write=900.000") || !strings.Contains(text, `error="write: input/output error"`) ||
		!strings.Contains(text, "slowest: 3 of 3") {
		t.Errorf("text format:\n%s", text)
	}
	for _, q := range []string{"?limit=0", "?limit=x", "?limit=1001", "?limit=-1"} {
		rec := httptest.NewRecorder()
		httpapi.DebugChecks(tel.CheckLog()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/checks"+q, nil))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "limit=") {
			t.Errorf("%s: %d %q, want 400 naming limit", q, rec.Code, rec.Body.String())
		}
	}
}

// TestNoPushWhenNothingSet: no OTEL_* variable, or exporters set to none,
// means no exporter at all (hence no background retries).
func TestNoPushWhenNothingSet(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{},
		{"OTEL_METRICS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		{"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_TRACES_EXPORTER": "none"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_SERVICE_NAME": "x"},
	} {
		tel := newTel(t, &source{}, exporters.Options{Getenv: func(k string) string { return env[k] }})
		if m, tr := tel.Pushing(); m || tr {
			t.Errorf("env %v: pushing metrics=%v traces=%v", env, m, tr)
		}
	}
}

// TestResourceFromGetenv: the service name and resource attributes come
// from the injected environment, OTEL_SERVICE_NAME first.
func TestResourceFromGetenv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want map[string]string
	}{
		{"defaults", nil, map[string]string{"service.name": "efs-health-agent", "service.version": "v1.2.3"}},
		{"attributes", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "k8s.node.name=node-1,deployment.environment=prod%20eu"},
			map[string]string{"service.name": "efs-health-agent", "k8s.node.name": "node-1", "deployment.environment": "prod eu"}},
		{"service.name attribute", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"},
			map[string]string{"service.name": "from-attrs"}},
		{"OTEL_SERVICE_NAME wins", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs", "OTEL_SERVICE_NAME": "from-name"},
			map[string]string{"service.name": "from-name"}},
		{"malformed entry skipped", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "a=1,broken,b=2"},
			map[string]string{"a": "1", "b": "2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spans := tracetest.NewSpanRecorder()
			getenv := func(k string) string {
				if v, ok := tc.env[k]; ok {
					return v
				}
				return traceAll(k)
			}
			tel := newTel(t, &source{}, exporters.Options{SpanProcessor: spans, Getenv: getenv})
			runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0, nil, &agent.MountStatus{State: agent.StateHealthy})
			got := map[string]string{}
			for _, kv := range spans.Ended()[0].Resource().Attributes() {
				got[string(kv.Key)] = kv.Value.String()
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (resource %v)", k, got[k], v, got)
				}
			}
		})
	}
}

var _ sdktrace.SpanProcessor = (*tracetest.SpanRecorder)(nil)

// checkAndWriteIDs returns the trace id of the recorded efs.mount.check
// span and the span id of its efs.mount.write child ("" when absent).
func checkAndWriteIDs(spans *tracetest.SpanRecorder) (traceID, writeSpan string) {
	for _, s := range spans.Ended() {
		switch s.Name() {
		case "efs.mount.check":
			traceID = s.SpanContext().TraceID().String()
		case "efs.mount.write":
			writeSpan = s.SpanContext().SpanID().String()
		}
	}
	return traceID, writeSpan
}
