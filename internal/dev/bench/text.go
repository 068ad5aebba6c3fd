//go:build linux

package main

import "unsafe"

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

const methodText = `## Method

All figures come from one process on one machine in one run, so they can be
compared with each other; the absolute numbers drift on shared machines, and
the machine line gives the load average when the run started. The Targets
table at the end of the run is computed by the bench from the figures.

1. **Agent CPU per check.** Process CPU time (getrusage user + system, the
   whole bench process) per check, on one tmpfs with 200 directories, the
   mounts. Two baselines run the probe's syscall sequence (open the
   directory O_PATH, openat its probe directory O_PATH and statx it from
   the cache, openat O_RDWR|O_CREAT in it, fcntl O_DIRECT, pwrite 1 KiB,
   fsync, pread, close, unlinkat, close both directories) with no agent
   machinery, round
   robin over the 200 directories: back to back (20,000 checks), and paced by
   one Go ticker at the agent's rate, one check every 5 ms (200 mounts every
   second) for 15 s. The agent then checks the same 200 directories every
   second (timeout 500 ms) with its HTTP server listening (no requests) and
   its telemetry pipeline with a span processor attached: a batch span
   processor with an exporter that discards, as with OTLP push. After two
   intervals of warm-up, CPU is measured over 15 s and divided by the checks
   completed. Two agent runs: the default trace sampling (healthy, fast
   checks sampled at 1 %; all 200 mounts are healthy and fast here), and
   OTEL_TRACES_SAMPLER=always_on, every check's span tree built and
   exported. Ratios: agent (default sampling) / each baseline.
2. **Memory per mount.** Live heap (after two GCs) before registering the mounts
   and after /metrics, /healthz/mounts, / and /debug/checks have been rendered
   once, divided by the number of mounts. Includes the monitor, the telemetry
   pipeline and the /debug/checks history. Measured after each mount's first
   check (1,000 and 10,000 mounts, 30 s interval) and in the steady state:
   1,000 mounts checked every 100 ms until each has had 12 checks, which fills
   its /debug/checks and latency histories, then the scheduler stopped.
   **2b.** The agent binary, built as ` + "`make build`" + ` does (static,
   CGO_ENABLED=0), started with no mounts and no OTEL_* variables; VmRSS 3 s
   after one request of every endpoint, split into anonymous memory (heap,
   stacks) and the binary's pages the kernel has mapped (RssFile). Beside
   it, built and measured the same way, the dependency floor
   (internal/dev/bench/floor): the agreed core dependencies wired as the agent
   wires them (chi, the OpenTelemetry SDK and its Prometheus exporter
   serving /metrics, the OTLP HTTP and gRPC exporters linked) with no
   agent code.
3. **CPU at scale.** 10,000 tmpfs mounts at the default 30 s interval. After one
   interval to let the random first phase settle, the process's CPU time over
   the run divided by wall time. A sampler counts each mount's new checks
   once a second (a pass over the status list, by index); the same pass is
   timed on its own after the run and its share subtracted. Spread: checks started
   per one-second bucket, max / mean.
4. **Endpoint cost.** /metrics over real HTTP: the agent's HTTP server on
   loopback, one kept-alive client connection asking for gzip as Prometheus
   does, time from request to the last byte of the body, median of 15
   (Prometheus text format). The other columns call the handlers in process
   (no network), 15 renders for the O(n) endpoints (median) and 2,000 for
   the O(1) ones (p99).
5. **Endpoints while hung.** 100 mounts (99 tmpfs, 1 on the FUSE fault
   filesystem), interval 1s, timeout 500 ms. A second process (this binary with
   -load) requests every endpoint in a loop over loopback for 8 s, first with all
   mounts healthy, then with the FUSE mount's writes hung.
6. **Detection latency.** One FUSE mount, interval 1 s, timeout 500 ms; a client
   polls /healthz/ready every 5 ms over loopback. Five runs per fault at varied
   phases: time from setting the fault to 503, and from clearing it to 200.
`

const notesText = `
## Profiles

A missed target is explained from a profile of the same code:
` + "`go run ./internal/dev/bench -cpuprofile cpu.prof`" + ` (the agent part of figure 1, default
sampling, then stops) and
` + "`go run ./internal/dev/bench -scaleprofile scale.prof -scale-duration 60s -out \"\"`" + `
(figure 3 only), read with ` + "`go tool pprof -top -cum`" + `.
` + "`go run ./internal/dev/bench -figures 2b,4`" + ` runs only the figures named and prints
them (nothing is written).

## Notes

- Go benchmarks for the hot paths: ` + "`go test -run '^$' -bench . -count 10 ./probes ./agent ./exporters ./httpapi`" + `
  (on a tmpfs when run as root); compare runs with benchstat.
  ` + "`BenchmarkObserveCheck`" + ` in exporters splits the telemetry of one healthy check
  into its default (no spans kept) and sampled (span tree through a batch
  processor) costs; ` + "`BenchmarkScrape`" + ` renders /metrics (uncompressed; the router gzips a shared rendering) at 1,000 and
  10,000 mounts.
- Kubernetes requests/limits in deploy/ (10m CPU, 32Mi; 100m, 128Mi) are sized
  from figures 2 and 3 with a wide margin: a node has at most a few hundred mounts.
`
