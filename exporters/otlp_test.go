package exporters_test

import (
	"context"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// pushedSpan is a span as the receiver got it.
type pushedSpan struct {
	name, path, status string
	trace, id, parent  string
}

// receiver is an in-process OTLP gRPC receiver.
type receiver struct {
	colmetrics.UnimplementedMetricsServiceServer
	mu       sync.Mutex
	metrics  []*metricspb.ResourceMetrics
	spans    map[string]map[string]string // span name -> attributes
	status   map[string]string            // span name -> status code
	all      []pushedSpan
	service  string
	node     string
	instance string
}

func (r *receiver) Export(_ context.Context, req *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, req.ResourceMetrics...)
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

type traceSvc struct {
	coltrace.UnimplementedTraceServiceServer
	r *receiver
}

func (t traceSvc) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.Resource.Attributes {
			switch a.Key {
			case "service.name":
				t.r.service = a.Value.GetStringValue()
			case "k8s.node.name":
				t.r.node = a.Value.GetStringValue()
			case "service.instance.id":
				t.r.instance = a.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				attrs := map[string]string{}
				for _, a := range s.Attributes {
					attrs[a.Key] = a.Value.String()
				}
				t.r.spans[s.Name] = attrs
				t.r.status[s.Name] = s.GetStatus().GetCode().String()
				t.r.all = append(t.r.all, pushedSpan{name: s.Name, path: attrs["efs.mount.path"], status: s.GetStatus().GetCode().String(),
					trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId), parent: hex.EncodeToString(s.ParentSpanId)})
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{spans: map[string]map[string]string{}, status: map[string]string{}}
	s := grpc.NewServer()
	colmetrics.RegisterMetricsServiceServer(s, r)
	coltrace.RegisterTraceServiceServer(s, traceSvc{r: r})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return r, ln.Addr().String()
}

// gauge finds the value of metric name with attribute mount_path=path.
func (r *receiver) gauge(name, path string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.metrics) - 1; i >= 0; i-- {
		for _, sm := range r.metrics[i].ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != name {
					continue
				}
				var dps []*metricspb.NumberDataPoint
				if g := m.GetGauge(); g != nil {
					dps = g.DataPoints
				} else if s := m.GetSum(); s != nil {
					dps = s.DataPoints
				}
				for _, dp := range dps {
					match := path == ""
					for _, a := range dp.Attributes {
						if a.Key == "mount_path" && a.Value.GetStringValue() == path {
							match = true
						}
					}
					if match {
						if dp.GetAsInt() != 0 || dp.GetAsDouble() == 0 {
							return float64(dp.GetAsInt()) + dp.GetAsDouble(), true
						}
						return dp.GetAsDouble(), true
					}
				}
			}
		}
	}
	return 0, false
}

// metric finds the last pushed metric called name.
func (r *receiver) metric(name string) *metricspb.Metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.metrics) - 1; i >= 0; i-- {
		for _, sm := range r.metrics[i].ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == name {
					return m
				}
			}
		}
	}
	return nil
}

