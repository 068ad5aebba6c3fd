package httpapi_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// statusFixture has one mount in each state, a hostile path, and history.
func statusFixture() *fakeSource {
	hist := agent.HistoryOf(3*time.Millisecond, 4*time.Millisecond, 40*time.Millisecond, 5*time.Millisecond)
	return &fakeSource{live: true,
		sum: agent.Summary{Mounts: 5, Unhealthy: 2, Hung: 1, Pending: 1},
		sts: []*agent.MountStatus{
			{Mount: &agent.Mount{Path: "/a/healthy"}, State: agent.StateHealthy, Mode: probes.ModeReadWrite, LastCheck: now.Add(-3 * time.Second),
				ResponseTime: 5 * time.Millisecond, History: hist, Ops: agent.OpTimingsOf(agent.OpTiming{Op: probes.OpWrite, Duration: 3 * time.Millisecond})},
			{Mount: &agent.Mount{Path: "/b/hung"}, State: agent.StateHung, LastCheck: now, HungSince: now.Add(-42 * time.Second),
				ResponseTime: 5 * time.Second, Reason: probes.ReasonTimeout, LastError: "timeout after 5s in write", ConsecutiveErrors: 4, ErrorCount: 9, History: hist},
			{Mount: &agent.Mount{Path: "/c/io"}, State: agent.StateUnhealthy, LastCheck: now, Reason: probes.ReasonIOError,
				LastError: "write: fsync: input/output error", ConsecutiveErrors: 1, ErrorCount: 1},
			{Mount: &agent.Mount{Path: "/d/pending"}, State: agent.StatePending},
			{Mount: &agent.Mount{Path: `/e/<img src=x onerror=alert(1)>"`}, State: agent.StateHealthy, Mode: probes.ModeWriteDenied, LastCheck: now},
		}}
}

var rowRe = regexp.MustCompile(`<tr class="mount" data-state="([a-z]+)" data-path="([^"]*)"`)

func TestStatusPage(t *testing.T) {
	t.Parallel()
	h := httpapi.NewRouter(statusFixture(), httpapi.Options{Now: func() time.Time { return now }})
	code, body, hdr := get(t, h, http.MethodGet, "/")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", code, hdr.Get("Content-Type"))
	}
	var order []string
	for _, m := range rowRe.FindAllStringSubmatch(body, -1) {
		order = append(order, m[1])
	}
	if got := strings.Join(order, ","); got != "hung,unhealthy,pending,healthy,healthy" {
		t.Fatalf("rows not worst first: %s", got)
	}
	for _, want := range []string{"stuck for 42s", "timeout after 5s in write", probes.Advice(probes.ReasonTimeout)[:30], "<svg class=\"spark\"", "write 3.0", "5 mounts",
		// A mount checked read-only because its probe file may not be created says so.
		`<small class="mode write-denied"`, "write-denied: the probe file may not be created (EACCES/EPERM), checked read-only"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<img src=x") || strings.Contains(body, "<script") {
		t.Error("mount path not escaped")
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("page refers to an external asset")
	}
}

// statusOptions are the options of the status page tests: a node name, a
// version, and every page the status page links to.
func statusOptions() httpapi.Options {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	return httpapi.Options{Now: func() time.Time { return now }, NodeName: "ip-10-0-1-17.ec2.internal", Version: "v1.4.2",
		Metrics: ok, DebugChecks: ok}
}

