package exporters_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestSpanPathsStayDistinct checks two mounts whose paths differ only in
// an invalid byte: their check spans carry two different efs.mount.path
// values, each the path escaped by pathesc.Escape, and the failing one's
// status message keeps the path apart from the healthy one's too.
func TestSpanPathsStayDistinct(t *testing.T) {
	t.Parallel()
	good, bad := "/mnt/vol\xff", "/mnt/vol\xfe"
	spans := tracetest.NewSpanRecorder()
	tel := newTel(t, &source{}, exporters.Options{SpanProcessor: spans, Getenv: traceAll})
	runCheck(tel.Observer(), agent.Mount{Path: good}, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond},
		&agent.MountStatus{State: agent.StateHealthy})
	runCheck(tel.Observer(), agent.Mount{Path: bad}, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond},
		&agent.MountStatus{State: agent.StateUnhealthy, Reason: probes.ReasonIOError, FailedOp: probes.OpWrite,
			LastError: "open " + bad + "/probe: input/output error"})
	got := map[string]string{} // efs.mount.path -> efs.mount.state
	msgs := map[string]string{}
	for _, s := range spans.Ended() {
		if s.Name() != "efs.mount.check" {
			continue
		}
		var path, state string
		for _, a := range s.Attributes() {
			switch a.Key {
			case exporters.SpanMountPath:
				path = a.Value.AsString()
			case "efs.mount.state":
				state = a.Value.AsString()
			}
		}
		got[path] = state
		msgs[path] = s.Status().Description
	}
	want := map[string]string{pathesc.Escape(good): "healthy", pathesc.Escape(bad): "unhealthy"}
	if len(got) != 2 || got[pathesc.Escape(good)] != want[pathesc.Escape(good)] || got[pathesc.Escape(bad)] != want[pathesc.Escape(bad)] {
		t.Fatalf("check spans by efs.mount.path: %q, want %q", got, want)
	}
	if m := msgs[pathesc.Escape(bad)]; m != "open "+pathesc.Escape(bad)+"/probe: input/output error" {
		t.Fatalf("status message %q", m)
	}
}

// TestDebugChecksPathIdentity: /debug/checks names a mount as
// /healthz/mounts does (escaped), its ?mount= filter takes that form, and
// a check whose spans were dropped shows no trace id.
func TestDebugChecksPathIdentity(t *testing.T) {
	t.Parallel()
	good, bad := "/mnt/vol\xff", "/mnt/vol\xfe"
	tel := newTel(t, &source{}, exporters.Options{}) // default sampler: healthy fast checks drop their spans
	for _, p := range []string{good, bad} {
		runCheck(tel.Observer(), agent.Mount{Path: p}, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond},
			&agent.MountStatus{State: agent.StateHealthy})
	}
	var got struct {
		RecentTotal int `json:"recentTotal"`
		Recent      []struct {
			MountPath string  `json:"mountPath"`
			TraceID   *string `json:"traceId"`
		} `json:"recent"`
	}
	body := debugChecks(t, tel, "?mount="+url.QueryEscape(pathesc.Escape(bad)))
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.RecentTotal != 1 || len(got.Recent) != 1 || got.Recent[0].MountPath != pathesc.Escape(bad) {
		t.Fatalf("?mount=%s: %s", pathesc.Escape(bad), body)
	}
	if got.Recent[0].TraceID != nil {
		t.Errorf("a check without kept spans shows trace id %q", *got.Recent[0].TraceID)
	}
}
