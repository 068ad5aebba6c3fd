package exporters_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

const deadline = 5 * time.Second

func timeoutErr(op probes.Op) error {
	return fmt.Errorf("timeout after %v in %s: %w", deadline, op, agent.ErrTimeout)
}

func opErr(op probes.Op, errno unix.Errno) error { return &probes.OpError{Op: op, Err: errno} }

// wantOp is what an operation span must look like.
type wantOp struct {
	name   string
	reason string // efs.mount.failure_reason; "" for success
	bytes  string // efs.mount.bytes
	dur    time.Duration
}

// spanCase is a check handed to the Observer and the span tree it must
// leave.
type spanCase struct {
	name  string
	mount agent.Mount
	steps []step
	// hung: the last step is the stuck one, ended at the deadline.
	hung      bool
	end       *agent.MountStatus
	endAt     time.Duration
	wantState string
	wantErr   bool
	wantOps   []wantOp
}

// TestSpans hands the Observer check records the way the agent does and
// checks the span tree: one efs.mount.check span per check, a child per
// operation, failure status, error event and reason on failed operations,
// and a hung operation's span ended at the deadline.
func TestSpans(t *testing.T) {
	t.Parallel()
	const path = "/var/lib/kubelet/pods/p/volumes/efs/mount"
	tests := []spanCase{
		{
			name:  "healthy read-write",
			mount: agent.Mount{Path: path, FSType: "nfs4"},
			steps: []step{{probes.OpStatfs, time.Millisecond, nil}, {probes.OpWrite, 9 * time.Millisecond, nil},
				{probes.OpRead, 4 * time.Millisecond, nil}, {probes.OpDelete, 2 * time.Millisecond, nil}},
			end: &agent.MountStatus{State: agent.StateHealthy}, endAt: 16 * time.Millisecond,
			wantState: "healthy",
			wantOps: []wantOp{{"efs.mount.statfs", "", "", time.Millisecond}, {"efs.mount.write", "", "1024", 9 * time.Millisecond},
				{"efs.mount.read", "", "1024", 4 * time.Millisecond}, {"efs.mount.delete", "", "", 2 * time.Millisecond}},
		},
		{
			name:  "write fails with EIO",
			mount: agent.Mount{Path: path},
			steps: []step{{probes.OpStatfs, time.Millisecond, nil}, {probes.OpWrite, 3 * time.Millisecond, opErr(probes.OpWrite, unix.EIO)}},
			end:   &agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonIOError, LastError: "write: input/output error", FailedOp: probes.OpWrite},
			endAt: 4 * time.Millisecond, wantState: "unhealthy", wantErr: true,
			wantOps: []wantOp{{"efs.mount.statfs", "", "", time.Millisecond}, {"efs.mount.write", "io_error", "1024", 3 * time.Millisecond}},
		},
		{
			name:  "stale file handle on read",
			mount: agent.Mount{Path: path},
			steps: []step{{probes.OpStatfs, time.Millisecond, nil}, {probes.OpWrite, time.Millisecond, nil}, {probes.OpRead, time.Millisecond, opErr(probes.OpRead, unix.ESTALE)}},
			end:   &agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonStaleFileHandle, LastError: "read: stale NFS file handle"},
			endAt: 3 * time.Millisecond, wantState: "unhealthy", wantErr: true,
			wantOps: []wantOp{{"efs.mount.statfs", "", "", time.Millisecond}, {"efs.mount.write", "", "1024", time.Millisecond}, {"efs.mount.read", "stale_file_handle", "1024", time.Millisecond}},
		},
		{
			name:  "read-only check",
			mount: agent.Mount{Path: path},
			steps: []step{{probes.OpStatfs, time.Millisecond, nil}, {probes.OpStat, time.Millisecond, nil}, {probes.OpReaddir, 2 * time.Millisecond, nil}},
			end:   &agent.MountStatus{State: agent.StateHealthy, Mode: probes.ModeReadOnly}, endAt: 4 * time.Millisecond, wantState: "healthy",
			wantOps: []wantOp{{"efs.mount.statfs", "", "", time.Millisecond}, {"efs.mount.stat", "", "", time.Millisecond}, {"efs.mount.readdir", "", "", 2 * time.Millisecond}},
		},
		{
			name:  "write hangs: span ended at the deadline",
			mount: agent.Mount{Path: path},
			steps: []step{{probes.OpStatfs, time.Millisecond, nil}, {probes.OpWrite, deadline - time.Millisecond, timeoutErr(probes.OpWrite)}},
			hung:  true,
			end:   &agent.MountStatus{State: agent.StateHung, Reason: probes.ReasonTimeout, LastError: "timeout after 5s in write"},
			endAt: deadline, wantState: "hung", wantErr: true,
			wantOps: []wantOp{{"efs.mount.statfs", "", "", time.Millisecond}, {"efs.mount.write", "timeout", "1024", deadline - time.Millisecond}},
		},
		{
			name:  "deadline between operations",
			mount: agent.Mount{Path: path},
			steps: []step{{probes.OpStatfs, time.Millisecond, nil}},
			end:   &agent.MountStatus{State: agent.StateHung, Reason: probes.ReasonTimeout, LastError: "timeout after 5s in open"},
			endAt: deadline, wantState: "hung", wantErr: true,
			wantOps: []wantOp{{"efs.mount.statfs", "", "", time.Millisecond}},
		},
		{
			// The tunnel step is advisory: it explains the write's failure.
			name:  "tunnel unreachable, then the write fails",
			mount: agent.Mount{Path: path, TunnelAddr: "127.0.0.1:20049"},
			steps: []step{{probes.OpTunnel, time.Millisecond, fmt.Errorf("tunnel 127.0.0.1:20049: %w", probes.ErrTunnelDown)},
				{probes.OpOpen, time.Millisecond, nil}, {probes.OpWrite, time.Millisecond, opErr(probes.OpWrite, unix.EIO)}},
			end:   &agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonTunnelDown, LastError: "write: input/output error (tunnel down)", FailedOp: probes.OpWrite},
			endAt: 3 * time.Millisecond, wantState: "unhealthy", wantErr: true,
			wantOps: []wantOp{{"efs.mount.tunnel", "tunnel_down", "", time.Millisecond}, {"efs.mount.open", "", "", time.Millisecond},
				{"efs.mount.write", "io_error", "1024", time.Millisecond}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spans := tracetest.NewSpanRecorder()
			tel := newTel(t, &source{}, exporters.Options{SpanProcessor: spans, Getenv: traceAll})
			r := record(tc.mount, t0, tc.steps)
			r.End, r.Outcome = t0.Add(tc.endAt), outcomeOf(tc.end, tc.endAt)
			tel.Observer().CheckDone(r)
			ended := spans.Ended()
			if len(ended) != len(tc.wantOps)+1 {
				t.Fatalf("%d spans ended, want %d", len(ended), len(tc.wantOps)+1)
			}
			check := ended[len(ended)-1]
			checkRootSpan(t, tc, check)
			for i, w := range tc.wantOps {
				checkOpSpan(t, w, ended[i], check)
			}
			if tc.hung {
				stuck := ended[len(tc.wantOps)-1]
				if !stuck.EndTime().Equal(t0.Add(deadline)) {
					t.Errorf("hung %s ended at %v, want the deadline %v", stuck.Name(), stuck.EndTime(), t0.Add(deadline))
				}
			}
		})
	}
}