// TestStatusPageHead: the page says which node and which agent it is
// (opened by node IP, nothing else would), links to the JSON, metrics and
// debug pages the router serves (and to no page it does not), and gives
// each sparkline its scale: 0 at the baseline, the largest time at the
// top, both labelled.
func TestStatusPageHead(t *testing.T) {
	t.Parallel()
	opts := statusOptions()
	h := httpapi.NewRouter(statusFixture(), opts)
	_, body, _ := get(t, h, http.MethodGet, "/")
	for _, want := range []string{
		"<title>efs-health-agent on ip-10-0-1-17.ec2.internal: 2 unhealthy</title>",
		`node <strong id="node">ip-10-0-1-17.ec2.internal</strong>`, `efs-health-agent <span id="version">v1.4.2</span>`,
		`<a href="healthz/mounts"`, `<a href="metrics"`, `<a href="debug/checks"`,
		// The fixture's history runs from 3 to 40 ms.
		`<span class="scale"><span class="max">40.0</span><span class="zero">0</span></span>`,
		"<title>last 4 checks: min 3.0 ms, max 40.0 ms</title>", "<th>History (ms)</th>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "debug/pprof") {
		t.Error("page links to the profiler, which is off")
	}
	// Every link is to a page the router serves, relative to the page.
	links := regexp.MustCompile(`<a href="([^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(links) != 3 {
		t.Fatalf("%d links, want 3", len(links))
	}
	for _, m := range links {
		if code, _, _ := get(t, h, http.MethodGet, "/"+m[1]); code != http.StatusOK {
			t.Errorf("link %s: GET /%s = %d", m[1], m[1], code)
		}
	}
	opts.Pprof = true
	if _, body, _ := get(t, httpapi.NewRouter(statusFixture(), opts), http.MethodGet, "/"); !strings.Contains(body, `<a href="debug/pprof/"`) {
		t.Error("page does not link to the profiler, which is on")
	}
	// A mount no check has told the mode of shows none.
	pending := regexp.MustCompile(`(?s)data-path="/d/pending">(.*?)</tr>`).FindStringSubmatch(body)
	if pending == nil || strings.Contains(pending[1], `class="mode`) {
		t.Errorf("pending row shows a mode: %q", pending)
	}
	// A node name is text, escaped like a path.
	_, body, _ = get(t, httpapi.NewRouter(statusFixture(), httpapi.Options{NodeName: "<b>n\x1b[31m</b>\u202e"}), http.MethodGet, "/")
	if !strings.Contains(body, `node <strong id="node">&lt;b&gt;n\x1b[31m&lt;/b&gt;\u202e</strong>`) || strings.Contains(body, "<b>n") {
		t.Errorf("node name not escaped:\n%s", body)
	}
}

// TestStatusPageEscapesControls shows a path and an error holding terminal
// escapes, bidi overrides and isolates, line separators and invalid UTF-8:
// the page shows them escaped (pathesc.Display), so a path cannot be made
// to read as another one, and two paths differing in an invalid byte stay
// two rows.
func TestStatusPageEscapesControls(t *testing.T) {
	t.Parallel()
	evil := "/mnt/\u202egnp.exe\u202c\u2066x\u2069\u2028\x1b[31m\u0085\xff"
	src := &fakeSource{live: true, sum: agent.Summary{Mounts: 3, Unhealthy: 1},
		sts: []*agent.MountStatus{
			{Mount: &agent.Mount{Path: evil}, State: agent.StateUnhealthy, LastCheck: now, Reason: probes.ReasonIOError,
				LastError: "open " + evil + "/probe: input/output error"},
			{Mount: &agent.Mount{Path: "/mnt/a\xfe"}, State: agent.StateHealthy, LastCheck: now},
			{Mount: &agent.Mount{Path: "/mnt/a\xff"}, State: agent.StateHealthy, LastCheck: now},
		}}
	h := httpapi.NewRouter(src, httpapi.Options{Now: func() time.Time { return now }})
	_, body, _ := get(t, h, http.MethodGet, "/")
	for _, r := range body {
		if r != '\n' && !unicode.IsPrint(r) {
			t.Fatalf("page holds %U", r)
		}
	}
	want := `/mnt/\u202egnp.exe\u202c\u2066x\u2069\u2028\x1b[31m\u0085\xff`
	for _, w := range []string{"<code>" + want + "</code>", "open " + want + "/probe: input/output error", `<code>/mnt/a\xfe</code>`, `<code>/mnt/a\xff</code>`} {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %q", w)
		}
	}
}
