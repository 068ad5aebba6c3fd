package exporters_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// sampler is a Getenv choosing the sampler of healthy, fast checks.
func sampler(name, arg string) func(string) string {
	return func(k string) string {
		switch k {
		case "OTEL_TRACES_SAMPLER":
			return name
		case "OTEL_TRACES_SAMPLER_ARG":
			return arg
		}
		return ""
	}
}

// checkTrees groups ended spans by trace: the check span's mount path ->
// the names of the spans of its trace.
func checkTrees(spans []sdktrace.ReadOnlySpan) map[string][]string {
	byTrace := map[string][]string{}
	paths := map[string]string{}
	for _, s := range spans {
		id := s.SpanContext().TraceID().String()
		byTrace[id] = append(byTrace[id], s.Name())
		if s.Name() == "efs.mount.check" {
			paths[id] = spanAttr(s, "efs.mount.path")
		}
	}
	out := map[string][]string{}
	for id, p := range paths {
		names := byTrace[id]
		slices.Sort(names)
		out[p] = names
	}
	return out
}

// TestTailSampling: with healthy checks sampled at ratio 0, a healthy fast
// check creates no span, while a failed, a timed-out and a slow check each
// keep their full span tree; every check's operations are still in the
// histogram and every check in the counter.
func TestTailSampling(t *testing.T) {
	t.Parallel()
	for _, env := range []func(string) string{sampler("always_off", ""), sampler("parentbased_traceidratio", "0"), sampler("", "0")} {
		spans := tracetest.NewSpanRecorder()
		reader := sdkmetric.NewManualReader()
		tel := newTel(t, &source{}, exporters.Options{SpanProcessor: spans, MetricReader: reader, Getenv: env, TraceSlowThreshold: 100 * time.Millisecond})
		obs := tel.Observer()
		fast := map[probes.Op]time.Duration{probes.OpStatfs: time.Millisecond, probes.OpWrite: 2 * time.Millisecond, probes.OpRead: time.Millisecond, probes.OpDelete: time.Millisecond}
		for i := 0; i < 50; i++ {
			runCheck(obs, agent.Mount{Path: "/mnt/fast"}, t0, fast, &agent.MountStatus{State: agent.StateHealthy})
		}
		runCheck(obs, agent.Mount{Path: "/mnt/failed"}, t0, fast,
			&agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonIOError, FailedOp: probes.OpRead, LastError: "read: input/output error"})
		runCheck(obs, agent.Mount{Path: "/mnt/slow"}, t0,
			map[probes.Op]time.Duration{probes.OpStatfs: time.Millisecond, probes.OpWrite: 99 * time.Millisecond, probes.OpRead: time.Millisecond},
			&agent.MountStatus{State: agent.StateHealthy})
		// A check stuck in write, ended by the deadline.
		r := record(agent.Mount{Path: "/mnt/hung"}, t0, []step{{probes.OpStatfs, time.Millisecond, nil},
			{probes.OpWrite, deadline - time.Millisecond, timeoutErr(probes.OpWrite)}})
		r.Outcome = outcomeOf(&agent.MountStatus{Mount: &agent.Mount{Path: "/mnt/hung"}, State: agent.StateHung, Reason: probes.ReasonTimeout,
			LastError: "timeout", LastCheck: t0.Add(deadline)}, deadline)
		obs.CheckDone(r)

		trees := checkTrees(spans.Ended())
		want := map[string][]string{
			"/mnt/failed": {"efs.mount.check", "efs.mount.delete", "efs.mount.read", "efs.mount.statfs", "efs.mount.write"},
			"/mnt/slow":   {"efs.mount.check", "efs.mount.read", "efs.mount.statfs", "efs.mount.write"},
			"/mnt/hung":   {"efs.mount.check", "efs.mount.statfs", "efs.mount.write"},
		}
		for p, names := range want {
			if !slices.Equal(trees[p], names) {
				t.Errorf("%s: spans %v, want %v", p, trees[p], names)
			}
		}
		if len(trees) != len(want) {
			t.Errorf("span trees %v: the healthy fast checks kept spans", trees)
		}
		if n := len(spans.Ended()); n != 12 {
			t.Errorf("%d spans, want 12", n)
		}

		got := collect(t, reader)
		var ops uint64
		for _, dp := range got["efs_mount_operation_duration_seconds"].Data.(metricdata.Histogram[float64]).DataPoints {
			ops += dp.Count
		}
		if want := uint64(50*4 + 4 + 3 + 2); ops != want {
			t.Errorf("histogram counted %d operations, want %d", ops, want)
		}
		var checks int64
		for _, dp := range got["efs_mount_checks_total"].Data.(metricdata.Sum[int64]).DataPoints {
			checks += dp.Value
		}
		if checks != 53 {
			t.Errorf("counter counted %d checks, want 53", checks)
		}
	}
}

