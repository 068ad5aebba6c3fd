package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

type fakeSource struct {
	sum  agent.Summary
	live bool
	sts  []*agent.MountStatus
}

func (f *fakeSource) Summary() *agent.Summary        { return &f.sum }
func (f *fakeSource) Live() bool                     { return f.live }
func (f *fakeSource) Statuses() []*agent.MountStatus { return f.sts }

var now = time.Date(2025, 1, 11, 15, 30, 50, 0, time.UTC)

func get(t *testing.T, h http.Handler, method, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b), rec.Result().Header
}

func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		src      fakeSource
		path     string
		code     int
		contains string
	}{
		{"no mounts healthy", fakeSource{live: true}, "/healthz", 200, "CSI Driver is healthy"},
		{"no mounts ready", fakeSource{live: true}, "/healthz/ready", 200, "ready"},
		{"pending is healthy", fakeSource{live: true, sum: agent.Summary{Mounts: 1, Pending: 1}}, "/healthz", 200, "CSI Driver is healthy"},
		{"pending not ready", fakeSource{live: true, sum: agent.Summary{Mounts: 1, Pending: 1}}, "/healthz/ready", 503, "1 mount not checked yet"},
		{"unhealthy named", fakeSource{live: true, sum: agent.Summary{Mounts: 2, Unhealthy: 1, Hung: 1, UnhealthyPaths: []string{"/mnt/a"}}}, "/healthz", 503, `1 of 2 mounts unhealthy (1 hung): "/mnt/a"`},
		{"unhealthy not ready", fakeSource{live: true, sum: agent.Summary{Mounts: 2, Unhealthy: 1, UnhealthyPaths: []string{"/mnt/a"}}}, "/healthz/ready", 503, `"/mnt/a"`},
		{"stale not ready", fakeSource{live: true, sum: agent.Summary{Mounts: 2, Stale: 1}}, "/healthz/ready", 503, "older than interval + timeout"},
		{"monitor down not ready", fakeSource{live: false}, "/healthz/ready", 503, "not running"},
		{"live while unhealthy", fakeSource{live: true, sum: agent.Summary{Mounts: 1, Unhealthy: 1, Hung: 1}}, "/healthz/live", 200, "alive"},
		{"not live", fakeSource{live: false}, "/healthz/live", 503, "not running"},
		{"one mount ready", fakeSource{live: true, sum: agent.Summary{Mounts: 1}}, "/healthz/ready", 200, "ready: 1 mount healthy"},
		{"one of one unhealthy", fakeSource{live: true, sum: agent.Summary{Mounts: 1, Unhealthy: 1}}, "/healthz", 503, "1 of 1 mount unhealthy"},
		{"many unhealthy truncated", fakeSource{live: true, sum: agent.Summary{Mounts: 30, Unhealthy: 25, UnhealthyPaths: []string{"/a"}}}, "/healthz", 503, "and 24 more"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := tc.src
			h := httpapi.NewRouter(&src, httpapi.Options{})
			code, body, _ := get(t, h, http.MethodGet, tc.path)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Fatalf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.contains)
			}
		})
	}
}

func TestHealthyBodyExact(t *testing.T) {
	t.Parallel()
	_, body, _ := get(t, httpapi.NewRouter(&fakeSource{live: true}, httpapi.Options{}), http.MethodGet, "/healthz")
	if strings.TrimSpace(body) != "CSI Driver is healthy" {
		t.Fatalf("body %q", body)
	}
}

func TestMethods(t *testing.T) {
	t.Parallel()
	h := httpapi.NewRouter(&fakeSource{live: true}, httpapi.Options{Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "m 1\n") })})
	for _, p := range []string{"/healthz", "/healthz/ready", "/healthz/live", "/healthz/mounts", "/metrics"} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			if code, _, hdr := get(t, h, m, p); code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s = %d (Allow %q), want 405", m, p, code, hdr.Get("Allow"))
			}
		}
	}
	// HEAD through a real server: the GET handler's status and headers,
	// no body.
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, p := range []string{"/", "/healthz", "/healthz/ready", "/healthz/live", "/healthz/mounts", "/metrics"} {
		req, _ := http.NewRequest(http.MethodHead, srv.URL+p, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		getCode, _, getHdr := get(t, h, http.MethodGet, p)
		if resp.StatusCode != getCode || len(body) != 0 || resp.Header.Get("Content-Type") != getHdr.Get("Content-Type") {
			t.Errorf("HEAD %s = %d %q with %d body bytes; GET is %d %q", p, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), getCode, getHdr.Get("Content-Type"))
		}
	}
	if code, _, _ := get(t, h, http.MethodGet, "/nope"); code != 404 {
		t.Errorf("unknown path = %d", code)
	}
}

