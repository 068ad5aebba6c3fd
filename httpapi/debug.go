package httpapi

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"
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