// TestOTLPPush: with the standard environment pointing at a collector,
// metrics (documented names, mount_path attribute, values) and spans
// arrive; an unregistered mount stops being pushed. Not parallel: the
// OTLP exporters read the process environment (t.Setenv).
func TestOTLPPush(t *testing.T) {
	r, addr := startReceiver(t)
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE": "true",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_METRIC_EXPORT_INTERVAL": "100",
		"OTEL_BSP_SCHEDULE_DELAY":     "50",
		"OTEL_SERVICE_NAME":           "efs-health-agent-test",
		"OTEL_RESOURCE_ATTRIBUTES":    "k8s.node.name=node-1",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	src := &source{}
	sts, sum := fixture()
	// A mount point may hold any byte; protobuf strings must be UTF-8, and
	// one invalid path must not fail the push of every other mount.
	hostile := "/mnt/bad\xff"
	sts = append(sts, &agent.MountStatus{Mount: &agent.Mount{Path: hostile}, State: agent.StateHealthy, LastCheck: t0})
	sum.Mounts++
	src.set(sts, sum)
	tel := newTel(t, src, exporters.Options{InstanceID: "node-1", Getenv: func(k string) string { return env[k] }})
	if m, tr := tel.Pushing(); !m || !tr {
		t.Fatalf("not pushing: metrics=%v traces=%v", m, tr)
	}
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond}, &agent.MountStatus{State: agent.StateHealthy})
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/b"}, t0, map[probes.Op]time.Duration{probes.OpRead: time.Millisecond},
		&agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonIOError, FailedOp: probes.OpRead, LastError: "read: input/output error"})
	runCheck(tel.Observer(), agent.Mount{Path: hostile}, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond},
		&agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonNotMounted, LastError: "not mounted: " + hostile})

	healthy := "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := r.gauge("efs_mount_health_status", healthy)
		e, ok2 := r.gauge("efs_mount_error_total", "/mnt/hung")
		rt, ok3 := r.gauge("efs_mount_response_time_ms", healthy)
		r.mu.Lock()
		// The spans come in batches: wait for each one checked below.
		_, spanOK := r.spans["efs.mount.check"]
		_, writeOK := r.spans["efs.mount.write"]
		_, readOK := r.spans["efs.mount.read"]
		spanOK = spanOK && writeOK && readOK
		r.mu.Unlock()
		_, ok4 := r.gauge("efs_mount_health_status", `/mnt/bad\xff`)
		if ok && ok2 && ok3 && ok4 && spanOK {
			if v != 1 || e != 4 || rt != 15 {
				t.Fatalf("pushed values: health %v errors %v response %v", v, e, rt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OTLP data did not arrive (health %v, errors %v, response %v, hostile path %v, span %v)", ok, ok2, ok3, ok4, spanOK)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.mu.Lock()
	if got := r.spans["efs.mount.check"]["efs.mount.path"]; !strings.Contains(got, `"/mnt/`) {
		t.Errorf("span attribute efs.mount.path = %q", got)
	}
	if _, ok := r.spans["efs.mount.write"]; !ok {
		t.Error("no efs.mount.write span")
	}
	if r.status["efs.mount.read"] != "STATUS_CODE_ERROR" || !strings.Contains(r.spans["efs.mount.read"]["efs.mount.failure_reason"], "io_error") {
		t.Errorf("failed read span: status %s attributes %v", r.status["efs.mount.read"], r.spans["efs.mount.read"])
	}
	if r.service != "efs-health-agent-test" || r.node != "node-1" || r.instance != "node-1" {
		t.Errorf("resource service.name = %q k8s.node.name = %q service.instance.id = %q, want OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and Options.InstanceID", r.service, r.node, r.instance)
	}
	r.mu.Unlock()
	if m := r.metric("efs_mount_operation_duration_seconds"); m.GetHistogram() == nil || len(m.GetHistogram().DataPoints) == 0 || m.Unit != "s" {
		t.Errorf("latency histogram not pushed: %v", m)
	}
	if m := r.metric("efs_mount_checks_total"); m.GetSum() == nil || !m.GetSum().IsMonotonic || len(m.GetSum().DataPoints) != 3 { // success, io_error, not_mounted
		t.Errorf("checks counter not pushed as a monotonic sum: %v", m)
	}

	// Unregister everything: the next pushes no longer carry the mount.
	// A push collected before the change may still arrive: the one after
	// it was collected after the change.
	src.set(nil, agent.Summary{})
	pushed := func() bool { _, ok := r.gauge("efs_csi_driver_healthy", ""); return ok }
	for range 2 {
		r.mu.Lock()
		r.metrics = nil
		r.mu.Unlock()
		testutil.WaitFor(t, "a push after unregistering", pushed)
	}
	if _, ok := r.gauge("efs_mount_health_status", healthy); ok {
		t.Fatal("unregistered mount still pushed")
	}
}

// TestUnreachableCollector: a collector that is not there slows neither
// checks, nor scrapes, nor shutdown beyond its deadline. Not parallel
// (t.Setenv).
func TestUnreachableCollector(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE": "true",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_METRIC_EXPORT_INTERVAL": "50",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	tel, err := exporters.New(context.Background(), &source{}, exporters.Options{Logger: quiet(), Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 200; i++ {
		runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond}, &agent.MountStatus{State: agent.StateHealthy})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("200 checks took %v with the collector down", d)
	}
	time.Sleep(200 * time.Millisecond) // a few failed exports
	start = time.Now()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if d := time.Since(start); rec.Code != 200 || d > time.Second {
		t.Errorf("scrape: %d after %v with the collector down", rec.Code, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	_ = tel.Shutdown(ctx)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v with a 500ms deadline", d)
	}
}

// TestFailedCheckInOTLP: with healthy checks not sampled at all, a failed
// check's whole span tree (the check span and a child per operation, the
// failed one with an error status) still reaches the collector, and the
// healthy checks' spans do not. Not parallel (t.Setenv).
func TestFailedCheckInOTLP(t *testing.T) {
	r, addr := startReceiver(t)
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE": "true",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_METRICS_EXPORTER":       "none",
		"OTEL_BSP_SCHEDULE_DELAY":     "50",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	env["OTEL_TRACES_SAMPLER"] = "always_off"
	tel, err := exporters.New(context.Background(), &source{}, exporters.Options{Logger: quiet(), Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	ops := map[probes.Op]time.Duration{probes.OpStatfs: time.Millisecond, probes.OpWrite: time.Millisecond, probes.OpRead: time.Millisecond, probes.OpDelete: time.Millisecond}
	for i := 0; i < 20; i++ {
		runCheck(tel.Observer(), agent.Mount{Path: "/mnt/ok"}, t0, ops, &agent.MountStatus{State: agent.StateHealthy})
	}
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/bad"}, t0, ops,
		&agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonIOError, FailedOp: probes.OpWrite, LastError: "write: input/output error"})
	// Shutdown flushes the batch processor: everything kept has arrived.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var root pushedSpan
	for _, s := range r.all {
		if s.name == "efs.mount.check" {
			if s.path != `string_value:"/mnt/bad"` || root.id != "" {
				t.Fatalf("check span of %s pushed; want only the failed check's", s.path)
			}
			root = s
		}
	}
	if root.id == "" || root.status != "STATUS_CODE_ERROR" {
		t.Fatalf("failed check span not pushed with an error status: %+v (all %+v)", root, r.all)
	}
	children := map[string]string{}
	for _, s := range r.all {
		if s.name != "efs.mount.check" && s.trace == root.trace && s.parent == root.id {
			children[s.name] = s.status
		}
	}
	want := map[string]string{"efs.mount.statfs": "STATUS_CODE_UNSET", "efs.mount.write": "STATUS_CODE_ERROR", "efs.mount.read": "STATUS_CODE_UNSET", "efs.mount.delete": "STATUS_CODE_UNSET"}
	if len(r.all) != 5 || len(children) != len(want) {
		t.Fatalf("pushed %d spans, children %v, want %v", len(r.all), children, want)
	}
	for n, st := range want {
		if children[n] != st {
			t.Errorf("%s status %s, want %s", n, children[n], st)
		}
	}
}
