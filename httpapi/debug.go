package httpapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/efs-health-agent/efs-health-agent/checklog"
)

// Debug route paths.
const (
	// PathDebugChecks lists recent and slowest checks (Options.DebugChecks).
	PathDebugChecks = "/debug/checks"
	// PathPprof is the Go profiler's index (Options.Pprof).
	PathPprof = "/debug/pprof/"
)

// DefaultDebugConcurrency is how many /debug/checks requests are served at
// once unless Options.DebugConcurrency says otherwise.
const DefaultDebugConcurrency = 2

// retryAfter is the Retry-After of a request refused for concurrency.
const retryAfter = time.Second

// limitConcurrency serves at most n requests of h at once; any more are
// answered 429 with Retry-After at once, without waiting, so that a burst
// of expensive requests never queues up memory or delays other routes.
func limitConcurrency(n int, h http.Handler) http.Handler {
	sem := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
		default:
			w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
			text(w, http.StatusTooManyRequests, "too many concurrent requests to "+r.URL.Path+"; retry later")
			return
		}
		defer func() { <-sem }()
		h.ServeHTTP(w, r)
	})
}

// DefaultDebugLimit is how many checks of each list a /debug/checks
// answer shows unless ?limit= asks for more; MaxDebugLimit is the largest
// ?limit=.
const (
	DefaultDebugLimit = 20
	MaxDebugLimit     = 1000
)

// DebugChecks serves /debug/checks from l: the most recent checks of all
// mounts (oldest first), the slowest since start (slowest first) and each
// mount's last failed check (newest first), each with its mount, trace id
// (of its efs.mount.check span), start time, duration, per-operation
// milliseconds, outcome, state, reason and error. Query parameters:
// mount=PATH keeps one mount, trace=ID the checks of one trace, limit=N
// shows at most N checks per list (default DefaultDebugLimit, at most
// MaxDebugLimit), format=text renders a plain table instead of JSON. The
// answer reports how many checks matched in each list. It reads memory
// only, copies at most limit entries per list under the log's lock and
// writes each check as it is rendered.
func DebugChecks(l *checklog.Log) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		q := checklog.Query{Mount: v.Get("mount"), Trace: v.Get("trace"), Limit: DefaultDebugLimit}
		if s := v.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxDebugLimit {
				http.Error(w, fmt.Sprintf("invalid limit=%q: must be a number from 1 to %d", s, MaxDebugLimit), http.StatusBadRequest)
				return
			}
			q.Limit = n
		}
		sel := l.Select(q)
		if v.Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			writeDebugText(w, sel, q.Limit)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		writeDebugJSON(w, sel, q.Limit)
	})
}

// debugList is one list of an answer, with its name and total.
type debugList struct {
	name, title string
	total       int
	es          []checklog.Entry
}

func debugLists(sel checklog.Selection) []debugList {
	return []debugList{
		{"recent", "recent (oldest first)", sel.RecentTotal, sel.Recent},
		{"slowest", "slowest", sel.SlowestTotal, sel.Slowest},
		{"lastFailures", "last failure per mount (newest first)", sel.FailuresTotal, sel.Failures},
	}
}

// writeDebugJSON writes sel as one JSON object, one check at a time.
func writeDebugJSON(w io.Writer, sel checklog.Selection, limit int) {
	bw := bufio.NewWriterSize(w, 4<<10)
	defer bw.Flush()
	enc := json.NewEncoder(bw)
	fmt.Fprintf(bw, "{\"checksRecorded\":%d,\"limit\":%d", sel.Checks, limit)
	for _, part := range debugLists(sel) {
		fmt.Fprintf(bw, ",\n%q:%d,\n%q:[", part.name+"Total", part.total, part.name)
		for i := range part.es {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteByte('\n')
			_ = enc.Encode(part.es[i].Check()) // ends in a newline
		}
		bw.WriteByte(']')
	}
	bw.WriteString("}\n")
}

// writeDebugText renders sel as one line per check.
func writeDebugText(w io.Writer, sel checklog.Selection, limit int) {
	bw := bufio.NewWriterSize(w, 4<<10)
	defer bw.Flush()
	fmt.Fprintf(bw, "checks recorded: %d\n", sel.Checks)
	for _, part := range debugLists(sel) {
		fmt.Fprintf(bw, "%s: %d of %d (limit %d)\n", part.title, len(part.es), part.total, limit)
		for i := range part.es {
			c := part.es[i].Check()
			fmt.Fprintf(bw, "  %s %10.3fms %-7s %-17s trace=%s mount=%q", c.Start.Format(time.RFC3339Nano), c.DurationMs, c.Outcome, c.Reason, c.TraceID, c.MountPath)
			for _, o := range c.Ops {
				fmt.Fprintf(bw, " %s=%.3f", o.Op, o.Ms)
			}
			if c.Error != "" {
				fmt.Fprintf(bw, " error=%q", c.Error)
			}
			bw.WriteByte('\n')
		}
	}
}

// pprofHandler serves the Go profiler under PathPprof.
func pprofHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathPprof + "cmdline":
			pprof.Cmdline(w, r)
		case PathPprof + "profile":
			pprof.Profile(w, r)
		case PathPprof + "symbol":
			pprof.Symbol(w, r)
		case PathPprof + "trace":
			pprof.Trace(w, r)
		default:
			pprof.Index(w, r)
		}
	})
}
