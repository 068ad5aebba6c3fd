// Package exporters builds the agent's OpenTelemetry pipeline: a
// MeterProvider whose views fix the documented Prometheus metric names, a
// Prometheus exporter on a private registry for /metrics, optional OTLP
// push configured by the standard OTEL_* environment, a TracerProvider
// with a tail-sampled span per check and per operation, and the check log
// (checklog.Log) behind /debug/checks, which the Observer files every
// check in.
//
// # Names
//
// Instruments have OTel-style names (efs.mount.health.status, ...). The
// table in names.go has one row per metric: New creates every instrument
// from it, and its views rename each to its Prometheus name and HELP text;
// a new metric is one row (its id and its definition, with the one
// function that produces its series for /metrics and OTLP alike; a
// recorded metric is recorded by the Observer instead). The Prometheus
// exporter runs with the UnderscoreEscapingWithoutSuffixes translation, without scope labels and
// without target_info, so it adds nothing: no _milliseconds or _ratio unit
// suffixes, no second _total, no otel_scope_* labels. The golden scrape
// test pins the result. OTLP pushes carry the same names.
//
// # The agent's own process
//
// /metrics also serves the Prometheus client's process and Go collectors
// (process_*, go_*: the agent's CPU, memory, file descriptors, threads
// and garbage collector), from a second private registry, as every
// Prometheus exporter does; docs/metrics-process.md lists them. They are
// not pushed over OTLP.
//
// # Lifetimes
//
// The per-mount series are read from the source's published statuses at
// each collection, so a mount that is unregistered disappears at the next
// collection (scrape or push) and memory does not grow with the number of
// mounts ever seen. For OTLP push they are asynchronous instruments with
// a callback; /metrics builds them directly, in one pass over the mounts,
// next to the Prometheus exporter's families of the recorded instruments
// (gatherer.go). Both take names, HELP texts, types and labels from the names
// table. There is no cardinality limit: one series per registered mount
// (the SDK's default limit of 2,000 would fold the rest into an overflow
// series). A pending mount (registered,
// no check completed) has its error counters (0) but no health, response
// time, hung or last-check series, so it cannot trip an "unhealthy" alert
// before its first check. The synchronous instruments (operation latency,
// checks by outcome) carry no mount label, so their cardinality is fixed;
// their exemplars and spans say which mount a slow operation was on.
//
// # Traces
//
// Spans are tail-sampled (sampling.go). The Observer receives each check
// once, when it ends, as an agent.CheckRecord holding its operations with
// their start times, durations and errors (observer.go). It keeps the span tree of a failed, timed-out or slow check
// (Options.TraceSlowThreshold) always, and of a healthy, fast one when the
// sampler of OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG says so, and
// creates the spans after the fact with explicit timestamps. The latency
// histogram sees every operation; it is recorded in the span's context
// for a kept check, so its exemplars point only at traces that exist.
//
// The NFS client statistics come from the nfsstats package through
// Options.NFSStats: reading /proc is an input, not an export.
//
// # Environment
//
// Nothing is pushed, and nothing retries in the background, unless
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_{METRICS,TRACES}_ENDPOINT
// or OTEL_{METRICS,TRACES}_EXPORTER is set (Options.Getenv decides). The
// exporter ("otlp" or "console") and the OTLP protocol ("grpc" or
// "http/protobuf") are chosen as go.opentelemetry.io/contrib/exporters/autoexport
// would (push.go), without linking that package's log exporters; the
// exporters, like the SDK's readers and processors, read their other
// settings from the process environment only.
//
// # Global state
//
// The SDK reports export errors only through the process-wide
// otel.Handle. New installs a forwarder there once and points it at its
// own rate-limited logger (at most one line a minute); Shutdown detaches
// it. Nothing else is global: no default registry, no global providers.
package exporters
