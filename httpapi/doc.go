// Package httpapi serves the agent's endpoints with a chi router: every
// route the agent has (health, /metrics, /debug/checks, /debug/pprof) is
// registered here; other packages hand it handlers or data.
//
// Every health handler reads the monitor's published, immutable state (an
// O(1) summary or the per-mount status values); none of them touches a
// filesystem, so they answer at once even while a mount is hung. The
// Server bounds what clients can hold: a cap on open connections that
// closes the longest-idle one to admit a new one (connlimit.go), short
// timeouts, header limits, and a concurrency limit on /debug/checks whose
// excess requests are refused with 429 and Retry-After (debug.go).
package httpapi