// checkRootSpan holds the efs.mount.check span to tc.
func checkRootSpan(t *testing.T, tc spanCase, check sdktrace.ReadOnlySpan) {
	t.Helper()
	if check.Name() != "efs.mount.check" || check.Parent().IsValid() {
		t.Fatalf("last span %q (parent %v), want the root efs.mount.check", check.Name(), check.Parent())
	}
	if got := spanAttr(check, "efs.mount.path"); got != tc.mount.Path {
		t.Errorf("efs.mount.path = %q", got)
	}
	if got := spanAttr(check, "efs.mount.fstype"); got != tc.mount.FSType {
		t.Errorf("efs.mount.fstype = %q, want %q", got, tc.mount.FSType)
	}
	if got := spanAttr(check, "efs.mount.state"); got != tc.wantState {
		t.Errorf("efs.mount.state = %q, want %q", got, tc.wantState)
	}
	if (check.Status().Code == codes.Error) != tc.wantErr || (tc.wantErr && spanAttr(check, "efs.mount.failure_reason") != string(tc.end.Reason)) {
		t.Errorf("check span status %v reason %q, want error=%v reason %q", check.Status(), spanAttr(check, "efs.mount.failure_reason"), tc.wantErr, tc.end.Reason)
	}
	if !check.StartTime().Equal(t0) || !check.EndTime().Equal(t0.Add(tc.endAt)) {
		t.Errorf("check span %v..%v, want %v..%v", check.StartTime(), check.EndTime(), t0, t0.Add(tc.endAt))
	}
}