func TestMountsJSON(t *testing.T) {
	t.Parallel()
	hostile := "/var/lib/kubelet/pods/x/\"quoted\"\n<script>\xff"
	src := &fakeSource{live: true, sts: []*agent.MountStatus{
		{
			Mount: &agent.Mount{Path: "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount", FSType: "nfs4"},
			State: agent.StateHealthy, Mode: probes.ModeReadWrite,
			LastCheck: time.Date(2025, 1, 11, 15, 30, 45, 0, time.FixedZone("x", 3600)), ResponseTime: 15 * time.Millisecond,
			Ops: agent.OpTimingsOf(agent.OpTiming{Op: probes.OpWrite, Duration: 9 * time.Millisecond}, agent.OpTiming{Op: probes.OpRead, Duration: 4500 * time.Microsecond}),
		},
		{
			Mount: &agent.Mount{Path: "/mnt/hung"}, State: agent.StateHung, Mode: probes.ModeReadWrite,
			LastCheck: now, ResponseTime: 5 * time.Second, ErrorCount: 3, ConsecutiveErrors: 2,
			LastError: "timeout after 5s in write: check deadline exceeded", Reason: probes.ReasonTimeout, FailedOp: probes.OpWrite,
			HungSince: now.Add(-12 * time.Second),
		},
		{Mount: &agent.Mount{Path: "/mnt/pending"}, State: agent.StatePending},
		{Mount: &agent.Mount{Path: hostile}, State: agent.StateHealthy},
		{Mount: &agent.Mount{Path: "/mnt/squashed"}, State: agent.StateHealthy, Mode: probes.ModeWriteDenied, LastCheck: now},
		{Mount: &agent.Mount{Path: "/mnt/grouped"}, State: agent.StateHealthy, Mode: probes.ModeReadWrite, LastCheck: now,
			SharedProof: &agent.Proof{By: "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount", At: now.Add(-3 * time.Second), Group: "dev 0:29"}},
	}}
	h := httpapi.NewRouter(src, httpapi.Options{Now: func() time.Time { return now }})
	code, body, hdr := get(t, h, http.MethodGet, "/healthz/mounts")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("code %d ct %q", code, hdr.Get("Content-Type"))
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, body)
	}
	if strings.Contains(body, "<script>") {
		t.Error("HTML not escaped in JSON")
	}
	ok := raw["/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"]
	want := map[string]any{
		"mountPath": "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount", "isHealthy": true,
		"lastCheckTime": "2025-01-11T14:30:45Z", "responseTimeMs": 15.0, "errorCount": 0.0,
		"consecutiveErrors": 0.0, "lastError": "", "state": "healthy", "mode": "read-write",
	}
	for k, v := range want {
		if ok[k] != v {
			t.Errorf("%s = %#v, want %#v", k, ok[k], v)
		}
	}
	if ops, _ := ok["operationsMs"].(map[string]any); ops["write"] != 9.0 || ops["read"] != 4.5 {
		t.Errorf("operationsMs = %#v", ok["operationsMs"])
	}
	hung := raw["/mnt/hung"]
	if hung["state"] != "hung" || hung["isHealthy"] != false || hung["hungForMs"] != 12000.0 ||
		!strings.Contains(hung["lastError"].(string), "in write") || hung["reason"] != "timeout" {
		t.Errorf("hung mount JSON %#v", hung)
	}
	if p := raw["/mnt/pending"]; p["lastCheckTime"] != nil || p["state"] != "pending" || p["isHealthy"] != false {
		t.Errorf("pending mount JSON %#v", p)
	}
	if m := raw["/mnt/squashed"]; m["mode"] != "write-denied" || m["isHealthy"] != true {
		t.Errorf("write-denied mount JSON %#v", m)
	}
	// Which check each state comes from: its own, or a grouped mount's.
	if g := raw["/mnt/grouped"]; g["check"] != "shared" || g["provenBy"] != "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount" ||
		g["provenAt"] != now.Add(-3*time.Second).UTC().Format(time.RFC3339) {
		t.Errorf("grouped mount JSON %#v", g)
	}
	if ok["check"] != "own" || ok["provenBy"] != nil || raw["/mnt/pending"]["check"] != nil {
		t.Errorf("check of an own check %#v, of a pending one %#v", ok["check"], raw["/mnt/pending"]["check"])
	}
	if len(raw) != 6 {
		t.Errorf("%d mounts in JSON, want 6 (hostile path lost?)", len(raw))
	}
	// Every documented field is present on every mount.
	for path, m := range raw {
		for _, f := range []string{"mountPath", "isHealthy", "lastCheckTime", "responseTimeMs", "errorCount", "consecutiveErrors", "lastError", "state"} {
			if _, ok := m[f]; !ok {
				t.Errorf("%q lacks %s", path, f)
			}
		}
	}
}

func TestServerLimits(t *testing.T) {
	t.Parallel()
	s := httpapi.NewServer(":0", http.NotFoundHandler(), nil)
	if s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 || s.MaxHeaderBytes == 0 || s.MaxHeaderBytes > 64<<10 {
		t.Fatalf("server without limits: %+v", s)
	}
}

// TestSecurityHeaders: every response carries the same security headers,
// whichever route, method or error wrote it.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "{}\n") })
	h := httpapi.NewRouter(&fakeSource{live: false}, httpapi.Options{Metrics: ok, DebugChecks: ok, Pprof: true})
	want := map[string]string{
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
	}
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/"}, {http.MethodGet, "/healthz"}, {http.MethodGet, "/healthz/ready"}, {http.MethodGet, "/healthz/live"},
		{http.MethodGet, "/healthz/mounts"}, {http.MethodGet, "/metrics"}, {http.MethodGet, "/debug/checks"},
		{http.MethodGet, "/debug/pprof/"}, {http.MethodHead, "/healthz/mounts"}, {http.MethodPost, "/healthz"}, {http.MethodGet, "/nope"},
	} {
		code, _, hdr := get(t, h, req.method, req.path)
		for k, v := range want {
			if got := hdr.Get(k); got != v {
				t.Errorf("%s %s (%d): %s %q, want %q", req.method, req.path, code, k, got, v)
			}
		}
	}
}
