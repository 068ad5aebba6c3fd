// Package rendercache serves O(n) HTTP answers (the agent's /metrics,
// /healthz/mounts and status page) under one memory and CPU budget.
//
// An endpoint's answer is rendered once, gzip-compressed, and served to
// every request for it while it is fresh: while the state it was made
// from (New's gen) is unchanged and it is younger than Limits.MaxAge, and
// in any case for a few times as long as it took to render, so that
// renderings take a bounded share of the CPU whatever the clients ask.
// Concurrent requests for a rendering in progress wait for it. At most
// Limits.Renders renderings are built at once, for all endpoints
// together; a request that needs a new one when no slot is free is
// served the endpoint's last rendering, or 503 with Retry-After if there
// is none. Renderings, responses still being written to slow clients and
// the decompression buffer of each client that does not accept gzip draw
// from one byte budget (Limits.Bytes), past which the answer is 503 with
// Retry-After. Every response is written under a deadline sized to it
// (Limits.WriteBase, Limits.WriteRate), so a client that does not read
// cannot hold its bytes. An endpoint keeps at most one rendering per
// variant (a response format), and at most maxVariants of them.
package rendercache