// checkOpSpan holds an operation's span s, a child of check, to w.
func checkOpSpan(t *testing.T, w wantOp, s, check sdktrace.ReadOnlySpan) {
	t.Helper()
	if s.Name() != w.name || s.Parent().SpanID() != check.SpanContext().SpanID() || s.SpanContext().TraceID() != check.SpanContext().TraceID() {
		t.Errorf("span %q parent %v, want %q child of the check", s.Name(), s.Parent().SpanID(), w.name)
		return
	}
	if d := s.EndTime().Sub(s.StartTime()); d != w.dur {
		t.Errorf("%s lasted %v, want %v", w.name, d, w.dur)
	}
	if got := spanAttr(s, "efs.mount.bytes"); got != w.bytes {
		t.Errorf("%s efs.mount.bytes = %q, want %q", w.name, got, w.bytes)
	}
	failed := w.reason != ""
	if got := spanAttr(s, "efs.mount.failure_reason"); got != w.reason {
		t.Errorf("%s failure_reason = %q, want %q", w.name, got, w.reason)
	}
	if (s.Status().Code == codes.Error) != failed || (len(s.Events()) > 0) != failed {
		t.Errorf("%s status %v events %d, want failed=%v", w.name, s.Status(), len(s.Events()), failed)
	}
	if failed && s.Events()[0].Name != "exception" {
		t.Errorf("%s event %q, want the recorded error", w.name, s.Events()[0].Name)
	}
}

func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// collect returns the metrics of a manual reader by name.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func mountAttrs(p string) attribute.Set { return attribute.NewSet(exporters.MountPathKey.String(p)) }

