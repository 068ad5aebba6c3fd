package httpapi

import (
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// PathStatus is the human status page.
const PathStatus = "/"

// statusRow is one mount on the status page.
type statusRow struct {
	Path, State, Reason, Mode, LastError, Advice string
	// ModeNote explains a mode an operator may not expect (write-denied).
	ModeNote            string
	Age                 string
	ResponseMs          string
	Ops                 []opCell
	Errors, Consecutive uint64
	Spark               template.HTML
	Rank                int
	// What the mount is, where known.
	FileSystemID, AccessPoint, PodUID, Volume string
}

type opCell struct{ Op, Ms string }

// statusHead is what the status page says about the agent itself: the
// node, the version, and links to the other pages it serves.
type statusHead struct {
	NodeName, Version string
	Links             []statusLink
}

// statusLink is a link from the status page. Hrefs are relative, so the
// links work behind a proxy that serves the agent under a path prefix.
type statusLink struct{ Href, Text, Title string }

// newStatusHead is the status page's head for the router's options: a
// link to every other page the router serves for people and tools.
func newStatusHead(opts Options) statusHead {
	h := statusHead{NodeName: pathesc.Display(opts.NodeName), Version: pathesc.Display(opts.Version)}
	h.Links = append(h.Links, statusLink{strings.TrimPrefix(PathMounts, "/"), "JSON", "every mount's status as JSON (" + PathMounts + ")"})
	if opts.Metrics != nil {
		h.Links = append(h.Links, statusLink{strings.TrimPrefix(PathMetrics, "/"), "metrics", "Prometheus metrics (" + PathMetrics + ")"})
	}
	if opts.DebugChecks != nil {
		h.Links = append(h.Links, statusLink{strings.TrimPrefix(PathDebugChecks, "/"), "recent checks", "recent and slowest checks, operation by operation (" + PathDebugChecks + ")"})
	}
	if opts.Pprof {
		h.Links = append(h.Links, statusLink{strings.TrimPrefix(PathPprof, "/"), "profiler", "the Go profiler (" + PathPprof + ")"})
	}
	return h
}

type statusPage struct {
	statusHead
	Generated                                 string
	Mounts, Healthy, Unhealthy, Hung, Pending int
	Live                                      bool
	Rows                                      []statusRow
}

var statusTmpl = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>efs-health-agent{{if .NodeName}} on {{.NodeName}}{{end}}: {{if .Unhealthy}}{{.Unhealthy}} unhealthy{{else}}all healthy{{end}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}
.sum span{margin-right:1.2em}
table{border-collapse:collapse;margin-top:1em;width:100%}
th,td{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{font-weight:600;padding:.1em .5em;border-radius:.3em;color:#fff}
.healthy{background:#2e7d32}.unhealthy{background:#c62828}.hung{background:#6a1b9a}.pending{background:#757575}
.agent{color:#555;margin:0 0 .4em}.agent a{margin-left:.9em}
.sparkline{display:inline-flex;align-items:stretch;gap:.3em}.scale{display:flex;flex-direction:column;justify-content:space-between;font-size:.7em;line-height:1;color:#555;font-variant-numeric:tabular-nums}
.err{color:#b71c1c;font-size:.9em}.mode.write-denied{color:#8d6e00}.advice{color:#555;font-size:.85em}
code{font-size:.95em;word-break:break-all}
</style></head>
<body>
<h1>EFS mount health</h1>
<div class="agent" id="agent">{{if .NodeName}}node <strong id="node">{{.NodeName}}</strong>, {{end}}efs-health-agent{{with .Version}} <span id="version">{{.}}</span>{{end}}
<nav>{{range .Links}}<a href="{{.Href}}" title="{{.Title}}">{{.Text}}</a>{{end}}</nav></div>
<div class="sum" id="summary">
<span>{{.Mounts}} mount{{if ne .Mounts 1}}s{{end}}</span><span>{{.Healthy}} healthy</span><span>{{.Unhealthy}} unhealthy</span><span>{{.Hung}} hung</span><span>{{.Pending}} pending</span>
<span>monitor {{if .Live}}running{{else}}<strong>NOT RUNNING</strong>{{end}}</span><span>as of {{.Generated}}</span>
</div>
{{if .Rows}}<table id="mounts">
<thead><tr><th>Mount</th><th>State</th><th>Last check</th><th>Response</th><th>Operations (ms)</th><th>History (ms)</th><th>Errors (consecutive / total)</th></tr></thead>
<tbody>
{{range .Rows}}<tr class="mount" data-state="{{.State}}" data-path="{{.Path}}">
<td><code>{{.Path}}</code>{{if .Mode}}<br><small class="mode {{.Mode}}"{{if .ModeNote}} title="{{.ModeNote}}"{{end}}>{{.Mode}}{{if .ModeNote}}: {{.ModeNote}}{{end}}</small>{{end}}{{if or .FileSystemID .PodUID}}<br><small class="attr">{{if .FileSystemID}}<span class="fs">{{.FileSystemID}}</span>{{end}}{{if .AccessPoint}} <span class="ap">{{.AccessPoint}}</span>{{end}}{{if .PodUID}} pod <span class="pod">{{.PodUID}}</span>{{end}}{{if .Volume}} volume <span class="vol">{{.Volume}}</span>{{end}}</small>{{end}}</td>
<td><span class="state {{.State}}">{{.State}}</span>{{if .Reason}}<br><small>{{.Reason}}</small>{{end}}</td>
<td>{{.Age}}</td>
<td class="num">{{.ResponseMs}}</td>
<td>{{range .Ops}}{{.Op}} {{.Ms}}<br>{{end}}</td>
<td>{{.Spark}}</td>
<td class="num">{{.Consecutive}} / {{.Errors}}</td>
</tr>{{if .LastError}}<tr class="detail"><td colspan="7"><div class="err">{{.LastError}}</div><div class="advice">{{.Advice}}</div></td></tr>{{end}}
{{end}}</tbody></table>{{else}}<p>No mounts registered.</p>{{end}}
</body></html>
`))

func stateRank(s agent.State) int {
	switch s {
	case agent.StateHung:
		return 0
	case agent.StateUnhealthy:
		return 1
	case agent.StatePending:
		return 2
	}
	return 3
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64)
}

// sparkline draws response-time history as a small inline SVG with its
// scale beside it: the polyline runs from 0 (the bottom, drawn as a
// baseline) to the largest time in the history (the top), and the labels
// say both; the title gives the smallest and largest.
func sparkline(h *agent.History) template.HTML {
	n := h.Len()
	if n < 2 {
		return ""
	}
	const w, ht = 120.0, 24.0
	var top time.Duration
	bottom := time.Duration(math.MaxInt64)
	for d := range h.All() {
		top = max(top, d)
		bottom = min(bottom, d)
	}
	if top <= 0 {
		top = 1
	}
	var pts strings.Builder
	i := 0
	for d := range h.All() {
		x := float64(i) * w / float64(n-1)
		y := ht - 2 - float64(d)/float64(top)*(ht-4)
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
		i++
	}
	return template.HTML(fmt.Sprintf(`<span class="sparkline"><svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="response time of the last %d checks, from %s to %s ms">`+
		`<title>last %d checks: min %s ms, max %s ms</title>`+
		`<line x1="0" y1="%.1f" x2="%d" y2="%.1f" stroke="#bbb" stroke-width="1"/>`+
		`<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="%s"/></svg>`+
		`<span class="scale"><span class="max">%s</span><span class="zero">0</span></span></span>`,
		int(w), int(ht), int(w), int(ht), n, ms(bottom), ms(top),
		n, ms(bottom), ms(top),
		ht-2, int(w), ht-2,
		strings.TrimSpace(pts.String()), ms(top)))
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func (h *handlers) status(w http.ResponseWriter, _ *http.Request) {
	sts := h.src.Statuses()
	sum := h.src.Summary()
	now := h.now()
	page := statusPage{
		statusHead: h.head,
		Generated:  now.UTC().Format(time.RFC3339),
		Mounts:     sum.Mounts, Unhealthy: sum.Unhealthy, Hung: sum.Hung, Pending: sum.Pending,
		Healthy: sum.Mounts - sum.Unhealthy - sum.Pending,
		Live:    h.src.Live(),
		Rows:    make([]statusRow, 0, len(sts)),
	}
	for _, st := range sts {
		r := statusRow{
			Path: pathesc.Display(st.Path), State: string(st.State), Reason: string(st.Reason), Mode: string(st.Mode),
			LastError: pathesc.Display(st.LastError), Age: age(now, st.LastCheck), Errors: st.ErrorCount,
			Consecutive: st.ConsecutiveErrors, Spark: sparkline(&st.History), Rank: stateRank(st.State),
			FileSystemID: st.Attribution.FileSystemID, AccessPoint: st.Attribution.AccessPoint,
			PodUID: pathesc.Display(st.Attribution.PodUID), Volume: pathesc.Display(st.Attribution.Volume),
		}
		if st.State != agent.StatePending {
			r.ResponseMs = ms(st.ResponseTime) + " ms"
		}
		switch st.Mode {
		case probes.ModeWriteDenied:
			r.ModeNote = "the probe file may not be created (EACCES/EPERM), checked read-only"
		case probes.ModeDirRefused:
			r.ModeNote = "the probe directory " + probes.DirName + " was refused (not the agent's own directory), checked read-only"
		case probes.ModeReadWriteRoot:
			r.ModeNote = "the probe file is made in the mount root (HEALTH_PROBE_LOCATION=root)"
		}
		if st.State == agent.StateHung {
			r.Age = "stuck for " + now.Sub(st.HungSince).Round(time.Second).String()
		}
		if st.Reason != "" {
			r.Advice = probes.Advice(st.Reason)
		}
		for op, d := range st.Ops.All() {
			r.Ops = append(r.Ops, opCell{Op: string(op), Ms: ms(d)})
		}
		page.Rows = append(page.Rows, r)
	}
	// Worst first: hung, unhealthy, pending, healthy; then most consecutive
	// errors; then path. The input is sorted by path and the sort is stable.
	slices.SortStableFunc(page.Rows, func(a, b statusRow) int {
		if a.Rank != b.Rank {
			return a.Rank - b.Rank
		}
		switch {
		case a.Consecutive > b.Consecutive:
			return -1
		case a.Consecutive < b.Consecutive:
			return 1
		}
		return 0
	})
	// Written as it is rendered, through the response cache, which
	// compresses and buffers it: a failed write ends the rendering.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = statusTmpl.Execute(w, page)
}
