// Package httpapi serves the agent's endpoints with a chi router: every
// route the agent has (health, /metrics, /debug/checks, /debug/pprof) is
// registered here; other packages hand it handlers or data. It keeps the
// routes, their handlers, the JSON of /healthz/mounts and the status page;
// the mechanisms that protect them are packages of their own, wired here.
//
// Every health handler reads the monitor's published, immutable state (an
// O(1) summary or the per-mount status values); none of them touches a
// filesystem, so they answer at once even while a mount is hung. The
// Server bounds what clients can hold: a cap on open connections that
// closes an idle, silent or long-busy one to admit a new one, with a
// reserve of slots for the health probes (package connguard, given the
// probe routes here), short timeouts, header limits, request bodies never
// read (middleware.go), and a concurrency limit on /debug/checks whose
// excess requests are refused with 429 and Retry-After (debug.go). The
// O(n) answers (/metrics, /healthz/mounts, the status page) come from one
// response cache (package rendercache): a rendering, gzip-compressed once,
// is served to every concurrent request for it, renderings and the bytes
// they hold draw from one budget (Limits), past which the answer is 503
// with Retry-After, and every response is written under a deadline sized
// to it.
package httpapi