// TestInstruments checks the instruments through a manual reader: the
// view layer's names and descriptions, the check counter by outcome and
// reason (skips and a check whose mount was unregistered included), the
// latency histogram's buckets, and the per-mount gauges.
func TestInstruments(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	src := &source{}
	src.set(fixture())
	tel := newTel(t, src, exporters.Options{MetricReader: reader})
	obs := tel.Observer()
	ops := map[probes.Op]time.Duration{probes.OpWrite: 3 * time.Millisecond, probes.OpRead: 2 * time.Millisecond}
	runCheck(obs, agent.Mount{Path: "/mnt/a"}, t0, ops, &agent.MountStatus{State: agent.StateHealthy})
	runCheck(obs, agent.Mount{Path: "/mnt/a"}, t0, ops, &agent.MountStatus{State: agent.StateHealthy})
	runCheck(obs, agent.Mount{Path: "/mnt/b"}, t0, ops, &agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonNoSpace, FailedOp: probes.OpWrite, LastError: "no space"})
	obs.CheckSkipped(&agent.Mount{Path: "/mnt/hung"}, t0)
	obs.CheckSkipped(&agent.Mount{Path: "/mnt/hung"}, t0)
	// The mount was unregistered while its check ran: no status was
	// published for it, and the check's own outcome is counted.
	err := opErr(probes.OpWrite, unix.EACCES)
	r := record(agent.Mount{Path: "/mnt/gone"}, t0, []step{{probes.OpWrite, time.Millisecond, err}})
	r.Outcome = agent.Outcome{State: agent.StateUnhealthy, Reason: probes.ReasonPermissionDenied, Err: err, FailedOp: probes.OpWrite, Duration: time.Millisecond}
	obs.CheckDone(r)

	got := collect(t, reader)
	checkSet := func(outcome, reason string) attribute.Set {
		return attribute.NewSet(attribute.String("outcome", outcome), attribute.String("reason", reason))
	}
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name:        "efs_mount_checks_total",
		Description: "Mount checks by outcome (success, failure) and failure reason",
		Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: checkSet("success", ""), Value: 2},
			{Attributes: checkSet("failure", "no_space"), Value: 1},
			{Attributes: checkSet("failure", "hung"), Value: 2},
			{Attributes: checkSet("failure", "permission_denied"), Value: 1},
		}},
	}, got["efs_mount_checks_total"], metricdatatest.IgnoreTimestamp())

	hist := got["efs_mount_operation_duration_seconds"]
	if hist.Unit != "s" {
		t.Errorf("histogram unit %q, want s", hist.Unit)
	}
	h, ok := hist.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("efs_mount_operation_duration_seconds is %T", hist.Data)
	}
	for _, dp := range h.DataPoints {
		if dp.Attributes.Len() != 1 {
			t.Errorf("histogram attributes %v, want only operation", dp.Attributes.ToSlice())
		}
		if op, _ := dp.Attributes.Value("operation"); op.AsString() == "write" && (dp.Count != 4 || len(dp.Bounds) != len(exporters.LatencyBuckets) || dp.Bounds[0] != 0.0005 || dp.Bounds[len(dp.Bounds)-1] != 10) {
			t.Errorf("write histogram: count %d bounds %v", dp.Count, dp.Bounds)
		}
	}

	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name:        "efs_mount_health_status",
		Description: "Health status of EFS mounts (1=healthy, 0=unhealthy)",
		Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: mountAttrs("/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"), Value: 1},
			{Attributes: mountAttrs("/mnt/hung"), Value: 0},
		}},
	}, got["efs_mount_health_status"], metricdatatest.IgnoreTimestamp())
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name:        "efs_mount_error_total",
		Description: "Total number of errors for mount health checks",
		Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: mountAttrs("/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"), Value: 0},
			{Attributes: mountAttrs("/mnt/hung"), Value: 4},
			{Attributes: mountAttrs("/mnt/pending"), Value: 0},
		}},
	}, got["efs_mount_error_total"], metricdatatest.IgnoreTimestamp())
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name:        "efs_mount_response_time_ms",
		Description: "Response time for mount health checks in milliseconds",
		Unit:        "ms",
		Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{
			{Attributes: mountAttrs("/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"), Value: 15},
			{Attributes: mountAttrs("/mnt/hung"), Value: 5000},
		}},
	}, got["efs_mount_response_time_ms"], metricdatatest.IgnoreTimestamp())
	for name, want := range map[string]int64{"efs_csi_driver_healthy": 0, "efs_mount_checks_in_flight": 1, "efs_mounts_hung": 1} {
		metricdatatest.AssertEqual(t, metricdata.Metrics{Name: name, Description: got[name].Description,
			Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{{Attributes: *attribute.EmptySet(), Value: want}}},
		}, got[name], metricdatatest.IgnoreTimestamp())
	}
	for name, m := range got {
		if m.Description == "" {
			t.Errorf("%s has no description (HELP)", name)
		}
		if strings.Contains(name, ".") {
			t.Errorf("%s escaped the view layer", name)
		}
	}
	// The mode's series carries both labels, each with its own value.
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: "efs_mount_check_mode", Description: got["efs_mount_check_mode"].Description,
		Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: attribute.NewSet(attribute.String("mode", "read-write"), attribute.String("mount_path", "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount")), Value: 1},
			{Attributes: attribute.NewSet(attribute.String("mode", "write-denied"), attribute.String("mount_path", "/mnt/hung")), Value: 1},
		}},
	}, got["efs_mount_check_mode"], metricdatatest.IgnoreTimestamp())
	metricdatatest.AssertEqual(t, metricdata.Metrics{Name: "efs_health_agent_self_delays_total", Description: got["efs_health_agent_self_delays_total"].Description,
		Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: attribute.NewSet(attribute.String("cause", "scheduling")), Value: 3},
			{Attributes: attribute.NewSet(attribute.String("cause", "housekeeping")), Value: 0},
		}},
	}, got["efs_health_agent_self_delays_total"], metricdatatest.IgnoreTimestamp())
	if len(got) != 16 {
		t.Errorf("%d metrics, want 16", len(got))
	}
}