// TestHealthyChecksSampledByRatio: at ratio 0.5 about half the healthy,
// fast checks keep their spans, each with its whole tree.
func TestHealthyChecksSampledByRatio(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tel := newTel(t, &source{}, exporters.Options{SpanProcessor: spans, Getenv: sampler("traceidratio", "0.5")})
	const n = 400
	for i := 0; i < n; i++ {
		runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond, probes.OpRead: time.Millisecond},
			&agent.MountStatus{State: agent.StateHealthy})
	}
	roots := 0
	for _, s := range spans.Ended() {
		if s.Name() == "efs.mount.check" {
			roots++
		}
	}
	// Binomial(400, 0.5): 120..280 is more than 8 standard deviations.
	if roots < 120 || roots > 280 || len(spans.Ended()) != 3*roots {
		t.Errorf("%d of %d checks kept, %d spans", roots, n, len(spans.Ended()))
	}
}

// TestSlowCheckExemplar: a slow check's trace is reachable from the
// latency histogram's exemplar in the OpenMetrics scrape, and from
// /debug/checks, even though healthy checks are not sampled at all.
func TestSlowCheckExemplar(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	src := &source{}
	src.set(live("/mnt/a"))
	tel := newTel(t, src, exporters.Options{SpanProcessor: spans, Getenv: sampler("always_off", "")})
	// A fast check first: it fills the 2.5 ms write bucket with no exemplar.
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0, map[probes.Op]time.Duration{probes.OpWrite: 2 * time.Millisecond}, &agent.MountStatus{State: agent.StateHealthy})
	if n := len(spans.Ended()); n != 0 {
		t.Fatalf("fast check kept %d spans", n)
	}
	slow := exporters.DefaultTraceSlowThreshold + 200*time.Millisecond
	runCheck(tel.Observer(), agent.Mount{Path: "/mnt/a"}, t0.Add(time.Second), map[probes.Op]time.Duration{probes.OpWrite: slow}, &agent.MountStatus{State: agent.StateHealthy})

	traceID, writeSpan := checkAndWriteIDs(spans)
	if traceID == "" || writeSpan == "" {
		t.Fatalf("slow check kept no span tree: %d spans", len(spans.Ended()))
	}
	om := scrape(t, tel, "application/openmetrics-text; version=1.0.0")
	re := regexp.MustCompile(`efs_mount_operation_duration_seconds_bucket\{operation="write",le="1(\.0)?"\} 2 # \{([^}]*)\} 0\.7`)
	m := re.FindStringSubmatch(om)
	if m == nil || !strings.Contains(m[2], `trace_id="`+traceID+`"`) || !strings.Contains(m[2], `span_id="`+writeSpan+`"`) {
		t.Fatalf("no exemplar with trace %s span %s in:\n%s", traceID, writeSpan, om)
	}
	if regexp.MustCompile(`efs_mount_operation_duration_seconds_bucket\{operation="write",le="0\.0025"\} 1 #`).MatchString(om) {
		t.Errorf("the unsampled fast check left an exemplar:\n%s", om)
	}

	var all struct {
		Slowest []struct {
			MountPath string `json:"mountPath"`
			TraceID   string `json:"traceId"`
		} `json:"slowest"`
	}
	if err := json.Unmarshal([]byte(debugChecks(t, tel, "?trace="+traceID)), &all); err != nil {
		t.Fatal(err)
	}
	if s := all.Slowest; len(s) != 1 || s[0].TraceID != traceID || s[0].MountPath != "/mnt/a" {
		t.Errorf("/debug/checks?trace=%s: %+v", traceID, all)
	}
}