// TestWithMonitor runs the real agent on a temporary directory with the
// telemetry as its Observer: the scrape, the span tree and /debug/checks
// agree, and unregistering removes the mount from all three.
func TestWithMonitor(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tel := newTel(t, nil, exporters.Options{SpanProcessor: spans, Getenv: traceAll})
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Logger = quiet()
	cfg.Jitter = 0
	cfg.Observer = tel.Observer()
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tel.SetSource(mon)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mon.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	dir := t.TempDir()
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "first check", func() bool {
		st, _ := mon.Status(dir)
		return st.State == agent.StateHealthy && len(spans.Ended()) > 0
	})
	body := scrape(t, tel, "")
	if !strings.Contains(body, fmt.Sprintf("efs_mount_health_status{mount_path=%q} 1\n", dir)) || !strings.Contains(body, "efs_csi_driver_healthy 1\n") {
		t.Fatalf("scrape:\n%s", body)
	}
	var check sdktrace.ReadOnlySpan
	children := map[string]bool{}
	for _, s := range spans.Ended() {
		if s.Name() == "efs.mount.check" {
			check = s
		}
	}
	for _, s := range spans.Ended() {
		if s.Parent().SpanID() == check.SpanContext().SpanID() {
			children[s.Name()] = true
		}
	}
	for _, n := range []string{"efs.mount.write", "efs.mount.read", "efs.mount.delete"} {
		if !children[n] {
			t.Errorf("no %s child span; children %v", n, children)
		}
	}
	if d := debugChecks(t, tel, ""); !strings.Contains(d, check.SpanContext().TraceID().String()) {
		t.Errorf("/debug/checks lacks the check's trace id:\n%s", d)
	}

	mon.Unregister(dir)
	if body := scrape(t, tel, ""); strings.Contains(body, dir) {
		t.Errorf("unregistered mount still scraped:\n%s", body)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestManyMounts: every mount has its series in the scrape and in the
// OTel export, beyond the SDK's default cardinality limit of 2,000 series
// per instrument (no otel_metric_overflow series).
func TestManyMounts(t *testing.T) {
	t.Parallel()
	const n = 2500
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("/mnt/many/%05d", i))
	}
	reader := sdkmetric.NewManualReader()
	src := &source{}
	src.set(live(paths...))
	tel := newTel(t, src, exporters.Options{MetricReader: reader})
	s := scrape(t, tel, "")
	if got := strings.Count(s, "efs_mount_health_status{mount_path="); got != n || strings.Contains(s, "overflow") {
		t.Errorf("scrape has %d health series (want %d), overflow series: %v", got, n, strings.Contains(s, "overflow"))
	}
	health, ok := collect(t, reader)["efs_mount_health_status"].Data.(metricdata.Gauge[int64])
	if !ok || len(health.DataPoints) != n {
		t.Fatalf("OTel export has %d health points, want %d", len(health.DataPoints), n)
	}
	for _, dp := range health.DataPoints {
		if _, overflow := dp.Attributes.Value("otel.metric.overflow"); overflow {
			t.Fatal("OTel export has an overflow point")
		}
	}
}
